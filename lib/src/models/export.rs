//! Saving a model as a Hugging Face folder: config.json, model.safetensors, tokenizer files.
use super::heads::Task;
use super::model::Model;
use crate::nn::Module;
use crate::tokenizer::write_json;
use crate::{Error, Result};
use std::collections::HashSet;
use std::path::Path;
use tch::Tensor;

impl Model {
    /// Writes `dir` as a Hugging Face model folder: `config.json` (the model's own config,
    /// with the architecture class and labels), `model.safetensors` under transformers'
    /// names, and the tokenizer files. `Model::from_pretrained(dir)` and Python's
    /// `AutoModelFor*.from_pretrained(dir)` load it back.
    ///
    /// A LoRA must be merged first ([`peft::merge`](crate::peft::merge)); other methods
    /// (adapters, prompt tuning, 4-bit weights) have no place in a plain model and are an
    /// error: save those with [`peft::save`](crate::peft::save).
    ///
    /// ```no_run
    /// use tunebook::{peft, Model};
    /// let mut model = Model::from_pretrained("smollm2-135m-instruct")?;
    /// peft::LoraConfig::new(8).targets(["q_proj", "v_proj"]).apply(&mut model)?;
    /// // ... train ...
    /// peft::merge(&mut model);
    /// model.save_pretrained("runs/merged")?;
    /// let reloaded = Model::from_pretrained("runs/merged")?;
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn save_pretrained(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        if self.soft_prompt.is_some() {
            return Err(Error::InvalidArgument("the model carries a soft prompt (prompt tuning), which a plain model cannot hold: save it with peft::save".into()));
        }
        let hook_params = self.hook_parameter_names()?;
        let conv1d = self.family().names.conv1d_layers;
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        self.visit_params("", &mut |name, tensor| {
            if hook_params.contains(name) {
                return;
            }
            let tensor = tensor.detach().to_device(tch::Device::Cpu);
            // GPT-2's Conv1D weights go back to their `[in, out]` layout.
            let stored_transposed = name.strip_suffix(".weight").is_some_and(|layer| conv1d.iter().any(|c| layer.ends_with(c)));
            let tensor = if stored_transposed { tensor.transpose(0, 1) } else { tensor };
            tensors.push((name.to_string(), tensor.contiguous()));
        });
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let weights = dir.join("model.safetensors");
        Tensor::write_safetensors(&tensors, &weights).map_err(|e| Error::bad_file(&weights, format!("writing weights: {e}")))?;
        write_json(&dir.join("config.json"), &self.hf_config())?;
        match self.tokenizer() {
            Ok(tokenizer) => tokenizer.save_pretrained(dir),
            Err(_) => Ok(()),
        }
    }

    /// Names of parameters that belong to hooks; errors when a hook changes what the plain
    /// layer computes (unmerged LoRA, adapters, 4-bit weights).
    pub(super) fn hook_parameter_names(&mut self) -> Result<HashSet<String>> {
        let mut names = HashSet::new();
        let mut blocking: Option<String> = None;
        self.visit_linears_mut("", &mut |prefix, linear| {
            let Some(hook) = &linear.hook else { return };
            if !hook.folded_into_base() && blocking.is_none() {
                blocking = Some(prefix.to_string());
            }
            hook.visit_params(prefix, &mut |name, _| {
                names.insert(name.to_string());
            });
        });
        match blocking {
            Some(layer) => Err(Error::InvalidArgument(format!(
                "layer `{layer}` carries an unmerged fine-tuning method (LoRA not merged, adapters or 4-bit weights): \
                 call peft::merge(&mut model) for LoRA, or save the method with peft::save"
            ))),
            None => Ok(names),
        }
    }

    /// The config the model was built from, with transformers' class name, dtype and labels.
    fn hf_config(&self) -> serde_json::Value {
        let mut config = self.info().config.clone();
        let class = self.family().class(&self.task);
        config["architectures"] = serde_json::json!([class]);
        config["model_type"] = self.info().architecture.clone().into();
        config["torch_dtype"] = match self.kind() {
            tch::Kind::BFloat16 => "bfloat16",
            tch::Kind::Half => "float16",
            _ => "float32",
        }
        .into();
        if let Task::SequenceClassification { num_labels } = self.task {
            let id2label: serde_json::Map<String, serde_json::Value> = (0..num_labels).map(|i| (i.to_string(), format!("LABEL_{i}").into())).collect();
            let label2id: serde_json::Map<String, serde_json::Value> = (0..num_labels).map(|i| (format!("LABEL_{i}"), i.into())).collect();
            config["id2label"] = id2label.into();
            config["label2id"] = label2id.into();
        }
        config
    }
}
