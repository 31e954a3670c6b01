//! Kernel latency of tunebook-kernel next to stock evcxr_jupyter 0.22 given the same library (`:dep`).
//!
//! `cargo bench --workspace --profile dev --bench kernel_latency` (scripts/bench.sh builds
//! the stock kernel first: `cargo install evcxr_jupyter@0.22.0 --locked`, release, into
//! ~/.cache/tunebook/evcxr_jupyter; `EVCXR_JUPYTER=PATH` to use another binary). Both
//! kernels start from a kernelspec through jupyter_client with their warm build caches
//! (peers/kernel_latency.py says how); a first run also pays and reports the one-time builds.
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const RUNS: usize = 10;

fn main() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("repository root")?.to_path_buf();
    let home = PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?);
    let stock = std::env::var_os("EVCXR_JUPYTER")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/tunebook/evcxr_jupyter/bin/evcxr_jupyter"));
    if !stock.is_file() {
        bail!(
            "no stock kernel at {}: cargo install evcxr_jupyter@0.22.0 --locked --root ~/.cache/tunebook/evcxr_jupyter (or set EVCXR_JUPYTER)",
            stock.display()
        );
    }
    let python = root.join(".venv/bin/python");
    // The stock kernel builds the library outside this repository, where .cargo/config.toml
    // does not apply: it needs LIBTORCH in its environment.
    let libtorch = std::fs::read_dir(root.join(".venv/lib"))?
        .flatten()
        .map(|entry| entry.path().join("site-packages/torch"))
        .find(|path| path.is_dir())
        .context("no torch in .venv: run scripts/setup.sh")?;
    let output = Command::new(&python)
        .arg(root.join("kernel/benches/peers/kernel_latency.py"))
        .arg(env!("CARGO_BIN_EXE_tunebook-kernel"))
        .arg(&stock)
        .arg(root.join("lib"))
        .arg(RUNS.to_string())
        .arg(home.join(".cache/tunebook/evcxr-stock-build"))
        .env("LIBTORCH", &libtorch)
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !output.status.success() {
        bail!("kernel_latency.py failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let figures: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .with_context(|| format!("kernel_latency.py printed no result:\n{stdout}"))?;
    let (ours, theirs) = (&figures["tunebook"], &figures["stock"]);
    let seconds = |side: &Value, key: &str| side[key].as_f64().unwrap_or(f64::NAN);

    println!("tunebook-kernel vs stock evcxr_jupyter 0.22 (library via :dep), both started through jupyter_client, warm build caches; medians of {RUNS} cells");
    println!("{:<34} {:>10} {:>10} {:>9}   target", "", "tunebook", "stock", "speed-up");
    // `met`: None when the row has no target.
    let row = |label: &str, key: &str, target: Option<(&str, bool)>| {
        let (a, b) = (seconds(ours, key), seconds(theirs, key));
        let verdict = target.map(|(text, met)| format!("{text}: {}", if met { "met" } else { "MISSED" })).unwrap_or_default();
        println!("{label:<34} {a:>9.2}s {b:>9.2}s {:>8.1}x   {verdict}", b / a);
    };
    let library_speedup = seconds(theirs, "library_cell_s") / seconds(ours, "library_cell_s");
    row("start → kernel_info reply", "kernel_info_s", Some(("< 1 s", seconds(ours, "kernel_info_s") < 1.0)));
    row("start → library cell returned", "library_usable_s", None);
    row("`1 + 1`", "one_plus_one_s", None);
    row("cell calling the library", "library_cell_s", Some(("≥ 3x", library_speedup >= 3.0)));
    if let Some(install) = ours["install_s"].as_f64() {
        println!("one-time: `tunebook-kernel install` (spec + library template, only what changed) {install:.1} s");
    }
    if let Some(first) = theirs["first_dep_s"].as_f64() {
        println!("one-time: stock kernel's first `:dep` in an empty build directory {first:.1} s");
    }
    Ok(())
}
