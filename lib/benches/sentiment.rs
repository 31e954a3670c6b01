//! MiniLM 3-class sentiment on the VADER tweets, full fine-tuning, next to transformers' Trainer.
//!
//! `cargo bench -p tunebook --bench sentiment` splits the 4,200 tweets 80/10/10 (seeded,
//! stratified), writes the splits to JSON Lines, trains all-MiniLM-L6-v2 with the same
//! hyperparameters here and in `peers/sentiment.py` (transformers `Trainer`, dynamic
//! padding), and prints test accuracy, macro F1 and training examples/s of both. Targets:
//! accuracy within 2 points of the peer (or better), examples/s at least the peer's.
use std::process::Command;
use tch::{Device, Kind};
use tunebook::data::{vader, SplitOptions, TokenizeOptions, VaderSet};
use tunebook::models::{venv_dir, LoadOptions, ModelSource, Task};
use tunebook::peft::FullFineTuning;
use tunebook::train::{ClassificationReport, Trainer, TrainingArgs};
use tunebook::Model;

const MAX_LEN: usize = 64;
const EPOCHS: f64 = 2.0;
const BATCH: usize = 32;
const LEARNING_RATE: f64 = 5e-5;
const SEED: u64 = 42;

fn main() -> anyhow::Result<()> {
    let threads = tch::get_num_threads();
    let splits = vader(VaderSet::Tweets)?.split(&SplitOptions::new(0.8, 0.1, 0.1).seed(SEED))?;
    let dir = tempfile::tempdir()?;
    for (name, part) in splits.iter() {
        part.save(dir.path().join(format!("{name}.jsonl")))?;
    }

    tch::manual_seed(SEED as i64);
    let options = LoadOptions::default().device(Device::Cpu).kind(Kind::Float).task(Task::SequenceClassification { num_labels: 3 });
    let mut model = Model::from_pretrained_with("all-minilm-l6-v2", options)?;
    FullFineTuning::new().apply(&mut model)?;
    let tokenizer = model.tokenizer()?.clone();
    let tokenize = TokenizeOptions::default().max_len(MAX_LEN);
    let (train, test) = (splits.train.tokenize(&tokenizer, &tokenize)?, splits.test.tokenize(&tokenizer, &tokenize)?);
    let args = TrainingArgs {
        learning_rate: LEARNING_RATE,
        num_train_epochs: EPOCHS,
        per_device_train_batch_size: BATCH,
        per_device_eval_batch_size: 128,
        warmup_ratio: 0.1,
        weight_decay: 0.01,
        logging_steps: 1000,
        seed: SEED,
        ..TrainingArgs::new(dir.path().join("run"))
    };
    let train_examples = train.len() as f64 * EPOCHS;
    let mut trainer = Trainer::new(model, args).train_data(train);
    let summary = trainer.train()?;
    let predictions = trainer.predict(&test)?;
    let ours = ClassificationReport::new(&predictions.predictions, &predictions.labels, 3);
    let our_speed = train_examples / summary.seconds;

    let settings = serde_json::json!({
        "max_len": MAX_LEN, "epochs": EPOCHS, "batch_size": BATCH, "learning_rate": LEARNING_RATE,
        "warmup_ratio": 0.1, "weight_decay": 0.01, "seed": SEED,
    });
    let model_dir = ModelSource::resolve("all-minilm-l6-v2")?;
    let venv = venv_dir().ok_or_else(|| anyhow::anyhow!("no .venv: run scripts/setup.sh"))?;
    let peer = Command::new(venv.join("bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/sentiment.py"))
        .arg(model_dir.path())
        .arg(dir.path())
        .arg(settings.to_string())
        .arg(threads.to_string())
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_OFFLINE", "1")
        .output()?;
    anyhow::ensure!(peer.status.success(), "sentiment.py failed:\n{}", String::from_utf8_lossy(&peer.stderr));
    let peer: serde_json::Value = serde_json::from_slice(peer.stdout.trim_ascii_end().rsplit(|b| *b == b'\n').next().unwrap_or_default())?;
    let their_accuracy = peer["accuracy"].as_f64().unwrap_or(f64::NAN);
    let their_speed = peer["examples_per_s"].as_f64().unwrap_or(f64::NAN);

    println!(
        "all-MiniLM-L6-v2, full fine-tuning, VADER tweets {}/{}/{} (train/validation/test), {EPOCHS} epochs of batch {BATCH}, max_len {MAX_LEN}, lr {LEARNING_RATE}, {threads} threads",
        splits.train.len(),
        splits.validation.len(),
        splits.test.len()
    );
    println!("| | tunebook | transformers {} Trainer | difference | target |", peer["transformers"].as_str().unwrap_or("?"));
    println!("|---|---|---|---|---|");
    let points = 100.0 * (ours.accuracy - their_accuracy);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("| test accuracy | {:.4} | {their_accuracy:.4} | {points:+.1} points | ≥ −2 points: {} |", ours.accuracy, verdict(points >= -2.0));
    println!("| test macro F1 | {:.4} | {:.4} | {:+.1} points | |", ours.f1_macro, peer["f1_macro"].as_f64().unwrap_or(f64::NAN), 100.0 * (ours.f1_macro - peer["f1_macro"].as_f64().unwrap_or(f64::NAN)));
    println!("| training examples/s | {our_speed:.1} | {their_speed:.1} | {:.2}x | ≥ 1.0x: {} |", our_speed / their_speed, verdict(our_speed >= their_speed));
    Ok(())
}
