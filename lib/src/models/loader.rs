//! Builds a [`Model`] from a resolved source: config → backbone → head → tokenizer.
use super::family::{self, GgufLayout, CONFIG_JSON};
use super::heads::Task;
use super::model::{Model, ModelInfo};
use super::source::{shard_names, ModelSource};
use crate::gguf::GgufFile;
use crate::nn::Weights;
use crate::tokenizer::Tokenizer;
use crate::{device, Error, Result};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// How to load: device, dtype and task head. Defaults: best device, its compute dtype,
/// the task the checkpoint was saved for.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub device: Option<Device>,
    pub kind: Option<Kind>,
    pub task: Option<Task>,
}

impl LoadOptions {
    pub fn device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = Some(kind);
        self
    }
    pub fn task(mut self, task: Task) -> Self {
        self.task = Some(task);
        self
    }
}

pub(super) fn load(name: &str, options: &LoadOptions) -> Result<Model> {
    let source = ModelSource::resolve(name)?;
    let device = options.device.unwrap_or_else(device::best_device);
    let kind = options.kind.unwrap_or_else(|| device::compute_kind(device));
    match &source {
        ModelSource::HfDir(dir) => load_hf_dir(name, dir, device, kind, options.task.clone()),
        ModelSource::Gguf(file) => load_gguf(name, file, device, kind, options.task.clone()),
    }
}


fn load_hf_dir(name: &str, dir: &Path, device: Device, kind: Kind, task: Option<Task>) -> Result<Model> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::bad_file(&config_path, format!("invalid JSON: {e}")))?;
    let model_type = config.get("model_type").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let family = family::by_model_type(&model_type).ok_or_else(|| Error::Unsupported {
        what: "model_type (config.json)",
        name: if model_type.is_empty() { "<missing>".into() } else { model_type.clone() },
        supported: family::known_model_types(),
    })?;
    let task = task.unwrap_or_else(|| family.default_task(&config));
    let mut weights = Weights::from_safetensors(&safetensor_files(dir)?, kind, device)?;
    let tokenizer = if dir.join("tokenizer.json").exists() { Some(Tokenizer::from_hf_dir(dir)?) } else { None };
    let (backbone, head) = (family.build)(&config, &mut weights, &task).map_err(|e| in_file(e, &config_path))?;
    let info = ModelInfo::new(name, dir, family, config);
    Model::assemble(backbone, head, task, tokenizer, info, device, kind)
}

/// Config errors name the file they came from.
fn in_file(error: Error, path: &Path) -> Error {
    match error {
        Error::Config { field, message } if field == CONFIG_JSON => Error::bad_file(path, message),
        Error::Config { field, message } => Error::bad_file(path, format!("field `{field}`: {message}")),
        other => other,
    }
}

fn safetensor_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        return Ok(shard_names(&index)?.into_iter().map(|s| dir.join(s)).collect());
    }
    Err(Error::bad_file(single, "missing: expected model.safetensors or model.safetensors.index.json with its shards"))
}

fn load_gguf(name: &str, path: &Path, device: Device, kind: Kind, task: Option<Task>) -> Result<Model> {
    let file = GgufFile::open(path)?;
    let arch = file.architecture()?.to_string();
    let family = family::by_gguf_architecture(&arch).ok_or_else(|| Error::Unsupported {
        what: "GGUF architecture",
        name: format!("{arch} ({})", path.display()),
        supported: family::known_gguf_architectures(),
    })?;
    let layout = family::gguf_layout(family)?;
    let config = (layout.config)(&file).map_err(|e| in_file(e, path))?;
    let mut weights = Weights::new(hf_tensors(&file, layout, &config)?, path.display().to_string(), kind, device);
    let task = task.unwrap_or_else(|| family.base_task.clone());
    let (backbone, head) = (family.build)(&config, &mut weights, &task).map_err(|e| in_file(e, path))?;
    let tok = Tokenizer::new(file.tokenizer()?, file.chat_template().map(str::to_string)).with_special_tokens(
        file.special_token("bos"),
        file.special_token("eos"),
        file.special_token("pad"),
    );
    let info = ModelInfo::new(name, path, family, config);
    Model::assemble(backbone, head, task, Some(tok), info, device, kind)
}

/// Every tensor of `file` the model holds, decoded in parallel, under its Hugging Face name
/// and in Hugging Face layout.
fn hf_tensors(file: &GgufFile, layout: &GgufLayout, config: &serde_json::Value) -> Result<HashMap<String, Tensor>> {
    let wanted: Vec<(String, &str)> = file.tensors().iter().filter_map(|t| layout.hf_name(&t.name).map(|hf| (hf, t.name.as_str()))).collect();
    let decoded: Vec<(String, Vec<usize>, Vec<f32>)> = wanted
        .into_par_iter()
        .map(|(hf, gguf_name)| {
            let (shape, mut values) = file.dequantize(gguf_name)?;
            layout.to_hf_layout(&hf, &mut values, &shape, config)?;
            Ok((hf, shape, values))
        })
        .collect::<Result<_>>()?;
    Ok(decoded
        .into_iter()
        .map(|(hf, shape, values)| {
            let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            (hf, Tensor::from_slice(&values).reshape(&dims))
        })
        .collect())
}
