//! What the Rust callers of the C++ shim (`lib/shim/`, compiled by build.rs) share.
use std::ffi::{c_char, CStr};
use tch::Tensor;
use torch_sys::C_tensor;

/// The tensor a shim function returned, called with an error buffer.
///
/// # Panics
/// With `what` and the shim's message when it returned null (libtorch failed), as tch's own
/// operations panic.
pub(crate) fn tensor_from(what: &str, call: impl FnOnce(*mut c_char, usize) -> *mut C_tensor) -> Tensor {
    let mut err = [0 as c_char; 4096];
    let out = call(err.as_mut_ptr(), err.len());
    if out.is_null() {
        panic!("{what}: {}", error_message(&err));
    }
    unsafe { Tensor::from_ptr(out) }
}

/// The error text the shim wrote into `err`: NUL-terminated, or the whole buffer if the
/// text filled it.
pub(crate) fn error_message(err: &[c_char]) -> String {
    let bytes: Vec<u8> = err.iter().map(|&c| c as u8).collect();
    match CStr::from_bytes_until_nul(&bytes) {
        Ok(text) => text.to_string_lossy().into_owned(),
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    }
}
