//! Protocol tests: start the kernel binary with a generated connection file and talk to it
//! with Python's jupyter_client (tests/python/kernel_protocol.py), as Jupyter does.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run_scenario(scenario: &str) {
    let root = repo_root();
    let python = std::env::var_os("TUNEBOOK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let output = Command::new(&python)
        .arg(root.join("tests/python/kernel_protocol.py"))
        .arg(scenario)
        .env("TUNEBOOK_KERNEL_BIN", env!("CARGO_BIN_EXE_tunebook-kernel"))
        .env("TUNEBOOK_TEST_MINILIB", Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilib"))
        .output()
        .unwrap_or_else(|error| panic!("running {}: {error}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "scenario {scenario} failed:\n{stdout}\n{stderr}");
}

/// kernel_info during startup, execute with live stdout, execute_result, compile error and
/// panic pointing at cell lines, TUNEBOOK_DISPLAY / TUNEBOOK_CLEAR, evcxr rich content,
/// is_complete, history, comm_info, completion, a forged message ignored, stop_on_error.
#[test]
fn basic_conversation() {
    run_scenario("basic");
}

/// interrupt_request stops a running cell; the kernel keeps working.
#[test]
fn interrupt_running_cell() {
    run_scenario("interrupt");
}

/// A cell reading a line (evcxr_input) sends input_request on stdin and gets the reply.
#[test]
fn input_request_on_stdin() {
    run_scenario("stdin");
}

/// shutdown_request: reply, exit status 0, build directory removed.
#[test]
fn shutdown_cleans_up() {
    run_scenario("shutdown");
}

/// The real preload path with a small stand-in library: dylib facade, prelude import,
/// statics shared between cells, kernel_info answered while it builds, library displays,
/// graceful SIGINT handling that keeps all variables.
#[test]
fn preload_stand_in_library() {
    run_scenario("preload");
}

/// The real tunebook library (libtorch, polars, tokenizers) through the kernel's preload.
/// Ignored by default: a cold build of the dependencies takes well over 5 minutes; after
/// `tunebook-kernel warm` the preload copies the prebuilt template and takes seconds.
#[test]
#[ignore]
fn preload_real_tunebook() {
    run_scenario("real");
}
