//! `[method]`: which fine-tuning method, and its settings, in PEFT's names.
use crate::models::{Head, Model};
use crate::peft::{self, Activation, AdapterConfig, FullFineTuning, LoraBias, LoraConfig, PromptTuningConfig, QuantType, TrainableParameters};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The fine-tuning methods a recipe can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodKind {
    Full,
    Lora,
    Qlora,
    Adapter,
    PromptTuning,
}

impl MethodKind {
    /// The settings that mean something for this method; any other is an error, so a
    /// setting never silently does nothing.
    fn settings(self) -> &'static [&'static str] {
        const LORA: [&str; 7] = ["r", "alpha", "dropout", "target_modules", "rslora", "bias", "modules_to_save"];
        const QLORA: [&str; 9] = ["r", "alpha", "dropout", "target_modules", "rslora", "bias", "modules_to_save", "quant_type", "double_quant"];
        match self {
            MethodKind::Full => &["freeze_embeddings", "freeze_layers"],
            MethodKind::Lora => &LORA,
            MethodKind::Qlora => &QLORA,
            MethodKind::Adapter => &["placement", "size", "activation", "modules_to_save"],
            MethodKind::PromptTuning => &["num_virtual_tokens", "init_text"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            MethodKind::Full => "full",
            MethodKind::Lora => "lora",
            MethodKind::Qlora => "qlora",
            MethodKind::Adapter => "adapter",
            MethodKind::PromptTuning => "prompt_tuning",
        }
    }
}

/// LoRA's `target_modules`: a list of names (or name suffixes), `"all-linear"`, or any
/// other string as a regular expression over full module names (as in PEFT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a list of module names, \"all-linear\", or a regular expression")]
pub enum TargetModules {
    Names(Vec<String>),
    Pattern(String),
}

/// Which biases train with LoRA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BiasSetting {
    None,
    All,
    LoraOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantSetting {
    Nf4,
    Fp4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementSetting {
    Houlsby,
    Pfeiffer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationSetting {
    Relu,
    Gelu,
    Silu,
    Tanh,
}

/// `[method]`. Settings left out take the method's defaults (PEFT's for LoRA: `r = 8`,
/// `alpha = 8`, no dropout, the architecture's default targets).
///
/// ```toml
/// [method]
/// kind = "lora"            # full | lora | qlora | adapter | prompt_tuning
/// r = 8
/// alpha = 16
/// dropout = 0.05
/// target_modules = ["q_proj", "v_proj"]   # or "all-linear", or a regular expression
/// # qlora: quant_type = "nf4" (or "fp4"), double_quant = true
/// # adapter: placement = "houlsby" (or "pfeiffer"), size = 64, activation = "relu"
/// # prompt_tuning: num_virtual_tokens = 20, init_text = "Answer politely:"
/// # full: freeze_embeddings = true, freeze_layers = [0, 1]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSection {
    pub kind: MethodKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_modules: Option<TargetModules>,
    /// rsLoRA: scale by `alpha / √r`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rslora: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<BiasSetting>,
    /// Layers trained whole beside the method; a classification head by default, since a
    /// new head must learn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules_to_save: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant_type: Option<QuantSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub double_quant: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementSetting>,
    /// Adapter bottleneck width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<ActivationSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_virtual_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_embeddings: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_layers: Option<Vec<usize>>,
}

impl MethodSection {
    /// A method with every setting at its default.
    pub fn new(kind: MethodKind) -> Self {
        MethodSection {
            kind,
            r: None,
            alpha: None,
            dropout: None,
            target_modules: None,
            rslora: None,
            bias: None,
            modules_to_save: None,
            quant_type: None,
            double_quant: None,
            placement: None,
            size: None,
            activation: None,
            num_virtual_tokens: None,
            init_text: None,
            freeze_embeddings: None,
            freeze_layers: None,
        }
    }

    /// Fails on a setting given for a method it does not belong to.
    pub(crate) fn check_settings(&self) -> Result<()> {
        let given = serde_json::to_value(self).expect("method settings are plain values");
        let allowed = self.kind.settings();
        let stray = given.as_object().into_iter().flatten().map(|(k, _)| k.as_str()).find(|k| *k != "kind" && !allowed.contains(k));
        match stray {
            Some(name) => Err(Error::config(name, format!("does not apply to kind = \"{}\" (its settings: {})", self.kind.name(), allowed.join(", ")))),
            None => Ok(()),
        }
    }

    /// Applies the method to `model` (freezing everything it does not train).
    pub fn apply(&self, model: &mut Model) -> Result<TrainableParameters> {
        match self.kind {
            MethodKind::Full => FullFineTuning::new()
                .freeze_embeddings(self.freeze_embeddings.unwrap_or(false))
                .freeze_layers(self.freeze_layers.clone().unwrap_or_default())
                .apply(model),
            MethodKind::Lora | MethodKind::Qlora => self.lora_config(model)?.apply(model),
            MethodKind::Adapter => {
                let size = self.size.unwrap_or(64);
                let config = match self.placement.unwrap_or(PlacementSetting::Houlsby) {
                    PlacementSetting::Houlsby => AdapterConfig::houlsby(size),
                    PlacementSetting::Pfeiffer => AdapterConfig::pfeiffer(size),
                };
                let activation = match self.activation.unwrap_or(ActivationSetting::Relu) {
                    ActivationSetting::Relu => Activation::Relu,
                    ActivationSetting::Gelu => Activation::Gelu,
                    ActivationSetting::Silu => Activation::Silu,
                    ActivationSetting::Tanh => Activation::Tanh,
                };
                config.activation(activation).modules_to_save(self.saved_modules(model)).apply(model)
            }
            MethodKind::PromptTuning => {
                let mut config = PromptTuningConfig::new(self.num_virtual_tokens.unwrap_or(20));
                config.init_text = self.init_text.clone();
                config.apply(model)
            }
        }
    }

    fn lora_config(&self, model: &Model) -> Result<LoraConfig> {
        let mut config = LoraConfig::new(self.r.unwrap_or(8)).rslora(self.rslora.unwrap_or(false)).modules_to_save(self.saved_modules(model));
        if let Some(alpha) = self.alpha {
            config = config.alpha(alpha);
        }
        if let Some(dropout) = self.dropout {
            config = config.dropout(dropout);
        }
        config = match &self.target_modules {
            None => config,
            Some(TargetModules::Names(names)) => config.targets(names.clone()),
            Some(TargetModules::Pattern(p)) if p == "all-linear" => config.all_linear(),
            Some(TargetModules::Pattern(p)) => config.target_pattern(p.clone()),
        };
        config = config.bias(match self.bias.unwrap_or(BiasSetting::None) {
            BiasSetting::None => LoraBias::None,
            BiasSetting::All => LoraBias::All,
            BiasSetting::LoraOnly => LoraBias::LoraOnly,
        });
        if self.kind == MethodKind::Qlora {
            let quant = match self.quant_type.unwrap_or(QuantSetting::Nf4) {
                QuantSetting::Nf4 => QuantType::Nf4,
                QuantSetting::Fp4 => QuantType::Fp4,
            };
            config = config.quantize(quant).double_quant(self.double_quant.unwrap_or(true));
        }
        Ok(config)
    }

    /// `modules_to_save`, defaulting to the classification head: it starts random, so a
    /// method that freezes it could not learn the task (PEFT does the same for SEQ_CLS).
    fn saved_modules(&self, model: &Model) -> Vec<String> {
        match (&self.modules_to_save, &model.head) {
            (Some(names), _) => names.clone(),
            (None, Head::SequenceClassification { classifier_name, .. }) => vec![classifier_name.to_string()],
            (None, _) => Vec::new(),
        }
    }

    /// Saves what the method trained into `dir`: PEFT's format for LoRA, QLoRA and prompt
    /// tuning (loadable by Python `peft`), the trainable weights by name otherwise.
    pub(crate) fn save(&self, trainer: &mut crate::train::Trainer, dir: &std::path::Path) -> Result<()> {
        match self.kind {
            MethodKind::Lora | MethodKind::Qlora | MethodKind::PromptTuning => peft::save(&mut trainer.model, dir),
            MethodKind::Full => trainer.save_trainable(dir.join("model.safetensors")),
            MethodKind::Adapter => trainer.save_trainable(dir.join("adapter_weights.safetensors")),
        }
    }
}
