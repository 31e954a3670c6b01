//! Evaluation metrics: classification scores and the confusion matrix.
use crate::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// Metric values by name (`eval_loss`, `eval_accuracy`, ...), as transformers reports them.
pub type Metrics = BTreeMap<String, f64>;

/// Predictions of a model on a dataset: class ids (classification) or next-token ids at
/// the labelled positions (causal LM), with the matching labels.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Predictions {
    pub predictions: Vec<i64>,
    pub labels: Vec<i64>,
    /// Class logits `[examples][classes]` (classification only).
    pub logits: Vec<Vec<f32>>,
    /// Mean loss over the dataset (per token for causal LM).
    pub loss: f64,
}

/// Accuracy, per-class and averaged precision/recall/F1, and the confusion matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassificationReport {
    pub accuracy: f64,
    pub precision_macro: f64,
    pub recall_macro: f64,
    pub f1_macro: f64,
    pub precision_micro: f64,
    pub recall_micro: f64,
    pub f1_micro: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// Class names in id order: `"0"`, `"1"`, … unless set with
    /// [`with_class_names`](Self::with_class_names).
    pub class_names: Vec<String>,
}

/// Scores of one class, as in a row of sklearn's `classification_report`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Examples whose true label is this class.
    pub support: u64,
}

/// Counts of one class: true positives, false positives, false negatives.
fn class_counts(confusion: &[Vec<u64>], class: usize) -> (f64, f64, f64) {
    let cell = |t: usize, p: usize| confusion.get(t).and_then(|row| row.get(p)).copied().unwrap_or(0);
    let tp = cell(class, class) as f64;
    let predicted: u64 = (0..confusion.len()).map(|t| cell(t, class)).sum();
    let actual: u64 = confusion.get(class).map_or(0, |row| row.iter().sum());
    (tp, predicted as f64 - tp, actual as f64 - tp)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

fn f1(precision: f64, recall: f64) -> f64 {
    ratio(2.0 * precision * recall, precision + recall)
}

impl ClassificationReport {
    /// Scores `predictions` against `labels` over classes `0..num_classes`.
    ///
    /// ```
    /// use tunebook::train::ClassificationReport;
    /// let r = ClassificationReport::new(&[0, 1, 1, 2], &[0, 1, 2, 2], 3);
    /// assert_eq!(r.accuracy, 0.75);
    /// assert_eq!(r.confusion[2], vec![0, 1, 1]);
    /// ```
    pub fn new(predictions: &[i64], labels: &[i64], num_classes: usize) -> Self {
        let mut confusion = vec![vec![0u64; num_classes]; num_classes];
        for (&p, &l) in predictions.iter().zip(labels) {
            if (0..num_classes as i64).contains(&p) && (0..num_classes as i64).contains(&l) {
                confusion[l as usize][p as usize] += 1;
            }
        }
        let total = predictions.len().min(labels.len()) as f64;
        let correct: u64 = (0..num_classes).map(|c| confusion[c][c]).sum();
        let (mut p_sum, mut r_sum, mut f_sum) = (0.0, 0.0, 0.0);
        let (mut tp_all, mut fp_all, mut fn_all) = (0.0, 0.0, 0.0);
        for c in 0..num_classes {
            let (tp, fp, fnn) = class_counts(&confusion, c);
            let (p, r) = (ratio(tp, tp + fp), ratio(tp, tp + fnn));
            p_sum += p;
            r_sum += r;
            f_sum += f1(p, r);
            tp_all += tp;
            fp_all += fp;
            fn_all += fnn;
        }
        let n = num_classes.max(1) as f64;
        let (pm, rm) = (ratio(tp_all, tp_all + fp_all), ratio(tp_all, tp_all + fn_all));
        ClassificationReport {
            accuracy: ratio(correct as f64, total),
            precision_macro: p_sum / n,
            recall_macro: r_sum / n,
            f1_macro: f_sum / n,
            precision_micro: pm,
            recall_micro: rm,
            f1_micro: f1(pm, rm),
            confusion,
            class_names: (0..num_classes).map(|c| c.to_string()).collect(),
        }
    }

    /// Names the classes (in id order) for the report's table and confusion heatmap, e.g.
    /// with a dataset's [`LabelMap`](crate::data::LabelMap) names.
    ///
    /// ```
    /// use tunebook::train::ClassificationReport;
    /// let report = ClassificationReport::new(&[0, 1, 1], &[0, 1, 0], 2).with_class_names(["negative", "positive"])?;
    /// assert_eq!(report.class_names, ["negative", "positive"]);
    /// assert!(ClassificationReport::new(&[0], &[0], 2).with_class_names(["only one"]).is_err());
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn with_class_names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Result<Self> {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        if names.len() != self.confusion.len() {
            return Err(Error::InvalidArgument(format!(
                "{} class names for a report over {} classes",
                names.len(),
                self.confusion.len()
            )));
        }
        self.class_names = names;
        Ok(self)
    }

    /// The name of class `id`: its given name, or the id itself.
    pub fn class_name(&self, id: usize) -> String {
        self.class_names.get(id).cloned().unwrap_or_else(|| id.to_string())
    }

    /// Precision, recall, F1 and support of each class, in id order.
    pub(crate) fn per_class(&self) -> Vec<ClassScores> {
        (0..self.confusion.len())
            .map(|c| {
                let (tp, fp, fnn) = class_counts(&self.confusion, c);
                let (precision, recall) = (ratio(tp, tp + fp), ratio(tp, tp + fnn));
                ClassScores { precision, recall, f1: f1(precision, recall), support: (tp + fnn) as u64 }
            })
            .collect()
    }

    /// The scalar scores under `prefix` (e.g. `eval_accuracy`).
    pub fn metrics(&self, prefix: &str) -> Metrics {
        [
            ("accuracy", self.accuracy),
            ("precision_macro", self.precision_macro),
            ("recall_macro", self.recall_macro),
            ("f1_macro", self.f1_macro),
            ("precision_micro", self.precision_micro),
            ("recall_micro", self.recall_micro),
            ("f1_micro", self.f1_micro),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect()
    }
}

/// Fraction of `generated` texts equal to their `expected` text after trimming whitespace.
pub fn exact_match<S: AsRef<str>, T: AsRef<str>>(generated: &[S], expected: &[T]) -> f64 {
    let hits = generated.iter().zip(expected).filter(|(g, e)| g.as_ref().trim() == e.as_ref().trim()).count();
    hits as f64 / generated.len().min(expected.len()).max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_and_micro_scores_match_sklearn() {
        // sklearn: y_true=[0,0,1,1,2,2], y_pred=[0,1,1,1,2,0]
        let r = ClassificationReport::new(&[0, 1, 1, 1, 2, 0], &[0, 0, 1, 1, 2, 2], 3);
        assert!((r.accuracy - 4.0 / 6.0).abs() < 1e-12);
        // precision per class: 1/2, 2/3, 1 → macro 0.7222; recall: 1/2, 1, 1/2 → 0.6667
        assert!((r.precision_macro - 0.722_222_222_2).abs() < 1e-9);
        assert!((r.recall_macro - 2.0 / 3.0).abs() < 1e-12);
        // f1 per class: .5, .8, .6667 → macro 0.65556
        assert!((r.f1_macro - 0.655_555_555_6).abs() < 1e-9);
        assert!((r.f1_micro - r.accuracy).abs() < 1e-12);
        assert_eq!(r.confusion, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 1]]);
    }
}
