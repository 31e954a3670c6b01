//! The LoRA layer: `y = base(x) + B·A·dropout(x) · scale`, hooked onto a `Linear`.
use super::LoraConfig;
use crate::nn::{join, linear, Linear, LinearHook};
use crate::peft::common::PACKED_4BIT_SUFFIX;
use crate::peft::qlora::QuantizedWeight;
use std::sync::Arc;
use tch::Tensor;

pub struct LoraLayer {
    /// `[r, in_features]`, PEFT's `lora_A.weight`.
    pub a: Tensor,
    /// `[out_features, r]`, PEFT's `lora_B.weight`.
    pub b: Tensor,
    pub scaling: f64,
    pub dropout: f64,
    pub enabled: bool,
    /// The update is currently added into the base weight.
    pub merged: bool,
    /// QLoRA: the frozen base weight in 4 bits (the `Linear`'s own weight is then empty).
    pub quantized: Option<QuantizedWeight>,
    pub config: Arc<LoraConfig>,
}

impl LoraLayer {
    /// The update `B·A·scale` as a `[out, in]` weight.
    pub fn delta_weight(&self) -> Tensor {
        self.b.matmul(&self.a) * self.scaling
    }

    pub(crate) fn merge_into(&mut self, weight: &Tensor) {
        tch::no_grad(|| {
            let _ = weight.shallow_clone().g_add_(&self.delta_weight().to_kind(weight.kind()));
        });
        self.merged = true;
    }

    pub(crate) fn unmerge_from(&mut self, weight: &Tensor) {
        tch::no_grad(|| {
            let _ = weight.shallow_clone().g_sub_(&self.delta_weight().to_kind(weight.kind()));
        });
        self.merged = false;
    }
}

impl LinearHook for LoraLayer {
    fn forward(&self, base: &Linear, x: &Tensor) -> Tensor {
        let out = match &self.quantized {
            Some(q) => q.linear(x, base.bias.as_ref()),
            None => base.base_forward(x),
        };
        if !self.enabled || self.merged {
            return out;
        }
        let x = if self.dropout > 0.0 && crate::autograd::training() { x.dropout(self.dropout, true) } else { x.shallow_clone() };
        out + linear(&linear(&x, &self.a, None), &self.b, None) * self.scaling
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        if let Some(q) = &self.quantized {
            f(&join(prefix, PACKED_4BIT_SUFFIX), &q.packed);
        }
        f(&join(prefix, "lora_A.weight"), &self.a);
        f(&join(prefix, "lora_B.weight"), &self.b);
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
    fn folded_into_base(&self) -> bool {
        self.merged && self.quantized.is_none()
    }
}
