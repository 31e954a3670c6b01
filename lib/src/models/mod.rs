//! Pretrained models: one file per family (Llama/Mistral, Qwen2, Qwen3, Phi-3, Gemma 3,
//! GPT-2, BERT) registered in [`family`], the decoder they share, a head per task, and
//! [`Model`], the one type a notebook user holds.
//!
//! ```no_run
//! use tunebook::Model;
//! let model = Model::from_pretrained("smollm2-135m-instruct")?;
//! println!("{}", model.generate("The capital of France is", &Default::default())?);
//! # Ok::<(), tunebook::Error>(())
//! ```
pub mod bert;
pub mod decoder;
mod export;
pub mod family;
pub mod gemma3;
mod gguf_export;
pub mod gpt2;
mod heads;
pub mod llama;
mod loader;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;
mod model;
mod source;

pub use family::Family;
pub use gguf_export::GgufQuant;
pub use heads::{Head, Task};
pub use loader::LoadOptions;
pub use model::{Model, ModelInfo, ModelSummary};
pub use source::{shipped_models, site_packages, venv_dir, ModelSource};

use crate::nn::{Checkpointing, KvCache, Module};
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// What every backbone (the stack below the head) offers.
pub trait Forward: Module + Send {
    /// Token embeddings `[batch, seq, hidden]` of `input_ids` `[batch, seq]`.
    fn embed(&self, input_ids: &Tensor) -> Tensor;
    /// Final hidden states `[batch, seq, hidden]` from input embeddings.
    ///
    /// `attention_mask` is `[batch, past + seq]` (1 = token, 0 = padding); `segments` marks
    /// the examples of a packed sequence; `cache` makes generation incremental.
    fn forward_embeds(&self, embeds: &Tensor, attention_mask: Option<&Tensor>, segments: Option<&Tensor>, cache: Option<&mut KvCache>) -> Tensor;
    fn num_layers(&self) -> usize;
    fn hidden_size(&self) -> i64;
    /// Switches gradient checkpointing of the layer stack (see [`Model::set_gradient_checkpointing`]).
    fn checkpointing_mut(&mut self) -> &mut Checkpointing;
}

/// Position of each token: from the padding mask (left-padded batches start at 0 at their
/// first real token), restarting at each example of a packed sequence, or plain offsets.
pub(crate) fn position_ids(seq: i64, past: i64, attention_mask: Option<&Tensor>, segments: Option<&Tensor>, device: Device) -> Tensor {
    if let Some(seg) = segments {
        let idx = Tensor::arange(seq, (Kind::Int64, device)).unsqueeze(0).expand_as(seg);
        let prev = Tensor::cat(&[seg.narrow(1, 0, 1), seg.narrow(1, 0, seq - 1)], 1);
        let starts = idx.where_self(&seg.ne_tensor(&prev), &idx.zeros_like());
        let (first, _) = starts.cummax(1);
        return idx - first;
    }
    if let Some(mask) = attention_mask {
        let pos = (mask.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1).clamp_min(0);
        return pos.narrow(1, past, seq);
    }
    Tensor::arange_start(past, past + seq, (Kind::Int64, device)).unsqueeze(0)
}

pub(crate) fn check_positive(field: &str, value: i64) -> Result<()> {
    if value <= 0 {
        return Err(Error::config(field, format!("must be positive, found {value}")));
    }
    Ok(())
}
