//! The training event stream: subscribers, the JSONL log and the progress bar.
use super::metrics::Metrics;
use crate::display::{DisplayHandle, ProgressBar};
use crate::{Error, Result};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What happens during training, in order. Serialized (one JSON object per line, tagged by
/// `event`) into `output_dir/log.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    TrainBegin { total_steps: usize, start_step: usize, num_examples: usize, trainable_parameters: i64 },
    /// One optimizer step finished; `loss` is its mean training loss.
    Step { step: usize, epoch: f64, loss: f64, learning_rate: f64, grad_norm: f64, tokens_per_second: f64 },
    Eval { step: usize, epoch: f64, metrics: Metrics },
    EpochEnd { epoch: usize, step: usize },
    CheckpointSaved { step: usize, path: PathBuf },
    /// A stop was requested (SIGINT, the kernel, [`request_stop`](super::request_stop)).
    Interrupted { step: usize },
    EarlyStopped { step: usize, best_metric: f64 },
    TrainEnd { step: usize, seconds: f64 },
}

/// A subscriber: called with every event, on the training thread.
pub type Subscriber = Box<dyn FnMut(&Event)>;

/// Appends events to `log.jsonl`; step events only every `logging_steps`.
pub(crate) struct JsonlLog {
    file: std::fs::File,
    path: PathBuf,
    logging_steps: usize,
}

impl JsonlLog {
    pub(crate) fn open(output_dir: &Path, logging_steps: usize) -> Result<Self> {
        std::fs::create_dir_all(output_dir).map_err(|e| Error::io(output_dir, e))?;
        let path = output_dir.join("log.jsonl");
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        Ok(JsonlLog { file, path, logging_steps })
    }

    pub(crate) fn write(&mut self, event: &Event) -> Result<()> {
        if let Event::Step { step, .. } = event {
            if !step.is_multiple_of(self.logging_steps) {
                return Ok(());
            }
        }
        let line = serde_json::to_string(event).expect("events are plain values");
        writeln!(self.file, "{line}").map_err(|e| Error::io(&self.path, e))
    }
}

/// The live progress view: an HTML bar in a notebook (`TUNEBOOK_KERNEL=1`), one rewritten
/// stderr line in a terminal, nothing when stderr is redirected.
pub(crate) struct Progress {
    bar: ProgressBar,
    view: View,
    last_draw: Option<Instant>,
}

enum View {
    Notebook(Option<DisplayHandle>),
    Terminal,
    Hidden,
}

impl Progress {
    pub(crate) fn new(total_steps: usize, start_step: usize) -> Self {
        let view = if std::env::var("TUNEBOOK_KERNEL").is_ok_and(|v| v == "1") {
            View::Notebook(None)
        } else if std::io::stderr().is_terminal() {
            View::Terminal
        } else {
            View::Hidden
        };
        let mut bar = ProgressBar::new(total_steps as u64).label("Training");
        bar.set_step(start_step as u64);
        Progress { bar, view, last_draw: None }
    }

    pub(crate) fn observe(&mut self, event: &Event) {
        match event {
            Event::Step { step, loss, learning_rate, .. } => {
                self.bar.set_step(*step as u64).set_metric("loss", *loss).set_metric("lr", *learning_rate);
            }
            Event::Eval { metrics, .. } => {
                for (name, value) in metrics {
                    self.bar.set_metric(name, *value);
                }
            }
            _ => {}
        }
        let done = matches!(event, Event::TrainEnd { .. } | Event::Interrupted { .. });
        // Redraw at most 4 times a second: a notebook update per step floods the frontend.
        if done || self.last_draw.is_none_or(|t| t.elapsed() > Duration::from_millis(250)) {
            self.draw(done);
            self.last_draw = Some(Instant::now());
        }
    }

    pub(crate) fn add_tokens(&mut self, tokens: u64) {
        self.bar.add_tokens(tokens);
    }

    fn draw(&mut self, done: bool) {
        match &mut self.view {
            View::Notebook(handle) => match handle {
                Some(h) => h.update(&self.bar),
                None => *handle = Some(DisplayHandle::show(&self.bar)),
            },
            View::Terminal => {
                let mut err = std::io::stderr();
                let _ = write!(err, "\r\x1b[2K{}", self.bar.to_text());
                if done {
                    let _ = writeln!(err);
                }
                let _ = err.flush();
            }
            View::Hidden => {}
        }
    }
}
