//! Training: [`Trainer`] with [`TrainingArgs`] (transformers' names), AdamW, LR schedules,
//! metrics, an event stream, atomic checkpoints with exact resume, interrupts, and
//! hyperparameter [`Sweep`]s. `gradient_checkpointing` trades a second forward pass for
//! activation memory; under torchrun (or `tunebook train --nproc N`) the same code trains
//! data-parallel on c10d ([`crate::distributed`], docs/distributed.md).
//!
//! ```no_run
//! use tunebook::train::{Trainer, TrainingArgs, TokenRows};
//! # let model: tunebook::Model = unimplemented!();
//! let data = TokenRows::causal_texts(vec![vec![1, 2, 3, 4]], 0)?;
//! let args = TrainingArgs { learning_rate: 1e-3, max_steps: 50, ..TrainingArgs::new("runs/demo") };
//! let summary = Trainer::new(model, args).train_data(data).train()?;
//! println!("{} steps, last loss {:?}", summary.global_step, summary.loss_curve.last());
//! # Ok::<(), tunebook::Error>(())
//! ```
mod args;
mod batch;
pub mod checkpoint;
mod events;
mod metrics;
mod optim;
pub mod schedule;
pub mod sweep;
mod trainer;

pub use args::{IntervalStrategy, SchedulerType, TrainingArgs};
pub use batch::{TokenRows, TrainData};
pub use crate::data::Batch;
pub use checkpoint::{latest_checkpoint, TrainerState};
pub use events::{Event, Subscriber};
pub use metrics::{exact_match, ClassificationReport, Metrics, Predictions};
pub use optim::AdamW;
pub use sweep::{Sweep, SweepResults, Trial};
pub use trainer::{request_stop, Evaluation, MetricFn, TrainSummary, Trainer};
