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

fn load() -> Model {
    Model::from_pretrained_with("smollm2-135m-instruct", LoadOptions::default().device(Device::Cpu).kind(Kind::Float)).expect("run scripts/setup.sh first")
}

/// One run in this process: `{"tokens_per_s", "step_s", "peak_mib"}` on stdout.
fn measure(method: &str, checkpointing: bool) -> serde_json::Value {
    let mut model = load();
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
    let ids = Tensor::randint(model.tokenizer().unwrap().vocab_size() as i64, [BATCH, SEQ], (Kind::Int64, Device::Cpu));
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
    let start = Instant::now();
    for _ in 0..STEPS {
        step();
    }
    let seconds = start.elapsed().as_secs_f64() / STEPS as f64;
    serde_json::json!({ "tokens_per_s": (BATCH * SEQ) as f64 / seconds, "step_s": seconds, "peak_mib": process_memory().peak_mib() })
}

fn run(mut command: Command, what: &str) -> serde_json::Value {
    let out = command.env("HF_HUB_OFFLINE", "1").output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
}

fn verdict(ratio: f64, target: f64, higher_is_better: bool) -> String {
    let met = if higher_is_better { ratio >= target } else { ratio <= target };
    let sign = if higher_is_better { "≥" } else { "≤" };
    format!("{sign} {target:.1}x: {}", if met { "met" } else { "MISSED" })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--one") {
        println!("{}", measure(&args[i + 1], args[i + 2] == "1"));
        return;
    }
    let threads = tch::get_num_threads();
    let exported = tempfile::tempdir().unwrap();
    load().save_pretrained(exported.path()).unwrap();
    let peer_script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/training.py");
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
        let mut ours = Command::new(std::env::current_exe().unwrap());
        ours.args(["--one", method, checkpointing]);
        let ours = run(ours, &format!("tunebook {label}"));
        let mut peer = Command::new(venv_dir().unwrap().join("bin/python"));
        peer.arg(peer_script).arg(exported.path());
        peer.args([method, &BATCH.to_string(), &SEQ.to_string(), &STEPS.to_string(), &threads.to_string(), checkpointing]);
        let peer = run(peer, &format!("peer {label}"));
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
