//! `data inspect`: load, validate and clean a dataset file, split it and count its tokens.
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tunebook::data::{CleanOptions, DataKind, Dataset, Format, LoadOptions, SplitOptions, TokenizeOptions};
use tunebook::models::{LoadOptions as ModelOptions, Model};
use tunebook::Device;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Cleaning report, split sizes and token statistics of a dataset file (JSON with --json).
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct InspectArgs {
    /// A data file (.json, .jsonl, .csv, .tsv, .parquet), a folder of them, or a glob.
    file: String,
    /// Whose tokenizer counts the tokens [default: smollm2-135m-instruct, or
    /// all-minilm-l6-v2 for classification data].
    #[arg(long, short)]
    model: Option<String>,
    /// auto, json, jsonl, csv, tsv or parquet.
    #[arg(long, default_value = "auto")]
    format: String,
    /// Longest example in tokens; longer ones are counted as truncated.
    #[arg(long, default_value_t = 2048)]
    max_len: usize,
    /// Seed of the train/validation/test split (80/10/10).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Inspect(args) => inspect(args),
    }
}

fn inspect(args: InspectArgs) -> Result<()> {
    let format: Format = args.format.parse()?;
    let data = Dataset::load_with(&args.file, LoadOptions::new().format(format))?;
    let model_name = args.model.clone().unwrap_or_else(|| {
        match data.kind() {
            DataKind::Classification => "all-minilm-l6-v2",
            _ => "smollm2-135m-instruct",
        }
        .to_string()
    });
    let model = Model::from_pretrained_with(&model_name, ModelOptions::default().device(Device::Cpu))
        .with_context(|| format!("loading the tokenizer of `{model_name}`"))?;
    let tokenizer = model.tokenizer()?;
    let (clean, report) = data.clean(&CleanOptions::default())?;
    let splits = clean.split(&SplitOptions::default().seed(args.seed))?;
    let stats = splits.token_stats(tokenizer, &TokenizeOptions::default().max_len(args.max_len))?;
    if args.json {
        let mut stats_json = serde_json::to_value(&stats)?;
        for split in stats_json.as_array_mut().into_iter().flatten() {
            split.as_object_mut().map(|s| s.remove("lengths"));
        }
        let out = serde_json::json!({
            "file": args.file,
            "kind": data.kind(),
            "model": model_name,
            "max_len": args.max_len,
            "labels": clean.labels().map(|l| l.names().to_vec()),
            "cleaning": report,
            "splits": splits.iter().map(|(name, part)| (name.to_string(), serde_json::json!(part.len()))).collect::<serde_json::Map<_, _>>(),
            "token_stats": stats_json,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{}: {} data, {} rows", args.file, data.kind(), data.len());
    if let Some(labels) = clean.labels() {
        println!("labels: {labels}");
    }
    println!("\n{report}");
    println!("split (seed {}):\n{splits}", args.seed);
    println!("tokens ({model_name}, max_len {}):", args.max_len);
    for split in &stats {
        println!("{split}");
    }
    Ok(())
}
