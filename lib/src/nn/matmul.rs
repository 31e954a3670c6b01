//! Matrix products of the linear layers and the LM loss, with the CPU's fp32 products sent
//! to oneDNN (through the C++ shim, `lib/shim/matmul.cpp`) rather than libtorch's default
//! BLAS.
//!
//! Both libraries ship inside libtorch. MKL's sgemm runs its generic AVX2 kernels on AMD
//! CPUs even where they have AVX-512; oneDNN runs AVX-512 there, in fp32 throughout
//! (BENCHMARKS.md's training section shows what it gives). [`set_cpu_matmul`] or
//! `TUNEBOOK_CPU_MATMUL=blas` switches back; CUDA and other dtypes always take libtorch's
//! own path.
//!
//! ```
//! use tunebook::nn::{linear, set_cpu_matmul, CpuMatmul};
//! use tunebook::tch::{Kind, Tensor};
//! let x = Tensor::randn([3, 8], (Kind::Float, tch::Device::Cpu));
//! let w = Tensor::randn([4, 8], (Kind::Float, tch::Device::Cpu));
//! let fast = linear(&x, &w, None);
//! set_cpu_matmul(CpuMatmul::Blas);
//! let reference = linear(&x, &w, None);
//! set_cpu_matmul(CpuMatmul::OneDnn);
//! assert!(fast.allclose(&reference, 1e-5, 1e-5, false));
//! ```
use std::ffi::c_char;
use std::sync::atomic::{AtomicU8, Ordering};
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn tunebook_onednn_linear(x: *const C_tensor, weight: *const C_tensor, bias: *const C_tensor, err: *mut c_char, cap: usize) -> *mut C_tensor;
    fn tunebook_onednn_addmm(out: *const C_tensor, a: *const C_tensor, b: *const C_tensor, beta: f32, err: *mut c_char, cap: usize) -> i32;
    fn tunebook_has_onednn() -> i32;
}

/// Which library computes fp32 matrix products on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMatmul {
    /// oneDNN (the default where libtorch has it).
    OneDnn,
    /// libtorch's default BLAS (MKL in the PyPI wheels), as PyTorch itself computes.
    Blas,
}

const UNSET: u8 = 0;
const ONEDNN: u8 = 1;
const BLAS: u8 = 2;
static CHOICE: AtomicU8 = AtomicU8::new(UNSET);

/// Chooses the library for the CPU's fp32 products from now on (all threads).
pub fn set_cpu_matmul(choice: CpuMatmul) {
    CHOICE.store(if choice == CpuMatmul::OneDnn && onednn_usable() { ONEDNN } else { BLAS }, Ordering::Relaxed);
}

/// The library computing the CPU's fp32 products: oneDNN unless libtorch lacks it or
/// `TUNEBOOK_CPU_MATMUL=blas` (read once) or [`set_cpu_matmul`] says otherwise.
pub fn cpu_matmul() -> CpuMatmul {
    let mut choice = CHOICE.load(Ordering::Relaxed);
    if choice == UNSET {
        let wanted = match std::env::var("TUNEBOOK_CPU_MATMUL").as_deref().map(str::trim) {
            Ok("blas") => CpuMatmul::Blas,
            Ok("onednn") | Ok("") | Err(_) => CpuMatmul::OneDnn,
            Ok(other) => {
                eprintln!("tunebook: TUNEBOOK_CPU_MATMUL={other:?} is neither \"onednn\" nor \"blas\"; using oneDNN");
                CpuMatmul::OneDnn
            }
        };
        set_cpu_matmul(wanted);
        choice = CHOICE.load(Ordering::Relaxed);
    }
    if choice == ONEDNN {
        CpuMatmul::OneDnn
    } else {
        CpuMatmul::Blas
    }
}

/// libtorch has oneDNN and its fp32 product works on this CPU (checked once on a 2×2
/// product: builds for other architectures may accept fewer dtypes), else BLAS it is.
fn onednn_usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| {
        if unsafe { tunebook_has_onednn() } == 0 {
            return false;
        }
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
        let out = Tensor::zeros([2, 2], (Kind::Float, Device::Cpu));
        onednn_addmm(&out, &a, &a, 0.0).is_ok() && out.allclose(&a.matmul(&a), 1e-6, 1e-6, false)
    })
}

fn onednn_applies(tensors: &[&Tensor]) -> bool {
    tensors.iter().all(|t| t.device() == Device::Cpu && t.kind() == Kind::Float) && cpu_matmul() == CpuMatmul::OneDnn
}

/// `x · weightᵀ + bias` over the last dimension of `x` (`weight` is `[out, in]`), recorded
/// for autograd like tch's `Tensor::linear`.
///
/// # Panics
/// On mismatched shapes, as tch's operations do.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    if !onednn_applies(&[x, weight]) || bias.is_some_and(|b| b.kind() != Kind::Float) {
        return x.linear(weight, bias);
    }
    let bias_ptr = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    crate::shim::tensor_from("linear", |err, cap| unsafe { tunebook_onednn_linear(x.as_ptr(), weight.as_ptr(), bias_ptr, err, cap) })
}

/// `a · b` for 2-D `a`, `b` (either may be a transposed view); not recorded for autograd.
pub fn mm(a: &Tensor, b: &Tensor) -> Tensor {
    if !onednn_applies(&[a, b]) {
        return a.matmul(b);
    }
    let out = Tensor::empty([a.size()[0], b.size()[1]], (Kind::Float, Device::Cpu));
    onednn_addmm(&out, a, b, 0.0).unwrap_or_else(|e| panic!("{e}"));
    out
}

/// `out += a · b` in place for 2-D tensors; not recorded for autograd.
pub fn addmm_(out: &mut Tensor, a: &Tensor, b: &Tensor) {
    if onednn_applies(&[out, a, b]) && out.is_contiguous() {
        onednn_addmm(out, a, b, 1.0).unwrap_or_else(|e| panic!("{e}"));
    } else {
        let _ = out.addmm_(a, b);
    }
}

/// `out = beta·out + a·b` through oneDNN, or libtorch's message.
fn onednn_addmm(out: &Tensor, a: &Tensor, b: &Tensor, beta: f32) -> Result<(), String> {
    let mut err = [0 as c_char; 4096];
    let failed = unsafe { tunebook_onednn_addmm(out.as_ptr(), a.as_ptr(), b.as_ptr(), beta, err.as_mut_ptr(), err.len()) };
    if failed != 0 {
        return Err(format!("matmul: {}", crate::shim::error_message(&err)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_forward_and_backward_match_libtorch() {
        tch::manual_seed(1);
        let x = Tensor::randn([2, 5, 16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let w = Tensor::randn([12, 16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let b = Tensor::randn([12], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let upstream = Tensor::randn([2, 5, 12], (Kind::Float, Device::Cpu));
        let y = linear(&x, &w, Some(&b));
        (&y * &upstream).sum(Kind::Float).backward();
        let grads: Vec<Tensor> = [&x, &w, &b].iter().map(|t| t.grad().copy()).collect();
        for t in [&x, &w, &b] {
            let _ = t.grad().zero_();
        }
        // libtorch's own linear (the switch is global and tests share the process).
        let expected = x.linear(&w, Some(&b));
        (&expected * &upstream).sum(Kind::Float).backward();
        assert!(y.allclose(&expected, 1e-4, 1e-4, false));
        for (ours, theirs) in grads.iter().zip([&x, &w, &b]) {
            assert!(ours.allclose(&theirs.grad(), 1e-4, 1e-4, false), "{ours} vs {}", theirs.grad());
        }
    }

    #[test]
    fn frozen_weight_gets_no_gradient_and_input_does() {
        let x = Tensor::randn([3, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let w = Tensor::randn([2, 4], (Kind::Float, Device::Cpu));
        linear(&x, &w, None).sum(Kind::Float).backward();
        assert!(!w.grad().defined());
        let expected = w.sum_dim_intlist([0i64].as_slice(), true, Kind::Float).expand([3, 4], false);
        assert!(x.grad().allclose(&expected, 1e-5, 1e-5, false));
    }

    #[test]
    fn products_with_transposed_operands_and_accumulation() {
        let a = Tensor::randn([7, 5], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([7, 3], (Kind::Float, Device::Cpu));
        assert!(mm(&a.tr(), &b).allclose(&a.tr().matmul(&b), 1e-5, 1e-5, false));
        let mut out = Tensor::ones([5, 3], (Kind::Float, Device::Cpu));
        addmm_(&mut out, &a.tr(), &b);
        assert!(out.allclose(&(a.tr().matmul(&b) + 1.0), 1e-5, 1e-5, false));
    }

    #[test]
    fn onednn_is_the_default_with_the_pypi_libtorch() {
        // The x86-64 wheels carry oneDNN; only the variable may turn it off.
        if std::env::var_os("TUNEBOOK_CPU_MATMUL").is_none() {
            assert_eq!(cpu_matmul(), CpuMatmul::OneDnn);
        }
    }

    #[test]
    fn other_dtypes_take_libtorchs_path() {
        let x = Tensor::randn([3, 4], (Kind::Double, Device::Cpu));
        let w = Tensor::randn([2, 4], (Kind::Double, Device::Cpu));
        assert_eq!(linear(&x, &w, None).kind(), Kind::Double);
    }
}
