//! `tunebook`: the library's headless face — inspect models and data, generate, score.
use anyhow::Result;
use clap::{Parser, Subcommand};

mod data_commands;
mod model_commands;

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
    /// Datasets: load, validate, clean, split and count tokens.
    #[command(subcommand)]
    Data(data_commands::DataCommand),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Info(args) => model_commands::info(args),
        Command::Generate(args) => model_commands::generate(args),
        Command::Score(args) => model_commands::score(args),
        Command::Data(command) => data_commands::run(command),
    }
}
