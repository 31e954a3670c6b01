//! Evaluations, classification reports, training summaries and sweeps as tables; loss,
//! metric and confusion charts.

use super::{count, figures_table, metric, seconds, Table};
use crate::display::{Display, Heatmap, LineChart, MimeBundle};
use crate::train::{ClassificationReport, Evaluation, Metrics, SweepResults, TrainSummary, Trial};

/// A run's loss curves on one chart. The live chart of [`Trainer::train`] and
/// [`TrainSummary::loss_chart`] are both built with it, so the picture left in the notebook
/// after training is the one the summary draws.
///
/// [`Trainer::train`]: crate::train::Trainer::train
#[derive(Clone, Debug)]
pub(crate) struct LossCurves {
    chart: LineChart,
}

impl LossCurves {
    const TRAIN: &'static str = "train loss";
    const EVAL: &'static str = "eval loss";

    /// The curves so far: training loss per step and evaluations `(step, metrics)`.
    pub(crate) fn new<'a>(
        losses: impl IntoIterator<Item = &'a (usize, f64)>,
        evals: impl IntoIterator<Item = &'a (usize, Metrics)>,
    ) -> Self {
        let chart = LineChart::new("Training loss").x_label("step").y_label("loss (nats)");
        let mut curves = LossCurves { chart };
        for &(step, loss) in losses {
            curves.step(step, loss);
        }
        for (step, metrics) in evals {
            curves.eval(*step, metrics);
        }
        curves
    }

    pub(crate) fn step(&mut self, step: usize, loss: f64) {
        self.chart.push(Self::TRAIN, step, loss);
    }

    /// Adds the evaluation's `eval_loss`; other metrics have other units and stay off this
    /// chart (see [`TrainSummary::metric_chart`]).
    pub(crate) fn eval(&mut self, step: usize, metrics: &Metrics) {
        if let Some(&loss) = metrics.get("eval_loss") {
            self.chart.push(Self::EVAL, step, loss);
        }
    }

    pub(crate) fn chart(&self) -> &LineChart {
        &self.chart
    }
}

impl Display for Evaluation {
    fn mime_bundle(&self) -> MimeBundle {
        let figures = self.metrics.iter().map(|(name, value)| (name.clone(), "f64", metric(*value)));
        figures_table("Evaluation", figures).mime_bundle()
    }
}

impl ClassificationReport {
    /// The confusion matrix with class names on both axes: predicted classes across, true
    /// classes down.
    ///
    /// ```
    /// use tunebook::train::ClassificationReport;
    /// let report = ClassificationReport::new(&[0, 1, 1, 2], &[0, 1, 2, 2], 3).with_class_names(["neg", "neu", "pos"])?;
    /// let svg = report.confusion_heatmap().to_svg()?;
    /// assert!(svg.contains("neu") && svg.contains("predicted"));
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn confusion_heatmap(&self) -> Heatmap {
        let classes = self.confusion.len();
        let names: Vec<String> = (0..classes).map(|id| self.class_name(id)).collect();
        // The fields are public: square the matrix up rather than trust its shape.
        let cell = |t: usize, p: usize| self.confusion[t].get(p).copied().unwrap_or(0);
        let square = (0..classes).map(|t| (0..classes).map(move |p| cell(t, p)));
        let title = format!("Confusion matrix (accuracy {})", metric(self.accuracy));
        Heatmap::new(title, &names, &names, square)
            .expect("one name per row and column of a square matrix")
            .x_label("predicted")
            .y_label("true")
    }
}

impl Display for ClassificationReport {
    /// Precision, recall, F1 and support per class, then the macro and micro averages.
    fn mime_bundle(&self) -> MimeBundle {
        let scores = self.per_class();
        let total: u64 = scores.iter().map(|s| s.support).sum();
        let mut rows: Vec<[String; 5]> = scores
            .iter()
            .enumerate()
            .map(|(id, s)| [self.class_name(id), metric(s.precision), metric(s.recall), metric(s.f1), count(s.support)])
            .collect();
        rows.push(["macro avg".into(), metric(self.precision_macro), metric(self.recall_macro), metric(self.f1_macro), count(total)]);
        rows.push(["micro avg".into(), metric(self.precision_micro), metric(self.recall_micro), metric(self.f1_micro), count(total)]);
        Table::new()
            .title(format!("Classification report: accuracy {}", metric(self.accuracy)))
            .column("class", "str")
            .column("precision", "f64")
            .column("recall", "f64")
            .column("f1", "f64")
            .column("support", "u64")
            .rows(rows)
            .head_tail(rows_to_show(scores.len()), 2)
            .mime_bundle()
    }
}

/// Class rows shown before the gap, so that the averages (the last two rows) always show.
fn rows_to_show(classes: usize) -> usize {
    classes.clamp(10, 30)
}

impl TrainSummary {
    /// Training loss per step and, when the run evaluated, the eval loss: the same chart the
    /// live view drew during training.
    ///
    /// ```no_run
    /// # let summary: tunebook::train::TrainSummary = unimplemented!();
    /// summary.loss_chart().save_svg("runs/demo/loss.svg")?;
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn loss_chart(&self) -> LineChart {
        LossCurves::new(&self.loss_curve, &self.eval_history).chart
    }

    /// One evaluation metric (`accuracy` or `eval_accuracy`, …) per evaluated step; an
    /// empty chart when the run never recorded it.
    ///
    /// ```no_run
    /// # let summary: tunebook::train::TrainSummary = unimplemented!();
    /// tunebook::display::display(&summary.metric_chart("accuracy"));
    /// ```
    pub fn metric_chart(&self, name: &str) -> LineChart {
        let key = if name.starts_with("eval_") { name.to_owned() } else { format!("eval_{name}") };
        let points: Vec<(usize, f64)> =
            self.eval_history.iter().filter_map(|(step, metrics)| Some((*step, *metrics.get(&key)?))).collect();
        LineChart::new(format!("{key} per evaluation")).x_label("step").y_label(key.clone()).series(key, points)
    }
}

impl Display for TrainSummary {
    /// Steps, epochs, time and how the run ended, the final metrics, and the best checkpoint.
    fn mime_bundle(&self) -> MimeBundle {
        let mut figures: Vec<(String, &'static str, String)> = vec![
            ("steps".into(), "u64", count(self.global_step)),
            ("epochs".into(), "f64", format!("{:.2}", self.epoch)),
            ("time".into(), "", seconds(self.seconds)),
            ("status".into(), "str", self.status().to_owned()),
        ];
        let shown = self.final_metrics.iter().filter(|(name, _)| name.as_str() != "train_runtime");
        figures.extend(shown.map(|(name, value)| (name.clone(), "f64", metric(*value))));
        if let Some(best) = self.best_metric {
            figures.push(("best metric".into(), "f64", metric(best)));
        }
        let checkpoint = self.best_checkpoint.as_ref().or(self.last_checkpoint.as_ref());
        let checkpoint_name = if self.best_checkpoint.is_some() { "best checkpoint" } else { "last checkpoint" };
        if let Some(path) = checkpoint {
            figures.push((checkpoint_name.into(), "str", path.display().to_string()));
        }
        figures_table("Training summary", figures).mime_bundle()
    }
}

impl SweepResults {
    /// Every trial's training loss on one chart, named by its values (best trial first).
    ///
    /// ```no_run
    /// # let results: tunebook::train::SweepResults = unimplemented!();
    /// results.curves().save_png("runs/sweep/curves.png")?;
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn curves(&self) -> LineChart {
        let mut chart = LineChart::new(format!("Training loss per trial (sweep by {})", self.metric))
            .x_label("step")
            .y_label("loss (nats)");
        let mut names: Vec<String> = Vec::new();
        for trial in &self.trials {
            let mut name = trial_name(trial);
            // Random sweeps can draw the same values twice; same-named series would merge.
            if names.contains(&name) {
                let folder = trial.output_dir.file_name().map(|f| f.to_string_lossy().into_owned());
                name = format!("{name} [{}]", folder.unwrap_or_else(|| (names.len() + 1).to_string()));
            }
            chart = chart.series(name.clone(), trial.loss_curve.iter().copied());
            names.push(name);
        }
        chart
    }
}

/// `learning_rate=0.001, lora_rank=8`, with ` (pruned)` for a pruned trial.
fn trial_name(trial: &Trial) -> String {
    let values: Vec<String> = trial
        .params
        .iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(text) => format!("{name}={text}"),
            other => format!("{name}={other}"),
        })
        .collect();
    let mut name = if values.is_empty() { "trial".to_owned() } else { values.join(", ") };
    if trial.pruned {
        name.push_str(" (pruned)");
    }
    name
}

impl Display for SweepResults {
    fn mime_bundle(&self) -> MimeBundle {
        self.table().mime_bundle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_curves_keep_eval_loss_only() {
        let evals = vec![(2, Metrics::from([("eval_loss".into(), 1.5), ("eval_accuracy".into(), 0.5)]))];
        let curves = LossCurves::new(&[(1, 2.0), (2, 1.8)], &evals);
        assert_eq!(curves.chart().series_names(), ["train loss", "eval loss"]);
        assert_eq!(curves.chart().points("eval loss").unwrap(), [(2.0, 1.5)]);
    }

    #[test]
    fn ragged_confusion_matrix_still_draws() {
        let mut report = ClassificationReport::new(&[0, 1], &[0, 1], 2);
        report.confusion[1].pop();
        report.class_names.clear();
        let text = report.confusion_heatmap().mime_bundle().plain;
        assert!(text.contains("rows: true, columns: predicted"), "{text}");
    }
}
