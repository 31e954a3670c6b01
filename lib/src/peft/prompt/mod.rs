//! Prompt tuning (Lester et al. 2021): `n` trainable virtual token embeddings prepended to
//! every input; the whole model stays frozen.
//!
//! ```no_run
//! use tunebook::peft::PromptTuningConfig;
//! # let mut model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
//! PromptTuningConfig::new(20).init_text("Answer the question politely:").apply(&mut model)?;
//! # Ok::<(), tunebook::Error>(())
//! ```
use crate::models::Model;
use crate::peft::common::{freeze, TrainableParameters};
use crate::peft::trainable_parameters;
use crate::{Error, Result};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct PromptTuningConfig {
    pub num_virtual_tokens: i64,
    /// Initialise from the embeddings of this text (repeated / cut to fit) instead of
    /// random values.
    pub init_text: Option<String>,
}

impl PromptTuningConfig {
    pub fn new(num_virtual_tokens: i64) -> Self {
        PromptTuningConfig { num_virtual_tokens, init_text: None }
    }
    pub fn init_text(mut self, text: impl Into<String>) -> Self {
        self.init_text = Some(text.into());
        self
    }

    /// Sets a trainable soft prompt on `model`, freezes everything else, returns the report.
    pub fn apply(&self, model: &mut Model) -> Result<TrainableParameters> {
        let n = self.num_virtual_tokens;
        if n <= 0 {
            return Err(Error::config("num_virtual_tokens", format!("must be positive, found {n}")));
        }
        let prompt = match &self.init_text {
            Some(text) => {
                let ids = model.tokenizer()?.encode(text, false)?;
                if ids.is_empty() {
                    return Err(Error::config("prompt_tuning_init_text", format!("{text:?} has no tokens")));
                }
                // PEFT repeats the text's tokens to fill the virtual tokens, then cuts.
                let ids: Vec<i64> = ids.iter().cycle().take(n as usize).map(|&i| i as i64).collect();
                let ids = Tensor::from_slice(&ids).to_device(model.device()).unsqueeze(0);
                tch::no_grad(|| model.backbone.embed(&ids).squeeze_dim(0))
            }
            None => {
                let (hidden, std) = token_embedding_scale(model)?;
                Tensor::randn([n, hidden], (Kind::Float, model.device())) * std
            }
        };
        freeze(model);
        model.soft_prompt = Some(prompt.detach().to_kind(model.kind()).set_requires_grad(true));
        Ok(trainable_parameters(model))
    }
}

/// Width and standard deviation of the token embedding matrix: random virtual tokens are
/// drawn at the scale of real ones.
fn token_embedding_scale(model: &Model) -> Result<(i64, f64)> {
    let embeddings = model
        .token_embeddings()
        .ok_or_else(|| Error::tensor("token embeddings", "the model has no token embedding matrix to take the prompt's scale from"))?;
    Ok((embeddings.size()[1], embeddings.to_kind(Kind::Float).std(true).double_value(&[])))
}
