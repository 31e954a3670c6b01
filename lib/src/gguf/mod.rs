//! Reading and writing GGUF files (llama.cpp's model format): metadata, tensors decoded to f32,
//! and the tokenizer the metadata describes.
//!
//! ```no_run
//! use tunebook::gguf::GgufFile;
//!
//! let gguf = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! println!("{} with {} blocks", gguf.architecture()?, gguf.get_u64("llama.block_count")?);
//! let (shape, values) = gguf.dequantize("blk.0.attn_q.weight")?; // shape [576, 576]
//! let tokenizer = gguf.tokenizer()?;
//! let ids = tokenizer.encode("<|im_start|>user", false).unwrap().get_ids().to_vec();
//! # Ok::<(), tunebook::Error>(())
//! ```

mod dequant;
mod metadata;
mod permute;
mod reader;
mod tokenizer;
mod types;
mod writer;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};

pub use metadata::MetadataValue;
pub(crate) use tokenizer::byte_level_bpe_metadata;
pub use permute::{permute_qk, unpermute_qk};
pub use types::GgmlType;
pub use writer::GgufWriter;

/// Where and how one tensor is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Row-major (PyTorch / Hugging Face) order: outermost dimension first.
    pub shape: Vec<usize>,
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the file's tensor data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes the tensor occupies in the file.
    pub fn n_bytes(&self) -> usize {
        // Opening a file checks that every tensor's size is representable.
        self.ggml_type
            .bytes_for(self.n_elements())
            .unwrap_or(usize::MAX)
    }
}

/// A memory-mapped GGUF file. Opening parses metadata and the tensor directory and checks that
/// every tensor lies inside the file; tensor data is only read when asked for.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    metadata: BTreeMap<String, MetadataValue>,
    tensors: Vec<TensorInfo>,
    data_start: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens and validates `path`.
    ///
    /// ```no_run
    /// let gguf = tunebook::gguf::GgufFile::open("model.gguf")?;
    /// for tensor in gguf.tensors() {
    ///     println!("{} {:?} {}", tensor.name, tensor.shape, tensor.ggml_type);
    /// }
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if len == 0 {
            return Err(Error::bad_file(&path, "empty file, expected GGUF"));
        }
        // SAFETY: the map is read-only; like every mmap-based loader we rely on the file not
        // being truncated by another process while it is open.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let parsed = reader::parse(&path, &mmap)?;
        Ok(GgufFile {
            path,
            mmap,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            data_start: parsed.data_start,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All metadata, sorted by key.
    pub fn metadata(&self) -> &BTreeMap<String, MetadataValue> {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata.get(key)
    }

    fn required(&self, key: &str) -> Result<&MetadataValue> {
        self.get(key)
            .ok_or_else(|| Error::bad_file(&self.path, format!("metadata `{key}` is missing")))
    }

    /// A non-negative integer of any integer type, e.g. `llama.block_count`.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let value = self.required(key)?;
        value.as_u64().ok_or_else(|| {
            Error::bad_file(
                &self.path,
                reader::wrong_type(key, value, "a non-negative integer"),
            )
        })
    }

    /// A float, or an integer read as one, e.g. `llama.rope.freq_base`.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let value = self.required(key)?;
        value
            .as_f64()
            .ok_or_else(|| Error::bad_file(&self.path, reader::wrong_type(key, value, "a number")))
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        let value = self.required(key)?;
        value
            .as_str()
            .ok_or_else(|| Error::bad_file(&self.path, reader::wrong_type(key, value, "a string")))
    }

    /// `general.architecture`, e.g. `llama`; other keys are prefixed with it.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// Tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor_info(name)
            .ok_or_else(|| Error::tensor(name, format!("not found in {}", self.path.display())))
    }

    /// The raw stored bytes of a tensor (quantised blocks for quantised types).
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let info = self.require_tensor(name)?;
        Ok(self.bytes_of(info))
    }

    fn bytes_of(&self, info: &TensorInfo) -> &[u8] {
        // Opening checked offset + size against the file length, so this range is in bounds.
        let start = self.data_start + info.offset as usize;
        &self.mmap[start..start + info.n_bytes()]
    }

    /// Decodes a tensor to f32, returning its row-major shape and values.
    ///
    /// ```no_run
    /// # let gguf = tunebook::gguf::GgufFile::open("model.gguf")?;
    /// let (shape, values) = gguf.dequantize("token_embd.weight")?;
    /// assert_eq!(values.len(), shape.iter().product::<usize>());
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn dequantize(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let info = self.require_tensor(name)?;
        let mut values = vec![0f32; info.n_elements()];
        if !dequant::dequantize_into(info.ggml_type, self.bytes_of(info), &mut values) {
            return Err(Error::Unsupported {
                what: "GGML tensor type for dequantisation",
                name: format!(
                    "{} (tensor `{name}` in {})",
                    info.ggml_type,
                    self.path.display()
                ),
                supported: types::DEQUANTIZABLE
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok((info.shape.clone(), values))
    }

    /// The tokenizer described by the `tokenizer.ggml.*` metadata, as a Hugging Face
    /// `tokenizers::Tokenizer` (no special tokens are added unless the file asks for BOS/EOS).
    ///
    /// ```no_run
    /// # let gguf = tunebook::gguf::GgufFile::open("model.gguf")?;
    /// let tokenizer = gguf.tokenizer()?;
    /// let encoding = tokenizer.encode("Hello world", true).unwrap();
    /// assert_eq!(tokenizer.decode(encoding.get_ids(), false).unwrap(), "Hello world");
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        tokenizer::build(self)
    }

    /// The Jinja2 chat template from `tokenizer.chat_template`.
    pub fn chat_template(&self) -> Option<&str> {
        self.get("tokenizer.chat_template")
            .and_then(MetadataValue::as_str)
    }

    /// A special token id from `tokenizer.ggml.<which>_token_id`: `"bos"`, `"eos"`, `"pad"`,
    /// `"unknown"` (or `"unk"`), `"sep"`, `"cls"`, `"mask"`.
    pub fn special_token(&self, which: &str) -> Option<u32> {
        let key = match which {
            "pad" | "padding" => "padding",
            "unk" | "unknown" => "unknown",
            other => other,
        };
        self.get(&format!("tokenizer.ggml.{key}_token_id"))?
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
    }
}
