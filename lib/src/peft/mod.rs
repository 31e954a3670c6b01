//! Fine-tuning methods: pick one by what it costs.
//!
//! | method | what trains | module |
//! |---|---|---|
//! | full fine-tuning | every parameter (optionally not the embeddings / some layers) | [`FullFineTuning`] |
//! | LoRA | small low-rank matrices beside chosen linears | [`LoraConfig`] |
//! | QLoRA | LoRA over 4-bit NF4 base weights | [`LoraConfig::quantize`] |
//! | bottleneck adapters | small MLPs after attention / feed-forward | [`AdapterConfig`] |
//! | prompt tuning | a few virtual token embeddings | [`PromptTuningConfig`] |
//!
//! Every `apply` freezes the whole model first, then marks only its own tensors (and
//! `modules_to_save`) trainable: a trainer optimizes what has `requires_grad`.
//!
//! ```no_run
//! use tunebook::peft::{self, LoraConfig};
//! let mut model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
//! LoraConfig::new(8).alpha(16.0).targets(["q_proj", "v_proj"]).apply(&mut model)?;
//! println!("{}", peft::trainable_parameters(&model));
//! peft::save(&mut model, "out/adapter")?; // loads in Python `peft`
//! # Ok::<(), tunebook::Error>(())
//! ```
pub mod adapter;
mod common;
pub mod full;
pub mod lora;
pub mod prompt;
pub mod qlora;
mod save;

pub use adapter::{Activation, AdapterConfig, AdapterPlacement};
pub use common::{
    disable_adapters, enable_adapters, freeze, merge, trainable_parameters, unload, unmerge, with_adapters_disabled, ModulesToSave,
    ParameterRow, TrainableParameters,
};
pub use full::FullFineTuning;
pub use lora::{LoraBias, LoraConfig, LoraLayer, Targets};
pub use prompt::PromptTuningConfig;
pub use qlora::{QuantType, QuantizedWeight};
pub use save::{load, save};
