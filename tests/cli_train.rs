//! `tunebook train` and `tunebook sweep` end to end: the real binary on every example config
//! in notebooks/configs/, shrunk with `--set` (tiny batches and step counts) and pointed at
//! temporary folders. Covers the saved adapters, resume after Ctrl-C, early stopping of bad
//! sweep trials, and errors that name the file and the field.
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tunebook_tests::{tunebook_cli as tunebook, workspace};

fn config(name: &str) -> String {
    workspace().join("notebooks/configs").join(name).display().to_string()
}

/// `--set` flags for each `KEY=VALUE`.
fn sets(pairs: &[String]) -> Vec<String> {
    pairs.iter().flat_map(|p| ["--set".to_string(), p.clone()]).collect()
}

/// `tunebook SUBCOMMAND notebooks/configs/NAME --set ...` arguments.
fn command_line(subcommand: &str, name: &str, settings: &[String]) -> Vec<String> {
    let mut args = vec![subcommand.to_string(), config(name)];
    args.extend(sets(settings));
    args
}

/// Small enough for CPU tests of SmolLM2: 2 rows of at most 64 tokens per step.
fn tiny_llm(output_dir: &Path) -> Vec<String> {
    vec![
        format!("training.output_dir={}", output_dir.display()),
        "training.per_device_train_batch_size=2".into(),
        "data.max_len=64".into(),
    ]
}

fn run(args: &[String]) -> Output {
    let output = tunebook().args(args).output().unwrap();
    eprintln!("tunebook {}\n{}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    output
}

fn assert_success(output: &Output) {
    assert!(output.status.success(), "status {:?}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
}

/// The events of a run folder's `log.jsonl`.
fn events(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("log.jsonl")).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// `(step, loss)` of the logged steps, checking every loss is finite.
fn step_losses(dir: &Path) -> Vec<(u64, f64)> {
    let steps: Vec<(u64, f64)> = events(dir)
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| (e["step"].as_u64().unwrap(), e["loss"].as_f64().unwrap()))
        .collect();
    assert!(steps.iter().all(|(_, l)| l.is_finite() && *l > 0.0), "{steps:?}");
    steps
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn ctrl_c_saves_a_checkpoint_exits_130_and_resume_continues_the_step_count() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut settings = tiny_llm(&out);
    settings.push("training.max_steps=50".into());
    let args = command_line("train", "quickstart-lora.toml", &settings);
    let mut child = tunebook().args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();

    // Interrupt once training has begun, i.e. a first step is in the log.
    let started = Instant::now();
    while step_losses(&out).is_empty() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("tunebook ended before a step ({status}): {}", String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr));
        }
        assert!(started.elapsed() < Duration::from_secs(900), "no training step within 15 minutes");
        std::thread::sleep(Duration::from_millis(200));
    }
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let stopped_at = step_losses(&out).last().unwrap().0;
    assert!(stopped_at < 50, "{stderr}");
    let checkpoint = out.join(format!("checkpoint-{stopped_at}"));
    assert!(checkpoint.join("trainer_state.json").is_file(), "{stderr}");
    assert!(stderr.contains(&format!("checkpoint saved to {}", checkpoint.display())), "{stderr}");
    assert!(stderr.contains("resume with: tunebook train") && stderr.contains("--resume"), "{stderr}");
    assert!(!out.join("final").exists(), "an interrupted run saves no final weights");

    // Without --resume the folder is refused (it holds a run); with it, the run goes on.
    let again = run(&args);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    let mut resumed_args = args.clone();
    resumed_args.extend(sets(&[format!("training.max_steps={}", stopped_at + 2)]));
    resumed_args.push("--resume".into());
    let resumed = run(&resumed_args);
    assert_success(&resumed);
    let begins: Vec<u64> = events(&out).iter().filter(|e| e["event"] == "train_begin").map(|e| e["start_step"].as_u64().unwrap()).collect();
    assert_eq!(begins, [0, stopped_at]);
    let steps: Vec<u64> = step_losses(&out).iter().map(|(s, _)| *s).collect();
    let expected: Vec<u64> = (1..=stopped_at + 2).collect();
    assert_eq!(steps, expected, "the resumed run continues the step count");

    // The final adapter is in PEFT's format, as the recipe asked.
    let adapter = read_json(&out.join("final/adapter_config.json"));
    assert_eq!(adapter["r"], 8);
    assert_eq!(adapter["lora_alpha"].as_f64(), Some(16.0));
    let mut targets: Vec<&str> = adapter["target_modules"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    targets.sort();
    assert_eq!(targets, ["q_proj", "v_proj"]);
    assert!(out.join("final/adapter_model.safetensors").is_file());
    assert_eq!(read_json(&out.join("final/summary.json"))["global_step"], stopped_at + 2);
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(stdout.contains(&format!("trained {} steps", stopped_at + 2)) && stdout.contains("final weights in"), "{stdout}");
}

#[test]
fn qlora_recipe_trains_and_saves_a_peft_adapter_on_every_linear() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("qlora");
    let mut settings = tiny_llm(&out);
    settings.extend(["training.max_steps=2".into(), "training.logging_steps=1".into(), "data.max_examples=200".into()]);
    assert_success(&run(&command_line("train", "qlora.toml", &settings)));
    assert_eq!(step_losses(&out).len(), 2);
    let adapter = read_json(&out.join("final/adapter_config.json"));
    assert_eq!(adapter["r"], 16);
    assert_eq!(adapter["target_modules"].as_array().unwrap().len(), 7, "all-linear: q k v o gate up down");
    assert!(out.join("final/adapter_model.safetensors").is_file());
    assert!(out.join("checkpoint-2/trainer_state.json").is_file());
}

#[test]
fn full_fine_tuning_recipe_learns_sentiment_and_saves_weights_and_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sentiment");
    let settings: Vec<String> = vec![
        format!("training.output_dir={}", out.display()),
        "training.max_steps=20".into(),
        "training.per_device_train_batch_size=16".into(),
        "training.learning_rate=1e-4".into(),
        "training.logging_steps=1".into(),
        "training.eval_steps=20".into(),
        "training.save_steps=20".into(),
        "data.max_examples=1200".into(),
        "data.max_len=48".into(),
    ];
    let output = run(&command_line("train", "sentiment-full.toml", &settings));
    assert_success(&output);
    let losses: Vec<f64> = step_losses(&out).iter().map(|(_, l)| *l).collect();
    assert_eq!(losses.len(), 20);
    let mean = |ls: &[f64]| ls.iter().sum::<f64>() / ls.len() as f64;
    assert!(mean(&losses[15..]) < mean(&losses[..5]), "the loss goes down: {losses:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("eval_accuracy"));
    let labels = read_json(&out.join("final/labels.json"));
    assert_eq!(labels["id2label"], serde_json::json!({"0": "negative", "1": "neutral", "2": "positive"}));
    assert!(out.join("final/model.safetensors").is_file());
    let recipe = std::fs::read_to_string(out.join("final/recipe.toml")).unwrap();
    assert!(recipe.contains("max_steps = 20") && recipe.contains("kind = \"full\""), "{recipe}");
}

#[test]
fn sweep_runs_a_grid_in_trial_folders_ranks_the_trials_and_prunes_bad_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    // Learning rate 0 cannot learn: those trials fall behind the first one and, with a
    // margin of 0, are stopped at their first evaluation before the last step.
    let settings: Vec<String> = vec![
        format!("sweep.output_dir={}", out.display()),
        "sweep.prune_margin=0.0".into(),
        "sweep.parameters.training.learning_rate=[1e-3, 0.0]".into(),
        "training.max_steps=3".into(),
        "training.eval_steps=1".into(),
        "training.warmup_ratio=0.0".into(),
        "training.per_device_train_batch_size=2".into(),
        "data.max_len=64".into(),
    ];
    let output = run(&command_line("sweep", "sweep-lr-rank.toml", &settings));
    assert_success(&output);
    for trial in 0..4 {
        assert!(out.join(format!("trial-{trial:03}/log.jsonl")).is_file(), "trial {trial}");
    }
    assert!(!out.join("trial-004").exists());

    let results = read_json(&out.join("results.json"));
    let trials = results["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4);
    let metrics: Vec<f64> = trials.iter().map(|t| t["metric"].as_f64().unwrap()).collect();
    assert!(metrics.windows(2).all(|w| w[0] <= w[1]), "best (lowest eval_loss) first: {metrics:?}");
    for trial in trials {
        let learning_rate = trial["params"]["training.learning_rate"].as_f64().unwrap();
        let steps = trial["summary"]["global_step"].as_u64().unwrap();
        assert_eq!(trial["loss_curve"].as_array().unwrap().len() as u64, steps, "every trial's curve is kept");
        if learning_rate == 0.0 {
            assert!(trial["pruned"].as_bool().unwrap() && steps < 3, "{trial}");
        } else if trial["output_dir"].as_str().unwrap().ends_with("trial-000") {
            assert!(!trial["pruned"].as_bool().unwrap() && steps == 3, "{trial}");
        }
    }
    assert_eq!(trials[0]["params"]["training.learning_rate"].as_f64(), Some(1e-3));

    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "rank,trial,method.r,training.learning_rate,eval_loss,status,steps,train_loss");
    assert_eq!(lines.len(), 5);
    let csv_metrics: Vec<f64> = lines[1..].iter().map(|l| l.split(',').nth(4).unwrap().parse().unwrap()).collect();
    assert_eq!(csv_metrics, metrics);
    assert!(std::fs::read_to_string(out.join("loss_curves.svg")).unwrap().contains("<svg"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Sweep by eval_loss") && stdout.contains("pruned") && stdout.contains("best: "), "{stdout}");
}

/// The example configs and the quick-start data copied into `dir` in the repository's
/// layout (`configs/`, `data/`), so their relative paths hold.
fn example_copy(dir: &Path) -> PathBuf {
    let configs = dir.join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for entry in std::fs::read_dir(workspace().join("notebooks/configs")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, configs.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::copy(workspace().join("notebooks/data/quickstart_qa.jsonl"), dir.join("data/quickstart_qa.jsonl")).unwrap();
    configs
}

/// Replaces `from` by `to` in the copied config `name` in `configs`.
fn edit(configs: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let path = configs.join(name);
    let text = std::fs::read_to_string(config(name)).unwrap();
    assert!(text.contains(from), "{name} has no {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn bad_configs_fail_fast_naming_the_file_and_the_field() {
    let _built = tunebook(); // before the clock starts
    let tmp = tempfile::tempdir().unwrap();
    let configs = example_copy(tmp.path());
    let example = std::fs::read_to_string(config("quickstart-lora.toml")).unwrap();
    let max_steps_line = example.lines().position(|l| l == "max_steps = 16").unwrap() + 1;
    let cases = [
        ("max_steps = 16", "max_steps = 16\nlearning_rat = 1e-3", format!("field training.learning_rat (line {}): unknown field `learning_rat`", max_steps_line + 1)),
        ("max_steps = 16", "max_steps = \"ten\"", format!("field training.max_steps (line {max_steps_line}): invalid type: string \"ten\"")),
        ("path = \"../data/quickstart_qa.jsonl\"", "path = \"missing.jsonl\"", format!("field data.path: {}", configs.join("missing.jsonl").display())),
        ("kind = \"lora\"", "kind = \"lora\"\nsize = 64", "field method.size: does not apply to kind = \"lora\"".to_string()),
    ];
    for (from, to, expected) in cases {
        let path = edit(&configs, "quickstart-lora.toml", from, to);
        let started = Instant::now();
        let output = run(&["train".into(), path.display().to_string()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && output.status.code() != Some(130), "{stderr}");
        assert!(stderr.contains(&path.display().to_string()) && stderr.contains(&expected), "expected {expected:?} in {stderr}");
        assert!(started.elapsed() < Duration::from_secs(30), "fails before loading a model");
    }
    let quickstart = config("quickstart-lora.toml");
    let stderr = stderr_of(&["train", &quickstart, "--set", "training.max_steps=ten"]);
    assert!(stderr.contains("field training.max_steps (set to \"ten\" by an override): invalid type"), "{stderr}");
    assert!(stderr_of(&["train", &quickstart, "--set", "max_steps"]).contains("expected KEY=VALUE"));

    // Sweeps check every value of every parameter against the base before the first trial.
    edit(&configs, "quickstart-lora.toml", "", ""); // the base, unedited again
    let sweep = edit(&configs, "sweep-lr-rank.toml", "\"method.r\" = [4, 16]", "\"method.r\" = [4, 16]\n\"training.learning_rat\" = [1]");
    let stderr = stderr_of(&["sweep", &sweep.display().to_string()]);
    assert!(stderr.contains(&sweep.display().to_string()) && stderr.contains("field sweep.parameters.\"training.learning_rat\": value 1"), "{stderr}");
    assert!(stderr.contains("unknown field `learning_rat`"), "{stderr}");
}

fn stderr_of(args: &[&str]) -> String {
    let output = run(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Data-parallel settings for the quick-start recipe: no dropout (its masks depend on how
/// the batch is split) and no evaluation, so runs differ only in how many workers share a step.
fn data_parallel(output_dir: &Path, batch_per_worker: usize, max_steps: usize) -> Vec<String> {
    vec![
        format!("training.output_dir={}", output_dir.display()),
        format!("training.per_device_train_batch_size={batch_per_worker}"),
        format!("training.max_steps={max_steps}"),
        "training.eval_strategy=no".into(),
        "training.save_steps=2".into(),
        "method.dropout=0".into(),
        "data.max_len=64".into(),
    ]
}

/// Every tensor of a safetensors file, flattened, by name.
fn tensors(path: &Path) -> Vec<(String, tch::Tensor)> {
    let mut named = tch::Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

#[test]
fn two_gloo_workers_with_batch_b_train_like_one_process_with_batch_2b() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    assert_success(&run(&command_line("train", "quickstart-lora.toml", &data_parallel(&one, 4, 3))));
    let mut args = command_line("train", "quickstart-lora.toml", &data_parallel(&two, 2, 3));
    args.extend(["--nproc".into(), "2".into()]);
    let output = run(&args);
    assert_success(&output);

    // Same losses and, after 3 AdamW steps, the same adapter weights up to fp32 rounding.
    let (single, parallel) = (step_losses(&one), step_losses(&two));
    assert_eq!(single.len(), 3, "rank 0 alone writes the log: one line per step");
    assert_eq!(parallel.len(), 3, "rank 0 alone writes the log: one line per step");
    for ((_, a), (_, b)) in single.iter().zip(&parallel) {
        assert!((a - b).abs() < 1e-5, "{single:?} vs {parallel:?}");
    }
    let (a, b) = (tensors(&one.join("final/adapter_model.safetensors")), tensors(&two.join("final/adapter_model.safetensors")));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let diff = tunebook_tests::max_abs_diff(x, y);
        assert!(diff < 1e-4, "{name} differs by {diff}");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.matches("trained 3 steps").count(), 1, "only rank 0 reports: {stdout}");
    assert!(two.join("checkpoint-2/trainer_state.json").is_file());

    // A checkpoint continues only with the world size that wrote it.
    let mut resume = command_line("train", "quickstart-lora.toml", &data_parallel(&two, 4, 4));
    resume.push("--resume".into());
    let stderr = String::from_utf8_lossy(&run(&resume).stderr).into_owned();
    assert!(stderr.contains("written by a run of 2 worker(s); resume it with the same number, not 1"), "{stderr}");
}

#[test]
fn a_killed_worker_stops_the_others_with_an_error_and_the_last_checkpoint_stays_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let args = command_line("train", "quickstart-lora.toml", &data_parallel(&out, 1, 200));
    let port = tunebook::distributed::free_port().unwrap().to_string();
    // Started the way torchrun starts workers: the same command with its variables set.
    let spawn = |rank: &str| {
        tunebook()
            .args(&args)
            .envs([("RANK", rank), ("LOCAL_RANK", rank), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", port.as_str())])
            .env("OMP_NUM_THREADS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (rank0, mut rank1) = (spawn("0"), spawn("1"));
    let started = Instant::now();
    while !out.join("checkpoint-2/trainer_state.json").is_file() {
        assert!(started.elapsed() < Duration::from_secs(600), "no checkpoint within 10 minutes");
        std::thread::sleep(Duration::from_millis(100));
    }
    rank1.kill().unwrap();
    rank1.wait().unwrap();
    let killed = Instant::now();
    let output = rank0.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(killed.elapsed() < Duration::from_secs(120), "rank 0 noticed only after {:?}", killed.elapsed());
    assert!(stderr.contains("distributed:") && stderr.contains("rank 0 of 2"), "{stderr}");
    let latest = tunebook::train::latest_checkpoint(&out).expect("a complete checkpoint survives");
    assert!(latest.join("model.safetensors").is_file() && latest.join("optimizer.safetensors").is_file());
    assert!(!out.join("final").exists());
}

#[test]
fn ctrl_c_stops_all_workers_after_the_same_step_and_they_resume_together() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut args = command_line("train", "quickstart-lora.toml", &data_parallel(&out, 1, 200));
    args.extend(["--set".into(), "training.save_steps=100".into(), "--nproc".into(), "2".into()]);
    let mut launcher = tunebook().args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while step_losses(&out).len() < 2 {
        assert!(launcher.try_wait().unwrap().is_none(), "the launch ended before its second step");
        assert!(started.elapsed() < Duration::from_secs(600), "no training step within 10 minutes");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(Command::new("kill").args(["-INT", &launcher.id().to_string()]).status().unwrap().success());
    let output = launcher.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let stopped_at = step_losses(&out).last().unwrap().0;
    assert!(out.join(format!("checkpoint-{stopped_at}/trainer_state.json")).is_file(), "{stderr}");
    assert!(stderr.contains("--nproc 2 --resume"), "the hint keeps the worker count: {stderr}");

    args.extend(sets(&[format!("training.max_steps={}", stopped_at + 1)]));
    args.push("--resume".into());
    assert_success(&run(&args));
    let steps: Vec<u64> = step_losses(&out).iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, (1..=stopped_at + 1).collect::<Vec<_>>());
}
