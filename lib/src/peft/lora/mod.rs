//! LoRA (Hu et al. 2021): frozen `W`, trainable low-rank `B·A` beside it; QLoRA when the
//! base weights are quantized ([`LoraConfig::quantize`]).
//!
//! ```no_run
//! use tunebook::peft::{LoraBias, LoraConfig};
//! # let mut model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
//! let report = LoraConfig::new(16).alpha(32.0).dropout(0.05).all_linear().rslora(true)
//!     .bias(LoraBias::None).apply(&mut model)?;
//! println!("{report}");
//! # Ok::<(), tunebook::Error>(())
//! ```
mod layer;

pub use layer::LoraLayer;

use crate::models::{Model, Task};
use crate::nn::Module;
use crate::peft::common::{check_modules_to_save, freeze, install_modules_to_save, linear_names, name_matches, unfreeze_where, TrainableParameters};
use crate::peft::qlora::{QuantType, Quantized4bit, QuantizedWeight};
use crate::peft::{common::kaiming_uniform, trainable_parameters};
use crate::{Error, Result};
use std::sync::Arc;
use tch::Tensor;

/// Which linears get a LoRA layer.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// PEFT's per-architecture default: `q_proj, v_proj` (Llama family), `c_attn` (GPT-2),
    /// `query, value` (BERT).
    Default,
    /// Module names or name suffixes (`"q_proj"`, `"layers.0.mlp.down_proj"`).
    Names(Vec<String>),
    /// A regular expression matched against the whole module name, as PEFT does for a
    /// string `target_modules`.
    Pattern(String),
    /// Every linear except the output layer (`lm_head`, `score`, `classifier`).
    AllLinear,
}

/// Which biases train alongside LoRA (PEFT's `bias`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraBias {
    None,
    All,
    LoraOnly,
}

impl LoraBias {
    pub fn as_peft(self) -> &'static str {
        match self {
            LoraBias::None => "none",
            LoraBias::All => "all",
            LoraBias::LoraOnly => "lora_only",
        }
    }
    pub fn from_peft(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(LoraBias::None),
            "all" => Ok(LoraBias::All),
            "lora_only" => Ok(LoraBias::LoraOnly),
            other => Err(Error::config("bias", format!("expected none, all or lora_only, found {other}"))),
        }
    }
}

/// LoRA settings; field names follow PEFT's `LoraConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub r: i64,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Targets,
    pub use_rslora: bool,
    pub bias: LoraBias,
    pub modules_to_save: Vec<String>,
    /// `false` starts B random too (PEFT's `init_lora_weights=False`): the model then no
    /// longer starts from the base model; for tests and experiments.
    pub init_lora_weights: bool,
    /// QLoRA: store the frozen base linears in 4 bits.
    pub quantize: Option<QuantType>,
    /// QLoRA: quantize the 4-bit block scales again (8-bit, block 256).
    pub double_quant: bool,
}

/// Names of task output layers, never targeted by `all-linear` (PEFT excludes them too).
const OUTPUT_LAYERS: [&str; 3] = ["lm_head", "score", "classifier"];

impl LoraConfig {
    /// Rank `r`; alpha 8, no dropout, PEFT's default targets, no bias, no quantization.
    pub fn new(r: i64) -> Self {
        LoraConfig {
            r,
            alpha: 8.0,
            dropout: 0.0,
            targets: Targets::Default,
            use_rslora: false,
            bias: LoraBias::None,
            modules_to_save: Vec::new(),
            init_lora_weights: true,
            quantize: None,
            double_quant: true,
        }
    }
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }
    /// Target modules by name or name suffix.
    pub fn targets<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.targets = Targets::Names(names.into_iter().map(Into::into).collect());
        self
    }
    /// Target modules whose full name matches the regular expression.
    pub fn target_pattern(mut self, regex: impl Into<String>) -> Self {
        self.targets = Targets::Pattern(regex.into());
        self
    }
    /// Target every linear but the output layer (PEFT's `"all-linear"`).
    pub fn all_linear(mut self) -> Self {
        self.targets = Targets::AllLinear;
        self
    }
    /// rsLoRA: scale by `alpha / √r` instead of `alpha / r`.
    pub fn rslora(mut self, on: bool) -> Self {
        self.use_rslora = on;
        self
    }
    pub fn bias(mut self, bias: LoraBias) -> Self {
        self.bias = bias;
        self
    }
    /// Linears trained whole next to LoRA, e.g. `["score"]` for a new classification head.
    pub fn modules_to_save<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.modules_to_save = names.into_iter().map(Into::into).collect();
        self
    }
    pub fn init_lora_weights(mut self, zero_b: bool) -> Self {
        self.init_lora_weights = zero_b;
        self
    }
    /// QLoRA: keep the frozen base linears as 4-bit `quant_type` (NF4 or FP4).
    pub fn quantize(mut self, quant_type: QuantType) -> Self {
        self.quantize = Some(quant_type);
        self
    }
    pub fn double_quant(mut self, on: bool) -> Self {
        self.double_quant = on;
        self
    }

    /// Scale applied to `B·A`.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// The linears this config targets in `model` (full names).
    pub fn resolve_targets(&self, model: &mut Model) -> Result<Vec<String>> {
        let names = linear_names(model);
        let not_output = |n: &&String| !OUTPUT_LAYERS.iter().any(|o| name_matches(n, o));
        let picked: Vec<String> = match &self.targets {
            Targets::Default => {
                let defaults = model.family().lora_targets;
                names.iter().filter(|n| defaults.iter().any(|d| name_matches(n, d))).cloned().collect()
            }
            Targets::Names(keys) => names.iter().filter(|n| keys.iter().any(|k| name_matches(n, k))).cloned().collect(),
            Targets::Pattern(pattern) => {
                let re = regex::Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| Error::config("target_modules", format!("invalid regular expression {pattern:?}: {e}")))?;
                names.iter().filter(|n| re.is_match(n)).cloned().collect()
            }
            Targets::AllLinear => names.iter().filter(not_output).cloned().collect(),
        };
        if picked.is_empty() {
            return Err(Error::config(
                "target_modules",
                format!("{:?} matches no linear layer of the model (linear layers: {})", self.targets, names.join(", ")),
            ));
        }
        Ok(picked)
    }

    fn validate(&self) -> Result<()> {
        if self.r <= 0 {
            return Err(Error::config("r", format!("LoRA rank must be positive, found {}", self.r)));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config("lora_dropout", format!("must be in [0, 1), found {}", self.dropout)));
        }
        Ok(())
    }

    /// Injects LoRA layers into `model`, freezes everything else (but the chosen biases and
    /// `modules_to_save`), and returns the trainable-parameter report.
    pub fn apply(&self, model: &mut Model) -> Result<TrainableParameters> {
        self.validate()?;
        let targets = self.resolve_targets(model)?;
        let mut occupied = Vec::new();
        model.visit_linears_mut("", &mut |name, linear| {
            if linear.hook.is_some() {
                occupied.push(name.to_string());
            }
        });
        if !occupied.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "the model already has a fine-tuning method on {}; load a fresh model to apply LoRA",
                occupied.join(", ")
            )));
        }
        check_modules_to_save(model, &self.modules_to_save, &targets)?;
        freeze(model);
        let config = Arc::new(self.clone());
        let mut failure = None;
        tch::no_grad(|| {
            model.visit_linears_mut("", &mut |name, linear| {
                if failure.is_some() {
                    return;
                }
                let is_target = targets.iter().any(|t| t == name);
                let quantized = match self.quantize {
                    Some(qt) if !OUTPUT_LAYERS.iter().any(|o| name_matches(name, o)) => {
                        match QuantizedWeight::quantize(&linear.weight, qt, self.double_quant) {
                            Ok(q) => Some(q),
                            Err(e) => {
                                failure = Some(e);
                                return;
                            }
                        }
                    }
                    _ => None,
                };
                let like = linear.weight.shallow_clone();
                if quantized.is_some() {
                    linear.weight = Tensor::empty([0], (like.kind(), like.device()));
                }
                if is_target {
                    let (out_features, in_features) = (like.size()[0], like.size()[1]);
                    let a = kaiming_uniform(self.r, in_features, &like);
                    let b = if self.init_lora_weights {
                        Tensor::zeros([out_features, self.r], (like.kind(), like.device()))
                    } else {
                        kaiming_uniform(out_features, self.r, &like)
                    };
                    linear.hook = Some(Box::new(LoraLayer {
                        a: a.set_requires_grad(true),
                        b: b.set_requires_grad(true),
                        scaling: self.scaling(),
                        dropout: self.dropout,
                        enabled: true,
                        merged: false,
                        quantized,
                        config: config.clone(),
                    }));
                    if self.bias == LoraBias::LoraOnly {
                        if let Some(bias) = &linear.bias {
                            let _ = bias.set_requires_grad(true);
                        }
                    }
                } else if let Some(weight) = quantized {
                    linear.hook = Some(Box::new(Quantized4bit { weight }));
                }
            });
        });
        if let Some(e) = failure {
            return Err(e);
        }
        if self.bias == LoraBias::All {
            unfreeze_where(model, |name| name.ends_with(".bias"));
        }
        install_modules_to_save(model, &self.modules_to_save);
        Ok(trainable_parameters(model))
    }

    /// PEFT's `task_type` for a model.
    pub(crate) fn task_type(task: &Task) -> &'static str {
        match task {
            Task::CausalLm => "CAUSAL_LM",
            Task::SequenceClassification { .. } => "SEQ_CLS",
            Task::Embedding => "FEATURE_EXTRACTION",
        }
    }
}
