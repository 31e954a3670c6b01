//! Qwen3: the Llama layout with an RMSNorm over each head of q and k before the rotation,
//! an explicit `head_dim`, and no q/k/v biases (unless `attention_bias`).
use super::decoder::{gguf_names, Decoder, DecoderConfig, DecoderSpec, DECODER_NAMES};
use super::family::{gguf_decoder_config, parse, Classes, Family, GgufLayout};
use super::heads::{Head, Task};
use super::Forward;
use crate::gguf::GgufFile;
use crate::nn::Weights;
use crate::Result;

pub type Config = DecoderConfig;

pub static FAMILY: Family = Family {
    name: "Qwen3",
    model_types: &["qwen3"],
    classes: Classes { causal_lm: "Qwen3ForCausalLM", classification: "Qwen3ForSequenceClassification", base: "Qwen3Model" },
    lora_targets: &["q_proj", "v_proj"],
    names: DECODER_NAMES,
    base_task: Task::CausalLm,
    build,
    gguf: Some(GgufLayout { architecture: "qwen3", block_tensors: &[gguf_names::PRE_NORMS, gguf_names::PROJECTIONS, gguf_names::QK_NORMS], permuted_qk: false, norm_unit_offset: false, config: gguf_config }),
};

fn build(config: &serde_json::Value, w: &mut Weights, task: &Task) -> Result<(Box<dyn Forward>, Head)> {
    let c: Config = parse(config, "Qwen3")?;
    let spec = DecoderSpec { qk_norm: true, ..DecoderSpec::llama_like(&c, 1_000_000.0)? };
    Decoder::load_with_head(w, spec, task)
}

fn gguf_config(file: &GgufFile) -> Result<serde_json::Value> {
    Ok(gguf_decoder_config(file, &FAMILY)?.into())
}
