//! Phi-3 / Phi-3.5 / Phi-4-mini: the Llama layout with q, k and v fused into one `qkv_proj`
//! and gate and up into one `gate_up_proj` (LoRA and QLoRA target these fused linears, as
//! PEFT does), an optional partial rotary embedding and a sliding window on every layer.
use super::decoder::{gguf_names, Decoder, DecoderConfig, DecoderSpec, DECODER_NAMES};
use super::family::{gguf_decoder_config, parse, Classes, Family, GgufLayout};
use super::heads::{Head, Task};
use super::Forward;
use crate::gguf::GgufFile;
use crate::nn::Weights;
use crate::{Error, Result};

pub type Config = DecoderConfig;

pub static FAMILY: Family = Family {
    name: "Phi-3",
    model_types: &["phi3"],
    classes: Classes { causal_lm: "Phi3ForCausalLM", classification: "Phi3ForSequenceClassification", base: "Phi3Model" },
    // PEFT has no default for Phi-3; its fused attention projection is the usual choice.
    lora_targets: &["qkv_proj"],
    names: DECODER_NAMES,
    base_task: Task::CausalLm,
    build,
    gguf: Some(GgufLayout { architecture: "phi3", block_tensors: &[gguf_names::PRE_NORMS, gguf_names::FUSED_PROJECTIONS], permuted_qk: false, norm_unit_offset: false, config: gguf_config }),
};

fn build(config: &serde_json::Value, w: &mut Weights, task: &Task) -> Result<(Box<dyn Forward>, Head)> {
    let c: Config = parse(config, "Phi-3")?;
    let spec = DecoderSpec { fused_projections: true, layer_windows: c.layer_windows(true)?, ..DecoderSpec::llama_like(&c, 10_000.0)? };
    if let Some(scaling) = &spec.rope.scaling {
        if scaling.rope_type == "longrope" || scaling.rope_type == "su" {
            return Err(Error::Unsupported { what: "Phi-3 rope_scaling", name: scaling.rope_type.clone(), supported: "none (the 4k/8k-context checkpoints)".into() });
        }
    }
    Decoder::load_with_head(w, spec, task)
}

fn gguf_config(file: &GgufFile) -> Result<serde_json::Value> {
    if file.tensor_info("rope_factors_long.weight").is_some() {
        return Err(Error::Unsupported { what: "Phi-3 GGUF rope scaling", name: format!("longrope ({})", file.path().display()), supported: "none (the 4k/8k-context checkpoints)".into() });
    }
    Ok(gguf_decoder_config(file, &FAMILY)?.into())
}
