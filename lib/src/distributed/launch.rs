//! `tunebook train --nproc N`: torchrun's single-node launch without Python. Starts N
//! workers with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and
//! MASTER_PORT set, waits for them, and stops the rest when one fails.
use crate::{Error, Result};
use std::ffi::OsString;
use std::net::TcpListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The status a worker stopped by Ctrl-C exits with (after saving a checkpoint).
const INTERRUPTED: i32 = 130;

/// Process ids of the running launch's workers, for [`interrupt_workers`].
static WORKER_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Passes a Ctrl-C on to every worker of the running launch (each finishes its step and
/// saves; a second one makes them quit at once). Workers run in their own process group,
/// so the terminal's Ctrl-C reaches them only this way, once per press.
pub fn interrupt_workers() {
    for pid in WORKER_PIDS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        // SAFETY: kill(2) with a pid this process started and has not reaped yet.
        unsafe {
            libc::kill(*pid as libc::pid_t, libc::SIGINT);
        }
    }
}

/// A started worker process.
pub struct Worker {
    pub rank: usize,
    pub child: Child,
}

/// A loopback port nothing listens on right now, for MASTER_PORT of a local launch.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Distributed(format!("finding a free port: {e}")))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| Error::Distributed(format!("finding a free port: {e}")))
}

/// Runs `program args` as `nproc` workers on this machine and waits for all of them.
///
/// Returns the exit status to pass on: 0 when all finished, 130 when they were
/// interrupted (each saved its checkpoint). When a worker fails, the others get `grace`
/// to notice (their next collective fails) and are then killed; the error names the rank
/// and how it ended.
pub fn launch(nproc: usize, program: &Path, args: &[OsString], grace: Duration) -> Result<i32> {
    if nproc == 0 {
        return Err(Error::InvalidArgument("--nproc must be at least 1".into()));
    }
    let port = free_port()?;
    // As torchrun: workers share the cores instead of each starting a thread per core
    // (oversubscribed libtorch thread pools made 2 workers on 2 cores 7x slower).
    let threads = std::env::var("OMP_NUM_THREADS").unwrap_or_else(|_| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / nproc).max(1).to_string()
    });
    let mut workers = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let child = Command::new(program)
            .args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("OMP_NUM_THREADS", &threads)
            .process_group(0)
            .spawn()
            .map_err(|e| Error::Distributed(format!("starting worker {rank} ({}): {e}", program.display())));
        match child {
            Ok(child) => {
                WORKER_PIDS.lock().unwrap_or_else(|e| e.into_inner()).push(child.id());
                workers.push(Worker { rank, child })
            }
            Err(e) => {
                stop(&mut workers);
                WORKER_PIDS.lock().unwrap_or_else(|e| e.into_inner()).clear();
                return Err(e);
            }
        }
    }
    let result = wait_all(workers, grace);
    WORKER_PIDS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    result
}

fn wait_all(mut running: Vec<Worker>, grace: Duration) -> Result<i32> {
    let mut failure: Option<(usize, ExitStatus, Instant)> = None;
    let mut interrupted = false;
    while !running.is_empty() {
        let mut still = Vec::with_capacity(running.len());
        for mut worker in running {
            let status = worker.child.try_wait();
            if let Ok(Some(_)) = status {
                // Reaped: its pid may be reused, so Ctrl-C must no longer go there.
                WORKER_PIDS.lock().unwrap_or_else(|e| e.into_inner()).retain(|&pid| pid != worker.child.id());
            }
            match status {
                Ok(Some(status)) if status.success() => {}
                Ok(Some(status)) if status.code() == Some(INTERRUPTED) => interrupted = true,
                Ok(Some(status)) => {
                    failure.get_or_insert((worker.rank, status, Instant::now()));
                }
                Ok(None) => still.push(worker),
                Err(e) => return Err(Error::Distributed(format!("waiting for worker {}: {e}", worker.rank))),
            }
        }
        running = still;
        if let Some((_, _, since)) = failure {
            if since.elapsed() > grace {
                stop(&mut running);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match failure {
        Some((rank, status, _)) => Err(Error::Distributed(format!("worker rank {rank} {}; the other workers were stopped", describe(status)))),
        None if interrupted => Ok(INTERRUPTED),
        None => Ok(0),
    }
}

fn stop(workers: &mut [Worker]) {
    for w in workers.iter_mut() {
        let _ = w.child.kill();
        let _ = w.child.wait();
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => format!("ended with {status}"),
    }
}
