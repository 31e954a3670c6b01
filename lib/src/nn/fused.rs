//! Operations computed as one autograd node each (C++ shim, `lib/shim/fused.cpp`), keeping
//! less for the backward pass than the chain of elementary operations would: SwiGLU, the
//! gated activation of Llama-family MLPs, and Llama's RMSNorm.
//!
//! ```
//! use tunebook::nn::{rms_norm, swiglu};
//! use tunebook::tch::{Device, Kind, Tensor};
//! let gate = Tensor::randn([2, 6], (Kind::Float, Device::Cpu));
//! let up = Tensor::randn([2, 6], (Kind::Float, Device::Cpu));
//! assert!(swiglu(&gate, &up).allclose(&(gate.silu() * &up), 1e-6, 1e-6, false));
//! let weight = Tensor::ones([6], (Kind::Float, Device::Cpu));
//! let rms = gate.square().mean_dim(-1, true, Kind::Float).sqrt();
//! assert!(rms_norm(&gate, &weight, 0.0).allclose(&(&gate / rms), 1e-5, 1e-5, false));
//! ```
use crate::shim::tensor_from;
use std::ffi::c_char;
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn tunebook_swiglu(gate: *const C_tensor, up: *const C_tensor, err: *mut c_char, cap: usize) -> *mut C_tensor;
    fn tunebook_rms_norm(x: *const C_tensor, weight: *const C_tensor, eps: f64, err: *mut c_char, cap: usize) -> *mut C_tensor;
}

/// `silu(gate) · up`. The backward pass recomputes `silu(gate)` instead of keeping it,
/// which spares one `[tokens, intermediate]` activation per layer.
///
/// # Panics
/// On shapes that do not match, as tch's operations do.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Tensor {
    tensor_from("swiglu", |err, cap| unsafe { tunebook_swiglu(gate.as_ptr(), up.as_ptr(), err, cap) })
}

/// `x / sqrt(mean(x²) + eps) · weight` over the last dimension, the normalization computed
/// in fp32 and cast back to `x`'s dtype before the weight (transformers' LlamaRMSNorm). The
/// backward pass keeps `x` and one number per row.
///
/// # Panics
/// When `weight` does not match the last dimension of `x`, as tch's operations do.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Tensor {
    tensor_from("rms_norm", |err, cap| unsafe { tunebook_rms_norm(x.as_ptr(), weight.as_ptr(), eps, err, cap) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Gradients of `sum(f(inputs) · upstream)` with respect to each input.
    fn grads(inputs: &[&Tensor], f: impl Fn() -> Tensor, upstream: &Tensor) -> Vec<Tensor> {
        (f() * upstream).sum(Kind::Float).backward();
        inputs
            .iter()
            .map(|t| {
                let grad = t.grad().copy();
                let _ = t.grad().zero_();
                grad
            })
            .collect()
    }

    fn assert_all_close(ours: &[Tensor], theirs: &[Tensor]) {
        for (a, b) in ours.iter().zip(theirs) {
            assert!(a.allclose(b, 1e-5, 1e-5, false), "{a} vs {b}");
        }
    }

    #[test]
    fn swiglu_gradients_match_the_two_operation_form() {
        tch::manual_seed(3);
        let gate = Tensor::randn([4, 10], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let up = Tensor::randn([4, 10], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let upstream = Tensor::randn([4, 10], (Kind::Float, Device::Cpu));
        let ours = grads(&[&gate, &up], || swiglu(&gate, &up), &upstream);
        let theirs = grads(&[&gate, &up], || gate.silu() * &up, &upstream);
        assert_all_close(&ours, &theirs);
    }

    #[test]
    fn only_the_input_that_requires_grad_gets_one() {
        let gate = Tensor::randn([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let up = Tensor::randn([3], (Kind::Float, Device::Cpu));
        swiglu(&gate, &up).sum(Kind::Float).backward();
        assert!(gate.grad().defined() && !up.grad().defined());
        let weight = Tensor::ones([3], (Kind::Float, Device::Cpu));
        rms_norm(&gate, &weight, 1e-6).sum(Kind::Float).backward();
        assert!(!weight.grad().defined());
    }

    #[test]
    fn rms_norm_matches_libtorch_forward_and_backward() {
        tch::manual_seed(4);
        let x = Tensor::randn([2, 3, 16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let weight = Tensor::randn([16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let upstream = Tensor::randn([2, 3, 16], (Kind::Float, Device::Cpu));
        let expected = x.rms_norm([16], Some(&weight), 1e-5);
        assert!(rms_norm(&x, &weight, 1e-5).allclose(&expected, 1e-5, 1e-5, false));
        let ours = grads(&[&x, &weight], || rms_norm(&x, &weight, 1e-5), &upstream);
        let theirs = grads(&[&x, &weight], || x.rms_norm([16], Some(&weight), 1e-5), &upstream);
        assert_all_close(&ours, &theirs);
    }

    #[test]
    fn a_gradient_shared_with_a_residual_branch_is_left_intact() {
        // y = x + norm(x): the add hands the same gradient tensor to both branches.
        let x = Tensor::randn([2, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let weight = Tensor::randn([8], (Kind::Float, Device::Cpu));
        let ours = grads(&[&x], || &x + rms_norm(&x, &weight, 1e-6), &Tensor::ones([2, 8], (Kind::Float, Device::Cpu)));
        let theirs = grads(&[&x], || &x + x.rms_norm([8], Some(&weight), 1e-6), &Tensor::ones([2, 8], (Kind::Float, Device::Cpu)));
        assert_all_close(&ours, &theirs);
    }
}
