//! A walk over a model's parameters by their Hugging Face names.
//!
//! Fine-tuning methods find their injection points by name ("model.layers.3.self_attn.q_proj"),
//! the optimizer and checkpoints see every tensor under the same names a config.json /
//! safetensors file uses, so a saved model is a Hugging Face folder without renaming.
use super::Linear;
use tch::Tensor;

/// Joins a dotted parameter path, skipping an empty prefix.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A list of (name, tensor) pairs; tensors are shallow handles sharing storage.
pub type NamedTensors = Vec<(String, Tensor)>;

pub trait Module {
    /// Calls `f` with every parameter tensor and its dotted name under `prefix`.
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor));

    /// Calls `f` with every linear layer, so a method (LoRA, QLoRA, ...) can wrap it.
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Linear));

    /// Every parameter with its name.
    fn named_parameters(&self) -> NamedTensors {
        let mut out = Vec::new();
        self.visit_params("", &mut |name, t| out.push((name.to_string(), t.shallow_clone())));
        out
    }

    /// Number of scalar parameters.
    fn num_parameters(&self) -> i64 {
        let mut n = 0;
        self.visit_params("", &mut |_, t| n += t.numel() as i64);
        n
    }
}

impl<M: Module> Module for Vec<M> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (i, m) in self.iter().enumerate() {
            m.visit_params(&join(prefix, &i.to_string()), f);
        }
    }
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        for (i, m) in self.iter_mut().enumerate() {
            m.visit_linears_mut(&join(prefix, &i.to_string()), f);
        }
    }
}

impl<M: Module> Module for Option<M> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        if let Some(m) = self {
            m.visit_params(prefix, f)
        }
    }
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        if let Some(m) = self {
            m.visit_linears_mut(prefix, f)
        }
    }
}
