//! Trainer end to end on tiny random Llama models (CPU, fp32): learning really happens,
//! same seed gives the same losses, resume continues the same run, interrupts save and
//! return, half-written checkpoints are ignored, metrics and sweeps.
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};
use tunebook::models::{LoadOptions, Task};
use tunebook::nn::Module;
use tunebook::train::{
    latest_checkpoint, request_stop, Event, IntervalStrategy, SchedulerType, Sweep, TokenRows, Trainer, TrainingArgs,
};
use tunebook::Model;

const VOCAB: i64 = 64;
const HIDDEN: i64 = 32;

/// One run at a time: the stop flag is process-wide and CPU timing/determinism is steadier.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes a tiny random Llama (HF layout) into `dir`, the same for the same `seed`.
fn tiny_llama(dir: &Path, seed: i64) {
    tch::manual_seed(seed);
    let (inter, layers) = (64, 2);
    let mut tensors: Vec<(String, Tensor)> = vec![
        ("model.embed_tokens.weight".into(), Tensor::randn([VOCAB, HIDDEN], (Kind::Float, Device::Cpu)) * 0.1),
        ("model.norm.weight".into(), Tensor::ones([HIDDEN], (Kind::Float, Device::Cpu))),
        ("lm_head.weight".into(), Tensor::randn([VOCAB, HIDDEN], (Kind::Float, Device::Cpu)) * 0.1),
    ];
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        let linear = |out: i64, inp: i64| Tensor::randn([out, inp], (Kind::Float, Device::Cpu)) * 0.1;
        for (name, t) in [
            ("self_attn.q_proj", linear(HIDDEN, HIDDEN)),
            ("self_attn.k_proj", linear(HIDDEN / 2, HIDDEN)),
            ("self_attn.v_proj", linear(HIDDEN / 2, HIDDEN)),
            ("self_attn.o_proj", linear(HIDDEN, HIDDEN)),
            ("mlp.gate_proj", linear(inter, HIDDEN)),
            ("mlp.up_proj", linear(inter, HIDDEN)),
            ("mlp.down_proj", linear(HIDDEN, inter)),
        ] {
            tensors.push((format!("{p}.{name}.weight"), t));
        }
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            tensors.push((format!("{p}.{norm}.weight"), Tensor::ones([HIDDEN], (Kind::Float, Device::Cpu))));
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    Tensor::write_safetensors(&tensors, dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": inter,
        "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "tie_word_embeddings": false, "pad_token_id": 0
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// The tiny model with every parameter trainable (full fine-tuning).
fn model(dir: &Path, task: Task) -> Model {
    if !dir.join("config.json").exists() {
        tiny_llama(dir, 7);
    }
    // The classification head is initialised from the libtorch RNG.
    tch::manual_seed(11);
    let m = Model::from_pretrained_with(dir.to_str().unwrap(), LoadOptions::default().device(Device::Cpu).kind(Kind::Float).task(task))
        .unwrap();
    for (_, t) in m.named_parameters() {
        let _ = t.set_requires_grad(true);
    }
    m
}

/// Sequences with a learnable rule: each token is the previous plus a per-row stride.
fn causal_data(rows: usize) -> TokenRows {
    let data = (0..rows)
        .map(|r| {
            let (start, stride) = (1 + (r as i64 * 7) % 40, 1 + (r as i64 % 3));
            (0..12).map(|i| 1 + (start + i * stride) % (VOCAB - 1)).collect()
        })
        .collect();
    TokenRows::causal_texts(data, 0).unwrap()
}

/// Label = which third of the vocabulary the first token falls in.
fn classification_data(rows: usize) -> TokenRows {
    let data = (0..rows)
        .map(|r| {
            let first = 1 + (r as i64 * 13) % (VOCAB - 1);
            let ids = vec![first, 1 + (first * 5) % (VOCAB - 1), 1 + (r as i64 % 9)];
            (ids, (first * 3 / VOCAB).min(2))
        })
        .collect();
    TokenRows::classification(data, 0)
}

fn args(dir: &Path) -> TrainingArgs {
    TrainingArgs {
        learning_rate: 3e-3,
        max_steps: 12,
        per_device_train_batch_size: 4,
        warmup_steps: 2,
        weight_decay: 0.01,
        logging_steps: 1,
        save_strategy: IntervalStrategy::Steps,
        save_steps: 4,
        seed: 3,
        ..TrainingArgs::new(dir)
    }
}

fn losses(curve: &[(usize, f64)]) -> Vec<f64> {
    curve.iter().map(|(_, l)| *l).collect()
}

#[test]
fn tiny_causal_lm_overfits_a_tiny_set() {
    let _lock = serial();
    let tmp = tempfile::tempdir().unwrap();
    let args = TrainingArgs { max_steps: 60, learning_rate: 1e-2, lr_scheduler_type: SchedulerType::Constant, save_strategy: IntervalStrategy::No, ..args(&tmp.path().join("run")) };
    let mut trainer = Trainer::new(model(&tmp.path().join("llama"), Task::CausalLm), args).train_data(causal_data(8)).eval_data(causal_data(8));
    let before = trainer.evaluate().unwrap().get("loss").unwrap();
    let summary = trainer.train().unwrap();
    let after = trainer.evaluate().unwrap();
    assert!(after.get("loss").unwrap() < before / 5.0, "loss {before} → {:?}", after.get("loss"));
    assert!((after.get("perplexity").unwrap() - after.get("loss").unwrap().exp()).abs() < 1e-6);
    assert!(after.get("token_accuracy").unwrap() > 0.8);
    assert_eq!(summary.global_step, 60);
    assert!(tmp.path().join("run/log.jsonl").exists());
}

#[test]
fn tiny_classifier_overfits_and_reports_classification_metrics() {
    let _lock = serial();
    let tmp = tempfile::tempdir().unwrap();
    let args = TrainingArgs {
        max_steps: 80,
        learning_rate: 5e-3,
        eval_strategy: IntervalStrategy::Steps,
        eval_steps: Some(40),
        metric_for_best_model: Some("accuracy".into()),
        load_best_model_at_end: true,
        save_steps: 40,
        ..args(&tmp.path().join("run"))
    };
    let mut trainer = Trainer::new(model(&tmp.path().join("llama"), Task::SequenceClassification { num_labels: 3 }), args)
        .train_data(classification_data(24))
        .eval_data(classification_data(24))
        .metric("always_half", |_| 0.5);
    let before = trainer.evaluate().unwrap();
    let summary = trainer.train().unwrap();
    let after = trainer.evaluate().unwrap();
    assert!(after.get("loss").unwrap() < before.get("loss").unwrap() / 5.0, "{:?} → {:?}", before.metrics, after.metrics);
    assert!(after.get("accuracy").unwrap() >= 0.95);
    assert!(after.get("f1_macro").unwrap() >= 0.9);
    assert_eq!(after.get("always_half"), Some(0.5));
    let confusion = after.confusion_matrix.as_ref().unwrap();
    assert_eq!(confusion.iter().flatten().sum::<u64>(), 24);
    // load_best_model_at_end: the model now holds the weights of the best evaluation.
    assert_eq!(summary.best_metric, after.get("accuracy"));
    assert!(summary.best_checkpoint.unwrap().join("model.safetensors").exists());
    assert_eq!(summary.eval_history.len(), 2);
}

#[test]
fn same_seed_gives_the_same_losses_and_another_seed_does_not() {
    let _lock = serial();
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: u64| {
        let args = TrainingArgs { seed, save_strategy: IntervalStrategy::No, ..args(&tmp.path().join(name)) };
        let mut t = Trainer::new(model(&tmp.path().join("llama"), Task::CausalLm), args).train_data(causal_data(10));
        losses(&t.train().unwrap().loss_curve)
    };
    let (a, b, c) = (run("a", 3), run("b", 3), run("c", 4));
    assert_eq!(a, b);
    assert_ne!(a, c, "a different seed shuffles the data differently");
}

#[test]
fn interrupt_saves_and_resume_continues_the_same_loss_curve() {
    let _lock = serial();
    let tmp = tempfile::tempdir().unwrap();
    let llama = tmp.path().join("llama");
    // Gradient accumulation over a dataset that does not divide evenly, across epochs.
    let run_args = |dir: &str| TrainingArgs { gradient_accumulation_steps: 2, per_device_train_batch_size: 3, ..args(&tmp.path().join(dir)) };

    let mut full = Trainer::new(model(&llama, Task::CausalLm), run_args("full")).train_data(causal_data(10));
    let uninterrupted = full.train().unwrap();
    assert_eq!(uninterrupted.global_step, 12);

    let mut first = Trainer::new(model(&llama, Task::CausalLm), run_args("resumed")).train_data(causal_data(10));
    first.on_event(|e| {
        if let Event::Step { step: 6, .. } = e {
            request_stop();
        }
    });
    let stopped = first.train().unwrap();
    assert!(stopped.interrupted);
    assert_eq!(stopped.global_step, 6);
    let checkpoint = tmp.path().join("resumed/checkpoint-6");
    assert_eq!(latest_checkpoint(&tmp.path().join("resumed")), Some(checkpoint.clone()));
    // The model is usable after the interrupt.
    assert!(first.evaluate_on(&causal_data(2)).unwrap().get("loss").unwrap().is_finite());

    // A fresh process would start from the pretrained weights again.
    let mut second = Trainer::new(model(&llama, Task::CausalLm), run_args("resumed")).train_data(causal_data(10));
    let resumed = second.resume_latest().unwrap();
    assert_eq!(resumed.global_step, 12);
    assert_eq!(losses(&resumed.loss_curve), losses(&uninterrupted.loss_curve));
    let eval = |t: &Trainer| t.evaluate_on(&causal_data(4)).unwrap().get("loss").unwrap();
    assert_eq!(eval(&second), eval(&full), "resumed weights equal uninterrupted weights");
}

#[test]
fn a_half_written_checkpoint_is_ignored_on_resume() {
    let _lock = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut t = Trainer::new(model(&tmp.path().join("llama"), Task::CausalLm), TrainingArgs { max_steps: 8, ..args(&out) })
        .train_data(causal_data(8));
    t.train().unwrap();
    // What a kill -9 during the save of step 12 leaves behind: a temp folder, and (for a
    // filesystem without atomic rename) a final-named folder without its state file.
    std::fs::create_dir_all(out.join(".tmp-checkpoint-12-999")).unwrap();
    std::fs::write(out.join(".tmp-checkpoint-12-999/model.safetensors"), b"partial").unwrap();
    std::fs::create_dir_all(out.join("checkpoint-12")).unwrap();
    std::fs::write(out.join("checkpoint-12/model.safetensors"), b"partial").unwrap();
    assert_eq!(latest_checkpoint(&out), Some(out.join("checkpoint-8")));

    let mut again = Trainer::new(model(&tmp.path().join("llama"), Task::CausalLm), TrainingArgs { max_steps: 10, ..args(&out) })
        .train_data(causal_data(8));
    let summary = again.resume_latest().unwrap();
    assert_eq!(summary.loss_curve.first().map(|p| p.0), Some(1));
    assert_eq!(summary.global_step, 10);
    assert_eq!(summary.loss_curve.len(), 10);
}

#[test]
fn events_and_jsonl_log_report_steps_evals_and_checkpoints() {
    let _lock = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let args = TrainingArgs { max_steps: 6, logging_steps: 2, eval_strategy: IntervalStrategy::Steps, eval_steps: Some(3), save_steps: 3, save_total_limit: Some(1), ..args(&out) };
    let mut t = Trainer::new(model(&tmp.path().join("llama"), Task::CausalLm), args).train_data(causal_data(8)).eval_data(causal_data(4));
    let events = t.event_channel();
    let summary = t.train().unwrap();
    let events: Vec<Event> = events.try_iter().collect();
    let steps: Vec<&Event> = events.iter().filter(|e| matches!(e, Event::Step { .. })).collect();
    assert_eq!(steps.len(), 6);
    let Event::Step { learning_rate, grad_norm, tokens_per_second, .. } = steps[0] else { unreachable!() };
    assert_eq!(*learning_rate, 0.0, "first warmup step");
    assert!(*grad_norm > 0.0 && *tokens_per_second > 0.0);
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Eval { .. })).count(), 2);
    assert_eq!(events.iter().filter(|e| matches!(e, Event::CheckpointSaved { .. })).count(), 2);
    // save_total_limit = 1 keeps only the newest (also the best here unless eval got worse).
    let kept = std::fs::read_dir(&out).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("checkpoint-")).count();
    assert!(kept <= 2, "kept {kept} checkpoints");
    assert!(summary.final_metrics.contains_key("eval_loss") && summary.final_metrics.contains_key("train_loss"));
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().filter(|l| l["event"] == "step").count(), 3, "every logging_steps = 2");
    assert!(lines.iter().any(|l| l["event"] == "eval" && l["metrics"]["eval_perplexity"].as_f64().is_some()));
}

#[test]
fn training_args_round_trip_through_toml_and_reject_typos() {
    let args = TrainingArgs { learning_rate: 2e-4, eval_strategy: IntervalStrategy::Epoch, lr_scheduler_type: SchedulerType::Cosine, ..TrainingArgs::new("runs/x") };
    assert_eq!(TrainingArgs::from_toml_str(&args.to_toml()).unwrap(), args);
    let err = TrainingArgs::from_toml_str("learning_rat = 1e-3").unwrap_err().to_string();
    assert!(err.contains("learning_rat"), "{err}");
    let err = TrainingArgs::from_toml_str("per_device_train_batch_size = 0").unwrap_err().to_string();
    assert!(err.contains("per_device_train_batch_size"), "{err}");
}

#[test]
fn grid_sweep_returns_trials_sorted_by_metric_with_curves() {
    let _lock = serial();
    let tmp = tempfile::tempdir().unwrap();
    let llama = tmp.path().join("llama");
    let base = TrainingArgs { max_steps: 10, eval_strategy: IntervalStrategy::Steps, eval_steps: Some(5), save_strategy: IntervalStrategy::No, ..args(&tmp.path().join("sweep")) };
    let results = Sweep::grid(base)
        .vary("learning_rate", [1e-5, 1e-2])
        .vary("weight_decay", [0.0, 0.1])
        .run("eval_loss", |args, _| Ok(Trainer::new(model(&llama, Task::CausalLm), args).train_data(causal_data(8)).eval_data(causal_data(8))))
        .unwrap();
    assert_eq!(results.trials.len(), 4);
    let metrics: Vec<f64> = results.trials.iter().map(|t| t.metric).collect();
    assert!(metrics.windows(2).all(|w| w[0] <= w[1]), "sorted ascending for a loss: {metrics:?}");
    assert_eq!(results.trials[0].params["learning_rate"], serde_json::json!(1e-2), "the larger rate learns faster");
    assert!(results.trials.iter().all(|t| t.loss_curve.len() == 10 && t.output_dir.starts_with(tmp.path().join("sweep"))));
    assert!(results.table().to_text().contains("learning_rate"));
}

#[test]
fn gradient_accumulation_equals_one_big_batch_with_uneven_lengths() {
    let _lock = serial();
    let tmp = tempfile::tempdir().unwrap();
    // Rows of 3..14 tokens with prompts masked: the token-weighted average must not give
    // short rows the weight of long ones.
    let rows: Vec<(Vec<i64>, Vec<i64>)> = (0..8)
        .map(|r| {
            let ids: Vec<i64> = (0..3 + (r * 5) % 12).map(|i| 1 + (r as i64 * 11 + i as i64 * 3) % (VOCAB - 1)).collect();
            let labels = ids.iter().enumerate().map(|(i, &t)| if i < 2 { -100 } else { t }).collect();
            (ids, labels)
        })
        .collect();
    let data = TokenRows::causal(rows, 0).unwrap();
    let run = |name: &str, batch: usize, accumulate: usize| {
        let args = TrainingArgs {
            per_device_train_batch_size: batch,
            gradient_accumulation_steps: accumulate,
            max_steps: 6,
            save_strategy: IntervalStrategy::No,
            ..args(&tmp.path().join(name))
        };
        let mut t = Trainer::new(model(&tmp.path().join("llama"), Task::CausalLm), args).train_data(data.clone());
        losses(&t.train().unwrap().loss_curve)
    };
    let (big, accumulated) = (run("big", 4, 1), run("accumulated", 2, 2));
    for (a, b) in big.iter().zip(&accumulated) {
        assert!((a - b).abs() < 1e-4, "{big:?} vs {accumulated:?}");
    }
}

#[test]
fn adamw_matches_torch_optim_adamw() {
    use tunebook::train::AdamW;
    let reference: serde_json::Value = serde_json::from_str(&tunebook_tests::run_python("adamw_reference.py", &[])).unwrap();
    let tensor = |v: &serde_json::Value| {
        let rows: Vec<Vec<f64>> = match v[0].is_array() {
            true => serde_json::from_value(v.clone()).unwrap(),
            false => vec![serde_json::from_value(v.clone()).unwrap()],
        };
        let t = Tensor::from_slice(&rows.concat()).reshape([rows.len() as i64, rows[0].len() as i64]);
        if v[0].is_array() { t } else { t.squeeze_dim(0) }
    };
    let weight = tensor(&reference["start"]["weight"]).set_requires_grad(true);
    let bias = tensor(&reference["start"]["bias"]).set_requires_grad(true);
    let params = vec![("layer.weight".to_string(), weight.shallow_clone()), ("layer.bias".to_string(), bias.shallow_clone())];
    let mut optimizer = AdamW::new(params, (0.9, 0.99), 1e-8, 0.1);
    for grads in reference["grads"].as_array().unwrap() {
        // d/dw sum(w * g) = g: the backward pass leaves exactly the reference gradients.
        let loss = (&weight * tensor(&grads["weight"])).sum(Kind::Double) + (&bias * tensor(&grads["bias"])).sum(Kind::Double);
        loss.backward();
        optimizer.step(0.01);
        optimizer.zero_grad();
    }
    let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
    let (dw, db) = (diff(&weight, &tensor(&reference["end"]["weight"])), diff(&bias, &tensor(&reference["end"]["bias"])));
    assert!(dw < 1e-12, "weight differs by {dw:e}");
    assert!(db < 1e-12, "bias differs by {db:e} (biases are not decayed)");
}

#[test]
fn smollm2_lora_on_chatterbot_pairs_lowers_validation_loss() {
    use tunebook::data::{chatterbot, SplitOptions, TokenizeOptions};
    use tunebook::peft::LoraConfig;
    let _lock = serial();
    let tmp = tempfile::tempdir().unwrap();
    let pairs = chatterbot().unwrap().sample(96, 5).split(&SplitOptions::new(0.75, 0.25, 0.0).seed(5)).unwrap();
    let options = LoadOptions::default().device(Device::Cpu).kind(Kind::Float);
    let mut model = Model::from_pretrained_with("smollm2-135m-instruct", options).unwrap();
    LoraConfig::new(8).alpha(16.0).targets(["q_proj", "v_proj"]).apply(&mut model).unwrap();
    let tokenizer = model.tokenizer().unwrap().clone();
    let tokenize = TokenizeOptions::default().max_len(64);
    let args = TrainingArgs {
        learning_rate: 2e-3,
        max_steps: 12,
        per_device_train_batch_size: 6,
        per_device_eval_batch_size: 12,
        save_strategy: IntervalStrategy::No,
        ..args(&tmp.path().join("run"))
    };
    let mut trainer = Trainer::new(model, args)
        .train_data(pairs.train.tokenize(&tokenizer, &tokenize).unwrap())
        .eval_data(pairs.validation.tokenize(&tokenizer, &tokenize).unwrap());
    let before = trainer.evaluate().unwrap().get("loss").unwrap();
    trainer.train().unwrap();
    let after = trainer.evaluate().unwrap().get("loss").unwrap();
    // 24 held-out pairs the adapter never saw: the chatbot's reply style carries over.
    assert!(after < before - 0.02, "validation loss {before:.3} → {after:.3}");
}

#[test]
fn gradient_checkpointing_trains_exactly_like_keeping_activations() {
    use tunebook::peft::LoraConfig;
    let _lock = serial();
    let tmp = tempfile::tempdir().unwrap();
    // LoRA dropout makes the recomputation replay random draws; full fine-tuning checks
    // that frozen-free layers get the same gradients through the recomputed graph.
    let run = |name: &str, lora: bool, checkpointing: bool| {
        let mut m = model(&tmp.path().join("llama"), Task::CausalLm);
        if lora {
            LoraConfig::new(4).alpha(8.0).dropout(0.1).all_linear().init_lora_weights(false).apply(&mut m).unwrap();
        }
        let args = TrainingArgs { max_steps: 5, gradient_checkpointing: checkpointing, save_strategy: IntervalStrategy::No, ..args(&tmp.path().join(name)) };
        let mut t = Trainer::new(m, args).train_data(causal_data(8));
        let curve = losses(&t.train().unwrap().loss_curve);
        let params: Vec<Tensor> = t.model.named_parameters().into_iter().map(|(_, p)| p.detach().copy()).collect();
        (curve, params)
    };
    for lora in [false, true] {
        let (kept, kept_params) = run("kept", lora, false);
        let (recomputed, recomputed_params) = run("recomputed", lora, true);
        for (a, b) in kept.iter().zip(&recomputed) {
            assert!((a - b).abs() < 1e-5, "lora={lora}: {kept:?} vs {recomputed:?}");
        }
        let worst = kept_params.iter().zip(&recomputed_params).map(|(a, b)| tunebook_tests::max_abs_diff(a, b)).fold(0.0, f64::max);
        assert!(worst < 1e-5, "lora={lora}: parameters differ by {worst}");
    }
}
