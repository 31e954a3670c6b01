//! Adapters in Hugging Face PEFT's format: `adapter_config.json` +
//! `adapter_model.safetensors` with PEFT's key names, loadable by `PeftModel.from_pretrained`.
use crate::models::{Model, Task};
use crate::nn::Module;
use crate::peft::common::{visit_hooks_mut, ModulesToSave};
use crate::peft::lora::{LoraBias, LoraConfig, LoraLayer, Targets};
use crate::peft::prompt::PromptTuningConfig;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use tch::Tensor;

const CONFIG_FILE: &str = "adapter_config.json";
const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// PEFT's prefix of every saved key.
const PREFIX: &str = "base_model.model.";

/// Saves the model's adapter (LoRA / QLoRA's LoRA, or a prompt-tuning soft prompt) to
/// `dir` in PEFT's format.
///
/// ```no_run
/// # let mut model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
/// tunebook::peft::LoraConfig::new(8).apply(&mut model)?;
/// tunebook::peft::save(&mut model, "out/adapter")?;
/// # Ok::<(), tunebook::Error>(())
/// ```
pub fn save(model: &mut Model, dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    let (config, tensors) = if let Some(found) = lora_state(model) {
        found
    } else if let Some(prompt) = &model.soft_prompt {
        prompt_state(model, prompt)
    } else {
        return Err(Error::InvalidArgument(
            "the model has no LoRA layers or soft prompt to save in PEFT format (bottleneck adapters and full fine-tuning have none)".into(),
        ));
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let config_path = dir.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(&config).expect("a JSON value serializes");
    std::fs::write(&config_path, text).map_err(|e| Error::io(&config_path, e))?;
    let named: Vec<(String, Tensor)> = tensors.into_iter().map(|(k, t)| (k, t.detach().contiguous())).collect();
    Tensor::write_safetensors(&named, dir.join(WEIGHTS_FILE))?;
    Ok(())
}

fn base_name(model: &Model) -> String {
    model.info().source.display().to_string()
}

fn lora_state(model: &mut Model) -> Option<(Value, Vec<(String, Tensor)>)> {
    let mut config: Option<LoraConfig> = None;
    let mut tensors = Vec::new();
    let mut targets = Vec::new();
    let mut saved_modules = Vec::new();
    visit_hooks_mut(model, |name, linear| {
        let any = linear.hook.as_ref().expect("visit_hooks_mut yields hooked linears").as_any();
        if let Some(lora) = any.downcast_ref::<LoraLayer>() {
            config.get_or_insert_with(|| (*lora.config).clone());
            targets.push(name.to_string());
            tensors.push((format!("{PREFIX}{name}.lora_A.weight"), lora.a.shallow_clone()));
            tensors.push((format!("{PREFIX}{name}.lora_B.weight"), lora.b.shallow_clone()));
            if lora.config.bias == LoraBias::LoraOnly {
                if let Some(b) = &linear.bias {
                    tensors.push((format!("{PREFIX}{name}.bias"), b.shallow_clone()));
                }
            }
        } else if let Some(saved) = any.downcast_ref::<ModulesToSave>() {
            saved_modules.push(name.to_string());
            tensors.push((format!("{PREFIX}{name}.weight"), saved.weight.shallow_clone()));
            if let Some(b) = &saved.bias {
                tensors.push((format!("{PREFIX}{name}.bias"), b.shallow_clone()));
            }
        }
    });
    let config = config?;
    if config.bias == LoraBias::All {
        model.visit_params("", &mut |name, t| {
            if name.ends_with(".bias") && !name.contains(".modules_to_save.") {
                tensors.push((format!("{PREFIX}{name}"), t.shallow_clone()));
            }
        });
    }
    let target_modules = match &config.targets {
        Targets::Pattern(p) => json!(p),
        Targets::Names(names) => json!(names),
        // PEFT records the leaf names it matched ("q_proj").
        Targets::Default | Targets::AllLinear => {
            let mut leaves: Vec<&str> = targets.iter().map(|t| t.rsplit('.').next().unwrap_or(t)).collect();
            leaves.sort();
            leaves.dedup();
            json!(leaves)
        }
    };
    let conv1d = model.family().names.conv1d_layers;
    let fan_in_fan_out = targets.iter().any(|t| conv1d.iter().any(|c| t.ends_with(c)));
    let value = json!({
        "peft_type": "LORA",
        "task_type": LoraConfig::task_type(&model.task),
        "base_model_name_or_path": base_name(model),
        "r": config.r,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": target_modules,
        "bias": config.bias.as_peft(),
        "use_rslora": config.use_rslora,
        "modules_to_save": if saved_modules.is_empty() { Value::Null } else { json!(config.modules_to_save) },
        "fan_in_fan_out": fan_in_fan_out,
        "init_lora_weights": config.init_lora_weights,
        "inference_mode": true,
        "use_dora": false,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null,
    });
    Some((value, tensors))
}

fn prompt_state(model: &Model, prompt: &Tensor) -> (Value, Vec<(String, Tensor)>) {
    let value = json!({
        "peft_type": "PROMPT_TUNING",
        "task_type": LoraConfig::task_type(&model.task),
        "base_model_name_or_path": base_name(model),
        "num_virtual_tokens": prompt.size()[0],
        "token_dim": prompt.size()[1],
        "num_transformer_submodules": 1,
        "num_layers": model.backbone.num_layers(),
        "prompt_tuning_init": "RANDOM",
        "inference_mode": true,
        "revision": null,
    });
    (value, vec![("prompt_embeddings".to_string(), prompt.shallow_clone())])
}

fn field<'a>(config: &'a Value, path: &Path, name: &str) -> Result<&'a Value> {
    config.get(name).ok_or_else(|| Error::bad_file(path, format!("missing field {name}")))
}

fn number(config: &Value, path: &Path, name: &str) -> Result<f64> {
    field(config, path, name)?.as_f64().ok_or_else(|| Error::bad_file(path, format!("field {name} must be a number")))
}

/// Loads a PEFT adapter folder (LoRA or prompt tuning) onto `model`, which must be the
/// base model it was trained on. Returns the trainable-parameter report.
///
/// ```no_run
/// let mut model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
/// println!("{}", tunebook::peft::load(&mut model, "out/adapter")?);
/// # Ok::<(), tunebook::Error>(())
/// ```
pub fn load(model: &mut Model, dir: impl AsRef<Path>) -> Result<crate::peft::TrainableParameters> {
    let dir = dir.as_ref();
    let config_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let config: Value = serde_json::from_str(&text).map_err(|e| Error::bad_file(&config_path, format!("invalid JSON: {e}")))?;
    let weights_path = dir.join(WEIGHTS_FILE);
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(&weights_path)
        .map_err(|e| Error::bad_file(&weights_path, format!("cannot read safetensors: {e}")))?
        .into_iter()
        .collect();
    let peft_type = field(&config, &config_path, "peft_type")?.as_str().unwrap_or_default();
    match peft_type {
        "LORA" => load_lora(model, &config, &config_path, &tensors, &weights_path),
        "PROMPT_TUNING" => {
            let prompt = tensors
                .get("prompt_embeddings")
                .ok_or_else(|| Error::bad_file(&weights_path, "missing tensor prompt_embeddings"))?;
            let hidden = model.backbone.hidden_size();
            if prompt.dim() != 2 || prompt.size()[1] != hidden {
                return Err(Error::bad_file(&weights_path, format!("prompt_embeddings has shape {:?}, expected [n, {hidden}]", prompt.size())));
            }
            PromptTuningConfig::new(prompt.size()[0]).apply(model)?;
            let target = model.soft_prompt.as_ref().expect("just set");
            tch::no_grad(|| target.shallow_clone().copy_(&prompt.to_kind(target.kind()).to_device(target.device())));
            Ok(crate::peft::trainable_parameters(model))
        }
        other => Err(Error::Unsupported { what: "PEFT adapter type", name: other.into(), supported: "LORA, PROMPT_TUNING".into() }),
    }
}

fn load_lora(
    model: &mut Model,
    config: &Value,
    config_path: &Path,
    tensors: &HashMap<String, Tensor>,
    weights_path: &Path,
) -> Result<crate::peft::TrainableParameters> {
    let task = field(config, config_path, "task_type").ok().and_then(|v| v.as_str()).unwrap_or("CAUSAL_LM");
    let expected = LoraConfig::task_type(&model.task);
    if task != expected && !(task == "SEQ_CLS" && matches!(model.task, Task::SequenceClassification { .. })) {
        return Err(Error::bad_file(config_path, format!("adapter is for task {task}, the model is {expected}")));
    }
    let targets = match field(config, config_path, "target_modules")? {
        Value::String(pattern) => Targets::Pattern(pattern.clone()),
        Value::Array(items) => {
            let names: Vec<String> = items.iter().filter_map(|v| v.as_str().map(String::from)).collect();
            if names == ["all-linear"] {
                Targets::AllLinear
            } else {
                Targets::Names(names)
            }
        }
        _ => return Err(Error::bad_file(config_path, "target_modules must be a list of names or a regular expression")),
    };
    let strings = |name: &str| -> Vec<String> {
        config.get(name).and_then(|v| v.as_array()).map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let lora = LoraConfig {
        r: number(config, config_path, "r")? as i64,
        alpha: number(config, config_path, "lora_alpha")?,
        dropout: config.get("lora_dropout").and_then(|v| v.as_f64()).unwrap_or(0.0),
        targets,
        use_rslora: config.get("use_rslora").and_then(|v| v.as_bool()).unwrap_or(false),
        bias: LoraBias::from_peft(config.get("bias").and_then(|v| v.as_str()).unwrap_or("none"))?,
        modules_to_save: strings("modules_to_save"),
        ..LoraConfig::new(1)
    };
    if config.get("use_dora").and_then(|v| v.as_bool()).unwrap_or(false) {
        return Err(Error::Unsupported { what: "LoRA variant", name: "DoRA".into(), supported: "plain LoRA, rsLoRA".into() });
    }
    let report = lora.apply(model)?;
    // Every tensor the adapter holds must land on a model tensor of the same shape, and
    // every LoRA tensor of the model must be in the file.
    let mut targets_by_key: HashMap<String, Tensor> = HashMap::new();
    model.visit_params("", &mut |name, t| {
        let key = name.replace(".modules_to_save.", ".");
        if t.requires_grad() {
            targets_by_key.insert(format!("{PREFIX}{key}"), t.shallow_clone());
        }
    });
    for (key, value) in tensors {
        let key = key.replace(".default.", ".");
        let target = targets_by_key
            .remove(&key)
            .ok_or_else(|| Error::bad_file(weights_path, format!("tensor {key} matches no trainable tensor of the model")))?;
        if target.size() != value.size() {
            return Err(Error::bad_file(weights_path, format!("tensor {key} has shape {:?}, the model expects {:?}", value.size(), target.size())));
        }
        tch::no_grad(|| target.shallow_clone().copy_(&value.to_kind(target.kind()).to_device(target.device())));
    }
    if let Some(missing) = targets_by_key.keys().min() {
        return Err(Error::bad_file(weights_path, format!("missing tensor {missing} ({} missing in all)", targets_by_key.len())));
    }
    Ok(report)
}
