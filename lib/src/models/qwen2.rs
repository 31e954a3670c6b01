//! Qwen2 / Qwen2.5: the Llama layout with biases on q, k and v (never on o), tied embeddings
//! on the small sizes, and sliding windows only when `use_sliding_window` says so. llama.cpp
//! keeps its q/k rows in Hugging Face order (no permutation).
use super::decoder::{gguf_names, Decoder, DecoderConfig, DecoderSpec, DECODER_NAMES};
use super::family::{gguf_decoder_config, parse, Classes, Family, GgufLayout};
use super::heads::{Head, Task};
use super::Forward;
use crate::gguf::GgufFile;
use crate::nn::Weights;
use crate::Result;

pub type Config = DecoderConfig;

pub static FAMILY: Family = Family {
    name: "Qwen2",
    model_types: &["qwen2"],
    classes: Classes { causal_lm: "Qwen2ForCausalLM", classification: "Qwen2ForSequenceClassification", base: "Qwen2Model" },
    lora_targets: &["q_proj", "v_proj"],
    names: DECODER_NAMES,
    base_task: Task::CausalLm,
    build,
    gguf: Some(GgufLayout { architecture: "qwen2", block_tensors: &[gguf_names::PRE_NORMS, gguf_names::PROJECTIONS], permuted_qk: false, norm_unit_offset: false, config: gguf_config }),
};

fn build(config: &serde_json::Value, w: &mut Weights, task: &Task) -> Result<(Box<dyn Forward>, Head)> {
    let c: Config = parse(config, "Qwen2")?;
    let spec = DecoderSpec { qkv_bias: true, o_bias: false, ..DecoderSpec::llama_like(&c, 10_000.0)? };
    Decoder::load_with_head(w, spec, task)
}

fn gguf_config(file: &GgufFile) -> Result<serde_json::Value> {
    Ok(gguf_decoder_config(file, &FAMILY)?.into())
}
