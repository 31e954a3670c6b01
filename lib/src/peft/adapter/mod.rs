//! Bottleneck adapters: a small MLP `up(act(down(y)))` added to the output of the attention
//! output projection and/or the feed-forward output projection, before the residual add.
//! Houlsby et al. 2019 place one after attention and one after the feed-forward block,
//! Pfeiffer et al. 2020 only after the feed-forward block. The up-projection starts at zero,
//! so training starts exactly from the base model.
//!
//! ```no_run
//! use tunebook::peft::{Activation, AdapterConfig};
//! # let mut model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
//! println!("{}", AdapterConfig::pfeiffer(64).activation(Activation::Gelu).apply(&mut model)?);
//! # Ok::<(), tunebook::Error>(())
//! ```
use crate::models::{Family, Model};
use crate::nn::{join, linear, Linear, LinearHook, Module};
use crate::peft::common::{check_modules_to_save, freeze, install_modules_to_save, linear_names, kaiming_uniform, TrainableParameters};
use crate::peft::trainable_parameters;
use crate::{Error, Result};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterPlacement {
    /// After attention and after the feed-forward block.
    Houlsby,
    /// After the feed-forward block only.
    Pfeiffer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Gelu,
    Silu,
    Tanh,
}

impl Activation {
    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu("none"),
            Activation::Silu => x.silu(),
            Activation::Tanh => x.tanh(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdapterConfig {
    pub placement: AdapterPlacement,
    /// Bottleneck width.
    pub size: i64,
    pub activation: Activation,
    pub modules_to_save: Vec<String>,
}


impl AdapterConfig {
    pub fn houlsby(size: i64) -> Self {
        AdapterConfig { placement: AdapterPlacement::Houlsby, size, activation: Activation::Relu, modules_to_save: Vec::new() }
    }
    pub fn pfeiffer(size: i64) -> Self {
        AdapterConfig { placement: AdapterPlacement::Pfeiffer, ..Self::houlsby(size) }
    }
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }
    pub fn modules_to_save<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.modules_to_save = names.into_iter().map(Into::into).collect();
        self
    }

    /// Whether `name` is an output projection of `family` this placement adapts (BERT's
    /// feed-forward `output.dense` is the one outside `attention.`).
    fn is_target(&self, family: &Family, name: &str) -> bool {
        let attention = name.ends_with(&format!(".{}", family.names.attention_output));
        let ffn = !attention && name.ends_with(&format!(".{}", family.names.ffn_output));
        ffn || (attention && self.placement == AdapterPlacement::Houlsby)
    }

    /// Inserts an adapter after each chosen projection, freezes the rest, returns the report.
    pub fn apply(&self, model: &mut Model) -> Result<TrainableParameters> {
        if self.size <= 0 {
            return Err(Error::config("adapter size", format!("must be positive, found {}", self.size)));
        }
        let family = model.family();
        let mut occupied = None;
        model.visit_linears_mut("", &mut |name, linear| {
            if self.is_target(family, name) && linear.hook.is_some() {
                occupied = Some(name.to_string());
            }
        });
        if let Some(name) = occupied {
            return Err(Error::InvalidArgument(format!("{name} already carries a fine-tuning method; load a fresh model")));
        }
        let targets: Vec<String> = linear_names(model).into_iter().filter(|n| self.is_target(family, n)).collect();
        if targets.is_empty() {
            return Err(Error::Unsupported {
                what: "architecture for bottleneck adapters",
                name: model.info().architecture.clone(),
                supported: crate::models::family::known_model_types(),
            });
        }
        check_modules_to_save(model, &self.modules_to_save, &targets)?;
        freeze(model);
        tch::no_grad(|| {
            model.visit_linears_mut("", &mut |name, linear| {
                if !self.is_target(family, name) {
                    return;
                }
                let like = &linear.weight;
                let (hidden, opts) = (like.size()[0], (like.kind(), like.device()));
                let trainable = |t: Tensor| t.set_requires_grad(true);
                linear.hook = Some(Box::new(AdapterLayer {
                    down_weight: trainable(kaiming_uniform(self.size, hidden, like)),
                    down_bias: trainable(Tensor::zeros([self.size], opts)),
                    up_weight: trainable(Tensor::zeros([hidden, self.size], opts)),
                    up_bias: trainable(Tensor::zeros([hidden], opts)),
                    activation: self.activation,
                    enabled: true,
                }));
            });
        });
        install_modules_to_save(model, &self.modules_to_save);
        Ok(trainable_parameters(model))
    }
}

/// `y + up(act(down(y)))` on the output `y` of the wrapped projection.
pub struct AdapterLayer {
    pub down_weight: Tensor,
    pub down_bias: Tensor,
    pub up_weight: Tensor,
    pub up_bias: Tensor,
    pub activation: Activation,
    pub enabled: bool,
}

impl LinearHook for AdapterLayer {
    fn forward(&self, base: &Linear, x: &Tensor) -> Tensor {
        let y = base.base_forward(x);
        if !self.enabled {
            return y;
        }
        let h = self.activation.apply(&linear(&y, &self.down_weight, Some(&self.down_bias)));
        &y + linear(&h, &self.up_weight, Some(&self.up_bias))
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "adapter.down.weight"), &self.down_weight);
        f(&join(prefix, "adapter.down.bias"), &self.down_bias);
        f(&join(prefix, "adapter.up.weight"), &self.up_weight);
        f(&join(prefix, "adapter.up.bias"), &self.up_bias);
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
