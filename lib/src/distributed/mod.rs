//! Data-parallel training on PyTorch's own distributed engine: c10d process groups (Gloo on
//! CPU, NCCL on CUDA) through the C++ shim (`lib/shim/distributed.cpp`), with torchrun's
//! launch conventions (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`).
//!
//! The [`Trainer`](crate::train::Trainer) joins a group by itself when started by
//! `torchrun --nproc-per-node N --no-python tunebook train ...` or
//! `tunebook train --nproc N ...`; this module is for programs that want the collectives.
//!
//! ```no_run
//! use tunebook::distributed::{Backend, LaunchEnv, ProcessGroup};
//! use tunebook::tch::Tensor;
//! let env = LaunchEnv::from_env()?.expect("started by torchrun");
//! let group = ProcessGroup::new(&env, Backend::Gloo, std::time::Duration::from_secs(60))?;
//! let t = Tensor::from_slice(&[env.rank as f32]);
//! group.all_reduce_sum(&[&t])?; // 0 + 1 + ... + (world_size - 1) on every rank
//! # Ok::<(), tunebook::Error>(())
//! ```
mod launch;

pub use launch::{free_port, interrupt_workers, launch, Worker};

use crate::{Error, Result};
use std::ffi::{c_char, c_void, CString};
use std::time::Duration;
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn tunebook_dist_init(
        backend: *const c_char,
        master_addr: *const c_char,
        master_port: i32,
        rank: i32,
        world: i32,
        timeout_ms: i64,
        err: *mut c_char,
        cap: usize,
    ) -> *mut c_void;
    fn tunebook_dist_free(group: *mut c_void);
    fn tunebook_dist_all_reduce_sum(group: *mut c_void, tensors: *const *const C_tensor, n: i32, err: *mut c_char, cap: usize) -> i32;
    fn tunebook_dist_broadcast(group: *mut c_void, tensors: *const *const C_tensor, n: i32, root: i32, err: *mut c_char, cap: usize) -> i32;
    fn tunebook_dist_barrier(group: *mut c_void, err: *mut c_char, cap: usize) -> i32;
}

/// Which c10d backend carries the collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// CPU tensors (and the CI equivalence test).
    Gloo,
    /// CUDA tensors; needs tunebook built with the `cuda` feature.
    Nccl,
}

impl Backend {
    /// What PyTorch picks for tensors on `device`.
    pub fn for_device(device: tch::Device) -> Backend {
        if device.is_cuda() {
            Backend::Nccl
        } else {
            Backend::Gloo
        }
    }

    fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }
}

/// This process's place in a launch, from torchrun's environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchEnv {
    pub rank: usize,
    pub local_rank: usize,
    pub world_size: usize,
    pub master_addr: String,
    pub master_port: u16,
}

impl LaunchEnv {
    /// `None` when `WORLD_SIZE` is not set (a plain single-process run); an error naming
    /// the variable when one is set but another is missing or malformed.
    pub fn from_env() -> Result<Option<LaunchEnv>> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Option<LaunchEnv>> {
        let Some(world) = var("WORLD_SIZE") else { return Ok(None) };
        let number = |name: &str, text: Option<String>| -> Result<usize> {
            let text = text.ok_or_else(|| Error::Distributed(format!("WORLD_SIZE is set but {name} is not (torchrun sets both)")))?;
            text.trim().parse().map_err(|_| Error::Distributed(format!("{name}={text:?} is not a non-negative integer")))
        };
        let world_size = number("WORLD_SIZE", Some(world))?;
        let rank = number("RANK", var("RANK"))?;
        let local_rank = number("LOCAL_RANK", var("LOCAL_RANK").or_else(|| var("RANK")))?;
        if world_size == 0 || rank >= world_size {
            return Err(Error::Distributed(format!("RANK={rank} must be below WORLD_SIZE={world_size}")));
        }
        let master_addr = var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let port = number("MASTER_PORT", Some(var("MASTER_PORT").unwrap_or_else(|| "29500".into())))?;
        let master_port = u16::try_from(port).map_err(|_| Error::Distributed(format!("MASTER_PORT={port} is not a port number")))?;
        Ok(Some(LaunchEnv { rank, local_rank, world_size, master_addr, master_port }))
    }
}

/// A joined c10d process group. Collectives are in place and block until every rank took
/// part, or fail after the timeout (or at once when a peer's connection drops).
pub struct ProcessGroup {
    raw: *mut c_void,
    pub rank: usize,
    pub world_size: usize,
    pub backend: Backend,
}

// SAFETY: the c10d backend is used by one thread at a time (methods take &self but the
// trainer calls them from its own thread); libtorch's backends are thread-safe anyway.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Rendezvous with the other ranks (rank 0 hosts the store at MASTER_ADDR:MASTER_PORT)
    /// and connect the backend. Blocks until all `world_size` ranks arrived or `timeout`.
    pub fn new(env: &LaunchEnv, backend: Backend, timeout: Duration) -> Result<ProcessGroup> {
        let name = CString::new(backend.name()).expect("no NUL in a backend name");
        let addr = CString::new(env.master_addr.clone()).map_err(|_| Error::Distributed("MASTER_ADDR contains a NUL byte".into()))?;
        let mut err = [0 as c_char; 4096];
        let raw = unsafe {
            tunebook_dist_init(
                name.as_ptr(),
                addr.as_ptr(),
                env.master_port as i32,
                env.rank as i32,
                env.world_size as i32,
                timeout.as_millis().min(i64::MAX as u128) as i64,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if raw.is_null() {
            return Err(Error::Distributed(format!(
                "rank {} of {} could not join the {} group at {}:{}: {}",
                env.rank,
                env.world_size,
                backend.name(),
                env.master_addr,
                env.master_port,
                first_line(&err)
            )));
        }
        Ok(ProcessGroup { raw, rank: env.rank, world_size: env.world_size, backend })
    }

    /// The group torchrun's variables describe, or `None` outside a launch (or for a world
    /// of one).
    pub fn from_env(backend: Backend, timeout: Duration) -> Result<Option<ProcessGroup>> {
        match LaunchEnv::from_env()? {
            Some(env) if env.world_size > 1 => Ok(Some(ProcessGroup::new(&env, backend, timeout)?)),
            _ => Ok(None),
        }
    }

    /// Rank 0 writes logs and checkpoints.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// Element-wise sum over all ranks, written back into every tensor.
    pub fn all_reduce_sum(&self, tensors: &[&Tensor]) -> Result<()> {
        let ptrs: Vec<*const C_tensor> = tensors.iter().map(|t| t.as_ptr()).collect();
        self.call("all_reduce", |err, cap| unsafe { tunebook_dist_all_reduce_sum(self.raw, ptrs.as_ptr(), ptrs.len() as i32, err, cap) })
    }

    /// Every rank's tensors become rank `root`'s.
    pub fn broadcast(&self, tensors: &[&Tensor], root: usize) -> Result<()> {
        let ptrs: Vec<*const C_tensor> = tensors.iter().map(|t| t.as_ptr()).collect();
        self.call("broadcast", |err, cap| unsafe { tunebook_dist_broadcast(self.raw, ptrs.as_ptr(), ptrs.len() as i32, root as i32, err, cap) })
    }

    /// Waits until every rank got here.
    pub fn barrier(&self) -> Result<()> {
        self.call("barrier", |err, cap| unsafe { tunebook_dist_barrier(self.raw, err, cap) })
    }

    /// Sum of one number over all ranks (in f64, exact for counts).
    pub fn sum(&self, value: f64) -> Result<f64> {
        let t = Tensor::from_slice(&[value]);
        self.all_reduce_sum(&[&t])?;
        Ok(t.double_value(&[0]))
    }

    fn call(&self, what: &str, f: impl FnOnce(*mut c_char, usize) -> i32) -> Result<()> {
        let mut err = [0 as c_char; 4096];
        if f(err.as_mut_ptr(), err.len()) != 0 {
            return Err(Error::Distributed(format!(
                "{what} failed on rank {} of {} (another worker stopped or timed out?): {}",
                self.rank,
                self.world_size,
                first_line(&err)
            )));
        }
        Ok(())
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        unsafe { tunebook_dist_free(self.raw) }
    }
}

/// libtorch messages carry a C++ backtrace after the first lines; keep the message.
fn first_line(err: &[c_char]) -> String {
    let text = crate::shim::error_message(err);
    text.lines().take_while(|l| !l.starts_with("Exception raised from")).collect::<Vec<_>>().join(" ").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Option<LaunchEnv>> {
        let map: std::collections::HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        LaunchEnv::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn torchrun_variables_are_read_and_checked() {
        assert_eq!(env(&[]).unwrap(), None);
        let e = env(&[("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "node0"), ("MASTER_PORT", "29501")]).unwrap().unwrap();
        assert_eq!(e, LaunchEnv { rank: 1, local_rank: 1, world_size: 2, master_addr: "node0".into(), master_port: 29501 });
        let missing = env(&[("WORLD_SIZE", "2")]).unwrap_err().to_string();
        assert!(missing.contains("RANK is not"), "{missing}");
        let bad = env(&[("WORLD_SIZE", "2"), ("RANK", "2")]).unwrap_err().to_string();
        assert!(bad.contains("RANK=2 must be below WORLD_SIZE=2"), "{bad}");
        let port = env(&[("WORLD_SIZE", "1"), ("RANK", "0"), ("MASTER_PORT", "70000")]).unwrap_err().to_string();
        assert!(port.contains("MASTER_PORT=70000"), "{port}");
    }
}
