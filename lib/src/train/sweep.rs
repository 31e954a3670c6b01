//! Hyperparameter sweeps: a grid or random sample over training arguments and method
//! settings, each trial in its own run folder, bad trials stopped early, results sorted by
//! a metric.
use super::events::Event;
use super::trainer::{request_stop, TrainSummary, Trainer};
use super::TrainingArgs;
use crate::display::Table;
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::Value;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

/// The values one trial uses, by name.
pub type Params = BTreeMap<String, Value>;

/// A set of trials over named values. Names that are [`TrainingArgs`] fields are applied to
/// the arguments; any other name (e.g. `lora_rank`) is passed to the trial builder.
///
/// ```no_run
/// use tunebook::train::{Sweep, Trainer, TrainingArgs};
/// # let build_model = |_: &tunebook::train::sweep::Params| -> tunebook::Model { unimplemented!() };
/// # let data: tunebook::train::TokenRows = unimplemented!();
/// let results = Sweep::grid(TrainingArgs::new("runs/sweep"))
///     .vary("learning_rate", [1e-4, 3e-4])
///     .vary("lora_rank", [8, 16])
///     .run("eval_loss", |args, params| Ok(Trainer::new(build_model(params), args).train_data(data.clone()).eval_data(data.clone())))?;
/// tunebook::display::display(&results.table());
/// # Ok::<(), tunebook::Error>(())
/// ```
pub struct Sweep {
    base: TrainingArgs,
    axes: Vec<(String, Vec<Value>)>,
    random: Option<(usize, u64)>,
    greater_is_better: Option<bool>,
    prune_margin: Option<f64>,
}

/// One finished trial.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub params: Params,
    pub output_dir: PathBuf,
    /// The sweep metric after training.
    pub metric: f64,
    pub loss_curve: Vec<(usize, f64)>,
    /// Stopped early for falling behind earlier trials (see [`Sweep::prune`]).
    pub pruned: bool,
    pub summary: TrainSummary,
}

impl Trial {
    /// `done`, `pruned`, `early stopped` (the trainer's patience) or `interrupted`.
    pub fn status(&self) -> &'static str {
        if self.pruned {
            "pruned"
        } else {
            self.summary.status()
        }
    }
}

/// Trials best first.
#[derive(Debug, Clone, Serialize)]
pub struct SweepResults {
    pub metric: String,
    pub trials: Vec<Trial>,
    /// A stop was requested (SIGINT, [`request_stop`]) during a trial: the sweep ended
    /// there and `trials` holds the trials run so far, the interrupted one included.
    pub interrupted: bool,
}

impl Sweep {
    /// Every combination of the varied values.
    pub fn grid(base: TrainingArgs) -> Self {
        Sweep { base, axes: Vec::new(), random: None, greater_is_better: None, prune_margin: None }
    }

    /// `trials` combinations drawn uniformly (seeded) from the varied values.
    pub fn random(base: TrainingArgs, trials: usize, seed: u64) -> Self {
        Sweep { random: Some((trials, seed)), ..Self::grid(base) }
    }

    /// Adds a dimension: a training argument or a method setting and its candidate values.
    pub fn vary<V: Serialize>(mut self, name: &str, values: impl IntoIterator<Item = V>) -> Self {
        let values = values.into_iter().map(|v| serde_json::to_value(v).expect("sweep values are plain values")).collect();
        self.axes.push((name.to_string(), values));
        self
    }

    /// Overrides the sort direction (default: lower is better for names ending in `loss`).
    pub fn greater_is_better(mut self, yes: bool) -> Self {
        self.greater_is_better = Some(yes);
        self
    }

    /// Stops bad trials early. At each evaluation but the last, a trial whose metric is worse
    /// than the best value any earlier trial had at the same step by more than `margin` (in
    /// the metric's units) finishes that step, saves a checkpoint and is marked
    /// [`pruned`](Trial::pruned). Comparing at the same step, not against final values,
    /// keeps a slow start from looking like a bad trial.
    pub fn prune(mut self, margin: f64) -> Self {
        self.prune_margin = Some(margin);
        self
    }

    /// The parameter sets of the trials, in run order.
    pub fn trials(&self) -> Vec<Params> {
        let mut grid: Vec<Params> = vec![Params::new()];
        for (name, values) in &self.axes {
            grid = grid
                .into_iter()
                .flat_map(|p| values.iter().map(move |v| {
                    let mut p = p.clone();
                    p.insert(name.clone(), v.clone());
                    p
                }))
                .collect();
        }
        match self.random {
            None => grid,
            Some((n, seed)) => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                (0..n)
                    .map(|_| self.axes.iter().map(|(name, values)| (name.clone(), values[rng.random_range(0..values.len())].clone())).collect())
                    .collect()
            }
        }
    }

    /// The arguments of one trial: the base with the varied fields set and its own folder.
    pub fn args_for(&self, index: usize, params: &Params) -> Result<TrainingArgs> {
        let mut value = serde_json::to_value(&self.base).expect("training args serialize");
        let fields = value.as_object_mut().expect("training args are a table");
        for (name, v) in params {
            if fields.contains_key(name) {
                fields.insert(name.clone(), v.clone());
            }
        }
        let mut args: TrainingArgs =
            serde_json::from_value(value).map_err(|e| Error::config("sweep", format!("trial {index} {params:?}: {e}")))?;
        args.output_dir = self.base.output_dir.join(format!("trial-{index:03}"));
        args.validate()?;
        Ok(args)
    }

    /// Builds, trains and evaluates each trial; `metric` (e.g. `eval_loss`, `accuracy`)
    /// ranks them. `build` gets the trial's arguments and all its values. A stop request
    /// (SIGINT) ends the sweep after the current trial's step, with the trials so far.
    pub fn run(self, metric: &str, mut build: impl FnMut(TrainingArgs, &Params) -> Result<Trainer>) -> Result<SweepResults> {
        let metric = if metric.starts_with("eval_") { metric.to_string() } else { format!("eval_{metric}") };
        let higher = self.greater_is_better.unwrap_or(!metric.ends_with("loss"));
        let mut trials: Vec<Trial> = Vec::new();
        let mut interrupted = false;
        for (index, params) in self.trials().into_iter().enumerate() {
            let args = self.args_for(index, &params)?;
            let output_dir = args.output_dir.clone();
            let mut trainer = build(args, &params)?;
            let pruned = Rc::new(Cell::new(false));
            if let Some(margin) = self.prune_margin {
                watch_for_pruning(&mut trainer, best_by_step(&trials, &metric, higher), metric.clone(), higher, margin, pruned.clone());
            }
            let summary = trainer.train()?;
            let evaluation = trainer.evaluate()?;
            let value = evaluation.get(&metric).ok_or_else(|| {
                Error::config("sweep metric", format!("{metric} is not among {:?}", evaluation.metrics.keys().collect::<Vec<_>>()))
            })?;
            let pruned = pruned.get() && summary.interrupted;
            interrupted = summary.interrupted && !pruned;
            trials.push(Trial { params, output_dir, metric: value, loss_curve: summary.loss_curve.clone(), pruned, summary });
            if interrupted {
                break;
            }
        }
        trials.sort_by(|a, b| {
            let order = a.metric.total_cmp(&b.metric);
            if higher {
                order.reverse()
            } else {
                order
            }
        });
        Ok(SweepResults { metric, trials, interrupted })
    }
}

/// The best value of `metric` at each evaluated step over `trials`.
fn best_by_step(trials: &[Trial], metric: &str, higher: bool) -> BTreeMap<usize, f64> {
    let mut best = BTreeMap::new();
    for (step, metrics) in trials.iter().flat_map(|t| &t.summary.eval_history) {
        if let Some(&value) = metrics.get(metric) {
            best.entry(*step)
                .and_modify(|b: &mut f64| *b = if higher { b.max(value) } else { b.min(value) })
                .or_insert(value);
        }
    }
    best
}

/// Subscribes to `trainer`'s evaluations and requests a stop (setting `pruned`) when one
/// falls behind `best` at its step by more than `margin` (see [`Sweep::prune`]).
fn watch_for_pruning(trainer: &mut Trainer, best: BTreeMap<usize, f64>, metric: String, higher: bool, margin: f64, pruned: Rc<Cell<bool>>) {
    let mut total_steps = 0;
    trainer.on_event(move |event| match event {
        Event::TrainBegin { total_steps: total, .. } => total_steps = *total,
        // The last evaluation ends the trial anyway: stopping there would only mislabel it.
        Event::Eval { step, metrics, .. } if *step < total_steps && !pruned.get() => {
            if let (Some(&value), Some(&reference)) = (metrics.get(&metric), best.get(step)) {
                let behind = if higher { reference - value } else { value - reference };
                if behind > margin {
                    pruned.set(true);
                    request_stop();
                }
            }
        }
        _ => {}
    });
}

impl SweepResults {
    /// The best trial.
    pub fn best(&self) -> Option<&Trial> {
        self.trials.first()
    }

    /// One row per trial: its values, the metric, steps and final training loss.
    pub fn table(&self) -> Table {
        let names: Vec<String> = self.trials.first().map(|t| t.params.keys().cloned().collect()).unwrap_or_default();
        let mut columns = names.clone();
        columns.extend([self.metric.clone(), "steps".into(), "train_loss".into(), "status".into()]);
        let mut table = Table::new().title(format!("Sweep by {}", self.metric)).columns(columns);
        for trial in &self.trials {
            let mut cells: Vec<String> = names.iter().map(|n| trial.params.get(n).map(Value::to_string).unwrap_or_default()).collect();
            cells.push(format!("{:.4}", trial.metric));
            cells.push(trial.summary.global_step.to_string());
            cells.push(trial.summary.final_metrics.get("train_loss").map(|l| format!("{l:.4}")).unwrap_or_default());
            cells.push(trial.status().to_string());
            table = table.row(cells);
        }
        table
    }
}
