//! `tunebook`: the library's headless face — inspect models and data, generate, score, train, sweep.
use anyhow::Result;
use clap::{Parser, Subcommand};

mod data_commands;
mod model_commands;
mod train_commands;

#[derive(Parser)]
#[command(name = "tunebook", version, about = "Fine-tune language models — headless commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Architecture, size and memory of a model.
    Info(model_commands::InfoArgs),
    /// Continue a prompt (or answer it as a chat with --chat).
    Generate(model_commands::GenerateArgs),
    /// Mean per-token negative log-likelihood and perplexity of a text.
    Score(model_commands::ScoreArgs),
    /// Merge an adapter (if given) and write the model as a Hugging Face folder or a GGUF file.
    Export(model_commands::ExportArgs),
    /// Datasets: load, validate, clean, split and count tokens.
    #[command(subcommand)]
    Data(data_commands::DataCommand),
    /// Fine-tune as a recipe file says (model, data, method, training arguments);
    /// Ctrl-C saves a checkpoint, --resume continues.
    Train(train_commands::TrainArgs),
    /// Run a hyperparameter sweep file (grid or random), each trial in its own folder.
    Sweep(train_commands::SweepArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Info(args) => model_commands::info(args),
        Command::Generate(args) => model_commands::generate(args),
        Command::Score(args) => model_commands::score(args),
        Command::Export(args) => model_commands::export(args),
        Command::Data(command) => data_commands::run(command),
        Command::Train(args) => train_commands::train(args),
        Command::Sweep(args) => train_commands::sweep(args),
    }
}
