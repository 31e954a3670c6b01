//! Builds a [`Model`] from a resolved source: config → backbone → head → tokenizer.
use super::heads::{Head, Pooling, Task};
use super::model::{Model, ModelInfo};
use super::source::{shard_names, ModelSource};
use super::{bert, gpt2, llama, Forward};
use crate::gguf::{unpermute_qk, GgufFile};
use crate::nn::{Linear, Weights};
use crate::tokenizer::Tokenizer;
use crate::{device, Error, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// How to load: device, dtype and task head. Defaults: best device, its compute dtype,
/// the task the checkpoint was saved for.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub device: Option<Device>,
    pub kind: Option<Kind>,
    pub task: Option<Task>,
}

impl LoadOptions {
    pub fn device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = Some(kind);
        self
    }
    pub fn task(mut self, task: Task) -> Self {
        self.task = Some(task);
        self
    }
}

pub(super) fn load(name: &str, options: &LoadOptions) -> Result<Model> {
    let source = ModelSource::resolve(name)?;
    let device = options.device.unwrap_or_else(device::best_device);
    let kind = options.kind.unwrap_or_else(|| device::compute_kind(device));
    match &source {
        ModelSource::HfDir(dir) => load_hf_dir(name, dir, device, kind, options.task.clone()),
        ModelSource::Gguf(file) => load_gguf(name, file, device, kind, options.task.clone()),
    }
}

/// The model families this loader knows, by config.json `model_type`.
const FAMILIES: &str = "llama, mistral, qwen2, gpt2, bert";

fn load_hf_dir(name: &str, dir: &Path, device: Device, kind: Kind, task: Option<Task>) -> Result<Model> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::bad_file(&config_path, format!("invalid JSON: {e}")))?;
    let model_type = config.get("model_type").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let task = task.unwrap_or_else(|| default_task(&config, &model_type));
    let mut weights = Weights::from_safetensors(&safetensor_files(dir)?, kind, device)?;
    let parse = |what: &'static str| {
        let config_path = config_path.clone();
        move |e: serde_json::Error| Error::bad_file(config_path, format!("not a valid {what} config: {e}"))
    };
    let tokenizer = if dir.join("tokenizer.json").exists() { Some(Tokenizer::from_hf_dir(dir)?) } else { None };
    let (backbone, head): (Box<dyn Forward>, Head) = match model_type.as_str() {
        "llama" | "mistral" | "qwen2" => {
            let mut c: llama::Config = serde_json::from_value(config.clone()).map_err(parse("Llama-family"))?;
            c.qkv_bias |= model_type == "qwen2";
            let tie = c.tie_word_embeddings;
            let backbone = llama::Llama::load(&mut weights, c)?;
            let head = decoder_head(&mut weights, &task, &backbone.embed_tokens.weight, backbone.config.hidden_size, tie)?;
            (Box::new(backbone), head)
        }
        "gpt2" => {
            weights.add_prefix_if_missing("transformer.", "wte.weight");
            let c: gpt2::Config = serde_json::from_value(config.clone()).map_err(parse("GPT-2"))?;
            let backbone = gpt2::Gpt2::load(&mut weights, c)?;
            let head = decoder_head(&mut weights, &task, &backbone.wte.weight, backbone.config.n_embd, true)?;
            (Box::new(backbone), head)
        }
        "bert" => {
            weights.add_prefix_if_missing("bert.", "embeddings.word_embeddings.weight");
            let c: bert::Config = serde_json::from_value(config.clone()).map_err(parse("BERT"))?;
            let backbone = bert::Bert::load(&mut weights, c)?;
            let head = bert_head(&mut weights, &task, backbone.config.hidden_size)?;
            (Box::new(backbone), head)
        }
        other => {
            return Err(Error::Unsupported {
                what: "model_type (config.json)",
                name: if other.is_empty() { "<missing>".into() } else { other.into() },
                supported: FAMILIES.into(),
            })
        }
    };
    let family = model_type.clone();
    let info = ModelInfo::new(name, dir, &family, config);
    Model::assemble(backbone, head, task, tokenizer, info, device, kind)
}

fn default_task(config: &serde_json::Value, model_type: &str) -> Task {
    let arch = config.pointer("/architectures/0").and_then(|a| a.as_str()).unwrap_or_default();
    if arch.ends_with("ForSequenceClassification") {
        let num_labels = config
            .get("id2label")
            .and_then(|m| m.as_object())
            .map(|m| m.len() as i64)
            .or_else(|| config.get("num_labels").and_then(|n| n.as_i64()))
            .unwrap_or(2);
        Task::SequenceClassification { num_labels }
    } else if model_type == "bert" {
        Task::Embedding
    } else {
        Task::CausalLm
    }
}

fn safetensor_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        return Ok(shard_names(&index)?.into_iter().map(|s| dir.join(s)).collect());
    }
    Err(Error::bad_file(single, "missing: expected model.safetensors or model.safetensors.index.json with its shards"))
}

/// A new linear layer initialised as transformers does (normal(0, 0.02), zero bias).
fn init_linear(out: i64, inp: i64, bias: bool, device: Device, kind: Kind) -> Linear {
    let weight = (Tensor::randn([out, inp], (Kind::Float, device)) * 0.02).to_kind(kind);
    let bias = bias.then(|| Tensor::zeros([out], (kind, device)));
    Linear::new(weight, bias)
}

fn decoder_head(w: &mut Weights, task: &Task, embed: &Tensor, hidden: i64, tie: bool) -> Result<Head> {
    match task {
        Task::CausalLm => {
            let vocab = embed.size()[0];
            let untied = if tie { None } else { w.take_opt("lm_head.weight", &[vocab, hidden])? };
            Ok(match untied {
                Some(weight) => Head::CausalLm { lm_head: Linear::new(weight, None), tied: false },
                None if tie => Head::CausalLm { lm_head: Linear::new(embed.shallow_clone(), None), tied: true },
                None => return Err(Error::tensor("lm_head.weight", format!("missing from {} and tie_word_embeddings is false", w.source()))),
            })
        }
        Task::SequenceClassification { num_labels } => {
            let classifier = match w.take_opt("score.weight", &[*num_labels, hidden])? {
                Some(weight) => Linear::new(weight, None),
                None => init_linear(*num_labels, hidden, false, w.device, w.kind),
            };
            Ok(Head::SequenceClassification { pooler: None, classifier, pooling: Pooling::LastToken, classifier_name: "score" })
        }
        Task::Embedding => Ok(Head::Embedding),
    }
}

fn bert_head(w: &mut Weights, task: &Task, hidden: i64) -> Result<Head> {
    match task {
        Task::SequenceClassification { num_labels } => {
            let pooler = match w.take_opt("bert.pooler.dense.weight", &[hidden, hidden])? {
                Some(weight) => Linear::new(weight, Some(w.take("bert.pooler.dense.bias", &[hidden])?)),
                None => init_linear(hidden, hidden, true, w.device, w.kind),
            };
            let classifier = match w.take_opt("classifier.weight", &[*num_labels, hidden])? {
                Some(weight) => Linear::new(weight, Some(w.take("classifier.bias", &[*num_labels])?)),
                None => init_linear(*num_labels, hidden, true, w.device, w.kind),
            };
            Ok(Head::SequenceClassification { pooler: Some(pooler), classifier, pooling: Pooling::Cls, classifier_name: "classifier" })
        }
        Task::Embedding => Ok(Head::Embedding),
        Task::CausalLm => Err(Error::InvalidArgument("BERT is an encoder: use Task::SequenceClassification or Task::Embedding".into())),
    }
}

/// GGUF tensor names (llama.cpp) → Hugging Face names.
fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, param) = rest.rsplit_once('.')?;
    let hf = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{param}"))
}

fn load_gguf(name: &str, path: &Path, device: Device, kind: Kind, task: Option<Task>) -> Result<Model> {
    let file = GgufFile::open(path)?;
    let arch = file.architecture()?.to_string();
    if arch != "llama" && arch != "qwen2" {
        return Err(Error::Unsupported { what: "GGUF architecture", name: arch, supported: "llama, qwen2".into() });
    }
    let key = |k: &str| format!("{arch}.{k}");
    let heads = file.get_u64(&key("attention.head_count"))? as i64;
    let kv_heads = file.get_u64(&key("attention.head_count_kv")).map(|v| v as i64).unwrap_or(heads);
    let hidden = file.get_u64(&key("embedding_length"))? as i64;
    let tokenizer = file.tokenizer()?;
    let vocab = match file.get_u64(&key("vocab_size")) {
        Ok(v) => v as i64,
        Err(_) => tokenizer.get_vocab_size(true) as i64,
    };
    let tied = file.tensor_info("output.weight").is_none();
    let config = serde_json::json!({
        "model_type": arch,
        "architectures": [if arch == "qwen2" { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": file.get_u64(&key("feed_forward_length"))?,
        "num_hidden_layers": file.get_u64(&key("block_count"))?,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": file.get_f64(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
        "rope_theta": file.get_f64(&key("rope.freq_base")).unwrap_or(10_000.0),
        "max_position_embeddings": file.get_u64(&key("context_length")).unwrap_or(2048),
        "tie_word_embeddings": tied,
        "qkv_bias": arch == "qwen2",
    });
    let mut tensors = HashMap::new();
    for info in file.tensors() {
        let Some(hf) = hf_name(&info.name) else { continue };
        let (shape, mut data) = file.dequantize(&info.name)?;
        if hf.ends_with("q_proj.weight") || hf.ends_with("q_proj.bias") {
            unpermute_qk(&mut data, &shape, heads as usize)?;
        } else if hf.ends_with("k_proj.weight") || hf.ends_with("k_proj.bias") {
            unpermute_qk(&mut data, &shape, kv_heads as usize)?;
        }
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        tensors.insert(hf, Tensor::from_slice(&data).reshape(&dims));
    }
    let mut weights = Weights::new(tensors, path.display().to_string(), kind, device);
    let c: llama::Config = serde_json::from_value(config.clone())
        .map_err(|e| Error::bad_file(path, format!("GGUF metadata does not describe a Llama model: {e}")))?;
    let task = task.unwrap_or(Task::CausalLm);
    let backbone = llama::Llama::load(&mut weights, c)?;
    let head = decoder_head(&mut weights, &task, &backbone.embed_tokens.weight, hidden, tied)?;
    let chat_template = file.chat_template().map(str::to_string);
    let tok = Tokenizer::new(tokenizer, chat_template).with_special_tokens(
        file.special_token("bos"),
        file.special_token("eos"),
        file.special_token("pad"),
    );
    let info = ModelInfo::new(name, path, &arch, config);
    Model::assemble(Box::new(backbone), head, task, Some(tok), info, device, kind)
}
