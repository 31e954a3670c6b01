//! Tokenization throughput of `Dataset::tokenize` next to Python `datasets` +
//! the fast tokenizer (`map(batched=True)`), same data, same machine, same run.
//!
//! `cargo bench -p tunebook --bench tokenize` (add `--profile dev` to skip the release
//! build). The data is the chatterbot English corpus, repeated to BENCH_EXAMPLES
//! (default 20000) prompt/response pairs; both sides apply the SmolLM2 chat template,
//! mask the prompt and truncate to 2048 tokens.
use std::process::Command;
use std::time::Instant;
use tunebook::data::{chatterbot, Dataset, Example, TokenizeOptions};

const RUNS: usize = 3;
const MAX_LEN: usize = 2048;

fn main() -> anyhow::Result<()> {
    let wanted: usize = std::env::var("BENCH_EXAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
    let tokenizer = model.tokenizer()?;

    let corpus = chatterbot()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pairs.jsonl");
    let mut lines = String::new();
    for example in corpus.examples().iter().cycle().take(wanted) {
        let Example::Chat(messages) = example else { continue };
        lines.push_str(&serde_json::json!({"prompt": messages[0].content, "response": messages[1].content}).to_string());
        lines.push('\n');
    }
    std::fs::write(&path, lines)?;

    let start = Instant::now();
    let data = Dataset::load(&path)?;
    let load_seconds = start.elapsed().as_secs_f64();
    let options = TokenizeOptions::default().max_len(MAX_LEN);
    let mut best = f64::INFINITY;
    let mut tokens = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let tokenized = data.tokenize(tokenizer, &options)?;
        best = best.min(start.elapsed().as_secs_f64());
        tokens = tokenized.stats().total_tokens;
    }

    let venv = tunebook::models::venv_dir().ok_or_else(|| anyhow::anyhow!("no .venv: run scripts/setup.sh"))?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/tokenize_benchmark.py");
    let out = Command::new(venv.join("bin/python")).arg(&script).arg(&path).arg(MAX_LEN.to_string()).arg(RUNS.to_string()).env("HF_HUB_OFFLINE", "1").output()?;
    anyhow::ensure!(out.status.success(), "{} failed:\n{}", script.display(), String::from_utf8_lossy(&out.stderr));
    let python: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let py_seconds = python["seconds"].as_f64().unwrap_or(f64::NAN);
    let py_tokens = python["tokens"].as_u64().unwrap_or(0) as usize;

    let n = data.len() as f64;
    println!("tokenizing {} prompt/response pairs (chat template, prompt masked, max_len {MAX_LEN}), best of {RUNS}, {} threads", data.len(), rayon_threads());
    println!("{:<34} {:>12} {:>14} {:>10}", "", "examples/s", "tokens/s", "seconds");
    println!("{:<34} {:>12.0} {:>14.0} {:>10.3}", "tunebook Dataset::tokenize", n / best, tokens as f64 / best, best);
    let label = format!("datasets {} map(batched=True)", python["datasets"].as_str().unwrap_or("?"));
    println!("{:<34} {:>12.0} {:>14.0} {:>10.3}", label, n / py_seconds, py_tokens as f64 / py_seconds, py_seconds);
    println!("speed-up: {:.2}x   (tunebook load + schema: {load_seconds:.3} s; same token count: {})", py_seconds / best, tokens == py_tokens);
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
