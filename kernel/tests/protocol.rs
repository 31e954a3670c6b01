//! Protocol tests: start the kernel binary with a generated connection file and talk to it
//! with Python's jupyter_client (tests/python/kernel_protocol.py), as Jupyter does; run the
//! Jupyter conformance suite against it (tests/python/kernel_conformance.py); install it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{PoisonError, RwLock};

/// The soak test measures latency, so it runs alone; the other scenarios share the machine.
static MACHINE: RwLock<()> = RwLock::new(());

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Runs `tests/python/<script> <args>` with the kernel binary; fails with its output.
fn run_python(script: &str, args: &[&str], alone: bool) {
    let (_shared, _alone);
    if alone {
        _alone = MACHINE.write().unwrap_or_else(PoisonError::into_inner);
    } else {
        _shared = MACHINE.read().unwrap_or_else(PoisonError::into_inner);
    }
    let root = repo_root();
    let python = std::env::var_os("TUNEBOOK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let output = Command::new(&python)
        .arg(root.join("tests/python").join(script))
        .args(args)
        .env("TUNEBOOK_KERNEL_BIN", env!("CARGO_BIN_EXE_tunebook-kernel"))
        .env("TUNEBOOK_TEST_MINILIB", Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilib"))
        .output()
        .unwrap_or_else(|error| panic!("running {}: {error}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "{script} {args:?} failed:\n{stdout}\n{stderr}");
}

fn run_scenario(scenario: &str) {
    run_python("kernel_protocol.py", &[scenario], false);
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

/// The Jupyter project's conformance suite (jupyter_kernel_test 0.7.0) with every sample
/// filled in, against a kernel started through a kernelspec `install --prefix` wrote.
#[test]
fn jupyter_kernel_test_conformance() {
    run_python("kernel_conformance.py", &[], false);
}

/// 500 consecutive small cells: median latency of the last 50 within 1.5x of the first 50,
/// kernel and cell process RSS within a bound (figures printed; run with --nocapture).
#[test]
fn soak_500_cells() {
    run_python("kernel_protocol.py", &["soak"], true);
}

/// `install` without `--no-warm`, offline, for a stand-in library: kernelspec with the
/// library's environment and logos, then the prebuilt library template (the `warm` step,
/// which also checks that a kernel can load it).
#[test]
fn install_writes_kernelspec_and_warms_offline() {
    let _shared = MACHINE.read().unwrap_or_else(PoisonError::into_inner);
    let scratch = std::env::temp_dir().join(format!("tb-install-warm-{}", std::process::id()));
    let lib = scratch.join("lib");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilib"), &lib);
    let cache = scratch.join("cache");
    let prefix = scratch.join("prefix");
    let output = Command::new(env!("CARGO_BIN_EXE_tunebook-kernel"))
        .args(["install", "--prefix"])
        .arg(&prefix)
        .env("TUNEBOOK_LIB_DIR", &lib)
        .env("TUNEBOOK_KERNEL_CACHE", &cache)
        .env("CARGO_NET_OFFLINE", "true")
        .output()
        .unwrap();
    let log = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "install failed:\n{log}");
    assert!(log.contains("template ready"), "{log}");

    let spec_dir = prefix.join("share/jupyter/kernels/tunebook");
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(spec_dir.join("kernel.json")).unwrap()).unwrap();
    assert_eq!(spec["env"]["TUNEBOOK_LIB_DIR"], lib.canonicalize().unwrap().display().to_string());
    assert_eq!(spec["env"]["TUNEBOOK_KERNEL_CACHE"], cache.display().to_string());
    for logo in ["logo-32x32.png", "logo-64x64.png", "logo-svg.svg"] {
        assert!(std::fs::metadata(spec_dir.join(logo)).unwrap().len() > 0, "{logo}");
    }
    let template = cache.join("template");
    assert!(template.join("tunebook-kernel.stamp").is_file(), "no current template in {}", template.display());
    let facade = template.join("lib").join("libtunebook_notebook.so");
    assert!(facade.is_file(), "template has no prebuilt facade at {}", facade.display());

    let output = Command::new(env!("CARGO_BIN_EXE_tunebook-kernel")).args(["install", "--bogus"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--no-warm"), "usage names --no-warm");
    std::fs::remove_dir_all(&scratch).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// The real tunebook library (libtorch, polars, tokenizers) through the kernel's preload.
/// Ignored by default: a cold build of the dependencies takes well over 5 minutes; after
/// `tunebook-kernel warm` the preload copies the prebuilt template and takes seconds.
#[test]
#[ignore]
fn preload_real_tunebook() {
    run_scenario("real");
}
