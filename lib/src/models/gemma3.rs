//! Gemma 3 (text): five sliding-window layers to one global layer, each with its own rotary
//! base (10k local, 1M global); RMSNorm weights stored as offsets from 1 and computed in fp32;
//! q/k norms; norms before and after both attention and MLP; a tanh-GELU gated MLP;
//! embeddings scaled by `sqrt(hidden_size)`; the softmax scaled by `query_pre_attn_scalar`.
//! The same definitions as transformers' `Gemma3ForCausalLM`. llama.cpp's converter stores
//! the norms with the 1 added (undone on load).
use super::decoder::{gguf_names, Activation, Decoder, DecoderConfig, DecoderSpec, DECODER_NAMES};
use super::family::{gguf_decoder_config, parse, Classes, Family, GgufLayout};
use super::heads::{Head, Task};
use super::Forward;
use crate::gguf::GgufFile;
use crate::nn::Weights;
use crate::{Error, Result};
use serde::Deserialize;

/// Read straight from config.json (`gemma3_text`, or the `text_config` of a multimodal
/// `gemma3` checkpoint).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub base: DecoderConfig,
    #[serde(default = "default_query_pre_attn_scalar")]
    pub query_pre_attn_scalar: f64,
    /// transformers 4's base of the local layers (5 nests it in `rope_parameters`).
    #[serde(default)]
    pub rope_local_base_freq: Option<f64>,
    #[serde(default)]
    pub sliding_window_pattern: Option<i64>,
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
}

fn default_query_pre_attn_scalar() -> f64 {
    256.0
}

/// Every sixth layer attends globally (transformers' and llama.cpp's default pattern).
const SLIDING_WINDOW_PATTERN: i64 = 6;
const LOCAL_ROPE_THETA: f64 = 10_000.0;

pub static FAMILY: Family = Family {
    name: "Gemma 3",
    model_types: &["gemma3_text", "gemma3"],
    classes: Classes { causal_lm: "Gemma3ForCausalLM", classification: "Gemma3TextForSequenceClassification", base: "Gemma3TextModel" },
    lora_targets: &["q_proj", "v_proj"],
    names: DECODER_NAMES,
    base_task: Task::CausalLm,
    build,
    gguf: Some(GgufLayout { architecture: "gemma3", block_tensors: &[gguf_names::SANDWICH_NORMS, gguf_names::PROJECTIONS, gguf_names::QK_NORMS], permuted_qk: false, norm_unit_offset: true, config: gguf_config }),
};

fn build(config: &serde_json::Value, w: &mut Weights, task: &Task) -> Result<(Box<dyn Forward>, Head)> {
    // A multimodal checkpoint: its text part, under the text model's names.
    let config = match config.get("text_config") {
        Some(text) => {
            w.rename_prefix("model.language_model.", "model.");
            w.rename_prefix("language_model.model.", "model.");
            w.rename_prefix("language_model.lm_head.", "lm_head.");
            let mut text = text.clone();
            if text.get("tie_word_embeddings").is_none() {
                text["tie_word_embeddings"] = config.get("tie_word_embeddings").cloned().unwrap_or(true.into());
            }
            text
        }
        None => config.clone(),
    };
    let c: Config = parse(&config, "Gemma 3")?;
    if let Some(cap) = c.attn_logit_softcapping {
        return Err(Error::config("attn_logit_softcapping", format!("{cap}: Gemma 3 has no attention softcapping (that is Gemma 2)")));
    }
    let mut base = c.base.clone();
    if base.layer_types.is_none() {
        let pattern = c.sliding_window_pattern.unwrap_or(SLIDING_WINDOW_PATTERN).max(1);
        base.layer_types = Some(
            (0..base.num_hidden_layers)
                .map(|i| if (i + 1) % pattern != 0 { "sliding_attention" } else { "full_attention" }.to_string())
                .collect(),
        );
    }
    let mut local_rope = base.rope_for("sliding_attention", LOCAL_ROPE_THETA)?;
    if !base.rope_parameters.as_ref().is_some_and(|p| p.get("sliding_attention").is_some()) {
        // transformers 4: a plain base for local layers; rope_scaling is the global layers'.
        local_rope.theta = c.rope_local_base_freq.unwrap_or(LOCAL_ROPE_THETA);
        local_rope.scaling = None;
    }
    let spec = DecoderSpec {
        norm_unit_offset: true,
        qk_norm: true,
        sandwich_norms: true,
        activation: base.activation(Activation::GeluTanh)?,
        embed_scale: Some((base.hidden_size as f64).sqrt()),
        attention_scale: Some(c.query_pre_attn_scalar.powf(-0.5)),
        layer_windows: base.layer_windows(false)?,
        local_rope: Some(local_rope),
        tie_word_embeddings: base.tie_word_embeddings.unwrap_or(true),
        final_logit_softcapping: c.final_logit_softcapping,
        ..DecoderSpec::llama_like(&base, 1_000_000.0)?
    };
    Decoder::load_with_head(w, spec, task)
}

/// Gemma 3's GGUF metadata lacks the attention scale and the layer pattern: llama.cpp fixes
/// them as transformers' defaults do (scale by head_dim, except the 27B's hidden/heads;
/// every sixth layer global; local base 10k).
fn gguf_config(file: &GgufFile) -> Result<serde_json::Value> {
    let mut c = gguf_decoder_config(file, &FAMILY)?;
    let get = |k: &str| c.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let (layers, hidden, heads, head_dim) = (get("num_hidden_layers"), get("hidden_size"), get("num_attention_heads"), get("head_dim"));
    let scalar = if layers == 62 { hidden / heads.max(1) } else { head_dim };
    c.insert("query_pre_attn_scalar".into(), scalar.into());
    c.insert("hidden_activation".into(), "gelu_pytorch_tanh".into());
    c.insert("rope_local_base_freq".into(), LOCAL_ROPE_THETA.into());
    if let Some(cap) = file.get_f64("gemma3.final_logit_softcapping").ok() {
        c.insert("final_logit_softcapping".into(), cap.into());
    }
    // The global layers' rope description moves under its attention kind, as transformers 5 nests it.
    let global = c.remove("rope_parameters").unwrap_or_default();
    c.insert("rope_parameters".into(), serde_json::json!({"full_attention": global, "sliding_attention": {"rope_type": "default", "rope_theta": LOCAL_ROPE_THETA}}));
    Ok(c.into())
}
