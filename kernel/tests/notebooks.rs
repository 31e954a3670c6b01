//! Every tutorial in notebooks/ runs top to bottom through nbclient against the installed
//! kernel with the real library preloaded, as a user runs it in JupyterLab; each test then
//! checks what the user would look at (tables, live charts, generations, saved files).
//!
//! The first test installs the kernelspec into a private Jupyter path and runs
//! `tunebook-kernel warm` (cold: ~20 minutes on 2 cores; once built: seconds). Notebooks run
//! one at a time: each trains a model and wants both cores.
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn kernel_binary() -> &'static str {
    env!("CARGO_BIN_EXE_tunebook-kernel")
}

fn run_checked(command: &mut Command, what: &str) {
    let status = command.status().unwrap_or_else(|error| panic!("{what}: {error}"));
    assert!(status.success(), "{what} failed with {status}");
}

/// The Jupyter data path holding the `tunebook` kernelspec, with the library template built.
fn jupyter_path() -> &'static Path {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(|| {
        let prefix = std::env::temp_dir().join(format!("tunebook-notebook-tests-{}", std::process::id()));
        run_checked(Command::new(kernel_binary()).arg("install").arg("--prefix").arg(&prefix), "installing the kernelspec");
        run_checked(Command::new(kernel_binary()).arg("warm"), "tunebook-kernel warm");
        prefix.join("share").join("jupyter")
    })
}

/// Where executed copies go, for a look after a failure: `<target>/notebooks/`.
fn executed_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target_profile = exe.parent().and_then(Path::parent).unwrap();
    let dir = target_profile.join("executed-notebooks");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "runs" && entry.file_name() != ".ipynb_checkpoints" {
                copy_tree(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Executes `notebooks/<name>` in a scratch copy of the folder; panics with the failing
/// cell's error. Returns run_notebook.py's summary.
fn execute(name: &str) -> Value {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let jupyter = jupyter_path();
    let root = repo_root();
    let scratch = std::env::temp_dir().join(format!("tunebook-notebook-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    copy_tree(&root.join("notebooks"), &scratch);
    let executed = executed_dir().join(name);
    let python = std::env::var_os("TUNEBOOK_PYTHON").map(PathBuf::from).unwrap_or_else(|| root.join(".venv/bin/python"));
    let output = Command::new(&python)
        .arg(root.join("tests/python/run_notebook.py"))
        .arg(scratch.join(name))
        .arg(&executed)
        .env("JUPYTER_PATH", jupyter)
        .output()
        .unwrap_or_else(|error| panic!("running {}: {error}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|error| {
        panic!("{name}: no summary ({error})\nstdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&output.stderr))
    });
    let _ = std::fs::remove_dir_all(&scratch);
    for cell in summary["cells"].as_array().unwrap() {
        println!("{:>7.1} s  {}", cell["seconds"].as_f64().unwrap_or(f64::NAN), cell["source"].as_str().unwrap().lines().next().unwrap_or(""));
    }
    assert!(summary["error"].is_null(), "{name} failed (executed copy: {}):\n{}", executed.display(), summary["error"]);
    summary
}

/// The outputs of the code cell whose source contains `needle`.
fn outputs<'a>(summary: &'a Value, needle: &str) -> &'a Vec<Value> {
    summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|cell| cell["source"].as_str().unwrap().contains(needle))
        .unwrap_or_else(|| panic!("no cell contains {needle:?}"))["outputs"]
        .as_array()
        .unwrap()
}

fn with_mime<'a>(outputs: &'a [Value], mime: &str) -> Vec<&'a Value> {
    outputs.iter().filter(|o| o["mimes"].as_array().unwrap().iter().any(|m| m == mime)).collect()
}

fn all_text(outputs: &[Value]) -> String {
    outputs.iter().map(|o| format!("{}\n{}\n", o["text"].as_str().unwrap_or(""), o["html"].as_str().unwrap_or(""))).collect()
}

#[test]
fn quickstart_trains_lora_with_a_live_curve_and_saves_a_peft_adapter() {
    let run = execute("01-quickstart.ipynb");
    let summary = all_text(outputs(&run, "model.summary()"));
    assert!(summary.contains("134,515,008") || summary.contains("134515008") || summary.contains("135"), "model summary: {summary}");
    let data = all_text(outputs(&run, "data::quickstart()"));
    assert!(data.contains("What are the common symptoms of the flu?"), "dataset table shows the first prompt: {data}");
    assert!(!with_mime(outputs(&run, "length_histogram()"), "image/svg+xml").is_empty(), "token histogram chart");

    let training = outputs(&run, "trainer.train()");
    let charts = with_mime(training, "image/svg+xml");
    // One chart refreshed in place, not a new picture per step.
    assert!((1..=2).contains(&charts.len()), "live chart outputs: {}", charts.len());
    assert!(charts.iter().any(|c| c["svg"].as_str().unwrap().contains("loss")), "the live chart plots the loss");
    let train_text = all_text(training);
    assert!(!train_text.contains("panicked"), "{train_text}");

    let compared = all_text(outputs(&run, "compare_generations"));
    for heading in ["before", "after"] {
        assert!(compared.to_lowercase().contains(heading), "side-by-side generations: {compared}");
    }
    let saved = all_text(outputs(&run, "peft::save"));
    assert!(saved.contains("adapter_config.json") && saved.contains("adapter_model.safetensors"), "{saved}");
}
