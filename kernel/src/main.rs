//! `tunebook-kernel`: a Jupyter kernel for Rust notebooks with the tunebook library
//! preloaded.
//!
//! ```text
//! tunebook-kernel --connection-file FILE       run (Jupyter starts it this way)
//! tunebook-kernel install [--user|--sys-prefix|--prefix P] [--no-warm]
//!                                              write the kernelspec, then `warm`
//! tunebook-kernel warm                         prebuild the library for fast starts
//! ```

mod completeness;
mod connection;
mod diagnostics;
mod display;
mod engine;
mod forwarder;
mod history;
mod install;
mod interrupt;
mod kernel;
mod preload;
mod procfs;
mod relay;
mod shared;
mod template;
mod wire;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// evcxr marks the cell process it starts (this binary again) with this variable.
const EVCXR_RUNTIME_VAR: &str = "EVCXR_IS_RUNTIME";
/// The kernel passes the user's RUST_BACKTRACE through this; evcxr forces it to 1.
const CELL_BACKTRACE_VAR: &str = "TUNEBOOK_CELL_BACKTRACE";

pub fn log(message: &str) {
    eprintln!("[tunebook-kernel] {message}");
}

fn main() {
    if std::env::var_os(EVCXR_RUNTIME_VAR).is_some() {
        become_cell_process();
    }
    // Also covers evcxr's other re-executions of this binary (rustc wrapper).
    evcxr::runtime_hook();
    forget_inherited_cargo_package_env();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(error) = run(&args) {
        log(&format!("error: {error:#}"));
        std::process::exit(1);
    }
}

/// Cargo sets CARGO_MANIFEST_DIR, CARGO_PKG_* ... for the program it runs (a test, `cargo
/// run`). Build scripts such as ring's declare `rerun-if-env-changed` on those names, so if
/// they leak into the cargo that builds cells, a template built from a test and a kernel
/// started from JupyterLab see different values and rebuild half the dependency graph.
/// Called before any thread starts.
fn forget_inherited_cargo_package_env() {
    const PREFIXES: [&str; 6] = ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_CFG_", "CARGO_BIN_", "CARGO_CRATE_", "CARGO_TARGET_TMPDIR"];
    let inherited: Vec<_> = std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| name.to_str().is_some_and(|n| PREFIXES.iter().any(|p| n.starts_with(p)) || n == "CARGO_PRIMARY_PACKAGE"))
        .collect();
    for name in inherited {
        std::env::remove_var(name);
    }
}

fn become_cell_process() {
    // Panics print their message; a full backtrace only when the user asked for one.
    let backtrace = std::env::var(CELL_BACKTRACE_VAR).unwrap_or_else(|_| "0".to_owned());
    std::env::set_var("RUST_BACKTRACE", backtrace);
    if let Err(error) = relay::install() {
        eprintln!("tunebook-kernel: stdout relay unavailable ({error}); output may stall");
    }
    evcxr::runtime_hook();
}

fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("install") => {
            let options = install::Options::parse(&args[1..])?;
            let locations = preload::Locations::discover();
            if let Err(reason) = &locations {
                log(&format!("kernelspec without library settings: {reason}"));
            }
            let dir = install::install(&options.target, locations.as_ref().ok())?;
            println!("Installed kernelspec {} in {}", install::KERNEL_NAME, dir.display());
            if options.warm {
                warm().context(
                    "the kernelspec is installed, but prebuilding the library failed; the first \
                     kernel start will build it (minutes). Retry with `tunebook-kernel warm`",
                )?;
            }
            Ok(())
        }
        Some("warm") => warm(),
        Some("--connection-file") | Some("-f") => {
            let file = args.get(1).context("--connection-file needs a path")?;
            run_kernel(Path::new(file))
        }
        Some("--version") => {
            println!("tunebook-kernel {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some(path) if path.ends_with(".json") => run_kernel(Path::new(path)),
        _ => bail!(
            "usage:\n  tunebook-kernel --connection-file FILE\n  {}\n  tunebook-kernel warm",
            install::USAGE
        ),
    }
}

fn run_kernel(connection_file: &Path) -> Result<()> {
    let connection = connection::ConnectionInfo::read(connection_file)?;
    let locations = preload::Locations::discover();
    let work_dir = create_work_dir()?;
    log(&format!("build directory {}", work_dir.display()));
    let cell_env = prepare_environment(&work_dir, locations.as_ref().ok());
    preload::enable_analysis_cfg();
    spawn_orphan_watch(work_dir.clone());
    kernel::run(connection, engine::EngineConfig { preload: locations, work_dir, cell_env })
}

/// Sets the variables evcxr and cargo read (before any thread exists) and returns the
/// environment for the cell process.
fn prepare_environment(work_dir: &Path, locations: Option<&preload::Locations>) -> Vec<(String, String)> {
    std::env::set_var("EVCXR_TMPDIR", work_dir);
    // Keep a personal evcxr configuration (prelude, tmpdir) out of this kernel.
    std::env::set_var("EVCXR_CONFIG_DIR", work_dir.join("evcxr-config"));
    let mut cell_env = vec![
        ("TUNEBOOK_KERNEL".to_owned(), "1".to_owned()),
        (CELL_BACKTRACE_VAR.to_owned(), std::env::var("RUST_BACKTRACE").unwrap_or_else(|_| "0".to_owned())),
        (relay::FLUSH_HELPER_VAR.to_owned(), relay::flush_helper_path(work_dir).display().to_string()),
    ];
    // Cells load libtorch through the prebuilt library; building that library gets LIBTORCH
    // from template::build, not from this process.
    if let Some(lib) = locations.and_then(preload::Locations::libtorch_lib) {
        let lib = lib.display().to_string();
        let path = match std::env::var("LD_LIBRARY_PATH") {
            Ok(existing) if !existing.is_empty() => format!("{lib}:{existing}"),
            _ => lib,
        };
        cell_env.push(("LD_LIBRARY_PATH".to_owned(), path));
    }
    cell_env
}

/// `<tmp>/tunebook-kernel/<pid>-<id>`, removing directories of kernels that no longer run.
fn create_work_dir() -> Result<PathBuf> {
    let root = std::env::temp_dir().join("tunebook-kernel");
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let owner = name.split('-').next().and_then(|pid| pid.parse::<u32>().ok());
            if let Some(pid) = owner {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = root.join(format!("{}-{}", std::process::id(), &id[..8]));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Jupyter may die without shutting its kernels down; an orphaned kernel cleans up and exits.
fn spawn_orphan_watch(work_dir: PathBuf) {
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(2));
        if std::os::unix::process::parent_id() != parent {
            log("parent process exited; shutting down");
            interrupt::kill_all_children();
            let _ = std::fs::remove_dir_all(&work_dir);
            std::process::exit(0);
        }
    });
}

/// Builds the library for notebook cells into the template every kernel start links, then
/// checks that a kernel can load it (the kernel's own preload, in a scratch directory).
fn warm() -> Result<()> {
    let started = Instant::now();
    let locations = preload::Locations::discover().map_err(anyhow::Error::msg)?;
    println!("tunebook-kernel warm: building the library for notebook cells");
    template::build(&locations, &mut |line| println!("{line}")).map_err(anyhow::Error::msg)?;

    // Where kernels build (under the temporary directory, see create_work_dir): evcxr's cells
    // find libstd through a relative rpath that assumes that depth.
    let scratch = std::env::temp_dir().join("tunebook-kernel").join(format!("{}-warm-check", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let cell_env = prepare_environment(&scratch, Some(&locations));
    let command = engine::cell_process_command(&cell_env)?;
    let (eval_context, outputs) = evcxr::EvalContext::with_subprocess_command(command)
        .map_err(|error| anyhow::anyhow!("starting evcxr: {error}"))?;
    for channel in [outputs.stdout, outputs.stderr] {
        std::thread::spawn(move || {
            while let Ok(line) = channel.recv() {
                // The relay's fences are for a kernel's forwarder; nobody waits for them here.
                if !line.starts_with(display::STDERR_FENCE) {
                    eprintln!("{line}");
                }
            }
        });
    }
    let mut context = evcxr::CommandContext::with_eval_context(eval_context);
    let checked = engine::run_preload(&mut context, &locations, &scratch, false, &mut |line| println!("{line}"));
    drop(context);
    let _ = std::fs::remove_dir_all(&scratch);
    checked.map_err(|error| anyhow::anyhow!("the built library does not load in a kernel: {error}"))?;
    println!(
        "tunebook-kernel warm: template ready ({:.1} GB) in {:.0} s",
        template::tree_size(&template::template_dir(&locations)) as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
