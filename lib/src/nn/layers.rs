//! Plain layers: a struct of tensors and a `forward`.
use super::module::{join, Module};
use tch::Tensor;

/// Name suffix of a hook's packed 4-bit weight (two parameters per byte); its scales are
/// not counted as parameters.
pub const PACKED_4BIT_SUFFIX: &str = "weight_4bit";

/// A hook that replaces a linear layer's forward: how LoRA, QLoRA and similar methods
/// attach to a model without the model code knowing about them.
pub trait LinearHook: Send {
    /// Output for input `x`; `base` is the layer being wrapped (its weight may be empty
    /// when the hook keeps its own, e.g. quantized, copy).
    fn forward(&self, base: &Linear, x: &Tensor) -> Tensor;
    /// The hook's own parameters, named relative to the wrapped layer.
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor));
    /// Lets a method find its own hook again (merge, save, switch adapters).
    fn as_any(&self) -> &dyn std::any::Any;
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
    /// The hook's effect is already folded into the base weight (a merged LoRA), so the
    /// plain layer computes the same output and the model can be saved without the hook.
    fn folded_into_base(&self) -> bool {
        false
    }
}

/// `y = x Wᵀ + b`, with `weight` stored `[out_features, in_features]` as in PyTorch.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub hook: Option<Box<dyn LinearHook>>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias, hook: None }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        match &self.hook {
            Some(hook) => hook.forward(self, x),
            None => self.base_forward(x),
        }
    }

    /// The layer without any hook.
    pub fn base_forward(&self, x: &Tensor) -> Tensor {
        super::linear(x, &self.weight, self.bias.as_ref())
    }

    pub fn in_features(&self) -> i64 {
        self.weight.size()[1]
    }

    pub fn out_features(&self) -> i64 {
        self.weight.size()[0]
    }
}

impl Module for Linear {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        if self.weight.numel() > 0 {
            f(&join(prefix, "weight"), &self.weight);
        }
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
        if let Some(hook) = &self.hook {
            hook.visit_params(prefix, f);
        }
    }
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        f(prefix, self)
    }
}

pub struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.weight, ids, -1, false, false)
    }
}

impl Module for Embedding {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight)
    }
    fn visit_linears_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Linear)) {}
}

pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        super::rms_norm(x, &self.weight, self.eps)
    }
}

impl Module for RmsNorm {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight)
    }
    fn visit_linears_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Linear)) {}
}

pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let dim = self.weight.size()[0];
        x.layer_norm([dim], Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

impl Module for LayerNorm {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        f(&join(prefix, "bias"), &self.bias);
    }
    fn visit_linears_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Linear)) {}
}
