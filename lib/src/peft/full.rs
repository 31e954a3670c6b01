//! Full fine-tuning: every parameter trains, optionally not the embeddings or chosen layers.
//!
//! ```no_run
//! use tunebook::peft::FullFineTuning;
//! # let mut model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
//! let report = FullFineTuning::new().freeze_embeddings(true).freeze_layers(0..20).apply(&mut model)?;
//! println!("{report}");
//! # Ok::<(), tunebook::Error>(())
//! ```
use crate::models::Model;
use crate::peft::common::{freeze, unfreeze_where, TrainableParameters};
use crate::peft::trainable_parameters;
use crate::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FullFineTuning {
    pub freeze_embeddings: bool,
    /// Indices of transformer blocks kept frozen.
    pub frozen_layers: Vec<usize>,
}

/// Parameter-name parts of token / position embeddings in every supported family.
const EMBEDDING_NAMES: [&str; 5] = ["embed_tokens.", "wte.", "wpe.", "embeddings.", "prompt_encoder."];
/// Dotted containers of the transformer blocks (Llama, GPT-2, BERT).
const LAYER_CONTAINERS: [&str; 3] = ["layers", "h", "layer"];

impl FullFineTuning {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn freeze_embeddings(mut self, on: bool) -> Self {
        self.freeze_embeddings = on;
        self
    }
    pub fn freeze_layers(mut self, layers: impl IntoIterator<Item = usize>) -> Self {
        self.frozen_layers = layers.into_iter().collect();
        self
    }

    fn layer_of(name: &str) -> Option<usize> {
        let parts: Vec<&str> = name.split('.').collect();
        parts.windows(2).find(|w| LAYER_CONTAINERS.contains(&w[0])).and_then(|w| w[1].parse().ok())
    }

    fn trains(&self, name: &str) -> bool {
        if self.freeze_embeddings && EMBEDDING_NAMES.iter().any(|e| name.contains(e)) {
            return false;
        }
        !Self::layer_of(name).is_some_and(|i| self.frozen_layers.contains(&i))
    }

    /// Marks the chosen parameters trainable (all others frozen) and returns the report.
    pub fn apply(&self, model: &mut Model) -> Result<TrainableParameters> {
        let layers = model.backbone.num_layers();
        if let Some(bad) = self.frozen_layers.iter().find(|&&i| i >= layers) {
            return Err(Error::InvalidArgument(format!("freeze_layers: layer {bad} does not exist (the model has {layers} layers)")));
        }
        freeze(model);
        unfreeze_where(model, |name| self.trains(name));
        Ok(trainable_parameters(model))
    }
}
