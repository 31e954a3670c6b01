//! `info`, `generate` and `score`.
use anyhow::{Context, Result};
use clap::Args;
use tunebook::device::parse_device;
use tunebook::models::{LoadOptions, Model};
use tunebook::GenerationConfig;

#[derive(Args)]
pub struct ModelArg {
    /// Shipped short name (smollm2-135m-instruct, all-minilm-l6-v2), a HF folder, a .gguf file or a hub id.
    #[arg(long, short)]
    model: String,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// A PEFT adapter folder (LoRA or prompt tuning, saved by tunebook or Python peft) to
    /// apply on top of the model.
    #[arg(long)]
    adapter: Option<std::path::PathBuf>,
}

impl ModelArg {
    fn load(&self) -> Result<Model> {
        let options = LoadOptions::default().device(parse_device(&self.device)?);
        let mut model = Model::from_pretrained_with(&self.model, options).with_context(|| format!("loading model `{}`", self.model))?;
        if let Some(adapter) = &self.adapter {
            tunebook::peft::load(&mut model, adapter).with_context(|| format!("loading adapter {}", adapter.display()))?;
        }
        Ok(model)
    }
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    model: ModelArg,
    /// hf (a Hugging Face folder) or gguf (one file for llama.cpp, Ollama, LM Studio).
    #[arg(long, value_parser = ["hf", "gguf"])]
    to: String,
    /// The folder (hf) or file (gguf) to write.
    #[arg(long)]
    out: std::path::PathBuf,
    /// GGUF weight type: f32, f16, q8_0 or q4_0.
    #[arg(long, default_value = "f16")]
    quant: String,
}

/// Merges the adapter (if any) into the model and writes it in the chosen format.
pub fn export(args: ExportArgs) -> Result<()> {
    let mut model = args.model.load()?;
    tunebook::peft::merge(&mut model);
    match args.to.as_str() {
        "gguf" => {
            let quant: tunebook::models::GgufQuant = args.quant.parse()?;
            model.save_gguf(&args.out, quant).with_context(|| format!("writing {}", args.out.display()))?;
        }
        _ => model.save_pretrained(&args.out).with_context(|| format!("writing {}", args.out.display()))?,
    }
    let size: u64 = if args.out.is_dir() {
        std::fs::read_dir(&args.out)?.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()
    } else {
        std::fs::metadata(&args.out)?.len()
    };
    println!("wrote {} ({:.1} MiB)", args.out.display(), size as f64 / (1 << 20) as f64);
    Ok(())
}

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn info(args: InfoArgs) -> Result<()> {
    let model = args.model.load()?;
    let s = model.summary();
    if args.json {
        let mut value = serde_json::to_value(&s)?;
        value["source"] = serde_json::json!(model.info().source);
        value["config"] = model.info().config.clone();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("model         {}", s.name);
    println!("source        {}", model.info().source.display());
    println!("family        {} ({})", s.family, s.architecture);
    println!("task          {}", s.task);
    println!("layers        {}", s.layers);
    println!("hidden size   {}", s.hidden_size);
    println!("vocab         {}", s.vocab_size.map_or("-".into(), |v| v.to_string()));
    println!("parameters    {} ({:.1} M)", s.parameters, s.parameters as f64 / 1e6);
    println!("dtype         {}", s.dtype);
    println!("device        {}", s.device);
    println!("memory        {:.1} MiB", s.memory_bytes as f64 / (1 << 20) as f64);
    Ok(())
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArg,
    #[arg(long, short)]
    prompt: String,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Chat template for a model without one (base models): "plain", a Jinja template or a .jinja file.
    #[arg(long)]
    chat_template: Option<String>,
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// 0 is greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    #[arg(long, default_value_t = 0)]
    top_k: i64,
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f64,
    /// Stop when this string appears (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    #[arg(long)]
    seed: Option<u64>,
}

pub fn generate(args: GenerateArgs) -> Result<()> {
    let mut model = args.model.load()?;
    if let Some(template) = &args.chat_template {
        model.set_chat_template(template).context("--chat-template")?;
    }
    let config = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        min_new_tokens: 0,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repetition_penalty: args.repetition_penalty,
        stop: args.stop,
        seed: args.seed,
    };
    let text = if args.chat { model.chat(&args.prompt, &config)? } else { model.generate(&args.prompt, &config)? };
    println!("{text}");
    Ok(())
}

#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    model: ModelArg,
    #[arg(long, short)]
    text: String,
    #[arg(long)]
    json: bool,
}

pub fn score(args: ScoreArgs) -> Result<()> {
    let model = args.model.load()?;
    let score = model.score(&args.text)?;
    if args.json {
        println!("{}", serde_json::to_string(&score)?);
    } else {
        println!("mean NLL    {:.4} nats/token over {} tokens", score.mean_nll, score.tokens - 1);
        println!("perplexity  {:.3}", score.perplexity);
    }
    Ok(())
}
