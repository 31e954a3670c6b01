//! Pretrained tensors by Hugging Face name, handed out to layers with shape checks.
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub struct Weights {
    tensors: HashMap<String, Tensor>,
    /// Where the tensors came from, for error messages.
    source: String,
    pub kind: Kind,
    pub device: Device,
}

impl Weights {
    pub fn new(tensors: HashMap<String, Tensor>, source: impl Into<String>, kind: Kind, device: Device) -> Self {
        Weights { tensors, source: source.into(), kind, device }
    }

    /// Reads one or more safetensors files (a sharded checkpoint is several).
    pub fn from_safetensors(files: &[PathBuf], kind: Kind, device: Device) -> Result<Self> {
        let mut tensors = HashMap::new();
        for file in files {
            let loaded = Tensor::read_safetensors(file)
                .map_err(|e| Error::bad_file(file, format!("not a readable safetensors file: {e}")))?;
            tensors.extend(loaded);
        }
        let source = match files {
            [one] => one.display().to_string(),
            _ => format!("{} safetensors shards in {}", files.len(), parent_of(&files[0]).display()),
        };
        Ok(Weights::new(tensors, source, kind, device))
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    /// Removes and returns tensor `name`, checked against `shape`, in the model's dtype
    /// and device.
    pub fn take(&mut self, name: &str, shape: &[i64]) -> Result<Tensor> {
        self.take_opt(name, shape)?.ok_or_else(|| {
            Error::tensor(name, format!("missing from {} (expected shape {shape:?})", self.source))
        })
    }

    /// Like [`take`](Self::take) for tensors a checkpoint may omit (biases, heads).
    pub fn take_opt(&mut self, name: &str, shape: &[i64]) -> Result<Option<Tensor>> {
        let Some(t) = self.tensors.remove(name) else { return Ok(None) };
        if t.size() != shape {
            return Err(Error::tensor(
                name,
                format!("in {}: expected shape {shape:?}, found {:?}", self.source, t.size()),
            ));
        }
        if !t.is_floating_point() {
            return Err(Error::tensor(name, format!("in {}: expected a float tensor, found {:?}", self.source, t.kind())));
        }
        Ok(Some(t.to_device(self.device).to_kind(self.kind).detach()))
    }
}

fn parent_of(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("."))
}

impl Weights {
    /// Some checkpoints save the backbone without its wrapper prefix (sentence-transformers'
    /// BERT has `embeddings.*`, not `bert.embeddings.*`): add `prefix` to every name when
    /// `probe` appears without it.
    pub fn add_prefix_if_missing(&mut self, prefix: &str, probe: &str) {
        if self.tensors.contains_key(&format!("{prefix}{probe}")) || !self.tensors.contains_key(probe) {
            return;
        }
        self.tensors = std::mem::take(&mut self.tensors).into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)).collect();
    }

    /// Renames every tensor whose name starts with `from` to start with `to` instead (a
    /// multimodal checkpoint's `model.language_model.*` read as a text model's `model.*`).
    pub fn rename_prefix(&mut self, from: &str, to: &str) {
        self.tensors = std::mem::take(&mut self.tensors)
            .into_iter()
            .map(|(k, v)| match k.strip_prefix(from) {
                Some(rest) => (format!("{to}{rest}"), v),
                None => (k, v),
            })
            .collect();
    }
}
