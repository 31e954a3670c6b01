//! Writing a model as one GGUF file that llama.cpp-based tools (llama.cpp, Ollama, LM Studio)
//! load: the family's tensor names and layout from the registry, the config as metadata, and
//! the tokenizer with its chat template and end-of-sequence tokens, so that generation stops.
use super::decoder::DecoderConfig;
use super::family::{gguf_layout, parse};
use super::model::Model;
use crate::gguf::{byte_level_bpe_metadata, GgmlType, GgufFile, GgufWriter, MetadataValue};
use crate::nn::Module;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use std::path::Path;

/// How an exported GGUF stores its weight matrices (norms, biases and other 1-D tensors stay
/// F32, as llama.cpp's converter keeps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GgufQuant {
    F32,
    /// Half precision: what llama.cpp's converter writes by default.
    #[default]
    F16,
    /// 8-bit blocks, close to F16 in quality at half the size.
    Q8_0,
    /// 4-bit blocks.
    Q4_0,
}

impl GgufQuant {
    fn matrix_type(self) -> GgmlType {
        match self {
            GgufQuant::F32 => GgmlType::F32,
            GgufQuant::F16 => GgmlType::F16,
            GgufQuant::Q8_0 => GgmlType::Q8_0,
            GgufQuant::Q4_0 => GgmlType::Q4_0,
        }
    }

    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_*`).
    fn file_type(self) -> u32 {
        match self {
            GgufQuant::F32 => 0,
            GgufQuant::F16 => 1,
            GgufQuant::Q4_0 => 2,
            GgufQuant::Q8_0 => 7,
        }
    }
}

impl std::str::FromStr for GgufQuant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(GgufQuant::F32),
            "f16" => Ok(GgufQuant::F16),
            "q8_0" => Ok(GgufQuant::Q8_0),
            "q4_0" => Ok(GgufQuant::Q4_0),
            other => Err(Error::Unsupported { what: "GGUF export type", name: other.into(), supported: "f32, f16, q8_0, q4_0".into() }),
        }
    }
}

impl Model {
    /// Writes the model as a GGUF file for llama.cpp and the tools built on it. A LoRA must be
    /// merged first ([`peft::merge`](crate::peft::merge)), as for
    /// [`save_pretrained`](Self::save_pretrained).
    ///
    /// ```no_run
    /// use tunebook::models::GgufQuant;
    /// let mut model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
    /// model.save_gguf("smollm2-q8_0.gguf", GgufQuant::Q8_0)?;
    /// let reloaded = tunebook::Model::from_pretrained("smollm2-q8_0.gguf")?;
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn save_gguf(&mut self, path: impl AsRef<Path>, quant: GgufQuant) -> Result<()> {
        let path = path.as_ref();
        let layout = gguf_layout(self.family())?;
        let config = self.info().config.clone();
        let config = config.get("text_config").cloned().unwrap_or(config);
        let hook_params = self.hook_parameter_names()?;
        let mut writer = GgufWriter::new();
        writer.add_metadata("general.architecture", layout.architecture);
        writer.add_metadata("general.name", self.info().name.as_str());
        writer.add_metadata("general.file_type", quant.file_type());
        writer.add_metadata("general.quantization_version", 2u32);
        let decoder: DecoderConfig = parse(&config, self.family().name)?;
        for (key, value) in model_metadata(layout.architecture, &decoder, &config)? {
            writer.add_metadata(key, value);
        }
        let mut failure = None;
        let mut add = |name: &str, tensor: &tch::Tensor| -> Result<()> {
            let gguf_name = layout
                .gguf_name(name)
                .ok_or_else(|| Error::tensor(name, format!("has no name in llama.cpp's {} layout", layout.architecture)))?;
            let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
            let mut values: Vec<f32> = Vec::try_from(tensor.detach().to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).flatten(0, -1))
                .map_err(|e| Error::tensor(name, format!("reading values: {e}")))?;
            layout.to_gguf_layout(name, &mut values, &shape, &config)?;
            let ty = if shape.len() == 2 && shape[1] % 32 == 0 { quant.matrix_type() } else { GgmlType::F32 };
            writer.add_tensor(gguf_name, &shape, &values, ty)?;
            Ok(())
        };
        self.visit_params("", &mut |name, tensor| {
            if failure.is_none() && !hook_params.contains(name) {
                failure = add(name, tensor).err();
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(factors) = llama3_rope_factors(&decoder)? {
            writer.add_tensor("rope_freqs.weight", &[factors.len()], &factors, GgmlType::F32)?;
        }
        let tokenizer = self.tokenizer()?;
        for (key, value) in tokenizer_metadata(tokenizer, &self.info().source)? {
            writer.add_metadata(key, value);
        }
        writer.write(path)
    }
}

/// `<arch>.*` hyperparameters from config.json, as llama.cpp reads them.
fn model_metadata(arch: &str, c: &DecoderConfig, config: &serde_json::Value) -> Result<Vec<(String, MetadataValue)>> {
    let rope = c.rope(10_000.0)?;
    let key = |k: &str| format!("{arch}.{k}");
    let u32_of = |v: i64| MetadataValue::U32(v as u32);
    let mut out = vec![
        (key("context_length"), u32_of(c.max_position_embeddings)),
        (key("embedding_length"), u32_of(c.hidden_size)),
        (key("feed_forward_length"), u32_of(c.intermediate_size)),
        (key("block_count"), u32_of(c.num_hidden_layers)),
        (key("attention.head_count"), u32_of(c.num_attention_heads)),
        (key("attention.head_count_kv"), u32_of(c.num_kv_heads())),
        (key("attention.key_length"), u32_of(c.head_dim())),
        (key("attention.value_length"), u32_of(c.head_dim())),
        (key("attention.layer_norm_rms_epsilon"), MetadataValue::F32(c.rms_norm_eps as f32)),
        (key("rope.freq_base"), MetadataValue::F32(rope.theta as f32)),
        (key("rope.dimension_count"), u32_of(rope.rotary_dim)),
    ];
    if let Some(window) = c.sliding_window.filter(|_| c.layer_windows(true).map(|w| w.iter().any(Option::is_some)).unwrap_or(false)) {
        out.push((key("attention.sliding_window"), u32_of(window)));
    }
    if let Some(scaling) = &rope.scaling {
        match scaling.rope_type.as_str() {
            "linear" => {
                out.push((key("rope.scaling.type"), "linear".into()));
                out.push((key("rope.scaling.factor"), MetadataValue::F32(scaling.factor.unwrap_or(1.0) as f32)));
            }
            // Carried by the rope_freqs tensor.
            "llama3" => {}
            other => return Err(Error::Unsupported { what: "rope scaling in a GGUF export", name: other.into(), supported: "linear, llama3".into() }),
        }
    }
    if let Some(cap) = config.get("final_logit_softcapping").and_then(|v| v.as_f64()) {
        out.push((key("final_logit_softcapping"), MetadataValue::F32(cap as f32)));
    }
    Ok(out)
}

/// The `rope_freqs` tensor llama.cpp's converter writes for Llama 3's rope scaling: what each
/// rotary frequency is divided by.
fn llama3_rope_factors(c: &DecoderConfig) -> Result<Option<Vec<f32>>> {
    let rope = c.rope(10_000.0)?;
    let Some(s) = rope.scaling.filter(|s| s.rope_type == "llama3") else { return Ok(None) };
    let get = |v: Option<f64>, name: &str| v.ok_or_else(|| Error::config(format!("rope_scaling.{name}"), "required for rope_type `llama3`"));
    let (factor, low, high, old) =
        (get(s.factor, "factor")?, get(s.low_freq_factor, "low_freq_factor")?, get(s.high_freq_factor, "high_freq_factor")?, get(s.original_max_position_embeddings, "original_max_position_embeddings")?);
    let dim = rope.rotary_dim as usize;
    Ok(Some(
        (0..dim / 2)
            .map(|i| {
                let freq = 1.0 / (rope.theta as f32).powf(2.0 * i as f32 / dim as f32) as f64;
                super::llama::llama3_rope_divisor(freq, factor, low, high, old) as f32
            })
            .collect(),
    ))
}

/// `tokenizer.*` metadata: the source GGUF's own when the model came from one, else built
/// from the Hugging Face tokenizer; the chat template and special tokens are the tokenizer's
/// as it is now (a template set with `set_chat_template` goes into the file).
fn tokenizer_metadata(tokenizer: &Tokenizer, source: &Path) -> Result<Vec<(String, MetadataValue)>> {
    let mut out: Vec<(String, MetadataValue)> = match source.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("gguf") && source.is_file() => {
            let file = GgufFile::open(source)?;
            file.metadata().iter().filter(|(k, _)| k.starts_with("tokenizer.")).map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        _ => byte_level_bpe_metadata(tokenizer.inner())?,
    };
    out.retain(|(k, _)| k != "tokenizer.chat_template" && !k.ends_with("_token_id"));
    if let Some(template) = tokenizer.chat_template() {
        out.push(("tokenizer.chat_template".into(), template.into()));
    }
    let mut special = |key: &str, id: Option<u32>| {
        if let Some(id) = id {
            out.push((format!("tokenizer.ggml.{key}_token_id"), MetadataValue::U32(id)));
        }
    };
    special("bos", tokenizer.bos_token_id());
    special("eos", tokenizer.eos_token_ids().first().copied());
    special("padding", tokenizer.pad_token_id_if_set());
    // A second end-of-sequence id (generation_config.json's list) is the end of a turn.
    special("eot", tokenizer.eos_token_ids().get(1).copied());
    Ok(out)
}
