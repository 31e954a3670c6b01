//! [`TrainingArgs`]: Hugging Face `TrainingArguments` names and defaults, loadable from TOML.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How the learning rate moves over the run (after warmup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerType {
    /// Linear decay from the peak to 0 at the last step.
    #[default]
    Linear,
    /// Half a cosine from the peak to 0.
    Cosine,
    /// The peak the whole run, no warmup.
    Constant,
    /// Linear warmup, then the peak.
    ConstantWithWarmup,
}

/// When evaluation or checkpointing happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IntervalStrategy {
    #[default]
    No,
    Steps,
    Epoch,
}

/// Everything that shapes a training run, with the names and defaults of transformers'
/// `TrainingArguments`. A TOML file with the same keys maps onto it 1:1:
///
/// ```
/// use tunebook::train::TrainingArgs;
/// let args = TrainingArgs::from_toml_str(r#"
///     output_dir = "runs/sentiment"
///     learning_rate = 3e-5
///     num_train_epochs = 2
///     eval_strategy = "epoch"
/// "#)?;
/// assert_eq!(args.per_device_train_batch_size, 8);
/// # Ok::<(), tunebook::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingArgs {
    /// Checkpoints, `log.jsonl` and the final weights go here.
    pub output_dir: PathBuf,
    pub learning_rate: f64,
    pub num_train_epochs: f64,
    /// Total optimizer steps; overrides `num_train_epochs` when positive.
    pub max_steps: i64,
    pub per_device_train_batch_size: usize,
    pub per_device_eval_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    /// Fraction of the steps spent warming up (used when `warmup_steps` is 0).
    pub warmup_ratio: f64,
    pub warmup_steps: usize,
    pub lr_scheduler_type: SchedulerType,
    /// Decoupled AdamW decay; never applied to biases and norm weights.
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    /// Gradient clipping by global norm; 0 disables.
    pub max_grad_norm: f64,
    pub eval_strategy: IntervalStrategy,
    /// Evaluate every this many steps (defaults to `logging_steps`).
    pub eval_steps: Option<usize>,
    pub logging_steps: usize,
    pub save_strategy: IntervalStrategy,
    pub save_steps: usize,
    /// Keep at most this many checkpoints (the best one is never deleted).
    pub save_total_limit: Option<usize>,
    pub load_best_model_at_end: bool,
    /// Metric deciding the best checkpoint, with or without the `eval_` prefix.
    pub metric_for_best_model: Option<String>,
    /// Defaults to false for losses, true for anything else.
    pub greater_is_better: Option<bool>,
    /// Stop after this many evaluations without improvement of the best metric.
    pub early_stopping_patience: Option<usize>,
    /// Minimal improvement that resets the patience counter.
    pub early_stopping_threshold: f64,
    pub seed: u64,
    /// Recompute activations in backward to save memory.
    pub gradient_checkpointing: bool,
    /// bfloat16 autocast (CUDA only).
    pub bf16: bool,
    /// Seconds a distributed worker waits for the others (rendezvous, each collective)
    /// before failing; a worker that dies is noticed at once.
    pub ddp_timeout: u64,
}

impl Default for TrainingArgs {
    fn default() -> Self {
        TrainingArgs {
            output_dir: PathBuf::from("trainer_output"),
            learning_rate: 5e-5,
            num_train_epochs: 3.0,
            max_steps: -1,
            per_device_train_batch_size: 8,
            per_device_eval_batch_size: 8,
            gradient_accumulation_steps: 1,
            warmup_ratio: 0.0,
            warmup_steps: 0,
            lr_scheduler_type: SchedulerType::Linear,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            eval_strategy: IntervalStrategy::No,
            eval_steps: None,
            logging_steps: 500,
            save_strategy: IntervalStrategy::Steps,
            save_steps: 500,
            save_total_limit: None,
            load_best_model_at_end: false,
            metric_for_best_model: None,
            greater_is_better: None,
            early_stopping_patience: None,
            early_stopping_threshold: 0.0,
            seed: 42,
            gradient_checkpointing: false,
            bf16: false,
            ddp_timeout: 1800,
        }
    }
}

impl TrainingArgs {
    /// Defaults with a chosen output folder.
    pub fn new(output_dir: impl Into<PathBuf>) -> Self {
        TrainingArgs { output_dir: output_dir.into(), ..Default::default() }
    }

    /// Reads a TOML training config; unknown keys are errors (a typo must not be ignored).
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse_toml(&text).map_err(|message| Error::bad_file(path, message))
    }

    pub fn from_toml_str(text: &str) -> Result<Self> {
        Self::parse_toml(text).map_err(|message| Error::config("training args", message))
    }

    fn parse_toml(text: &str) -> std::result::Result<Self, String> {
        let args: TrainingArgs = toml::from_str(text).map_err(|e| format!("not a valid training config: {e}"))?;
        args.validate().map_err(|e| e.to_string())?;
        Ok(args)
    }

    /// The TOML text of these arguments (what [`from_toml_str`](Self::from_toml_str) reads back).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("training args are plain values")
    }

    /// Checks values a run cannot start with.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: String| Err(Error::config(field, message));
        if self.per_device_train_batch_size == 0 {
            return bad("per_device_train_batch_size", "must be at least 1".into());
        }
        if self.per_device_eval_batch_size == 0 {
            return bad("per_device_eval_batch_size", "must be at least 1".into());
        }
        if self.gradient_accumulation_steps == 0 {
            return bad("gradient_accumulation_steps", "must be at least 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate >= 0.0) {
            return bad("learning_rate", format!("must be a non-negative number, found {}", self.learning_rate));
        }
        if self.max_steps <= 0 && self.num_train_epochs <= 0.0 {
            return bad("num_train_epochs", "must be positive when max_steps is not set".into());
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return bad("warmup_ratio", format!("must be within 0..=1, found {}", self.warmup_ratio));
        }
        for (field, beta) in [("adam_beta1", self.adam_beta1), ("adam_beta2", self.adam_beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return bad(field, format!("must be within 0..1, found {beta}"));
            }
        }
        if self.save_strategy == IntervalStrategy::Steps && self.save_steps == 0 {
            return bad("save_steps", "must be at least 1 with save_strategy = \"steps\"".into());
        }
        if self.logging_steps == 0 {
            return bad("logging_steps", "must be at least 1".into());
        }
        if self.eval_steps == Some(0) {
            return bad("eval_steps", "must be at least 1".into());
        }
        if self.load_best_model_at_end && self.eval_strategy == IntervalStrategy::No {
            return bad("load_best_model_at_end", "needs an eval_strategy other than \"no\"".into());
        }
        if self.load_best_model_at_end && (self.save_strategy != self.eval_strategy || (self.save_strategy == IntervalStrategy::Steps && !self.save_steps.is_multiple_of(self.eval_interval()))) {
            return bad(
                "load_best_model_at_end",
                "needs save_strategy equal to eval_strategy and save_steps a multiple of eval_steps, so the best evaluation has a checkpoint".into(),
            );
        }
        if self.early_stopping_patience.is_some() && self.eval_strategy == IntervalStrategy::No {
            return bad("early_stopping_patience", "needs an eval_strategy other than \"no\"".into());
        }
        Ok(())
    }

    /// Steps between evaluations with `eval_strategy = "steps"`.
    pub fn eval_interval(&self) -> usize {
        self.eval_steps.unwrap_or(self.logging_steps)
    }

    /// The metric for the best checkpoint, `eval_`-prefixed (default `eval_loss`).
    pub fn best_metric_name(&self) -> String {
        let name = self.metric_for_best_model.as_deref().unwrap_or("loss");
        if name.starts_with("eval_") {
            name.to_string()
        } else {
            format!("eval_{name}")
        }
    }

    /// Whether a larger value of the best metric is better.
    pub fn higher_is_better(&self) -> bool {
        self.greater_is_better.unwrap_or_else(|| !self.best_metric_name().ends_with("loss"))
    }

    /// Warmup steps for a run of `total_steps`.
    pub fn warmup_for(&self, total_steps: usize) -> usize {
        if self.warmup_steps > 0 {
            self.warmup_steps
        } else {
            (self.warmup_ratio * total_steps as f64).ceil() as usize
        }
    }
}
