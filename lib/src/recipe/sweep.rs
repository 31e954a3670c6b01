//! Sweep files: a base recipe, changes to it, and the settings to vary.
use super::toml_file::{self, Override};
use super::Recipe;
use crate::display::LineChart;
use crate::train::sweep::Params;
use crate::train::{Sweep, SweepResults, Trainer};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// How trials are picked from the parameter lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepStrategy {
    /// Every combination.
    #[default]
    Grid,
    /// `trials` combinations drawn (seeded) from the lists.
    Random,
}

/// `[sweep]` of a sweep file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSettings {
    #[serde(default)]
    pub strategy: SweepStrategy,
    /// Random search only: how many trials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<usize>,
    /// Random search only: the seed of the draw.
    #[serde(default)]
    pub seed: u64,
    /// The evaluation metric that ranks trials, with or without `eval_` (`loss`, `accuracy`).
    #[serde(default = "eval_loss")]
    pub metric: String,
    /// Default: false for losses, true for anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greater_is_better: Option<bool>,
    /// Where the `trial-NNN` folders and the results go (relative to the sweep file);
    /// default: the base recipe's `output_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<PathBuf>,
    /// Early stopping of bad trials: stop a trial whose metric at an evaluation is worse
    /// than the best earlier trial's at the same step by more than this (metric units);
    /// see [`Sweep::prune`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_margin: Option<f64>,
    /// Dotted recipe settings and their candidate values:
    /// `"training.learning_rate" = [1e-4, 3e-4]`, `"method.r" = [8, 16]`.
    pub parameters: Table,
}

fn eval_loss() -> String {
    "eval_loss".into()
}

/// The file: `base`, the sweep, and sections that change the base recipe for every trial.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    base: PathBuf,
    sweep: SweepSettings,
    #[serde(default)]
    model: Option<Table>,
    #[serde(default)]
    data: Option<Table>,
    #[serde(default)]
    method: Option<Table>,
    #[serde(default)]
    training: Option<Table>,
}

/// A hyperparameter sweep over a recipe, read from a TOML file:
///
/// ```toml
/// base = "quickstart-lora.toml"    # the recipe every trial starts from (relative to this file)
///
/// [training]                       # optional: changes to the base for every trial
/// max_steps = 10
///
/// [sweep]
/// strategy = "grid"                # or "random" with trials = N and seed
/// metric = "eval_loss"
/// output_dir = "../runs/sweep-lr-rank"
/// prune_margin = 0.5               # optional: stop trials that fall this far behind
///
/// [sweep.parameters]
/// "training.learning_rate" = [3e-4, 1e-3]
/// "method.r" = [4, 16]
/// ```
///
/// Each trial trains in `output_dir/trial-NNN`; the sweep writes `results.csv` and
/// `results.json` (best first, with every trial's loss curve) and `loss_curves.svg`.
///
/// ```no_run
/// use tunebook::recipe::SweepRecipe;
/// let sweep = SweepRecipe::from_toml_file("notebooks/configs/sweep-lr-rank.toml")?;
/// let results = sweep.run()?;
/// println!("{}", results.table().to_text());
/// # Ok::<(), tunebook::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SweepRecipe {
    pub file: PathBuf,
    /// The base recipe file.
    pub base: PathBuf,
    /// Changes to the base for every trial (the sweep file's sections, then `--set`).
    pub overrides: Vec<Override>,
    pub settings: SweepSettings,
    pub output_dir: PathBuf,
    /// The varied settings, by name, and their values.
    pub axes: Vec<(String, Vec<Value>)>,
    /// The base recipe with `overrides` applied.
    pub base_recipe: Recipe,
}

/// Files a sweep writes into its output folder.
pub const RESULTS_CSV: &str = "results.csv";
pub const RESULTS_JSON: &str = "results.json";
pub const LOSS_CURVES_SVG: &str = "loss_curves.svg";

impl SweepRecipe {
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<SweepRecipe> {
        Self::from_toml_file_with(path, &[])
    }

    /// Reads a sweep file; `overrides` named `sweep.…` change the sweep, the others every
    /// trial's recipe (after the sweep file's own sections).
    pub fn from_toml_file_with(path: impl AsRef<Path>, overrides: &[Override]) -> Result<SweepRecipe> {
        let path = path.as_ref();
        let dir = path.parent().unwrap_or(Path::new("."));
        let (text, table) = toml_file::read(path)?;
        let (own, recipe_overrides): (Vec<Override>, Vec<Override>) = overrides.iter().cloned().partition(|o| o.key.starts_with("sweep."));
        let file: SweepFile = toml_file::deserialize(path, &text, table, &own)?;
        let mut changes = Vec::new();
        for (section, table) in [("model", &file.model), ("data", &file.data), ("method", &file.method), ("training", &file.training)] {
            if let Some(table) = table {
                toml_file::flatten(section, table, &mut changes);
            }
        }
        let mut changes: Vec<Override> = changes.into_iter().map(|o| o.relative_to(dir)).collect();
        changes.extend(recipe_overrides);
        let base = dir.join(&file.base);
        let base_recipe = Recipe::from_toml_file_with(&base, &changes)?;
        let output_dir = match &file.sweep.output_dir {
            Some(out) => dir.join(out),
            None => base_recipe.training.output_dir.clone(),
        };
        let axes = axes_of(path, &file.sweep.parameters)?;
        let sweep = SweepRecipe { file: path.to_path_buf(), base, overrides: changes, settings: file.sweep, output_dir, axes, base_recipe };
        sweep.check()?;
        Ok(sweep)
    }

    /// Checks the settings, and every value of every axis against the base recipe, so a
    /// typo fails now rather than after hours of earlier trials.
    fn check(&self) -> Result<()> {
        let bad = |field: &str, message: String| Err(toml_file::field_error(&self.file, field, message));
        let s = &self.settings;
        match (s.strategy, s.trials) {
            (SweepStrategy::Random, None | Some(0)) => return bad("sweep.trials", "random search needs trials = N (at least 1)".into()),
            (SweepStrategy::Grid, Some(_)) => return bad("sweep.trials", "only applies to strategy = \"random\" (a grid runs every combination)".into()),
            _ => {}
        }
        if s.prune_margin.is_some_and(|m| !(m.is_finite() && m >= 0.0)) {
            return bad("sweep.prune_margin", "must be a number ≥ 0".into());
        }
        if self.axes.is_empty() {
            return bad("sweep.parameters", "empty: name at least one setting to vary, e.g. \"training.learning_rate\" = [1e-4, 3e-4]".into());
        }
        if self.base_recipe.data.validation == 0.0 {
            return bad("data.validation", "trials are ranked on the validation split: set it above 0 in the base recipe or the sweep file".into());
        }
        for (name, values) in &self.axes {
            for value in values {
                let mut overrides = self.overrides.clone();
                overrides.push(Override::new(name.clone(), value.clone()));
                if let Err(e) = Recipe::from_toml_file_with(&self.base, &overrides) {
                    return bad(&format!("sweep.parameters.\"{name}\""), format!("value {value}: {e}"));
                }
            }
        }
        Ok(())
    }

    fn sweep(&self) -> Sweep {
        let mut base = self.base_recipe.training.clone();
        base.output_dir = self.output_dir.clone();
        let mut sweep = match (self.settings.strategy, self.settings.trials) {
            (SweepStrategy::Random, Some(n)) => Sweep::random(base, n, self.settings.seed),
            _ => Sweep::grid(base),
        };
        for (name, values) in &self.axes {
            sweep = sweep.vary(name, values.iter().cloned());
        }
        if let Some(greater) = self.settings.greater_is_better {
            sweep = sweep.greater_is_better(greater);
        }
        if let Some(margin) = self.settings.prune_margin {
            sweep = sweep.prune(margin);
        }
        sweep
    }

    /// The values of each trial, in run order.
    pub fn trials(&self) -> Vec<Params> {
        self.sweep().trials()
    }

    pub fn run(&self) -> Result<SweepResults> {
        self.run_with(|_, _, _| {})
    }

    /// Runs every trial and writes the results; `prepare` gets each trial's index, values
    /// and trainer before it trains (e.g. to subscribe to its events).
    pub fn run_with(&self, mut prepare: impl FnMut(usize, &Params, &mut Trainer)) -> Result<SweepResults> {
        let first = self.output_dir.join("trial-000");
        if first.exists() {
            let message = format!("{} already holds a sweep: choose another sweep.output_dir, or delete it", self.output_dir.display());
            return Err(toml_file::field_error(&self.file, "sweep.output_dir", message));
        }
        let mut index = 0;
        let results = self.sweep().run(&self.settings.metric, |args, params| {
            let mut overrides = self.overrides.clone();
            for (name, value) in params {
                let value = Value::try_from(value).map_err(|e| Error::config(name.as_str(), format!("{value} is not a TOML value: {e}")))?;
                overrides.push(Override::new(name.clone(), value));
            }
            overrides.push(Override::new("training.output_dir", args.output_dir.to_string_lossy().into_owned()));
            let mut trainer = Recipe::from_toml_file_with(&self.base, &overrides)?.build()?;
            prepare(index, params, &mut trainer);
            index += 1;
            Ok(trainer)
        })?;
        self.write_results(&results)?;
        Ok(results)
    }

    /// `results.csv`, `results.json` and `loss_curves.svg` in the output folder.
    fn write_results(&self, results: &SweepResults) -> Result<()> {
        let write = |name: &str, text: String| {
            let path = self.output_dir.join(name);
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
        };
        std::fs::create_dir_all(&self.output_dir).map_err(|e| Error::io(&self.output_dir, e))?;
        write(RESULTS_JSON, serde_json::to_string_pretty(results).expect("sweep results are plain values"))?;
        let names: Vec<&str> = self.axes.iter().map(|(n, _)| n.as_str()).collect();
        let mut csv = vec![["rank", "trial"].into_iter().chain(names.iter().copied()).chain([results.metric.as_str(), "status", "steps", "train_loss"]).map(csv_cell).collect::<Vec<_>>().join(",")];
        let mut chart = LineChart::new(format!("Training loss of {} trials", results.trials.len())).x_label("step").y_label("training loss");
        for (rank, trial) in results.trials.iter().enumerate() {
            let folder = trial.output_dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let values: Vec<String> = names.iter().map(|n| trial.params.get(*n).map(|v| v.to_string()).unwrap_or_default()).collect();
            let train_loss = trial.summary.final_metrics.get("train_loss").map(f64::to_string).unwrap_or_default();
            let row: Vec<String> = [(rank + 1).to_string(), folder.clone()]
                .into_iter()
                .chain(values.iter().cloned())
                .chain([trial.metric.to_string(), trial.status().to_string(), trial.summary.global_step.to_string(), train_loss])
                .collect();
            csv.push(row.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
            if !trial.loss_curve.is_empty() {
                chart = chart.series(format!("{folder}: {}", values.join(", ")), trial.loss_curve.iter().copied());
            }
        }
        write(RESULTS_CSV, csv.join("\n") + "\n")?;
        chart.save_svg(self.output_dir.join(LOSS_CURVES_SVG))
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The axes of `[sweep.parameters]` (quoted dotted names or nested tables), each a list.
fn axes_of(file: &Path, parameters: &Table) -> Result<Vec<(String, Vec<Value>)>> {
    let mut leaves = Vec::new();
    toml_file::flatten("", parameters, &mut leaves);
    leaves
        .into_iter()
        .map(|Override { key, value }| match value {
            Value::Array(values) if !values.is_empty() => Ok((key, values)),
            other => {
                let message = format!("expected a non-empty list of values, found {other}");
                Err(toml_file::field_error(file, &format!("sweep.parameters.\"{key}\""), message))
            }
        })
        .collect()
}
