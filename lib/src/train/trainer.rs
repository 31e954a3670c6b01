//! [`Trainer`]: the training loop, evaluation and prediction.
use super::args::{IntervalStrategy, TrainingArgs};
use super::batch::{loss_weight, TrainData};
use crate::data::Batch;
use crate::distributed::{Backend, ProcessGroup};
use super::checkpoint::{self, TrainerState};
use super::events::{Event, JsonlLog, Progress, Subscriber};
use super::metrics::{exact_match, ClassificationReport, Metrics, Predictions};
use super::optim::AdamW;
use super::schedule;
use crate::generation::GenerationConfig;
use crate::loss::{causal_lm_loss_sum, classification_loss, IGNORE_INDEX};
use crate::models::{Model, Task};
use crate::nn::{Module, NamedTensors};
use crate::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every running [`Trainer::train`] to finish its current optimizer step, save a
/// checkpoint and return. SIGINT (Ctrl-C) in a terminal and the notebook kernel's interrupt
/// call this.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

fn install_interrupt_handler() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Another handler (e.g. the kernel's) already owns SIGINT: it calls request_stop.
        let _ = ctrlc::set_handler(request_stop);
    });
}

/// A user metric computed from the predictions of an evaluation.
pub type MetricFn = Box<dyn Fn(&Predictions) -> f64>;

/// What [`Trainer::evaluate`] returns.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// `eval_loss`, `eval_perplexity` (causal LM), `eval_accuracy`, `eval_f1_macro`, ...
    pub metrics: Metrics,
    /// `confusion[true][predicted]` (classification only).
    pub confusion_matrix: Option<Vec<Vec<u64>>>,
}

impl Evaluation {
    /// A metric by name, with or without the `eval_` prefix.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).or_else(|| self.metrics.get(&format!("eval_{name}"))).copied()
    }
}

/// What [`Trainer::train`] returns.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub global_step: usize,
    /// Epochs done, fractional.
    pub epoch: f64,
    /// Wall-clock seconds of this call (not counting earlier runs resumed from).
    pub seconds: f64,
    /// Stopped by [`request_stop`] / SIGINT; a checkpoint of the last step was saved.
    pub interrupted: bool,
    pub early_stopped: bool,
    pub best_checkpoint: Option<PathBuf>,
    pub best_metric: Option<f64>,
    pub last_checkpoint: Option<PathBuf>,
    /// `train_loss` (mean over all steps), `train_runtime` and the last evaluation.
    pub final_metrics: Metrics,
    /// Training loss of every step, including steps before a resume.
    pub loss_curve: Vec<(usize, f64)>,
    pub eval_history: Vec<(usize, Metrics)>,
}

impl TrainSummary {
    /// How the run ended: `done`, `interrupted` or `early stopped`.
    pub fn status(&self) -> &'static str {
        if self.interrupted {
            "interrupted"
        } else if self.early_stopped {
            "early stopped"
        } else {
            "done"
        }
    }
}

/// Fine-tunes a [`Model`] on a [`Dataset`](crate::data::Dataset) with [`TrainingArgs`], like transformers' `Trainer`.
/// The parameters that train are those with `requires_grad` (set by a method, or by hand).
///
/// ```no_run
/// use tunebook::train::{IntervalStrategy, Trainer, TrainingArgs, TokenRows};
/// # let model: tunebook::Model = unimplemented!();
/// # let (train, val): (TokenRows, TokenRows) = unimplemented!();
/// let args = TrainingArgs { learning_rate: 2e-5, eval_strategy: IntervalStrategy::Epoch, ..TrainingArgs::new("runs/clf") };
/// let mut trainer = Trainer::new(model, args).train_data(train).eval_data(val);
/// trainer.on_event(|e| println!("{e:?}"));
/// let summary = trainer.train()?;
/// println!("{:?}", trainer.evaluate()?.get("accuracy"));
/// # Ok::<(), tunebook::Error>(())
/// ```
pub struct Trainer {
    pub model: Model,
    pub args: TrainingArgs,
    train_data: Option<Box<dyn TrainData>>,
    eval_data: Option<Box<dyn TrainData>>,
    subscribers: Vec<Subscriber>,
    metric_fns: Vec<(String, MetricFn)>,
    generation_eval: Option<(Vec<(String, String)>, GenerationConfig)>,
    optimizer: Option<AdamW>,
    state: TrainerState,
    /// Data-parallel workers: joined from torchrun's variables at `train()` when not given.
    process_group: Option<ProcessGroup>,
}

/// One run's fixed figures.
///
/// `batches_per_epoch` counts this worker's micro-batches: with W workers each sees every
/// W-th example of the epoch's order (torch's DistributedSampler).

struct Plan {
    batches_per_epoch: usize,
    total_steps: usize,
    warmup_steps: usize,
    num_examples: usize,
}

impl Trainer {
    pub fn new(model: Model, args: TrainingArgs) -> Self {
        Trainer {
            model,
            args,
            train_data: None,
            eval_data: None,
            subscribers: Vec::new(),
            metric_fns: Vec::new(),
            generation_eval: None,
            optimizer: None,
            state: TrainerState::default(),
            process_group: None,
        }
    }

    /// Trains data-parallel in `group`: each worker takes its share of every epoch, the
    /// gradients of the trainable parameters are summed across workers before each
    /// optimizer step, and only rank 0 writes logs and checkpoints. Not needed under
    /// torchrun or `tunebook train --nproc N`: `train()` joins the group its environment
    /// describes.
    pub fn process_group(mut self, group: ProcessGroup) -> Self {
        self.process_group = Some(group);
        self
    }

    /// Whether this process writes logs, checkpoints and final weights (rank 0, or the
    /// only process).
    pub fn is_main_process(&self) -> bool {
        self.process_group.as_ref().is_none_or(ProcessGroup::is_main)
    }

    fn world(&self) -> (usize, usize) {
        self.process_group.as_ref().map_or((0, 1), |g| (g.rank, g.world_size))
    }

    pub fn train_data(mut self, data: impl TrainData + 'static) -> Self {
        self.train_data = Some(Box::new(data));
        self
    }

    pub fn eval_data(mut self, data: impl TrainData + 'static) -> Self {
        self.eval_data = Some(Box::new(data));
        self
    }

    /// Adds a metric computed at each evaluation, reported as `eval_NAME`.
    pub fn metric(mut self, name: &str, f: impl Fn(&Predictions) -> f64 + 'static) -> Self {
        self.metric_fns.push((name.to_string(), Box::new(f)));
        self
    }

    /// Adds generation-based evaluation: each prompt is completed with `config` and
    /// compared to its expected answer (`eval_exact_match`).
    pub fn generation_eval(mut self, pairs: Vec<(String, String)>, config: GenerationConfig) -> Self {
        self.generation_eval = Some((pairs, config));
        self
    }

    /// Calls `f` with every [`Event`] (steps, evaluations, checkpoints, ...).
    pub fn on_event(&mut self, f: impl FnMut(&Event) + 'static) -> &mut Self {
        self.subscribers.push(Box::new(f));
        self
    }

    /// Sends every [`Event`] to a channel, e.g. for a display thread.
    pub fn event_channel(&mut self) -> std::sync::mpsc::Receiver<Event> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.on_event(move |e| {
            let _ = tx.send(e.clone());
        });
        rx
    }

    /// Where the run stands (step, epoch, best metric, curves).
    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// Trains from scratch (a fresh optimizer and step 0).
    pub fn train(&mut self) -> Result<TrainSummary> {
        self.run(None)
    }

    /// Continues the run saved in `checkpoint` (a `checkpoint-STEP` folder): weights,
    /// optimizer, scheduler and data position; the losses continue as if never stopped.
    pub fn resume_from_checkpoint(&mut self, checkpoint: impl AsRef<Path>) -> Result<TrainSummary> {
        self.run(Some(checkpoint.as_ref().to_path_buf()))
    }

    /// Continues from the newest complete checkpoint in `output_dir` (or starts fresh if
    /// there is none).
    pub fn resume_latest(&mut self) -> Result<TrainSummary> {
        let latest = checkpoint::latest_checkpoint(&self.args.output_dir);
        self.run(latest)
    }

    fn trainable(&self) -> NamedTensors {
        self.model.named_parameters().into_iter().filter(|(_, t)| t.requires_grad()).collect()
    }

    fn plan(&self, data: &dyn TrainData) -> Plan {
        let args = &self.args;
        let (_, world_size) = self.world();
        let batches_per_epoch = data.len().div_ceil(world_size).div_ceil(args.per_device_train_batch_size);
        let steps_per_epoch = batches_per_epoch.div_ceil(args.gradient_accumulation_steps).max(1);
        let total_steps = if args.max_steps > 0 {
            args.max_steps as usize
        } else {
            (args.num_train_epochs * steps_per_epoch as f64).ceil() as usize
        };
        Plan { batches_per_epoch, total_steps, warmup_steps: args.warmup_for(total_steps), num_examples: data.len() }
    }

    fn emit(&mut self, event: Event, log: &mut JsonlLog, progress: &mut Progress) -> Result<()> {
        for s in &mut self.subscribers {
            s(&event);
        }
        progress.observe(&event);
        log.write(&event)
    }

    fn run(&mut self, resume: Option<PathBuf>) -> Result<TrainSummary> {
        self.args.validate()?;
        let started = Instant::now();
        let data = self.train_data.take().ok_or_else(|| Error::InvalidArgument("no training data: call .train_data(...) first".into()))?;
        let result = self.run_with(&*data, resume, started);
        self.train_data = Some(data);
        result
    }

    fn run_with(&mut self, data: &dyn TrainData, resume: Option<PathBuf>, started: Instant) -> Result<TrainSummary> {
        if data.is_empty() {
            return Err(Error::InvalidArgument("the training dataset is empty".into()));
        }
        if self.args.bf16 && !self.model.device().is_cuda() {
            return Err(Error::InvalidArgument("bf16 needs a CUDA device; the model is on the CPU".into()));
        }
        if self.args.bf16 && self.model.kind() != Kind::BFloat16 {
            return Err(Error::InvalidArgument(format!("bf16 = true but the model computes in {:?}: load it with kind BFloat16", self.model.kind())));
        }
        self.model.set_gradient_checkpointing(self.args.gradient_checkpointing);
        if self.process_group.is_none() {
            let backend = Backend::for_device(self.model.device());
            self.process_group = ProcessGroup::from_env(backend, Duration::from_secs(self.args.ddp_timeout))?;
        }
        let (rank, world_size) = self.world();
        let params = self.trainable();
        if params.is_empty() {
            return Err(Error::InvalidArgument(
                "the model has no trainable parameters: apply a fine-tuning method or set requires_grad on the ones to train".into(),
            ));
        }
        let plan = self.plan(data);
        let args = self.args.clone();
        let mut optimizer = AdamW::new(params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(), (args.adam_beta1, args.adam_beta2), args.adam_epsilon, args.weight_decay);
        self.state = match &resume {
            Some(dir) => {
                let state = checkpoint::load_state(dir)?;
                checkpoint::load_weights(&params, dir)?;
                optimizer.load(&checkpoint::optimizer_file(dir), state.global_step as u64)?;
                state
            }
            None => TrainerState { seed: args.seed, ..Default::default() },
        };
        if resume.is_some() && self.state.world_size.max(1) != world_size {
            return Err(Error::Distributed(format!(
                "the checkpoint was written by a run of {} worker(s); resume it with the same number, not {world_size}",
                self.state.world_size.max(1)
            )));
        }
        self.state.world_size = world_size;
        if let Some(group) = &self.process_group {
            // Every worker starts from rank 0's weights (fresh adapters are random).
            group.broadcast(&params.iter().map(|(_, t)| t).collect::<Vec<_>>(), 0)?;
        }
        self.state.total_steps = plan.total_steps;
        self.state.warmup_steps = plan.warmup_steps;
        let main = self.is_main_process();
        let mut log = if main { JsonlLog::open(&args.output_dir, args.logging_steps)? } else { JsonlLog::none() };
        let mut progress = Progress::new(plan.total_steps, self.state.global_step, &self.state.loss_curve, &self.state.eval_history);
        if !main {
            progress = progress.hidden();
        }
        install_interrupt_handler();
        STOP.store(false, Ordering::SeqCst);
        let trainable_parameters = params.iter().map(|(_, t)| t.numel() as i64).sum();
        let begin = Event::TrainBegin { total_steps: plan.total_steps, start_step: self.state.global_step, num_examples: plan.num_examples, trainable_parameters };
        self.emit(begin, &mut log, &mut progress)?;

        let mut order = self.epoch_order(data.len(), rank, world_size);
        let (mut interrupted, mut early_stopped) = (false, false);
        let mut last_checkpoint = resume.clone();
        while self.state.global_step < plan.total_steps {
            let step_started = Instant::now();
            tch::manual_seed((self.state.seed as i64).wrapping_add(self.state.global_step as i64));
            let first = self.state.batch_in_epoch;
            let last = (first + args.gradient_accumulation_steps).min(plan.batches_per_epoch);
            let batches = (first..last)
                .map(|b| {
                    let bs = args.per_device_train_batch_size;
                    let indices = &order[b * bs..((b + 1) * bs).min(order.len())];
                    data.collate(indices, self.model.device())
                })
                .collect::<Result<Vec<Batch>>>()?;
            let (loss, tokens) = self.accumulate_gradients(&batches, &params)?;
            let grad_norm = clip_gradients(&params, args.max_grad_norm);
            let lr = schedule::learning_rate(args.lr_scheduler_type, args.learning_rate, self.state.global_step, plan.warmup_steps, plan.total_steps);
            optimizer.step(lr);
            optimizer.zero_grad();
            self.state.global_step += 1;
            self.state.batch_in_epoch = last;
            self.state.loss_curve.push((self.state.global_step, loss));
            let step = self.state.global_step;
            let epoch = self.state.epoch as f64 + last as f64 / plan.batches_per_epoch as f64;
            progress.add_tokens(tokens as u64);
            let tokens_per_second = tokens as f64 / step_started.elapsed().as_secs_f64().max(1e-9);
            self.emit(Event::Step { step, epoch, loss, learning_rate: lr, grad_norm, tokens_per_second }, &mut log, &mut progress)?;

            let epoch_done = self.state.batch_in_epoch >= plan.batches_per_epoch;
            if epoch_done {
                self.state.epoch += 1;
                self.state.batch_in_epoch = 0;
                order = self.epoch_order(data.len(), rank, world_size);
                self.emit(Event::EpochEnd { epoch: self.state.epoch, step }, &mut log, &mut progress)?;
            }
            let due = |strategy: IntervalStrategy, every: usize| match strategy {
                IntervalStrategy::No => false,
                IntervalStrategy::Steps => step.is_multiple_of(every),
                IntervalStrategy::Epoch => epoch_done,
            };
            let finished = step == plan.total_steps;
            let mut improved = false;
            if due(args.eval_strategy, args.eval_interval()) || (finished && args.eval_strategy != IntervalStrategy::No) {
                let eval = self.evaluate()?;
                let epoch_now = self.state.epoch as f64 + self.state.batch_in_epoch as f64 / plan.batches_per_epoch as f64;
                self.state.eval_history.push((step, eval.metrics.clone()));
                self.emit(Event::Eval { step, epoch: epoch_now, metrics: eval.metrics.clone() }, &mut log, &mut progress)?;
                improved = self.track_best(&eval.metrics)?;
            }
            let stop_requested = self.all_agree_to_stop(STOP.swap(false, Ordering::SeqCst))?;
            let save_now = due(args.save_strategy, args.save_steps) || stop_requested || (finished && args.save_strategy != IntervalStrategy::No);
            if save_now {
                if improved {
                    self.state.best_checkpoint = Some(checkpoint::folder(&args.output_dir, step));
                }
                let dir = if main {
                    let dir = checkpoint::save(&args.output_dir, &params, &optimizer, &self.state, &args)?;
                    if let Some(limit) = args.save_total_limit {
                        checkpoint::rotate(&args.output_dir, limit, self.state.best_checkpoint.as_deref());
                    }
                    dir
                } else {
                    checkpoint::folder(&args.output_dir, step)
                };
                if let Some(group) = &self.process_group {
                    // Nobody reads (load best, resume) a checkpoint rank 0 is still writing.
                    group.barrier()?;
                }
                self.emit(Event::CheckpointSaved { step, path: dir.clone() }, &mut log, &mut progress)?;
                last_checkpoint = Some(dir);
            }
            if stop_requested {
                interrupted = true;
                self.emit(Event::Interrupted { step }, &mut log, &mut progress)?;
                break;
            }
            if args.early_stopping_patience.is_some_and(|p| self.state.evals_without_improvement >= p) {
                early_stopped = true;
                let best_metric = self.state.best_metric.unwrap_or(f64::NAN);
                self.emit(Event::EarlyStopped { step, best_metric }, &mut log, &mut progress)?;
                break;
            }
        }
        if args.load_best_model_at_end && !interrupted {
            if let Some(best) = &self.state.best_checkpoint {
                checkpoint::load_weights(&params, best)?;
            }
        }
        self.optimizer = Some(optimizer);
        let seconds = started.elapsed().as_secs_f64();
        self.emit(Event::TrainEnd { step: self.state.global_step, seconds }, &mut log, &mut progress)?;
        Ok(self.summary(seconds, plan.batches_per_epoch, interrupted, early_stopped, last_checkpoint))
    }

    fn summary(&self, seconds: f64, batches_per_epoch: usize, interrupted: bool, early_stopped: bool, last_checkpoint: Option<PathBuf>) -> TrainSummary {
        let s = &self.state;
        let mut final_metrics = s.eval_history.last().map(|(_, m)| m.clone()).unwrap_or_default();
        if !s.loss_curve.is_empty() {
            final_metrics.insert("train_loss".into(), s.loss_curve.iter().map(|(_, l)| l).sum::<f64>() / s.loss_curve.len() as f64);
        }
        final_metrics.insert("train_runtime".into(), seconds);
        TrainSummary {
            global_step: s.global_step,
            epoch: s.epoch as f64 + s.batch_in_epoch as f64 / batches_per_epoch.max(1) as f64,
            seconds,
            interrupted,
            early_stopped,
            best_checkpoint: s.best_checkpoint.clone(),
            best_metric: s.best_metric,
            last_checkpoint,
            final_metrics,
            loss_curve: s.loss_curve.clone(),
            eval_history: s.eval_history.clone(),
        }
    }

    /// This worker's example order for the current epoch: a shuffle seeded by (seed,
    /// epoch), so the data position of a checkpoint is just (epoch, batch); with several
    /// workers, every `world_size`-th example from `rank`, the order first padded by
    /// wrapping around so all workers get the same count (DistributedSampler semantics).
    fn epoch_order(&self, len: usize, rank: usize, world_size: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..len).collect();
        let seed = self.state.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(self.state.epoch as u64);
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        if world_size == 1 {
            return order;
        }
        let padded = len.div_ceil(world_size) * world_size;
        (rank..padded).step_by(world_size).map(|i| order[i % len]).collect()
    }

    /// Whether any worker asked to stop (Ctrl-C reaches them at slightly different steps);
    /// all then stop after the same step.
    fn all_agree_to_stop(&self, stop_here: bool) -> Result<bool> {
        match &self.process_group {
            Some(group) => Ok(group.sum(if stop_here { 1.0 } else { 0.0 })? > 0.0),
            None => Ok(stop_here),
        }
    }

    /// Forward + backward over the micro-batches of one optimizer step. Losses are weighted
    /// so the gradient equals that of one big batch: by predicted tokens (causal LM) or
    /// examples (classification). Returns the step's mean loss and its token count.
    ///
    /// With several workers the weights are over all workers' batches and the gradients
    /// are summed across workers, so the step equals one process seeing every batch.
    fn accumulate_gradients(&self, batches: &[Batch], params: &NamedTensors) -> Result<(f64, i64)> {
        let weights: Vec<i64> = batches.iter().map(loss_weight).collect();
        let mut total = weights.iter().sum::<i64>() as f64;
        if let Some(group) = &self.process_group {
            total = group.sum(total)?;
        }
        let total = total.max(1.0);
        let (mut loss_sum, mut tokens) = (0.0, batches.iter().map(|b| b.tokens as i64).sum::<i64>());
        for (batch, weight) in batches.iter().zip(&weights) {
            let loss = self.batch_loss(batch)? * (*weight as f64 / total);
            loss.backward();
            loss_sum += loss.double_value(&[]);
        }
        if let Some(group) = &self.process_group {
            sum_gradients(group, params)?;
            // One collective for both figures (exact in f64 for token counts).
            let totals = Tensor::from_slice(&[loss_sum, tokens as f64]);
            group.all_reduce_sum(&[&totals])?;
            (loss_sum, tokens) = (totals.double_value(&[0]), totals.double_value(&[1]) as i64);
        }
        Ok((loss_sum, tokens))
    }

    /// Mean loss of one batch for the model's task.
    fn batch_loss(&self, batch: &Batch) -> Result<Tensor> {
        if self.model.task == Task::CausalLm {
            let (sum, count) = self.model.causal_lm_loss_sum(&batch.input_ids, Some(&batch.attention_mask), batch.segments.as_ref(), &batch.labels);
            return Ok(sum / count.clamp_min(1.0));
        }
        let logits = self.model.forward_with(&batch.input_ids, Some(&batch.attention_mask), batch.segments.as_ref(), None);
        match &self.model.task {
            Task::CausalLm => unreachable!("handled above"),
            Task::SequenceClassification { .. } => Ok(classification_loss(&logits, &batch.labels)),
            Task::Embedding => Err(Error::InvalidArgument("an embedding model has no training objective: load it with a causal LM or classification task".into())),
        }
    }

    /// Updates the best metric and the patience counter after an evaluation.
    /// Returns whether this evaluation is the best so far.
    fn track_best(&mut self, metrics: &Metrics) -> Result<bool> {
        let name = self.args.best_metric_name();
        let Some(&value) = metrics.get(&name) else {
            let known: Vec<&str> = metrics.keys().map(String::as_str).collect();
            return Err(Error::config("metric_for_best_model", format!("evaluation has no {name} (it has {})", known.join(", "))));
        };
        let threshold = self.args.early_stopping_threshold;
        let improved = match self.state.best_metric {
            None => true,
            Some(best) if self.args.higher_is_better() => value > best + threshold,
            Some(best) => value < best - threshold,
        };
        if improved {
            self.state.best_metric = Some(value);
            self.state.evals_without_improvement = 0;
        } else {
            self.state.evals_without_improvement += 1;
        }
        Ok(improved)
    }

    /// Evaluates on the eval dataset given with [`eval_data`](Self::eval_data).
    pub fn evaluate(&self) -> Result<Evaluation> {
        let data = self.eval_data.as_deref().ok_or_else(|| Error::InvalidArgument("no evaluation data: call .eval_data(...) first".into()))?;
        self.evaluate_on(data)
    }

    /// Evaluates on any dataset: loss (+ perplexity and token accuracy for causal LM;
    /// accuracy, precision/recall/F1 and the confusion matrix for classification), user
    /// metrics and generation-based exact match.
    pub fn evaluate_on(&self, data: &dyn TrainData) -> Result<Evaluation> {
        let predictions = self.predict(data)?;
        let mut metrics = Metrics::new();
        metrics.insert("eval_loss".into(), predictions.loss);
        let mut confusion_matrix = None;
        match &self.model.task {
            Task::SequenceClassification { num_labels } => {
                let report = ClassificationReport::new(&predictions.predictions, &predictions.labels, *num_labels as usize);
                metrics.extend(report.metrics("eval_"));
                confusion_matrix = Some(report.confusion);
            }
            _ => {
                metrics.insert("eval_perplexity".into(), predictions.loss.exp());
                let hits = predictions.predictions.iter().zip(&predictions.labels).filter(|(p, l)| p == l).count();
                metrics.insert("eval_token_accuracy".into(), hits as f64 / predictions.labels.len().max(1) as f64);
            }
        }
        for (name, f) in &self.metric_fns {
            metrics.insert(format!("eval_{name}"), f(&predictions));
        }
        if let Some((pairs, config)) = &self.generation_eval {
            let generated = pairs.iter().map(|(prompt, _)| self.model.generate(prompt, config)).collect::<Result<Vec<_>>>()?;
            let expected: Vec<&str> = pairs.iter().map(|(_, e)| e.as_str()).collect();
            metrics.insert("eval_exact_match".into(), exact_match(&generated, &expected));
        }
        Ok(Evaluation { metrics, confusion_matrix })
    }

    /// Runs the model over `data` in order (no gradients): predicted classes (or next
    /// tokens at labelled positions), labels, class logits and the mean loss.
    pub fn predict(&self, data: &dyn TrainData) -> Result<Predictions> {
        let _guard = tch::no_grad_guard();
        let bs = self.args.per_device_eval_batch_size;
        let mut out = Predictions::default();
        let (mut loss_sum, mut count) = (0.0, 0.0);
        let indices: Vec<usize> = (0..data.len()).collect();
        for chunk in indices.chunks(bs) {
            let batch = data.collate(chunk, self.model.device())?;
            let logits = self.model.forward_with(&batch.input_ids, Some(&batch.attention_mask), batch.segments.as_ref(), None);
            match &self.model.task {
                Task::CausalLm => {
                    let (sum, n) = causal_lm_loss_sum(&logits, &batch.labels);
                    loss_sum += sum.double_value(&[]);
                    count += n.double_value(&[]);
                    let t = logits.size()[1];
                    let predicted = logits.narrow(1, 0, t - 1).argmax(-1, false).flatten(0, -1);
                    let target = batch.labels.narrow(1, 1, t - 1).flatten(0, -1);
                    let keep = target.ne(IGNORE_INDEX);
                    out.predictions.extend(Vec::<i64>::try_from(predicted.masked_select(&keep))?);
                    out.labels.extend(Vec::<i64>::try_from(target.masked_select(&keep))?);
                }
                Task::SequenceClassification { .. } => {
                    let n = chunk.len() as f64;
                    loss_sum += classification_loss(&logits, &batch.labels).double_value(&[]) * n;
                    count += n;
                    let logits = logits.to_kind(Kind::Float).to_device(tch::Device::Cpu);
                    out.predictions.extend(Vec::<i64>::try_from(logits.argmax(-1, false))?);
                    out.labels.extend(Vec::<i64>::try_from(batch.labels.to_device(tch::Device::Cpu))?);
                    out.logits.extend(Vec::<Vec<f32>>::try_from(logits)?);
                }
                Task::Embedding => return Err(Error::InvalidArgument("an embedding model has no predictions to evaluate".into())),
            }
        }
        out.loss = loss_sum / count.max(1.0);
        Ok(out)
    }

    /// Saves the trainable weights (safetensors, by Hugging Face name).
    pub fn save_trainable(&self, path: impl AsRef<Path>) -> Result<()> {
        checkpoint::save_weights(&self.trainable(), path.as_ref())
    }

    /// Hands the model back.
    pub fn into_model(self) -> Model {
        self.model
    }
}

/// Sums the trainable parameters' gradients across workers in one collective (flattened
/// into a single buffer, as DDP's buckets do). A parameter this worker's batch did not reach
/// (its gradient was dropped at zero_grad) takes part with zeros, so every worker sends the
/// same layout and all end with the same gradients.
fn sum_gradients(group: &ProcessGroup, params: &NamedTensors) -> Result<()> {
    tch::no_grad(|| {
        if params.is_empty() {
            return Ok(());
        }
        let grads: Vec<Tensor> =
            params.iter().map(|(_, p)| p.grad()).zip(params).map(|(g, (_, p))| if g.defined() { g } else { p.zeros_like() }).collect();
        let flat = Tensor::cat(&grads.iter().map(|g| g.flatten(0, -1)).collect::<Vec<_>>(), 0);
        group.all_reduce_sum(&[&flat])?;
        let mut offset = 0;
        for ((_, param), mut g) in params.iter().zip(grads) {
            let n = g.numel() as i64;
            g.copy_(&flat.narrow(0, offset, n).view_as(&g));
            if !param.grad().defined() {
                super::optim::set_grad(&mut param.shallow_clone(), &g);
            }
            offset += n;
        }
        Ok(())
    })
}

/// Scales gradients so their global L2 norm is at most `max_norm` (0 = no clipping) and
/// returns the norm before clipping.
fn clip_gradients(params: &NamedTensors, max_norm: f64) -> f64 {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params.iter().map(|(_, p)| p.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.to_kind(Kind::Float).norm()).collect();
        let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
        if max_norm > 0.0 && total > max_norm {
            let scale = max_norm / (total + 1e-6);
            for mut g in grads {
                let _ = g.g_mul_scalar_(scale);
            }
        }
        total
    })
}
