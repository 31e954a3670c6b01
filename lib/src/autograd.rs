//! Custom autograd functions written in Rust, through the C++ shim (`lib/shim/autograd.cpp`):
//! [`checkpoint`] (recompute in the backward pass instead of keeping activations) and
//! [`function`] (any forward with a hand-written backward).
//!
//! ```
//! use tunebook::{autograd, tch::{Kind, Tensor}};
//! let w = Tensor::from_slice(&[2.0f32, 3.0]).set_requires_grad(true);
//! let x = Tensor::from_slice(&[1.0f32, 1.0]);
//! let weight = w.shallow_clone();
//! // Nothing from inside the closure is kept; backward runs it again.
//! let y = autograd::checkpoint(&x, move |x| (x * &weight).tanh());
//! y.sum(Kind::Float).backward();
//! let expected = 1.0 - 2.0f64.tanh().powi(2);
//! assert!((w.grad().double_value(&[0]) - expected).abs() < 1e-6);
//! ```
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::Tensor;
use torch_sys::C_tensor;

type ForwardFn = unsafe extern "C" fn(*mut c_void, *const C_tensor, *mut c_char, usize) -> *mut C_tensor;
type BackwardFn = unsafe extern "C" fn(*mut c_void, *const C_tensor, *const C_tensor, *mut c_char, usize) -> *mut C_tensor;
type DropFn = unsafe extern "C" fn(*mut c_void);

extern "C" {
    fn tunebook_apply_function(
        input: *const C_tensor,
        ctx: *mut c_void,
        forward: ForwardFn,
        backward: BackwardFn,
        drop: DropFn,
        keep_input: i32,
        err: *mut c_char,
        cap: usize,
    ) -> *mut C_tensor;
    fn tunebook_backward_with_grad(output: *const C_tensor, grad: *const C_tensor, err: *mut c_char, cap: usize) -> i32;
    fn tunebook_grad_enabled() -> i32;
}

/// Whether operations are being recorded for a backward pass (not inside `tch::no_grad`).
pub fn grad_enabled() -> bool {
    unsafe { tunebook_grad_enabled() != 0 }
}

/// Whether the pass being computed is one that will be differentiated, so dropout should
/// drop (tunebook models have no train/eval switch; evaluation runs under `tch::no_grad`):
/// gradients are recorded, or this is the forward pass of a checkpointed layer
/// (which runs with recording off and is replayed, recording, in the backward pass).
pub fn training() -> bool {
    grad_enabled() || CHECKPOINTED_FORWARD.with(|depth| depth.get() > 0)
}

thread_local! {
    static CHECKPOINTED_FORWARD: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// `output.backward()` with an incoming gradient (`torch.autograd.backward(output, grad)`):
/// accumulates into every leaf's `.grad`.
///
/// # Panics
/// Like tch's `backward`, when libtorch reports an error.
pub fn backward_with_grad(output: &Tensor, grad: &Tensor) {
    let mut err = [0 as c_char; 4096];
    let failed = unsafe { tunebook_backward_with_grad(output.as_ptr(), grad.as_ptr(), err.as_mut_ptr(), err.len()) };
    if failed != 0 {
        panic!("backward: {}", crate::shim::error_message(&err));
    }
}

/// `forward(input)` recorded as one autograd node whose input gradient is
/// `backward(grad_output)`.
///
/// `forward` runs with gradients off; autograd keeps only what the closures own (not even
/// `input`: capture what the backward pass needs).
///
/// # Panics
/// When a closure panics or libtorch fails, with that message (as tch's operations do).
pub fn function<F, B>(input: &Tensor, forward: F, backward: B) -> Tensor
where
    F: Fn(&Tensor) -> Tensor + Send + 'static,
    B: Fn(&Tensor) -> Tensor + Send + 'static,
{
    apply(input, false, Box::new(forward), Box::new(move |_, _, grad_output| backward(grad_output)))
}

/// Gradient checkpointing: `f(input)` whose activations are not kept but recomputed
/// (with the same dropout masks) when the backward pass reaches it. Parameters `f` uses
/// receive their gradients as usual.
pub fn checkpoint<F>(input: &Tensor, f: F) -> Tensor
where
    F: Fn(&Tensor) -> Tensor + Send + 'static,
{
    let forward = move |x: &Tensor| {
        CHECKPOINTED_FORWARD.with(|depth| depth.set(depth.get() + 1));
        let output = catch_unwind(AssertUnwindSafe(|| f(x)));
        CHECKPOINTED_FORWARD.with(|depth| depth.set(depth.get() - 1));
        output.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    };
    apply(input, true, Box::new(forward), Box::new(|forward, input, grad_output| {
        let x = input.detach().set_requires_grad(true);
        let output = forward(&x);
        backward_with_grad(&output, grad_output);
        x.grad()
    }))
}

type ForwardClosure = Box<dyn Fn(&Tensor) -> Tensor + Send>;
/// Gets the forward closure too, so checkpointing can run it again.
type BackwardClosure = Box<dyn Fn(&dyn Fn(&Tensor) -> Tensor, &Tensor, &Tensor) -> Tensor + Send>;

struct Closures {
    forward: ForwardClosure,
    backward: BackwardClosure,
}

/// `keep_input`: autograd keeps the input for the backward pass and replays the forward
/// pass's random-number state there (checkpointing).
fn apply(input: &Tensor, keep_input: bool, forward: ForwardClosure, backward: BackwardClosure) -> Tensor {
    let closures = Box::new(Closures { forward, backward });
    let ctx = Box::into_raw(closures) as *mut c_void;
    crate::shim::tensor_from("autograd function", |err, cap| unsafe {
        tunebook_apply_function(input.as_ptr(), ctx, call_forward, call_backward, drop_closures, keep_input as i32, err, cap)
    })
}

unsafe extern "C" fn call_forward(ctx: *mut c_void, input: *const C_tensor, err: *mut c_char, cap: usize) -> *mut C_tensor {
    let closures = &*(ctx as *const Closures);
    let input = Tensor::clone_from_ptr(input as *mut C_tensor);
    hand_back(catch_unwind(AssertUnwindSafe(|| (closures.forward)(&input))), err, cap)
}

unsafe extern "C" fn call_backward(ctx: *mut c_void, input: *const C_tensor, grad: *const C_tensor, err: *mut c_char, cap: usize) -> *mut C_tensor {
    let closures = &*(ctx as *const Closures);
    let input = Tensor::clone_from_ptr(input as *mut C_tensor);
    let grad = Tensor::clone_from_ptr(grad as *mut C_tensor);
    hand_back(catch_unwind(AssertUnwindSafe(|| (closures.backward)(&*closures.forward, &input, &grad))), err, cap)
}

unsafe extern "C" fn drop_closures(ctx: *mut c_void) {
    drop(Box::from_raw(ctx as *mut Closures));
}

/// Ownership of the result goes to C++; a panic becomes the error message.
unsafe fn hand_back(result: std::thread::Result<Tensor>, err: *mut c_char, cap: usize) -> *mut C_tensor {
    match result {
        Ok(mut tensor) => {
            let ptr = tensor.as_mut_ptr();
            std::mem::forget(tensor);
            ptr
        }
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a Rust autograd callback panicked");
            let bytes = text.as_bytes();
            let n = bytes.len().min(cap.saturating_sub(1));
            std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, err, n);
            *err.add(n) = 0;
            std::ptr::null_mut()
        }
    }
}

