//! Atomic checkpoints: everything is written into a temporary folder, synced, then renamed
//! to `checkpoint-STEP`, so a crash mid-save leaves the previous checkpoints untouched and
//! never a half-written `checkpoint-*` folder.
use super::metrics::Metrics;
use super::optim::AdamW;
use super::TrainingArgs;
use crate::nn::NamedTensors;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Tensor;

const WEIGHTS: &str = "model.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
const STATE: &str = "trainer_state.json";
const ARGS: &str = "training_args.toml";

/// Where a run stands: enough to continue it exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Completed optimizer steps.
    pub global_step: usize,
    /// The epoch being trained (0-based) and the micro-batches of it already consumed; the
    /// order of an epoch is a shuffle seeded by (seed, epoch), so this is the data position.
    pub epoch: usize,
    pub batch_in_epoch: usize,
    pub seed: u64,
    /// Scheduler position: the learning rate is a function of the step and these.
    pub total_steps: usize,
    pub warmup_steps: usize,
    pub best_metric: Option<f64>,
    pub best_checkpoint: Option<PathBuf>,
    pub evals_without_improvement: usize,
    /// Mean training loss of every step.
    pub loss_curve: Vec<(usize, f64)>,
    pub eval_history: Vec<(usize, Metrics)>,
    /// Processes of the run (data position is per worker); 0 in checkpoints from before
    /// distributed training, meaning 1.
    #[serde(default)]
    pub world_size: usize,
}

fn checkpoint_step(path: &Path) -> Option<usize> {
    path.file_name()?.to_str()?.strip_prefix("checkpoint-")?.parse().ok()
}

/// Complete checkpoints in `output_dir`, oldest first.
pub fn list_checkpoints(output_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(output_dir) else { return Vec::new() };
    let mut found: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(STATE).is_file())
        .filter_map(|p| checkpoint_step(&p).map(|s| (s, p)))
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// The newest complete checkpoint in `output_dir`.
pub fn latest_checkpoint(output_dir: &Path) -> Option<PathBuf> {
    list_checkpoints(output_dir).pop()
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))?;
    sync(path)
}

fn sync(path: &Path) -> Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::io(path, e))
}

/// The folder of the checkpoint of `step`.
pub fn folder(output_dir: &Path, step: usize) -> PathBuf {
    output_dir.join(format!("checkpoint-{step}"))
}

/// Writes `checkpoint-STEP` under `output_dir` and returns its path.
pub(crate) fn save(output_dir: &Path, params: &NamedTensors, optimizer: &AdamW, state: &TrainerState, args: &TrainingArgs) -> Result<PathBuf> {
    let final_dir = folder(output_dir, state.global_step);
    let temp = output_dir.join(format!(".tmp-checkpoint-{}-{}", state.global_step, std::process::id()));
    if temp.exists() {
        std::fs::remove_dir_all(&temp).map_err(|e| Error::io(&temp, e))?;
    }
    std::fs::create_dir_all(&temp).map_err(|e| Error::io(&temp, e))?;
    save_weights(params, &temp.join(WEIGHTS))?;
    sync(&temp.join(WEIGHTS))?;
    optimizer.save(&temp.join(OPTIMIZER))?;
    sync(&temp.join(OPTIMIZER))?;
    write_synced(&temp.join(ARGS), args.to_toml().as_bytes())?;
    // The state goes last: its presence is what marks a checkpoint complete.
    let state_json = serde_json::to_vec_pretty(state).expect("trainer state is plain values");
    write_synced(&temp.join(STATE), &state_json)?;
    if final_dir.exists() {
        // Same step saved twice (e.g. interrupt right after a scheduled save): the new one wins.
        let old = output_dir.join(format!(".old-checkpoint-{}-{}", state.global_step, std::process::id()));
        std::fs::rename(&final_dir, &old).map_err(|e| Error::io(&final_dir, e))?;
        std::fs::rename(&temp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&temp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    }
    let _ = sync(output_dir);
    Ok(final_dir)
}

/// Trainable weights by name, on the CPU, in safetensors.
pub fn save_weights(params: &NamedTensors, path: &Path) -> Result<()> {
    let cpu: Vec<(String, Tensor)> = params.iter().map(|(n, t)| (n.clone(), t.detach().to_device(tch::Device::Cpu))).collect();
    Tensor::write_safetensors(&cpu, path).map_err(|e| Error::bad_file(path, e.to_string()))
}

/// Copies the weights of a checkpoint into `params` (every one must be there, same shape).
pub fn load_weights(params: &NamedTensors, path: &Path) -> Result<()> {
    let file = if path.is_dir() { path.join(WEIGHTS) } else { path.to_path_buf() };
    let saved: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(&file).map_err(|e| Error::bad_file(&file, e.to_string()))?.into_iter().collect();
    tch::no_grad(|| {
        for (name, param) in params {
            let value = saved
                .get(name)
                .ok_or_else(|| Error::bad_file(&file, format!("no weight {name}: the checkpoint was saved for other trainable parameters")))?;
            if value.size() != param.size() {
                return Err(Error::bad_file(&file, format!("{name} has shape {:?}, the model expects {:?}", value.size(), param.size())));
            }
            param.shallow_clone().copy_(value);
        }
        Ok(())
    })
}

/// Reads a checkpoint's state, checking it is complete.
pub(crate) fn load_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(STATE);
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&text).map_err(|e| Error::bad_file(&path, format!("not a trainer state: {e}")))
}

pub(crate) fn optimizer_file(dir: &Path) -> PathBuf {
    dir.join(OPTIMIZER)
}

/// Deletes the oldest checkpoints beyond `limit`, never `keep` (the best one).
pub(crate) fn rotate(output_dir: &Path, limit: usize, keep: Option<&Path>) {
    let all = list_checkpoints(output_dir);
    let mut excess = all.len().saturating_sub(limit.max(1));
    for dir in all {
        if excess == 0 {
            break;
        }
        if Some(dir.as_path()) != keep {
            let _ = std::fs::remove_dir_all(&dir);
            excess -= 1;
        }
    }
}
