//! Llama (2, 3.x; SmolLM2, TinyLlama) and Mistral: grouped-query attention, RMSNorm, SwiGLU,
//! rotary positions with Llama 3's frequency scaling; Mistral adds a sliding window to every
//! layer. llama.cpp stores both as its `llama` architecture, with q/k rows permuted.
use super::decoder::{gguf_names, DecoderConfig, DecoderSpec, DECODER_NAMES};
use super::family::{gguf_decoder_config, parse, Classes, Family, GgufLayout};
use super::heads::{Head, Task};
use super::Forward;
use crate::gguf::GgufFile;
use crate::nn::Weights;
use crate::{Error, Result};

/// Read straight from the model's config.json.
pub type Config = DecoderConfig;

pub static FAMILY: Family = LLAMA;

const LLAMA: Family = Family {
    name: "Llama",
    model_types: &["llama"],
    classes: Classes { causal_lm: "LlamaForCausalLM", classification: "LlamaForSequenceClassification", base: "LlamaModel" },
    lora_targets: &["q_proj", "v_proj"],
    names: DECODER_NAMES,
    base_task: Task::CausalLm,
    build: build_llama,
    gguf: Some(GgufLayout { architecture: "llama", block_tensors: &[gguf_names::PRE_NORMS, gguf_names::PROJECTIONS], permuted_qk: true, norm_unit_offset: false, config: gguf_config }),
};

pub static MISTRAL: Family = Family {
    name: "Mistral",
    model_types: &["mistral"],
    classes: Classes { causal_lm: "MistralForCausalLM", classification: "MistralForSequenceClassification", base: "MistralModel" },
    build: build_mistral,
    // llama.cpp writes Mistral as `llama`; such a file loads through the Llama family.
    gguf: None,
    ..LLAMA
};

fn build_llama(config: &serde_json::Value, w: &mut Weights, task: &Task) -> Result<(Box<dyn Forward>, Head)> {
    let c: Config = parse(config, "Llama")?;
    super::decoder::Decoder::load_with_head(w, DecoderSpec::llama_like(&c, 10_000.0)?, task)
}

fn build_mistral(config: &serde_json::Value, w: &mut Weights, task: &Task) -> Result<(Box<dyn Forward>, Head)> {
    let c: Config = parse(config, "Mistral")?;
    let spec = DecoderSpec { layer_windows: c.layer_windows(true)?, ..DecoderSpec::llama_like(&c, 10_000.0)? };
    super::decoder::Decoder::load_with_head(w, spec, task)
}

/// Llama's config from GGUF metadata. Llama 3's rope scaling is not in the metadata: the
/// converter bakes it into a `rope_freqs` tensor of per-frequency divisors, from which the
/// scaling parameters are recovered.
fn gguf_config(file: &GgufFile) -> Result<serde_json::Value> {
    let mut c = gguf_decoder_config(file, &FAMILY)?;
    if file.tensor_info("rope_freqs.weight").is_some() {
        let (_, factors) = file.dequantize("rope_freqs.weight")?;
        let theta = c["rope_parameters"]["rope_theta"].as_f64().unwrap_or(10_000.0);
        let head_dim = c["head_dim"].as_u64().unwrap_or(0) as usize;
        let scaling = llama3_scaling_from_factors(&factors, theta, head_dim).ok_or_else(|| {
            Error::bad_file(file.path(), "rope_freqs.weight holds frequency factors that match no Llama 3 rope scaling (factor, low/high frequency factors, original context)")
        })?;
        c.insert("rope_parameters".into(), scaling);
    }
    Ok(c.into())
}

/// What Llama 3's rope scaling divides rotary frequency `freq` by (as llama.cpp's converter
/// writes it into `rope_freqs`): 1 for short wavelengths, `factor` for long ones, smoothly
/// in between.
pub(crate) fn llama3_rope_divisor(freq: f64, factor: f64, low: f64, high: f64, original_context: f64) -> f64 {
    let wavelen = 2.0 * std::f64::consts::PI / freq;
    if wavelen < original_context / high {
        1.0
    } else if wavelen > original_context / low {
        factor
    } else {
        let smooth = (original_context / wavelen - low) / (high - low);
        1.0 / ((1.0 - smooth) / factor + smooth)
    }
}

/// Llama 3's scaling parameters that give `factors` (what the converter divides each rotary
/// frequency by), trying the low/high frequency factors Llama 3.x ships with and every
/// power-of-two original context.
fn llama3_scaling_from_factors(factors: &[f32], theta: f64, head_dim: usize) -> Option<serde_json::Value> {
    if factors.is_empty() || factors.len() * 2 != head_dim {
        return None;
    }
    let factor = factors.iter().copied().fold(1f32, f32::max) as f64;
    let freqs: Vec<f64> = (0..factors.len()).map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)).collect();
    let candidates = [(1.0, 4.0), (1.0, 2.0), (2.0, 4.0)];
    for &(low, high) in &candidates {
        for power in 4..=24 {
            let old = (1u64 << power) as f64;
            let expected = freqs.iter().map(|&f| llama3_rope_divisor(f, factor, low, high, old));
            if expected.zip(factors).all(|(e, &g)| (e - g as f64).abs() <= 1e-3 * e.abs().max(1.0)) {
                return Some(serde_json::json!({
                    "rope_type": "llama3", "rope_theta": theta, "factor": factor,
                    "low_freq_factor": low, "high_freq_factor": high, "original_max_position_embeddings": old,
                }));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_is_recovered_from_the_converters_factors() {
        // What convert_hf_to_gguf.py writes for factor 8, low 1, high 4, original 8192.
        let (theta, head_dim) = (500_000.0f64, 64usize);
        let factors: Vec<f32> = (0..head_dim / 2)
            .map(|i| {
                let freq = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                let (low_wavelen, high_wavelen) = (8192.0 / 1.0, 8192.0 / 4.0);
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    8.0
                } else {
                    let smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
                    (1.0 / ((1.0 - smooth) / 8.0 + smooth)) as f32
                }
            })
            .collect();
        let scaling = llama3_scaling_from_factors(&factors, theta, head_dim).unwrap();
        assert_eq!(scaling["factor"], 8.0);
        assert_eq!(scaling["original_max_position_embeddings"], 8192.0);
        assert_eq!(scaling["high_freq_factor"], 4.0);
        assert!(llama3_scaling_from_factors(&[3.0; 32], theta, head_dim).is_none());
    }
}
