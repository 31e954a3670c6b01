//! The registry of model families: everything tunebook knows about one family (how to build
//! it from its config.json, its names in GGUF files, its transformers classes, where PEFT
//! methods attach) is one [`Family`] value in that family's file, listed once in [`FAMILIES`].
//! The loader, the exporters and the PEFT methods ask the registry instead of knowing
//! families themselves.
//!
//! ```
//! use tunebook::models::family;
//! let qwen3 = family::by_model_type("qwen3").unwrap();
//! assert_eq!(qwen3.classes.causal_lm, "Qwen3ForCausalLM");
//! assert_eq!(family::by_gguf_architecture("gemma3").unwrap().name, "Gemma 3");
//! assert!(family::by_model_type("t5").is_none());
//! ```
use super::heads::{Head, Task};
use super::Forward;
use crate::gguf::{permute_qk, unpermute_qk, GgufFile};
use crate::nn::Weights;
use crate::{Error, Result};

/// One model family.
pub struct Family {
    /// What a person reads: `"Llama"`, `"Gemma 3"`.
    pub name: &'static str,
    /// config.json `model_type` values it builds; the first is the one exports write.
    pub model_types: &'static [&'static str],
    pub classes: Classes,
    /// LoRA's default `target_modules` (PEFT's per-architecture defaults where PEFT has them).
    pub lora_targets: &'static [&'static str],
    /// Where methods find their places in the model.
    pub names: ParameterNames,
    /// The task a checkpoint without a task-specific class loads as.
    pub base_task: Task,
    /// Backbone and head from config.json (as parsed JSON) and the checkpoint's tensors.
    pub build: fn(&serde_json::Value, &mut Weights, &Task) -> Result<(Box<dyn Forward>, Head)>,
    /// How llama.cpp stores the family; `None` when tunebook reads no GGUF of it.
    pub gguf: Option<GgufLayout>,
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Family").field("name", &self.name).field("model_types", &self.model_types).finish()
    }
}

/// Parameter names that fine-tuning methods look for.
pub struct ParameterNames {
    /// The token embedding matrix.
    pub token_embedding: &'static str,
    /// Name suffixes of the attention and feed-forward output projections, where
    /// bottleneck adapters attach.
    pub attention_output: &'static str,
    pub ffn_output: &'static str,
    /// Layers whose checkpoint weights are stored `[in, out]` (GPT-2's `Conv1D`; PEFT's
    /// `fan_in_fan_out`): transposed on load, and back on save.
    pub conv1d_layers: &'static [&'static str],
}

/// transformers' class names for each task.
pub struct Classes {
    pub causal_lm: &'static str,
    pub classification: &'static str,
    /// The bare model (embeddings).
    pub base: &'static str,
}

/// A family as llama.cpp's converter writes it.
pub struct GgufLayout {
    /// `general.architecture`.
    pub architecture: &'static str,
    /// Tensors inside each block, in groups: (GGUF name after `blk.N.`, Hugging Face name
    /// after `model.layers.N.`), without the `.weight`/`.bias` suffix.
    pub block_tensors: &'static [&'static [(&'static str, &'static str)]],
    /// The converter permutes q/k rows for rotary pairs (its Llama conversion only).
    pub permuted_qk: bool,
    /// Norm weights are stored as `1 + w` (the converter adds Gemma's unit offset).
    pub norm_unit_offset: bool,
    /// config.json values (transformers' names) from the file's metadata.
    pub config: fn(&GgufFile) -> Result<serde_json::Value>,
}

/// The field name of a config error about config.json as a whole; the loader turns such
/// errors into errors naming the file.
pub(crate) const CONFIG_JSON: &str = "config.json";

/// Parses config.json as `what`'s config.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(config: &serde_json::Value, what: &str) -> Result<T> {
    serde_json::from_value(config.clone()).map_err(|e| Error::config(CONFIG_JSON, format!("not a valid {what} config: {e}")))
}

/// Tensors outside the blocks, the same in every decoder family.
const GLOBAL_TENSORS: [(&str, &str); 3] = [("token_embd", "model.embed_tokens"), ("output_norm", "model.norm"), ("output", "lm_head")];

/// Every family tunebook builds. Adding one: its file with a `FAMILY` value, and a line here.
pub static FAMILIES: &[&Family] = &[
    &super::llama::FAMILY,
    &super::llama::MISTRAL,
    &super::qwen2::FAMILY,
    &super::qwen3::FAMILY,
    &super::phi3::FAMILY,
    &super::gemma3::FAMILY,
    &super::gpt2::FAMILY,
    &super::bert::FAMILY,
];

/// The family that builds config.json's `model_type`.
pub fn by_model_type(model_type: &str) -> Option<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.model_types.contains(&model_type))
}

/// The family of a GGUF file's `general.architecture`.
pub fn by_gguf_architecture(architecture: &str) -> Option<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.gguf.as_ref().is_some_and(|g| g.architecture == architecture))
}

/// `model_type` values tunebook reads, for error messages.
pub fn known_model_types() -> String {
    FAMILIES.iter().flat_map(|f| f.model_types.iter().copied()).collect::<Vec<_>>().join(", ")
}

/// GGUF architectures tunebook reads, for error messages.
pub fn known_gguf_architectures() -> String {
    FAMILIES.iter().filter_map(|f| f.gguf.as_ref().map(|g| g.architecture)).collect::<Vec<_>>().join(", ")
}

impl Family {
    /// transformers' class for `task`.
    pub fn class(&self, task: &Task) -> &'static str {
        match task {
            Task::CausalLm => self.classes.causal_lm,
            Task::SequenceClassification { .. } => self.classes.classification,
            Task::Embedding => self.classes.base,
        }
    }

    /// The task a checkpoint loads as when the caller names none: classification when its
    /// class says so, else the family's base task.
    pub fn default_task(&self, config: &serde_json::Value) -> Task {
        let arch = config.pointer("/architectures/0").and_then(|a| a.as_str()).unwrap_or_default();
        if arch.ends_with("ForSequenceClassification") {
            let num_labels = config
                .get("id2label")
                .and_then(|m| m.as_object())
                .map(|m| m.len() as i64)
                .or_else(|| config.get("num_labels").and_then(|n| n.as_i64()))
                .unwrap_or(2);
            return Task::SequenceClassification { num_labels };
        }
        self.base_task.clone()
    }
}

impl GgufLayout {
    fn require(family: &Family) -> Result<&GgufLayout> {
        family.gguf.as_ref().ok_or_else(|| Error::Unsupported { what: "GGUF export of model family", name: family.name.into(), supported: known_gguf_architectures() })
    }

    /// The Hugging Face name of GGUF tensor `name`, or `None` for tensors the model does not
    /// hold as parameters (e.g. `rope_freqs.weight`).
    pub fn hf_name(&self, name: &str) -> Option<String> {
        let (module, param) = name.rsplit_once('.')?;
        if let Some((_, hf)) = GLOBAL_TENSORS.iter().find(|(g, _)| *g == module) {
            return Some(format!("{hf}.{param}"));
        }
        let (layer, module) = module.strip_prefix("blk.")?.split_once('.')?;
        let (_, hf) = self.block_tensors.iter().copied().flatten().find(|(g, _)| *g == module)?;
        Some(format!("model.layers.{layer}.{hf}.{param}"))
    }

    /// The GGUF name of Hugging Face parameter `name`, the inverse of [`hf_name`](Self::hf_name).
    pub fn gguf_name(&self, name: &str) -> Option<String> {
        let (module, param) = name.rsplit_once('.')?;
        if let Some((g, _)) = GLOBAL_TENSORS.iter().find(|(_, hf)| *hf == module) {
            return Some(format!("{g}.{param}"));
        }
        let (layer, module) = module.strip_prefix("model.layers.")?.split_once('.')?;
        let (g, _) = self.block_tensors.iter().copied().flatten().find(|(_, hf)| *hf == module)?;
        Some(format!("blk.{layer}.{g}.{param}"))
    }

    /// Turns the values of GGUF tensor `hf_name` (already renamed) into Hugging Face layout:
    /// q/k rows back in transformers' order, Gemma's unit offset removed from norms.
    pub fn to_hf_layout(&self, hf_name: &str, values: &mut [f32], shape: &[usize], config: &serde_json::Value) -> Result<()> {
        self.convert(hf_name, values, shape, config, Direction::FromGguf)
    }

    /// The inverse of [`to_hf_layout`](Self::to_hf_layout), for writing GGUF files.
    pub fn to_gguf_layout(&self, hf_name: &str, values: &mut [f32], shape: &[usize], config: &serde_json::Value) -> Result<()> {
        self.convert(hf_name, values, shape, config, Direction::ToGguf)
    }

    fn convert(&self, hf_name: &str, values: &mut [f32], shape: &[usize], config: &serde_json::Value, direction: Direction) -> Result<()> {
        if self.permuted_qk {
            let heads = |key: &str| config.get(key).and_then(|v| v.as_u64()).map(|v| v as usize);
            let q_heads = heads("num_attention_heads");
            let n_heads = if hf_name.contains("self_attn.q_proj.") {
                q_heads
            } else if hf_name.contains("self_attn.k_proj.") {
                heads("num_key_value_heads").or(q_heads)
            } else {
                None
            };
            if let Some(n) = n_heads {
                match direction {
                    Direction::FromGguf => unpermute_qk(values, shape, n)?,
                    Direction::ToGguf => permute_qk(values, shape, n)?,
                }
            }
        }
        if self.norm_unit_offset && hf_name.ends_with("norm.weight") {
            let shift = match direction {
                Direction::FromGguf => -1.0,
                Direction::ToGguf => 1.0,
            };
            values.iter_mut().for_each(|v| *v += shift);
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Direction {
    FromGguf,
    ToGguf,
}

/// The GGUF layout of `family`, or an error naming the families that have one.
pub fn gguf_layout(family: &Family) -> Result<&GgufLayout> {
    GgufLayout::require(family)
}

/// config.json values every decoder's GGUF metadata gives (`<arch>.block_count`, ...), under
/// transformers' names, with `model_type`/`architectures` of `family` and the vocabulary and
/// embedding tying read from the tensors themselves.
pub fn gguf_decoder_config(file: &GgufFile, family: &Family) -> Result<serde_json::Map<String, serde_json::Value>> {
    let arch = file.architecture()?.to_string();
    let key = |k: &str| format!("{arch}.{k}");
    let heads = file.get_u64(&key("attention.head_count"))?;
    let hidden = file.get_u64(&key("embedding_length"))?;
    let embed = file
        .tensor_info("token_embd.weight")
        .ok_or_else(|| Error::tensor("token_embd.weight", format!("not found in {}", file.path().display())))?;
    let mut c = serde_json::Map::new();
    let mut set = |k: &str, v: serde_json::Value| {
        c.insert(k.to_string(), v);
    };
    set("model_type", family.model_types[0].into());
    set("architectures", serde_json::json!([family.classes.causal_lm]));
    set("vocab_size", (embed.shape[0] as u64).into());
    set("hidden_size", hidden.into());
    set("intermediate_size", file.get_u64(&key("feed_forward_length"))?.into());
    set("num_hidden_layers", file.get_u64(&key("block_count"))?.into());
    set("num_attention_heads", heads.into());
    set("num_key_value_heads", file.get_u64(&key("attention.head_count_kv")).unwrap_or(heads).into());
    set("rms_norm_eps", file.get_f64(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5).into());
    set("max_position_embeddings", file.get_u64(&key("context_length")).unwrap_or(2048).into());
    set("tie_word_embeddings", file.tensor_info("output.weight").is_none().into());
    let head_dim = file.get_u64(&key("attention.key_length")).unwrap_or(hidden / heads.max(1));
    set("head_dim", head_dim.into());
    if let Ok(rotary) = file.get_u64(&key("rope.dimension_count")) {
        if rotary != head_dim && head_dim > 0 {
            set("partial_rotary_factor", (rotary as f64 / head_dim as f64).into());
        }
    }
    if let Ok(window) = file.get_u64(&key("attention.sliding_window")) {
        if window > 0 {
            set("sliding_window", window.into());
        }
    }
    let mut rope = serde_json::Map::new();
    rope.insert("rope_theta".into(), file.get_f64(&key("rope.freq_base")).unwrap_or(10_000.0).into());
    match file.get_str(&key("rope.scaling.type")) {
        Ok("linear") => {
            rope.insert("rope_type".into(), "linear".into());
            rope.insert("factor".into(), file.get_f64(&key("rope.scaling.factor"))?.into());
        }
        Ok("none") | Err(_) => {
            rope.insert("rope_type".into(), "default".into());
        }
        Ok(other) => {
            return Err(Error::Unsupported { what: "GGUF rope scaling", name: format!("{other} ({})", file.path().display()), supported: "none, linear".into() })
        }
    }
    set("rope_parameters", rope.into());
    Ok(c)
}
