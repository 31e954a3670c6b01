//! What the Rust callers of the C++ shim (`lib/shim/`, compiled by build.rs) share.
use std::ffi::{c_char, CStr};

/// The error text the shim wrote into `err`: NUL-terminated, or the whole buffer if the
/// text filled it.
pub(crate) fn error_message(err: &[c_char]) -> String {
    let bytes: Vec<u8> = err.iter().map(|&c| c as u8).collect();
    match CStr::from_bytes_until_nul(&bytes) {
        Ok(text) => text.to_string_lossy().into_owned(),
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    }
}
