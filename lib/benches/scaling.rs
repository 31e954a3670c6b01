//! Data-parallel scaling on this machine: the same LoRA recipe run by 1 and by 2 Gloo workers.
//!
//! `cargo bench -p tunebook --bench scaling` trains SmolLM2-135M with LoRA (the quick-start
//! recipe, 4 × 128 tokens per worker and step) once as a single process and once with
//! `--nproc 2`, sharing the same cores (torchrun's rule: the workers split them), and prints
//! training tokens/s of each and their ratio. With more cores or GPUs than one process can
//! use, the ratio is the scaling efficiency times the worker count; here it shows what the
//! gradient all-reduce and the split costs.
use std::path::Path;
use std::process::Command;

const STEPS: usize = 8;

/// Median tokens/s over the logged steps after the first (warm-up).
fn tokens_per_second(output_dir: &Path) -> anyhow::Result<f64> {
    let log = std::fs::read_to_string(output_dir.join("log.jsonl"))?;
    let mut rates: Vec<f64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step" && e["step"].as_u64() > Some(1))
        .filter_map(|e| e["tokens_per_second"].as_f64())
        .collect();
    anyhow::ensure!(!rates.is_empty(), "{}: no step events", output_dir.display());
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("lib/ is in the workspace").to_path_buf();
    // The CLI of this same build (target/<profile>/tunebook), built if missing.
    let profile_dir = std::env::current_exe()?.parent().and_then(Path::parent).expect("bench runs from target/<profile>/deps").to_path_buf();
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "-q", "-p", "tunebook", "--bin", "tunebook"]).current_dir(&root);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    anyhow::ensure!(build.status()?.success(), "building the tunebook CLI");
    let tmp = tempfile::tempdir()?;
    let cores = std::thread::available_parallelism()?.get();
    let mut rates = Vec::new();
    for nproc in [1usize, 2] {
        let out = tmp.path().join(format!("nproc-{nproc}"));
        let status = Command::new(profile_dir.join("tunebook"))
            .current_dir(&root)
            .args(["train", "notebooks/configs/quickstart-lora.toml", "--nproc", &nproc.to_string()])
            .args(["--set", &format!("training.output_dir={}", out.display())])
            .args(["--set", &format!("training.max_steps={STEPS}"), "--set", "training.per_device_train_batch_size=4"])
            .args(["--set", "training.eval_strategy=no", "--set", "training.save_strategy=no", "--set", "data.packing=true"])
            .env("HF_HUB_OFFLINE", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "tunebook train --nproc {nproc} failed");
        rates.push(tokens_per_second(&out)?);
    }
    println!("SmolLM2-135M LoRA r=8 q,v, fp32 CPU, 4 × 128 tokens per worker and step, {cores} cores shared by the workers");
    println!("| workers | training tokens/s | vs 1 worker |");
    println!("|---|---|---|");
    println!("| 1 ({cores} threads) | {:.0} | 1.00x |", rates[0]);
    println!("| 2 Gloo ({} thread(s) each) | {:.0} | {:.2}x |", (cores / 2).max(1), rates[1], rates[1] / rates[0]);
    Ok(())
}
