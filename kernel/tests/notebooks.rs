//! Every tutorial in notebooks/ runs top to bottom through nbclient against the installed
//! kernel with the real library preloaded, as a user runs it in JupyterLab; each test then
//! checks what the user would look at (tables, live charts, generations, saved files).
//!
//! Ignored in a plain `cargo test` (each trains a model for a minute or more);
//! `scripts/test.sh` runs them with `--ignored`, on CI too (all seven: 13 minutes on 2 cores;
//! the JupyterLab one only where Chromium is installed, which CI skips).
//!
//! The first test installs the kernelspec into a private Jupyter path, which prebuilds the
//! library for notebook cells from the workspace's own build (about a minute; seconds when
//! nothing changed). Notebooks run one at a time: each trains a model and wants both cores.
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

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
        // `install` also builds the library template the kernel preloads from.
        run_checked(Command::new(kernel_binary()).arg("install").arg("--prefix").arg(&prefix), "installing the kernelspec");
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

/// Notebooks run one at a time: each trains a model and wants both cores.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A scratch copy of notebooks/ (without earlier runs' outputs) for `what`.
fn scratch_notebooks(what: &str) -> PathBuf {
    let scratch = std::env::temp_dir().join(format!("tunebook-notebook-{}-{what}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    copy_tree(&repo_root().join("notebooks"), &scratch);
    scratch
}

fn python() -> PathBuf {
    std::env::var_os("TUNEBOOK_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

/// Executes `notebooks/<name>` in a scratch copy of the folder; panics with the failing
/// cell's error. Returns run_notebook.py's summary.
fn execute(name: &str) -> Value {
    let _turn = one_at_a_time();
    let jupyter = jupyter_path();
    let root = repo_root();
    let scratch = scratch_notebooks(name);
    let executed = executed_dir().join(name);
    let python = python();
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
#[ignore = "runs a tutorial notebook (1-3 min each, 13 min all): scripts/test.sh runs them, CI included"]
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

#[test]
#[ignore = "runs a tutorial notebook (1-3 min each, 13 min all): scripts/test.sh runs them, CI included"]
fn data_preparation_reports_errors_cleaning_packing_and_round_trips_parquet() {
    let run = execute("02-data-preparation.ipynb");
    let loaded = all_text(outputs(&run, "data::chatterbot()"));
    assert!(loaded.contains("pairs;"), "row count printed: {loaded}");
    let broken = all_text(outputs(&run, "broken.jsonl"));
    assert!(broken.contains("error:") && broken.contains("broken.jsonl") && broken.contains("response"), "the error names the file and the field: {broken}");
    let report = all_text(outputs(&run, "corpus.clean("));
    assert!(report.to_lowercase().contains("duplicate"), "cleaning report lists the duplicate step: {report}");
    assert!(!with_mime(outputs(&run, "train_tokens.length_histogram()"), "image/svg+xml").is_empty(), "token histogram chart");
    let padding = all_text(outputs(&run, "Padding in batches"));
    assert!(padding.contains("packed to 256"), "{padding}");
    let reloaded = all_text(outputs(&run, "chatterbot-train.parquet"));
    assert!(reloaded.contains("identical: true"), "parquet round trip: {reloaded}");
}

#[test]
#[ignore = "runs a tutorial notebook (1-3 min each, 13 min all): scripts/test.sh runs them, CI included"]
fn classification_trains_minilm_keeps_the_best_epoch_and_scores_the_test_split() {
    let run = execute("03-classification-full-finetune.ipynb");
    assert!(!with_mime(outputs(&run, "reviews.label_chart()"), "image/svg+xml").is_empty(), "label distribution chart");
    let head = all_text(outputs(&run, "FullFineTuning::new()"));
    assert!(head.contains("100"), "every parameter trains: {head}");

    let training = all_text(outputs(&run, "trainer.train()"));
    assert!(training.contains("best checkpoint"), "the summary names the best checkpoint: {training}");
    assert!(!with_mime(outputs(&run, "metric_chart("), "image/svg+xml").is_empty(), "F1 per epoch chart");

    let test = outputs(&run, "trainer.predict(&test_set)");
    let report = all_text(test);
    for class in ["negative", "neutral", "positive"] {
        assert!(report.contains(class), "per-class scores name {class}: {report}");
    }
    assert!(!with_mime(test, "image/svg+xml").is_empty(), "confusion matrix heatmap");
    // Negative and positive are ~47 % each, neutral ~5 %: always-the-majority scores ~0.47.
    let after = report.split("Classification report: accuracy ").nth(1).unwrap_or_else(|| panic!("report title: {report}"));
    let accuracy: f64 = after.split(|c: char| !(c.is_ascii_digit() || c == '.')).next().unwrap().parse().unwrap();
    assert!(accuracy > 0.65, "test accuracy {accuracy}");
}

/// The numbers in a cell's text outputs, in order.
fn numbers(text: &str) -> Vec<f64> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-'))
        .filter_map(|word| word.trim_matches(|c| c == '.' || c == 'e' || c == '-').parse().ok())
        .collect()
}

#[test]
#[ignore = "runs a tutorial notebook (1-3 min each, 13 min all): scripts/test.sh runs them, CI included"]
fn qlora_measures_memory_of_full_lora_and_qlora_and_plots_it() {
    let run = execute("04-qlora.ipynb");
    let table = all_text(outputs(&run, "let costs"));
    // Rows of the text table: index, method, trainable, weights MiB, peak MiB, s / step.
    let row = |method: &str| -> (f64, f64) {
        let line = table.lines().find(|l| l.split_whitespace().nth(1) == method.split_whitespace().next() && l.contains(method)).unwrap_or_else(|| panic!("cost table row {method}: {table}"));
        let values = numbers(line);
        (values[values.len() - 3], values[values.len() - 2])
    };
    let (full, lora, qlora) = (row("full"), row("LoRA r=8"), row("QLoRA r=8 (NF4)"));
    let checkpointed = row("QLoRA + checkpointing");
    assert!(qlora.0 < 0.4 * lora.0, "4-bit weights take well under half the memory: {qlora:?} vs {lora:?}");
    assert!(lora.1 < full.1 && qlora.1 < full.1, "full fine-tuning peaks highest: {full:?} {lora:?} {qlora:?}");
    // Activations dominate a step's peak; recomputing them is what takes QLoRA below LoRA
    // (the notebook says so).
    assert!(checkpointed.1 < qlora.1 && checkpointed.1 < lora.1, "checkpointing lowers the peak: {checkpointed:?} vs {qlora:?}, {lora:?}");
    assert_eq!(with_mime(outputs(&run, "Peak memory while training"), "image/svg+xml").len(), 1, "peak memory chart");
    assert_eq!(with_mime(outputs(&run, "Weights held by the model"), "image/svg+xml").len(), 1, "weights chart");
    let bits = numbers(&all_text(outputs(&run, "storage.bits_per_parameter()")));
    let per_parameter = *bits.last().unwrap_or_else(|| panic!("bits per parameter printed: {bits:?}"));
    assert!((4.0..=4.2).contains(&per_parameter), "NF4 with double quantization: {per_parameter} bits per parameter");
}

#[test]
#[ignore = "runs a tutorial notebook (1-3 min each, 13 min all): scripts/test.sh runs them, CI included"]
fn adapters_and_prompt_tuning_are_compared_on_one_task() {
    let run = execute("05-adapters-and-prompt-tuning.ipynb");
    let table = all_text(outputs(&run, "let results"));
    for method in ["LoRA r=8", "Houlsby 32", "Pfeiffer 32", "prompt tuning 16"] {
        assert!(table.contains(method), "comparison row {method}: {table}");
    }
    let curves = with_mime(outputs(&run, "Training loss by method"), "image/svg+xml");
    assert_eq!(curves.len(), 1, "one chart with every method's curve");
    let svg = curves[0]["svg"].as_str().unwrap();
    assert!(svg.contains("Houlsby 32") && svg.contains("prompt tuning 16"), "legend names the methods");
}

#[test]
#[ignore = "runs a tutorial notebook (1-3 min each, 13 min all): scripts/test.sh runs them, CI included"]
fn sweep_ranks_learning_rate_by_rank_trials_and_plots_their_curves() {
    let run = execute("06-hyperparameter-sweep.ipynb");
    let table = all_text(outputs(&run, "Sweep::grid"));
    assert!(table.contains("learning_rate") && table.contains("eval_loss"), "results table: {table}");
    assert_eq!(with_mime(outputs(&run, "results.curves()"), "image/svg+xml").len(), 1, "all trials on one chart");
}

#[test]
#[ignore = "runs a tutorial notebook (1-3 min each, 13 min all): scripts/test.sh runs them, CI included"]
fn export_reloads_the_adapter_merges_and_writes_a_hugging_face_folder_with_equal_logits() {
    let run = execute("07-evaluate-and-export.ipynb");
    let metrics = all_text(outputs(&run, "trainer.evaluate()?"));
    assert!(metrics.contains("perplexity") && metrics.contains("exact_match"), "metrics table: {metrics}");
    for (cell, what) in [("peft::load", "after reload"), ("peft::merge", "after merge"), ("save_pretrained", "after export and reload")] {
        let text = all_text(outputs(&run, cell));
        let line = text.lines().find(|l| l.contains(what)).unwrap_or_else(|| panic!("{cell}: {text}"));
        let difference = *numbers(line).last().unwrap();
        assert!(difference <= 1e-3, "{what}: logits differ by {difference}");
    }
    let files = all_text(outputs(&run, "save_pretrained"));
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(files.contains(file), "exported folder lists {file}: {files}");
    }
}

/// JupyterLab in headless Chromium opens the quickstart, runs its first code cell with this
/// kernel and shows the output. The screenshot (the README's picture) is written to
/// `<target>/debug/executed-notebooks/quickstart-in-jupyterlab.png`.
#[test]
#[ignore = "runs a tutorial notebook (1-3 min each, 13 min all): scripts/test.sh runs them, CI included"]
fn jupyterlab_in_headless_chromium_runs_a_cell_and_shows_its_output() {
    let _turn = one_at_a_time();
    let jupyter = jupyter_path();
    let scratch = scratch_notebooks("jupyterlab");
    let screenshot = executed_dir().join("quickstart-in-jupyterlab.png");
    let _ = std::fs::remove_file(&screenshot);
    let output = Command::new(python())
        .arg(repo_root().join("tests/python/lab_screenshot.py"))
        .arg(&scratch)
        .arg("01-quickstart.ipynb")
        .arg(&screenshot)
        .env("JUPYTER_PATH", jupyter)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "lab_screenshot.py failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    let shown = summary["output"].as_str().unwrap();
    assert!(shown.contains("llama") && shown.contains("134,515,008"), "JupyterLab shows the model summary under the cell: {shown}");
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a real screenshot: {} bytes", png.len());
    let _ = std::fs::remove_dir_all(&scratch);
}
