//! # tunebook
//!
//! Fine-tune language models cell by cell: load a pretrained model, look at the data,
//! pick a method (full, LoRA, QLoRA, adapters, prompt tuning), train, evaluate, export.

pub mod autograd;
pub mod data;
pub mod device;
pub mod distributed;
pub mod display;
pub mod error;
pub mod generation;
pub mod gguf;
pub mod loss;
pub mod models;
pub mod nn;
pub mod peft;
pub mod prelude;
pub mod recipe;
mod shim;
pub mod tokenizer;
pub mod train;

/// The README's examples compile as doctests, so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;

/// The tensor library underneath, for cells and programs that go below tunebook's API.
pub use tch;

pub use device::Device;
pub use error::{Error, Result};
pub use generation::{GenerationConfig, Score};
pub use models::{LoadOptions, Model, Task};
pub use tokenizer::{ChatMessage, Tokenizer};
