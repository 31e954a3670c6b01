//! AdamW over named trainable tensors, with state that checkpoints by parameter name.
use crate::nn::NamedTensors;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;

/// Adam with decoupled weight decay (Loshchilov & Hutter), bias-corrected, as
/// `torch.optim.AdamW`. Biases and norm weights are never decayed.
pub struct AdamW {
    params: NamedTensors,
    state: BTreeMap<String, Moments>,
    /// Completed optimizer steps (all parameters advance together).
    pub step: u64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
}

struct Moments {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// Moments are kept in fp32 even for bf16/fp16 weights (as mixed-precision AdamW does),
/// in fp64 for fp64 weights.
fn moment_kind(param: &Tensor) -> tch::Kind {
    match param.kind() {
        tch::Kind::Double => tch::Kind::Double,
        _ => tch::Kind::Float,
    }
}

/// Biases and normalisation weights keep their scale: decaying them only hurts.
pub fn decays(name: &str, tensor: &Tensor) -> bool {
    let lower = name.to_ascii_lowercase();
    tensor.dim() >= 2 && !lower.contains("norm") && !lower.contains(".ln_") && !lower.ends_with("bias")
}

impl AdamW {
    /// An optimizer over `params` (those that require grad); moments start at zero.
    pub fn new(params: NamedTensors, betas: (f64, f64), epsilon: f64, weight_decay: f64) -> Self {
        let state = params
            .iter()
            .map(|(name, p)| {
                let zeros = || Tensor::zeros(p.size(), (moment_kind(p), p.device()));
                (name.clone(), Moments { exp_avg: zeros(), exp_avg_sq: zeros() })
            })
            .collect();
        AdamW { params, state, step: 0, beta1: betas.0, beta2: betas.1, epsilon, weight_decay }
    }

    pub fn params(&self) -> &NamedTensors {
        &self.params
    }

    /// One update at learning rate `lr` from the gradients in place; parameters without a
    /// gradient (unused in this batch) are left alone.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let bias1 = 1.0 - b1.powi(self.step as i32);
        let bias2_sqrt = (1.0 - b2.powi(self.step as i32)).sqrt();
        tch::no_grad(|| {
            for (name, param) in &self.params {
                let grad = param.grad();
                if !grad.defined() {
                    continue;
                }
                let moments = self.state.get_mut(name).expect("state made for every parameter");
                let grad = grad.to_kind(moments.exp_avg.kind());
                let mut p = param.shallow_clone();
                if self.weight_decay > 0.0 && decays(name, param) {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let _ = moments.exp_avg.g_mul_scalar_(b1);
                let _ = moments.exp_avg.g_add_(&(&grad * (1.0 - b1)));
                let _ = moments.exp_avg_sq.g_mul_scalar_(b2);
                let _ = moments.exp_avg_sq.g_add_(&(&grad * &grad * (1.0 - b2)));
                let denom = moments.exp_avg_sq.sqrt() / bias2_sqrt + self.epsilon;
                let update = (&moments.exp_avg / denom) * (lr / bias1);
                let _ = p.g_sub_(&update.to_kind(p.kind()));
            }
        });
    }

    /// Clears the gradients of every parameter.
    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.detach_().zero_();
            }
        }
    }

    /// Writes `exp_avg.NAME` and `exp_avg_sq.NAME` to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = Vec::with_capacity(self.state.len() * 2);
        for (name, m) in &self.state {
            tensors.push((format!("exp_avg.{name}"), m.exp_avg.to_device(tch::Device::Cpu)));
            tensors.push((format!("exp_avg_sq.{name}"), m.exp_avg_sq.to_device(tch::Device::Cpu)));
        }
        Tensor::write_safetensors(&tensors, path).map_err(|e| Error::bad_file(path, e.to_string()))
    }

    /// Restores moments saved by [`save`](Self::save); every parameter must be present.
    pub fn load(&mut self, path: &Path, step: u64) -> Result<()> {
        let saved: BTreeMap<String, Tensor> =
            Tensor::read_safetensors(path).map_err(|e| Error::bad_file(path, e.to_string()))?.into_iter().collect();
        tch::no_grad(|| -> Result<()> {
            for (name, m) in self.state.iter_mut() {
                for (prefix, target) in [("exp_avg", &mut m.exp_avg), ("exp_avg_sq", &mut m.exp_avg_sq)] {
                    let key = format!("{prefix}.{name}");
                    let value = saved.get(&key).ok_or_else(|| {
                        Error::bad_file(path, format!("no optimizer state {key}: the checkpoint was saved for other trainable parameters"))
                    })?;
                    if value.size() != target.size() {
                        return Err(Error::bad_file(path, format!("{key} has shape {:?}, expected {:?}", value.size(), target.size())));
                    }
                    target.copy_(value);
                }
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}
