//! `train` and `sweep`: run recipe files headless. Progress is the trainer's bar on a
//! terminal, plain lines when stderr is redirected; Ctrl-C finishes the current step, saves
//! a checkpoint and exits with status 130.
use anyhow::{Context, Result};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tunebook::recipe::{Override, Recipe, Resume, SweepRecipe};
use tunebook::train::{request_stop, Event, TrainSummary, Trainer};

/// The shell's status for "ended by SIGINT" (128 + 2), so scripts can tell a stop from a failure.
const INTERRUPTED_STATUS: i32 = 130;

#[derive(Args)]
pub struct TrainArgs {
    /// Recipe file: [model], [data], [method], [training] (examples in notebooks/configs/).
    config: PathBuf,
    /// Continue a stopped run: from the latest checkpoint in output_dir, or from the
    /// checkpoint folder given. Put it after CONFIG.
    #[arg(long, value_name = "CHECKPOINT", num_args = 0..=1)]
    resume: Option<Option<PathBuf>>,
    /// Data-parallel workers on this machine (Gloo on CPU, NCCL on CUDA), started with
    /// torchrun's variables; per_device_train_batch_size is per worker.
    #[arg(long, value_name = "N", default_value_t = 1)]
    nproc: usize,
    #[command(flatten)]
    overrides: OverrideArgs,
}

#[derive(Args)]
pub struct SweepArgs {
    /// Sweep file: base = "RECIPE.toml", [sweep] and [sweep.parameters].
    config: PathBuf,
    #[command(flatten)]
    overrides: OverrideArgs,
}

#[derive(Args)]
struct OverrideArgs {
    /// Replace a setting, e.g. --set training.max_steps=100 --set method.r=16 (repeatable).
    /// The value is TOML (numbers, true, ["a", "b"]); other text is a string. Relative paths
    /// are relative to the working directory. For sweeps, sweep.* keys change the sweep.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<Override>,
}

impl OverrideArgs {
    fn resolved(&self) -> Result<Vec<Override>> {
        let cwd = std::env::current_dir().context("reading the working directory")?;
        Ok(self.set.iter().map(|o| o.clone().relative_to(&cwd)).collect())
    }

    /// The flags again, for the resume hint.
    fn as_flags(&self) -> String {
        self.set.iter().map(|o| format!(" --set {}", shell_word(&o.to_string()))).collect()
    }
}

/// A trainer is between TrainBegin and TrainEnd: only then can Ctrl-C save a checkpoint.
static TRAINING: AtomicBool = AtomicBool::new(false);
static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

/// Owns SIGINT for the process (the trainer's own handler then stays out): the first
/// Ctrl-C during training asks for a checkpoint and a stop; a second one, or one while
/// nothing is training yet, exits at once.
fn handle_interrupts() -> Result<()> {
    ctrlc::set_handler(|| {
        let presses = INTERRUPTS.fetch_add(1, Ordering::SeqCst) + 1;
        if presses == 1 && TRAINING.load(Ordering::SeqCst) {
            if is_main_worker() {
                eprintln!("\ninterrupt: finishing the current step and saving a checkpoint (Ctrl-C again to quit at once)");
            }
            request_stop();
        } else {
            eprintln!("\ninterrupted");
            std::process::exit(INTERRUPTED_STATUS);
        }
    })
    .context("installing the Ctrl-C handler")
}

/// Tracks whether training runs (for the Ctrl-C handler) and, when stderr is not a
/// terminal (no progress bar), prints one line per logged step, evaluation and checkpoint.
fn watch(trainer: &mut Trainer, label: String) {
    // Only rank 0 of a distributed run reports (its trainer draws the bar, too).
    let (plain, main) = (!std::io::stderr().is_terminal(), is_main_worker());
    let plain = plain && main;
    let logging_steps = trainer.args.logging_steps.max(1);
    let mut total = 0;
    trainer.on_event(move |event| match event {
        Event::TrainBegin { total_steps, start_step, num_examples, trainable_parameters } => {
            TRAINING.store(true, Ordering::SeqCst);
            total = *total_steps;
            if !main {
                return;
            }
            let from = if *start_step > 0 { format!(", resuming at step {start_step}") } else { String::new() };
            eprintln!("{label}{total_steps} steps on {num_examples} rows, {trainable_parameters} trainable parameters{from}");
        }
        Event::TrainEnd { .. } => TRAINING.store(false, Ordering::SeqCst),
        Event::Step { step, loss, learning_rate, .. } if plain && step % logging_steps == 0 => {
            eprintln!("step {step}/{total}  loss {loss:.4}  lr {learning_rate:.3e}");
        }
        Event::Eval { step, metrics, .. } if plain => {
            let shown: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            eprintln!("eval at step {step}: {}", shown.join("  "));
        }
        Event::CheckpointSaved { path, .. } if plain => eprintln!("saved {}", path.display()),
        _ => {}
    });
}

fn metrics_line(summary: &TrainSummary) -> String {
    let shown: Vec<String> = summary.final_metrics.iter().filter(|(k, _)| *k != "train_runtime").map(|(k, v)| format!("{k} {v:.4}")).collect();
    shown.join(", ")
}

/// `--nproc N`: this same command again as N workers (each sees WORLD_SIZE and so trains
/// instead of launching); Ctrl-C goes to the workers, which save and stop together.
fn launch_workers(nproc: usize) -> Result<()> {
    ctrlc::set_handler(tunebook::distributed::interrupt_workers).context("installing the Ctrl-C handler")?;
    let program = std::env::current_exe().context("finding the tunebook executable")?;
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let status = tunebook::distributed::launch(nproc, &program, &argv, std::time::Duration::from_secs(30))?;
    if status != 0 {
        std::process::exit(status);
    }
    Ok(())
}

/// Rank 0 (or a plain run) reports; the other workers stay quiet.
fn is_main_worker() -> bool {
    std::env::var("RANK").map_or(true, |rank| rank.trim() == "0")
}

pub fn train(args: TrainArgs) -> Result<()> {
    if args.nproc > 1 && std::env::var_os("WORLD_SIZE").is_none() {
        return launch_workers(args.nproc);
    }
    let recipe = Recipe::from_toml_file_with(&args.config, &args.overrides.resolved()?)?;
    let resume = args.resume.clone().map(|checkpoint| checkpoint.map_or(Resume::Latest, Resume::From));
    handle_interrupts()?;
    let summary = recipe
        .run_with(resume, |trainer| watch(trainer, String::new()))
        .with_context(|| format!("training {}", args.config.display()))?;
    if !is_main_worker() {
        std::process::exit(if summary.interrupted { INTERRUPTED_STATUS } else { 0 });
    }
    if summary.interrupted {
        let checkpoint = summary.last_checkpoint.as_deref().map_or("(none)".into(), |p| p.display().to_string());
        eprintln!("interrupted at step {}: checkpoint saved to {checkpoint}", summary.global_step);
        let workers = if args.nproc > 1 { format!(" --nproc {}", args.nproc) } else { String::new() };
        eprintln!("resume with: tunebook train {}{}{workers} --resume", shell_word(&args.config.display().to_string()), args.overrides.as_flags());
        std::process::exit(INTERRUPTED_STATUS);
    }
    if summary.early_stopped {
        println!("early stopped at step {} (best {} {:?})", summary.global_step, recipe.training.best_metric_name(), summary.best_metric);
    }
    println!("trained {} steps in {:.1} s: {}", summary.global_step, summary.seconds, metrics_line(&summary));
    println!("final weights in {}", recipe.final_dir().display());
    Ok(())
}

pub fn sweep(args: SweepArgs) -> Result<()> {
    let sweep = SweepRecipe::from_toml_file_with(&args.config, &args.overrides.resolved()?)?;
    let total = sweep.trials().len();
    handle_interrupts()?;
    let results = sweep
        .run_with(|index, params, trainer| {
            let values: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            watch(trainer, format!("trial {}/{total} ({}): ", index + 1, values.join(", ")));
        })
        .with_context(|| format!("sweeping {}", args.config.display()))?;
    println!("{}", results.table().to_text());
    let out = sweep.output_dir.display();
    println!("results in {out}/results.csv, {out}/results.json; loss curves in {out}/loss_curves.svg");
    if results.interrupted {
        eprintln!("interrupted: the table holds the trials run so far");
        std::process::exit(INTERRUPTED_STATUS);
    }
    if let Some(best) = results.best() {
        println!("best: {} ({} {:.4})", best.output_dir.display(), results.metric, best.metric);
    }
    Ok(())
}

/// `text` as one shell word (quoted when it needs to be).
fn shell_word(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=".contains(c)) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
