//! The training event stream: subscribers, the JSONL log and the live progress view.
use super::metrics::Metrics;
use crate::display::{DisplayHandle, LossCurves, ProgressBar};
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

/// Appends events to `log.jsonl`; step events only every `logging_steps`. Workers other
/// than rank 0 of a distributed run keep none (`file` is `None`).
pub(crate) struct JsonlLog {
    file: Option<std::fs::File>,
    path: PathBuf,
    logging_steps: usize,
}

impl JsonlLog {
    pub(crate) fn open(output_dir: &Path, logging_steps: usize) -> Result<Self> {
        std::fs::create_dir_all(output_dir).map_err(|e| Error::io(output_dir, e))?;
        let path = output_dir.join("log.jsonl");
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        Ok(JsonlLog { file: Some(file), path, logging_steps })
    }

    pub(crate) fn none() -> Self {
        JsonlLog { file: None, path: PathBuf::new(), logging_steps: 1 }
    }

    pub(crate) fn write(&mut self, event: &Event) -> Result<()> {
        let Some(file) = &mut self.file else { return Ok(()) };
        if let Event::Step { step, .. } = event {
            if !step.is_multiple_of(self.logging_steps) {
                return Ok(());
            }
        }
        let line = serde_json::to_string(event).expect("events are plain values");
        writeln!(file, "{line}").map_err(|e| Error::io(&self.path, e))
    }
}

/// The live progress view: an HTML bar and, below it, the loss curve in a notebook
/// (`TUNEBOOK_KERNEL=1`), one rewritten stderr line in a terminal, nothing when stderr is
/// redirected.
pub(crate) struct Progress {
    bar: ProgressBar,
    view: View,
    last_draw: Option<Instant>,
}

enum View {
    Notebook(LiveChart),
    Terminal,
    Hidden,
}

/// The notebook's outputs: the bar's, and the loss chart's once there is a point to draw.
struct LiveChart {
    bar: Option<DisplayHandle>,
    curves: LossCurves,
    chart: Option<DisplayHandle>,
    /// Points added since the chart was last drawn.
    stale: bool,
    last_draw: Option<Instant>,
}

/// A notebook update per step floods the frontend: the bar redraws at most 4 times a second,
/// the chart (an SVG to render and send) twice.
const BAR_INTERVAL: Duration = Duration::from_millis(250);
const CHART_INTERVAL: Duration = Duration::from_millis(500);

fn due(last: Option<Instant>, interval: Duration) -> bool {
    last.is_none_or(|t| t.elapsed() >= interval)
}

impl Progress {
    /// `loss_curve` and `eval_history` are the run's so far (non-empty on resume), so the
    /// live chart continues the curve instead of starting over.
    pub(crate) fn new(total_steps: usize, start_step: usize, loss_curve: &[(usize, f64)], eval_history: &[(usize, Metrics)]) -> Self {
        let view = if std::env::var("TUNEBOOK_KERNEL").is_ok_and(|v| v == "1") {
            let curves = LossCurves::new(loss_curve, eval_history);
            View::Notebook(LiveChart { bar: None, curves, chart: None, stale: !loss_curve.is_empty(), last_draw: None })
        } else if std::io::stderr().is_terminal() {
            View::Terminal
        } else {
            View::Hidden
        };
        let mut bar = ProgressBar::new(total_steps as u64).label("Training");
        bar.set_step(start_step as u64);
        Progress { bar, view, last_draw: None }
    }

    /// Shows nothing (the workers after rank 0 of a distributed run).
    pub(crate) fn hidden(mut self) -> Self {
        self.view = View::Hidden;
        self
    }

    pub(crate) fn observe(&mut self, event: &Event) {
        match event {
            Event::Step { step, loss, learning_rate, .. } => {
                self.bar.set_step(*step as u64).set_metric("loss", *loss).set_metric("lr", *learning_rate);
                if let View::Notebook(live) = &mut self.view {
                    live.curves.step(*step, *loss);
                    live.stale = true;
                }
            }
            Event::Eval { step, metrics, .. } => {
                for (name, value) in metrics {
                    self.bar.set_metric(name, *value);
                }
                if let View::Notebook(live) = &mut self.view {
                    live.curves.eval(*step, metrics);
                    live.stale = true;
                }
            }
            _ => {}
        }
        let done = matches!(event, Event::TrainEnd { .. } | Event::Interrupted { .. });
        if done || due(self.last_draw, BAR_INTERVAL) {
            self.draw(done);
            self.last_draw = Some(Instant::now());
        }
    }

    pub(crate) fn add_tokens(&mut self, tokens: u64) {
        self.bar.add_tokens(tokens);
    }

    fn draw(&mut self, done: bool) {
        match &mut self.view {
            View::Notebook(live) => live.draw(&self.bar, done),
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

impl LiveChart {
    /// Updates the bar, and the chart when it has new points and is due (always at the end,
    /// so the last picture holds every step).
    fn draw(&mut self, bar: &ProgressBar, done: bool) {
        match &self.bar {
            Some(handle) => handle.update(bar),
            None => self.bar = Some(DisplayHandle::show(bar)),
        }
        if !self.stale || !(done || due(self.last_draw, CHART_INTERVAL)) {
            return;
        }
        let chart = self.curves.chart();
        match &self.chart {
            Some(handle) => handle.update(chart),
            None => self.chart = Some(DisplayHandle::show(chart)),
        }
        self.stale = false;
        self.last_draw = Some(Instant::now());
    }
}
