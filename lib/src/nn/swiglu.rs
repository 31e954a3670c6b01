//! SwiGLU, the gated activation of Llama-family MLPs, as one autograd node (C++ shim,
//! `lib/shim/swiglu.cpp`) that keeps only its two inputs for the backward pass.
//!
//! ```
//! use tunebook::nn::swiglu;
//! use tunebook::tch::{Device, Kind, Tensor};
//! let gate = Tensor::randn([2, 6], (Kind::Float, Device::Cpu));
//! let up = Tensor::randn([2, 6], (Kind::Float, Device::Cpu));
//! assert!(swiglu(&gate, &up).allclose(&(gate.silu() * &up), 1e-6, 1e-6, false));
//! ```
use std::ffi::c_char;
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn tunebook_swiglu(gate: *const C_tensor, up: *const C_tensor, err: *mut c_char, cap: usize) -> *mut C_tensor;
}

/// `silu(gate) · up`. The backward pass recomputes `silu(gate)` instead of keeping it,
/// which spares one `[tokens, intermediate]` activation per layer.
///
/// # Panics
/// On shapes that do not match, as tch's operations do.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Tensor {
    let mut err = [0 as c_char; 4096];
    let out = unsafe { tunebook_swiglu(gate.as_ptr(), up.as_ptr(), err.as_mut_ptr(), err.len()) };
    if out.is_null() {
        panic!("swiglu: {}", crate::shim::error_message(&err));
    }
    unsafe { Tensor::from_ptr(out) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn gradients_match_the_two_operation_form() {
        tch::manual_seed(3);
        let gate = Tensor::randn([4, 10], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let up = Tensor::randn([4, 10], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let upstream = Tensor::randn([4, 10], (Kind::Float, Device::Cpu));
        (swiglu(&gate, &up) * &upstream).sum(Kind::Float).backward();
        let (ours_gate, ours_up) = (gate.grad().copy(), up.grad().copy());
        gate.grad().zero_();
        up.grad().zero_();
        (gate.silu() * &up * &upstream).sum(Kind::Float).backward();
        assert!(ours_gate.allclose(&gate.grad(), 1e-5, 1e-5, false));
        assert!(ours_up.allclose(&up.grad(), 1e-5, 1e-5, false));
    }

    #[test]
    fn only_the_input_that_requires_grad_gets_one() {
        let gate = Tensor::randn([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let up = Tensor::randn([3], (Kind::Float, Device::Cpu));
        swiglu(&gate, &up).sum(Kind::Float).backward();
        assert!(gate.grad().defined() && !up.grad().defined());
    }
}
