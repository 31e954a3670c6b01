//! Parsing the GGUF header, metadata and tensor directory, defensively: every length and count
//! is checked against the bytes actually left before anything is allocated.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::metadata::{type_name, MetadataValue};
use super::types::GgmlType;
use super::TensorInfo;
use crate::error::{Error, Result};

pub(crate) const MAGIC: &[u8; 4] = b"GGUF";
pub(crate) const DEFAULT_ALIGNMENT: u64 = 32;
pub(crate) const ALIGNMENT_KEY: &str = "general.alignment";
/// ggml tensors have at most four dimensions.
pub(crate) const MAX_DIMS: usize = 4;
/// Arrays of arrays are legal, but no real file nests deeply; this bounds recursion.
const MAX_ARRAY_NESTING: usize = 4;

pub(crate) struct Parsed {
    pub metadata: BTreeMap<String, MetadataValue>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute offset of the tensor data section.
    pub data_start: usize,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn error(&self, message: impl Into<String>) -> Error {
        Error::bad_file(self.path, message)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "truncated GGUF file: {what} needs {n} bytes at offset {} but the file ends at {}",
                self.pos,
                self.bytes.len()
            )));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A count or length that must fit in the rest of the file at `min_bytes_each`.
    fn count(&mut self, min_bytes_each: usize, what: &str) -> Result<usize> {
        let count = self.u64(what)?;
        let fits = usize::try_from(count).ok().filter(|&c| {
            c.checked_mul(min_bytes_each)
                .is_some_and(|n| n <= self.remaining())
        });
        fits.ok_or_else(|| {
            self.error(format!(
                "{what} is {count}, which cannot fit in the {} bytes left after offset {} \
                 (corrupt or truncated file)",
                self.remaining(),
                self.pos
            ))
        })
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.count(1, &format!("length of {what}"))?;
        let start = self.pos;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| {
            self.error(format!(
                "{what} at offset {start} is not valid UTF-8 (bad byte at position {})",
                e.utf8_error().valid_up_to()
            ))
        })
    }

    fn value(&mut self, type_id: u32, what: &str, depth: usize) -> Result<MetadataValue> {
        Ok(match type_id {
            0 => MetadataValue::U8(u8::from_le_bytes(self.array(what)?)),
            1 => MetadataValue::I8(i8::from_le_bytes(self.array(what)?)),
            2 => MetadataValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => MetadataValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => MetadataValue::U32(u32::from_le_bytes(self.array(what)?)),
            5 => MetadataValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => MetadataValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => MetadataValue::Bool(false),
                1 => MetadataValue::Bool(true),
                other => return Err(self.error(format!("{what} is a bool stored as {other}"))),
            },
            8 => MetadataValue::String(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_NESTING {
                    return Err(self.error(format!(
                        "{what} nests arrays deeper than {MAX_ARRAY_NESTING} levels"
                    )));
                }
                let element_type = self.u32(&format!("element type of {what}"))?;
                let min_bytes = min_value_bytes(element_type).ok_or_else(|| {
                    self.error(format!("{what} has unknown element type {element_type}"))
                })?;
                let count = self.count(min_bytes, &format!("element count of {what}"))?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(element_type, what, depth + 1)?);
                }
                MetadataValue::Array(items)
            }
            10 => MetadataValue::U64(u64::from_le_bytes(self.array(what)?)),
            11 => MetadataValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => MetadataValue::F64(f64::from_le_bytes(self.array(what)?)),
            other => {
                return Err(self.error(format!(
                    "{what} has unknown value type {other} (GGUF defines 0..=12)"
                )))
            }
        })
    }
}

/// Fewest bytes a value of this type can take, or `None` for an unknown type.
fn min_value_bytes(type_id: u32) -> Option<usize> {
    match type_id {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        8 => Some(8),     // u64 length
        9 => Some(4 + 8), // element type + count
        _ => None,
    }
}

pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let mut cur = Cursor {
        bytes,
        pos: 0,
        path,
    };
    let magic = cur.take(4, "magic")?;
    if magic != MAGIC {
        return Err(cur.error(format!(
            "not a GGUF file: starts with {magic:02x?}, expected \"GGUF\""
        )));
    }
    let version = cur.u32("version")?;
    if !(2..=3).contains(&version) {
        let hint = if version.swap_bytes() <= 3 {
            " (a big-endian file?)"
        } else {
            ""
        };
        return Err(cur.error(format!(
            "unsupported GGUF version {version}{hint}; supported: 2 and 3"
        )));
    }
    // Smallest tensor entry: name length, n_dims, type, offset.
    let tensor_count = cur.count(8 + 4 + 4 + 8, "tensor count")?;
    // Smallest key/value: key length, value type, one byte of value.
    let kv_count = cur.count(8 + 4 + 1, "metadata key count")?;

    let mut metadata = BTreeMap::new();
    for index in 0..kv_count {
        let key = cur.string(&format!("metadata key #{index}"))?;
        let what = format!("metadata `{key}`");
        let type_id = cur.u32(&format!("value type of {what}"))?;
        let value = cur.value(type_id, &what, 0)?;
        if metadata.insert(key, value).is_some() {
            return Err(cur.error(format!("{what} appears twice")));
        }
    }

    let alignment = match metadata.get(ALIGNMENT_KEY) {
        None => DEFAULT_ALIGNMENT,
        Some(value) => value
            .as_u64()
            .filter(|a| a.is_power_of_two())
            .ok_or_else(|| {
                cur.error(format!(
                    "{ALIGNMENT_KEY} is {value}, expected a power of two"
                ))
            })?,
    };

    let mut tensors = Vec::with_capacity(tensor_count);
    let mut names = HashSet::with_capacity(tensor_count);
    for index in 0..tensor_count {
        let name = cur.string(&format!("name of tensor #{index}"))?;
        let what = format!("tensor `{name}`");
        let n_dims = cur.u32(&format!("dimension count of {what}"))? as usize;
        if n_dims > MAX_DIMS {
            return Err(cur.error(format!(
                "{what} has {n_dims} dimensions; ggml allows at most {MAX_DIMS}"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            let dim = cur.u64(&format!("shape of {what}"))?;
            dims.push(
                usize::try_from(dim)
                    .map_err(|_| cur.error(format!("{what} has dimension {dim}, too large")))?,
            );
        }
        let type_id = cur.u32(&format!("type of {what}"))?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| Error::Unsupported {
            what: "GGML tensor type",
            name: format!("id {type_id} of {what} in {}", path.display()),
            supported: GgmlType::known_list(),
        })?;
        let offset = cur.u64(&format!("data offset of {what}"))?;
        // GGUF lists dimensions innermost first; callers want row-major order.
        dims.reverse();
        let info = TensorInfo {
            name,
            shape: dims,
            ggml_type,
            offset,
        };
        check_tensor(&cur, &info, alignment)?;
        if !names.insert(info.name.clone()) {
            return Err(cur.error(format!("{what} appears twice")));
        }
        tensors.push(info);
    }

    // The data section starts at the next multiple of the alignment, or at the end of a file
    // with no tensor data.
    let data_start = (cur.pos as u64)
        .next_multiple_of(alignment)
        .min(bytes.len() as u64) as usize;
    let data_len = (bytes.len() - data_start) as u64;
    for info in &tensors {
        let n_bytes = info.n_bytes() as u64;
        if info
            .offset
            .checked_add(n_bytes)
            .is_none_or(|end| end > data_len)
        {
            return Err(cur.error(format!(
                "tensor `{}` ({} {:?}, {n_bytes} bytes at data offset {}) extends past the end of \
                 the file, whose data section holds {data_len} bytes (truncated file?)",
                info.name, info.ggml_type, info.shape, info.offset
            )));
        }
    }
    Ok(Parsed {
        metadata,
        tensors,
        data_start,
    })
}

fn check_tensor(cur: &Cursor<'_>, info: &TensorInfo, alignment: u64) -> Result<()> {
    let what = format!(
        "tensor `{}` ({} {:?})",
        info.name, info.ggml_type, info.shape
    );
    let n_elements = info
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| cur.error(format!("{what} has more elements than memory can address")))?;
    let row = info.shape.last().copied().unwrap_or(1);
    let block = info.ggml_type.block_size();
    if row % block != 0 {
        return Err(cur.error(format!(
            "{what}: rows of {row} values are not whole {}-value blocks",
            block
        )));
    }
    if info.ggml_type.bytes_for(n_elements).is_none() {
        return Err(cur.error(format!("{what} is too large to address")));
    }
    if !info.offset.is_multiple_of(alignment) {
        return Err(cur.error(format!(
            "{what} starts at data offset {}, not a multiple of the alignment {alignment}",
            info.offset
        )));
    }
    Ok(())
}

/// Error message text naming a metadata type mismatch.
pub(crate) fn wrong_type(key: &str, value: &MetadataValue, expected: &str) -> String {
    format!(
        "metadata `{key}` is {} {value}, expected {expected}",
        article(value.type_id())
    )
}

fn article(type_id: u32) -> String {
    let name = type_name(type_id);
    let vowel = name.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {name}", if vowel { "an" } else { "a" })
}
