//! [`Model`]: backbone + head + tokenizer, what a notebook user loads and fine-tunes.
use super::family::Family;
use super::heads::{Head, Task};
use super::loader::{self, LoadOptions};
use super::Forward;
use crate::nn::{KvCache, Linear, Module, PACKED_4BIT_SUFFIX};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub struct Model {
    pub backbone: Box<dyn Forward>,
    pub head: Head,
    pub task: Task,
    /// Trainable virtual-token embeddings `[n_virtual, hidden]` prepended to every input
    /// (prompt tuning); `None` for a plain model.
    pub soft_prompt: Option<Tensor>,
    tokenizer: Option<Tokenizer>,
    info: ModelInfo,
    device: Device,
    kind: Kind,
}

/// What a model is, for `tunebook info` and the notebook's summary table.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub source: PathBuf,
    /// config.json `model_type` (llama, qwen2, gemma3_text, gpt2, bert, ...).
    pub architecture: String,
    /// The config the model was built from (HF config.json, or derived from GGUF metadata).
    pub config: serde_json::Value,
    /// Everything tunebook knows about the model's family.
    #[serde(skip)]
    pub family: &'static Family,
}

impl ModelInfo {
    pub(super) fn new(name: &str, source: &Path, family: &'static Family, config: serde_json::Value) -> Self {
        let architecture = config.get("model_type").and_then(|t| t.as_str()).unwrap_or(family.model_types[0]).to_string();
        ModelInfo { name: name.into(), source: source.into(), architecture, config, family }
    }
}

/// Size and shape figures of a loaded model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub name: String,
    /// config.json `model_type` (`llama`, `gemma3_text`).
    pub architecture: String,
    /// The family as a person reads it (`Llama`, `Gemma 3`).
    pub family: String,
    /// Serialized as its stable id (`causal_lm`); see `num_labels` for classifiers.
    #[serde(serialize_with = "task_id")]
    pub task: Task,
    pub num_labels: Option<i64>,
    pub layers: usize,
    pub hidden_size: i64,
    pub vocab_size: Option<usize>,
    pub parameters: i64,
    pub trainable_parameters: i64,
    /// PyTorch's name: `float32`, `bfloat16`.
    pub dtype: String,
    /// PyTorch's name: `cpu`, `cuda:0`.
    pub device: String,
    /// Bytes held by parameter tensors.
    pub memory_bytes: i64,
}

impl Model {
    /// Loads a model by shipped short name (`smollm2-135m-instruct`, `all-minilm-l6-v2`),
    /// local path (HF folder or `.gguf`) or hub id, on the best device.
    pub fn from_pretrained(name: &str) -> Result<Model> {
        loader::load(name, &LoadOptions::default())
    }

    /// Like [`from_pretrained`](Self::from_pretrained) with a chosen device, dtype or task:
    ///
    /// ```no_run
    /// use tunebook::models::{LoadOptions, Task};
    /// let clf = tunebook::Model::from_pretrained_with(
    ///     "all-minilm-l6-v2",
    ///     LoadOptions::default().task(Task::SequenceClassification { num_labels: 3 }),
    /// )?;
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn from_pretrained_with(name: &str, options: LoadOptions) -> Result<Model> {
        loader::load(name, &options)
    }

    pub(super) fn assemble(
        backbone: Box<dyn Forward>,
        head: Head,
        task: Task,
        tokenizer: Option<Tokenizer>,
        info: ModelInfo,
        device: Device,
        kind: Kind,
    ) -> Result<Model> {
        let model = Model { backbone, head, task, soft_prompt: None, tokenizer, info, device, kind };
        if let Some(tok) = &model.tokenizer {
            let vocab = model.embedding_rows();
            if tok.vocab_size() as i64 > vocab {
                return Err(Error::Tokenizer(format!(
                    "tokenizer of {} has {} tokens but the model's embedding has only {vocab} rows: they do not belong together",
                    model.info.source.display(),
                    tok.vocab_size()
                )));
            }
        }
        Ok(model)
    }

    fn embedding_rows(&self) -> i64 {
        self.token_embeddings().map_or(0, |t| t.size()[0])
    }

    /// The token embedding matrix `[vocab, hidden]`.
    pub fn token_embeddings(&self) -> Option<Tensor> {
        let mut found = None;
        let name = self.family().names.token_embedding;
        self.backbone.visit_params("", &mut |n, t| {
            if found.is_none() && n == name {
                found = Some(t.shallow_clone());
            }
        });
        found
    }

    /// The model's family: its transformers classes, GGUF layout, LoRA defaults.
    pub fn family(&self) -> &'static Family {
        self.info.family
    }

    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            Error::Tokenizer(format!("model {} has no tokenizer (no tokenizer.json next to its config)", self.info.name))
        })
    }

    /// Replaces the tokenizer (e.g. one with added tokens); checked against the embedding.
    pub fn set_tokenizer(&mut self, tokenizer: Tokenizer) -> Result<()> {
        if tokenizer.vocab_size() as i64 > self.embedding_rows() {
            return Err(Error::Tokenizer(format!(
                "tokenizer has {} tokens, the model's embedding {} rows",
                tokenizer.vocab_size(),
                self.embedding_rows()
            )));
        }
        self.tokenizer = Some(tokenizer);
        Ok(())
    }

    /// Gives the tokenizer a chat template — `"plain"` (tunebook's `### User:` /
    /// `### Assistant:` format), an inline Jinja template or a `.jinja` file — which base
    /// models need before chat-format data or chat generation
    /// ([`Tokenizer::set_chat_template`]).
    pub fn set_chat_template(&mut self, template: &str) -> Result<()> {
        let name = self.info.name.clone();
        let tokenizer = self.tokenizer.as_mut().ok_or_else(|| Error::Tokenizer(format!("model {name} has no tokenizer to give a chat template")))?;
        tokenizer.set_chat_template(template)
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The dtype weights compute in (fp32 on CPU, bf16 on CUDA by default).
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Task output for a batch of token ids `[batch, seq]` with an optional padding mask:
    /// logits `[batch, seq, vocab]` (causal LM), `[batch, num_labels]` (classification)
    /// or embeddings `[batch, hidden]`.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Tensor {
        self.forward_with(input_ids, attention_mask, None, None)
    }

    /// [`forward`](Self::forward) with packed-sequence segments and/or a KV cache.
    pub fn forward_with(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>, segments: Option<&Tensor>, cache: Option<&mut KvCache>) -> Tensor {
        let hidden = self.hidden_states(input_ids, attention_mask, segments, cache);
        self.head.forward(&hidden, attention_mask)
    }

    /// Sum of next-token losses over `labels` (-100 = ignored) and how many there are, for a
    /// causal LM. While training, the logits are never materialised
    /// ([`fused_causal_lm_loss_sum`](crate::loss::fused_causal_lm_loss_sum)) unless a method
    /// hooks the LM head (LoRA on `lm_head`).
    pub fn causal_lm_loss_sum(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>, segments: Option<&Tensor>, labels: &Tensor) -> (Tensor, Tensor) {
        if let Head::CausalLm { lm_head, logit_softcap: None, .. } = &self.head {
            if lm_head.hook.is_none() && crate::autograd::grad_enabled() {
                let hidden = self.hidden_states(input_ids, attention_mask, segments, None);
                return crate::loss::fused_causal_lm_loss_sum(&hidden, &lm_head.weight, lm_head.bias.as_ref(), labels);
            }
        }
        crate::loss::causal_lm_loss_sum(&self.forward_with(input_ids, attention_mask, segments, None), labels)
    }

    /// Final hidden states `[batch, seq, hidden]` (soft prompt positions removed).
    pub fn hidden_states(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>, segments: Option<&Tensor>, cache: Option<&mut KvCache>) -> Tensor {
        let embeds = self.backbone.embed(input_ids);
        let Some(prompt) = &self.soft_prompt else {
            return self.backbone.forward_embeds(&embeds, attention_mask, segments, cache);
        };
        let (b, n) = (embeds.size()[0], prompt.size()[0]);
        // The padding mask always covers the virtual tokens; their embeddings go in front
        // once, at the first step of a cached generation.
        let mask = attention_mask.map(|m| Tensor::cat(&[&Tensor::ones([b, n], (m.kind(), m.device())), m], 1));
        if cache.as_ref().is_some_and(|c| c.seq_len() > 0) {
            return self.backbone.forward_embeds(&embeds, mask.as_ref(), segments, cache);
        }
        let prefix = prompt.to_kind(embeds.kind()).unsqueeze(0).expand([b, n, prompt.size()[1]], false);
        let embeds = Tensor::cat(&[&prefix, &embeds], 1);
        let segments = segments.map(|s| Tensor::cat(&[&s.narrow(1, 0, 1).expand([b, n], false), s], 1));
        let hidden = self.backbone.forward_embeds(&embeds, mask.as_ref(), segments.as_ref(), cache);
        hidden.narrow(1, n, hidden.size()[1] - n)
    }

    /// Gradient checkpointing (transformers' `gradient_checkpointing_enable()`): while
    /// training, each layer's activations are recomputed in the backward pass instead of
    /// kept, so memory stops growing with layers × batch × sequence at the cost of one
    /// more forward pass. Gradients are the same (dropout masks are replayed).
    ///
    /// ```no_run
    /// let mut model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
    /// model.set_gradient_checkpointing(true);
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn set_gradient_checkpointing(&mut self, enabled: bool) {
        self.backbone.checkpointing_mut().set_enabled(enabled);
    }

    /// A cache sized for this model's layers.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.backbone.num_layers())
    }

    /// Figures for `tunebook info` and the notebook summary.
    pub fn summary(&self) -> ModelSummary {
        let (mut parameters, mut trainable, mut bytes) = (0, 0, 0);
        self.visit_params("", &mut |name, t| {
            let n = t.numel() as i64;
            // QLoRA's frozen weights: two 4-bit parameters in each byte.
            parameters += if name.ends_with(PACKED_4BIT_SUFFIX) { 2 * n } else { n };
            if t.requires_grad() {
                trainable += n;
            }
            bytes += n * t.kind().elt_size_in_bytes() as i64;
        });
        ModelSummary {
            name: self.info.name.clone(),
            architecture: self.info.architecture.clone(),
            family: self.family().name.to_string(),
            task: self.task.clone(),
            num_labels: match self.task {
                Task::SequenceClassification { num_labels } => Some(num_labels),
                _ => None,
            },
            layers: self.backbone.num_layers(),
            hidden_size: self.backbone.hidden_size(),
            vocab_size: self.tokenizer.as_ref().map(|t| t.vocab_size()),
            parameters,
            trainable_parameters: trainable,
            dtype: crate::device::dtype_name(self.kind).to_string(),
            device: crate::device::device_name(self.device),
            memory_bytes: bytes,
        }
    }
}

fn task_id<S: serde::Serializer>(task: &Task, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(task.id())
}

impl crate::display::Display for ModelSummary {
    /// One row: architecture, task, size, trainable share, dtype, device and memory.
    fn mime_bundle(&self) -> crate::display::MimeBundle {
        use crate::display::{bytes, count};
        let share = if self.parameters > 0 { 100.0 * self.trainable_parameters as f64 / self.parameters as f64 } else { 0.0 };
        let figures = [
            ("architecture", "str", self.architecture.clone()),
            ("task", "str", self.task.to_string()),
            ("layers", "u64", self.layers.to_string()),
            ("hidden size", "u64", self.hidden_size.to_string()),
            ("vocabulary", "u64", self.vocab_size.map_or("–".to_owned(), count)),
            ("parameters", "u64", count(self.parameters)),
            ("trainable", "u64", format!("{} ({share:.2}%)", count(self.trainable_parameters))),
            ("dtype", "str", self.dtype.clone()),
            ("device", "str", self.device.clone()),
            ("memory", "", bytes(self.memory_bytes)),
        ];
        crate::display::figures_table(self.name.clone(), figures).mime_bundle()
    }
}
crate::display::impl_evcxr_display!(ModelSummary);

impl Module for Model {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.backbone.visit_params(prefix, f);
        self.head.visit_params(prefix, f);
        if let Some(p) = &self.soft_prompt {
            f(&crate::nn::join(prefix, "prompt_encoder.embedding.weight"), p);
        }
    }
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        self.backbone.visit_linears_mut(prefix, f);
        self.head.visit_linears_mut(prefix, f);
    }
}
