//! Training speed and memory of SmolLM2-135M (fp32, CPU) next to transformers + peft.
//!
//! `cargo bench -p tunebook --bench training` runs LoRA (r=8 on q_proj, v_proj), QLoRA (the
//! same on NF4 double-quantized weights; bitsandbytes on the peer side) and full
//! fine-tuning on batch 4 × 256 random tokens, AdamW, the same threads, with and without
//! gradient checkpointing on both sides, and LoRA once more with the first half of each row
//! labelled -100 as instruction data's prompts are: each run in a fresh process (`peers/training.py`
//! for the peer), one warm-up step then timed steps, peak resident memory reset after
//! loading. Both train the same fp32 weights: SmolLM2 as tunebook dequantizes it from the
//! shipped GGUF, exported with `save_pretrained` for the peer. Prints tokens/s and peak
//! memory with the ratio to the peer and the target next to each.
//!
//! `-- --gpu MODEL_DIR` is the same comparison on CUDA in bf16 (LoRA, QLoRA, full) for a
//! machine with a GPU, on an HF folder both sides load (`scripts/gpu_bench.sh` makes one
//! there from SmolLM2-135M's config with random weights, builds this bench here with
//! `--features tunebook/cuda` and runs it there). Prints tokens/s, the ratio and the
//! model-FLOPs utilisation of each side.
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use tunebook::device::{process_memory, reset_peak_memory};
use tunebook::models::{venv_dir, LoadOptions};
use tunebook::nn::Module;
use tunebook::peft::{FullFineTuning, LoraConfig, QuantType};
use tunebook::train::AdamW;
use tunebook::Model;

const BATCH: i64 = 4;
const SEQ: i64 = 256;
const STEPS: usize = 3;

/// (method, label, gradient checkpointing, tokens/s target, memory target) — targets from
/// the performance issue.
const RUNS: [(&str, &str, bool, f64, f64); 6] = [
    ("lora", "LoRA r=8 q,v", false, 1.3, 0.8),
    ("lora-masked", "LoRA r=8 q,v, first half of each row masked (-100) as a prompt", false, 1.3, 0.8),
    ("lora", "LoRA r=8 q,v + checkpointing", true, 1.3, 0.8),
    ("qlora", "QLoRA NF4 r=8 q,v", false, 1.3, 0.8),
    ("qlora", "QLoRA NF4 r=8 q,v + checkpointing", true, 1.3, 0.8),
    ("full", "full fine-tuning", false, 1.1, 0.8),
];

/// Where a run trains: the shipped model in fp32 on the CPU, or an HF folder on the best
/// device in its compute dtype (`--gpu`: bf16 on the first GPU; fp32 on the CPU where there
/// is none, which makes a dry run of the GPU script).
#[derive(Clone)]
enum Target {
    Cpu,
    Gpu(String),
}

impl Target {
    fn device(&self) -> Device {
        match self {
            Target::Cpu => Device::Cpu,
            Target::Gpu(_) => tunebook::device::best_device(),
        }
    }

    fn load(&self) -> Model {
        match self {
            Target::Cpu => Model::from_pretrained_with("smollm2-135m-instruct", LoadOptions::default().device(Device::Cpu).kind(Kind::Float)).expect("run scripts/setup.sh first"),
            Target::Gpu(dir) => {
                let device = self.device();
                Model::from_pretrained_with(dir, LoadOptions::default().device(device).kind(tunebook::device::compute_kind(device))).expect("the model folder loads")
            }
        }
    }

    /// Arguments that select this target in a `--one` child process.
    fn args(&self) -> Vec<String> {
        match self {
            Target::Cpu => vec![],
            Target::Gpu(dir) => vec!["--gpu".into(), dir.clone()],
        }
    }
}

/// Waits for the GPU's queued work, so the clock measures it.
fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// One run in this process: `{"tokens_per_s", "step_s", "peak_mib"}` on stdout.
fn measure(target: &Target, method: &str, checkpointing: bool) -> serde_json::Value {
    let device = target.device();
    let mut model = target.load();
    // Before a method packs weights into 4 bits or adds its own.
    let parameters = model.num_parameters();
    let lora = LoraConfig::new(8).alpha(16.0).targets(["q_proj", "v_proj"]);
    match method {
        "lora" | "lora-masked" => drop(lora.apply(&mut model).unwrap()),
        "qlora" => drop(lora.quantize(QuantType::Nf4).double_quant(true).apply(&mut model).unwrap()),
        _ => drop(FullFineTuning::new().apply(&mut model).unwrap()),
    }
    model.set_gradient_checkpointing(checkpointing);
    let params = model.named_parameters().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    let mut optimizer = AdamW::new(params, (0.9, 0.999), 1e-8, 0.0);
    tch::manual_seed(0);
    let ids = Tensor::randint(model.tokenizer().unwrap().vocab_size() as i64, [BATCH, SEQ], (Kind::Int64, device));
    let labels = ids.copy();
    if method.ends_with("-masked") {
        let _ = labels.narrow(1, 0, SEQ / 2).fill_(tunebook::loss::IGNORE_INDEX);
    }
    let mut step = || {
        // The trainer's loss: logits never materialised when the LM head is frozen.
        let (sum, count) = model.causal_lm_loss_sum(&ids, None, None, &labels);
        (sum / count).backward();
        optimizer.step(1e-4);
        optimizer.zero_grad();
    };
    reset_peak_memory();
    step();
    synchronize(device);
    let start = Instant::now();
    for _ in 0..STEPS {
        step();
    }
    synchronize(device);
    let seconds = start.elapsed().as_secs_f64() / STEPS as f64;
    serde_json::json!({ "tokens_per_s": (BATCH * SEQ) as f64 / seconds, "step_s": seconds, "peak_mib": process_memory().peak_mib(), "parameters": parameters })
}

/// The JSON line a run printed last, or why there is none (the last lines of its stderr).
fn run(mut command: Command, what: &str) -> Result<serde_json::Value, String> {
    let out = command.env("HF_HUB_OFFLINE", "1").output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(format!("{what} failed: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" / ")));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default()).map_err(|e| format!("{what}: {e}: {text}"))
}

fn verdict(ratio: f64, target: f64, higher_is_better: bool) -> String {
    let met = if higher_is_better { ratio >= target } else { ratio <= target };
    let sign = if higher_is_better { "≥" } else { "≤" };
    format!("{sign} {target:.1}x: {}", if met { "met" } else { "MISSED" })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = match args.iter().position(|a| a == "--gpu") {
        Some(i) => Target::Gpu(args.get(i + 1).expect("--gpu MODEL_DIR").clone()),
        None => Target::Cpu,
    };
    if let Some(i) = args.iter().position(|a| a == "--one") {
        println!("{}", measure(&target, &args[i + 1], args[i + 2] == "1"));
        return;
    }
    if let Target::Gpu(dir) = &target {
        return gpu_table(&target, dir);
    }
    if let Some(i) = args.iter().position(|a| a == "--export-config") {
        return export_config(Path::new(args.get(i + 1).expect("--export-config DIR")));
    }
    let threads = tch::get_num_threads();
    let exported = tempfile::tempdir().unwrap();
    target.load().save_pretrained(exported.path()).unwrap();
    println!("SmolLM2-135M fp32 CPU, batch {BATCH} × {SEQ} random tokens, AdamW, {threads} threads, {STEPS} timed steps after 1 warm-up; peer: transformers + peft (+ bitsandbytes for QLoRA)");
    println!("| method | tunebook tokens/s | peer tokens/s | ratio | target | tunebook peak MiB | peer peak MiB | ratio | target |");
    println!("|---|---|---|---|---|---|---|---|---|");
    // `cargo bench --bench training -- lora` runs only the runs of that method.
    let only: Vec<&String> = args.iter().skip(1).filter(|a| RUNS.iter().any(|r| r.0 == a.as_str())).collect();
    for (method, label, checkpointing, speed_target, memory_target) in RUNS {
        if !only.is_empty() && !only.iter().any(|m| m.as_str() == method) {
            continue;
        }
        let checkpointing = if checkpointing { "1" } else { "0" };
        let (ours, peer) = run_pair(&target, &venv_dir().unwrap().join("bin/python"), exported.path(), method, label, checkpointing, threads);
        let (ours, peer) = (ours.unwrap_or_else(|e| panic!("{e}")), peer.unwrap_or_else(|e| panic!("{e}")));
        let (a, b) = (ours["tokens_per_s"].as_f64().unwrap(), peer["tokens_per_s"].as_f64().unwrap());
        let (m, n) = (ours["peak_mib"].as_f64().unwrap(), peer["peak_mib"].as_f64().unwrap());
        println!(
            "| {label} | {a:.0} | {b:.0} | {:.2}x | {} | {m:.0} | {n:.0} | {:.2}x | {} |",
            a / b,
            verdict(a / b, speed_target, true),
            m / n,
            verdict(m / n, memory_target, false)
        );
    }
}

/// Our run and the peer's for one method, each in a fresh process.
fn run_pair(target: &Target, python: &Path, model_dir: &Path, method: &str, label: &str, checkpointing: &str, threads: i32) -> (Result<serde_json::Value, String>, Result<serde_json::Value, String>) {
    let mut ours = Command::new(std::env::current_exe().unwrap());
    ours.args(target.args()).args(["--one", method, checkpointing]);
    let ours = run(ours, &format!("tunebook {label}"));
    let device = if target.device().is_cuda() { "cuda" } else { "cpu" };
    // On a GPU machine the repository sits elsewhere than where this bench was built.
    let peers = std::env::var("TUNEBOOK_BENCH_PEERS").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers").into());
    let peer_script = Path::new(&peers).join("training.py");
    let mut peer = Command::new(python);
    peer.env("TUNEBOOK_BENCH_DEVICE", device).arg(peer_script).arg(model_dir);
    peer.args([method, &BATCH.to_string(), &SEQ.to_string(), &STEPS.to_string(), &threads.to_string(), checkpointing]);
    (ours, run(peer, &format!("peer {label}")))
}

/// Dense bf16 peak of the GPU, for model-FLOPs utilisation: `TUNEBOOK_GPU_PEAK_TFLOPS`, or
/// the H200's (and H100 SXM's) 989 TFLOP/s.
fn gpu_peak_flops() -> f64 {
    std::env::var("TUNEBOOK_GPU_PEAK_TFLOPS").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(989.0) * 1e12
}

/// Model FLOPs per trained token as in the PaLM paper's MFU: 6 per parameter (forward and
/// backward) plus causal attention's 12 · layers · hidden · sequence. The same count for
/// every method, so LoRA's utilisation is comparable with full fine-tuning's.
fn model_flops_per_token(parameters: f64, config: &serde_json::Value) -> f64 {
    let field = |name: &str| config[name].as_f64().unwrap_or(0.0);
    6.0 * parameters + 12.0 * field("num_hidden_layers") * field("hidden_size") * SEQ as f64
}

/// The `--gpu` table: LoRA, QLoRA and full fine-tuning in bf16 on CUDA next to
/// transformers + peft (+ bitsandbytes) from the machine's own `python3`.
fn gpu_table(target: &Target, dir: &str) {
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(Path::new(dir).join("config.json")).expect("config.json in the model folder")).expect("config.json is JSON");
    let python = std::env::var("TUNEBOOK_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let peak = gpu_peak_flops();
    let on = if target.device().is_cuda() { format!("bf16 on {}", gpu_name()) } else { "fp32 on the CPU (no GPU here: a dry run)".into() };
    println!("SmolLM2-135M architecture (random weights) {on}, batch {BATCH} × {SEQ} random tokens, AdamW, {STEPS} timed steps after 1 warm-up; peer: transformers + peft (+ bitsandbytes for QLoRA); MFU against {:.0} TFLOP/s", peak / 1e12);
    println!("| method | tunebook tokens/s | peer tokens/s | ratio | target | tunebook MFU | peer MFU |");
    println!("|---|---|---|---|---|---|---|");
    for (method, label, target_ratio) in [("lora", "LoRA r=8 q,v", 1.3), ("qlora", "QLoRA NF4 r=8 q,v", 1.3), ("full", "full fine-tuning", 1.1)] {
        // A side that fails (bitsandbytes missing on that machine, say) is reported, not fatal.
        let (ours, peer) = run_pair(target, Path::new(&python), Path::new(dir), method, label, "0", tch::get_num_threads());
        let tokens_per_s = |side: &Result<serde_json::Value, String>| side.as_ref().ok().and_then(|v| v["tokens_per_s"].as_f64());
        let parameters = ours.as_ref().ok().and_then(|v| v["parameters"].as_f64()).unwrap_or(0.0);
        let flops = model_flops_per_token(parameters, &config);
        let cell = |t: Option<f64>| t.map_or("failed".to_string(), |t| format!("{t:.0}"));
        let mfu = |t: Option<f64>| t.map_or("".to_string(), |t| format!("{:.1}%", 100.0 * t * flops / peak));
        let (a, b) = (tokens_per_s(&ours), tokens_per_s(&peer));
        let (ratio, verdict_text) = match (a, b) {
            (Some(a), Some(b)) => (format!("{:.2}x", a / b), verdict(a / b, target_ratio, true)),
            _ => ("".into(), "".into()),
        };
        println!("| {label} | {} | {} | {ratio} | {verdict_text} | {} | {} |", cell(a), cell(b), mfu(a), mfu(b));
        for error in [ours.err(), peer.err()].into_iter().flatten() {
            println!("|   {error} | | | | | | |");
        }
    }
}

fn gpu_name() -> String {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("a GPU").trim().to_string())
        .unwrap_or_else(|| "a GPU".into())
}

/// The shipped SmolLM2's HF folder without its weights (config, tokenizer): what a GPU
/// machine needs to build the same architecture with random weights.
fn export_config(dir: &Path) {
    let exported = tempfile::tempdir().unwrap();
    Target::Cpu.load().save_pretrained(exported.path()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(exported.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            continue;
        }
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
}
