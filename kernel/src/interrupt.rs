//! `interrupt_request`: stop the running cell while keeping as much state as possible.
//!
//! * While the cell compiles (cargo / rustc are running): the compiler processes are
//!   killed; the cell fails with `Interrupted`, nothing else is lost.
//! * While the cell runs: the cell process gets SIGINT. A library that handles SIGINT
//!   (e.g. to stop training after the current step) lets the cell return normally, and all
//!   variables survive. Without a handler SIGINT ends the process; evcxr restarts it and the
//!   variables are lost, while definitions (`fn`, `struct`, `use`) and `:dep`s are kept.
//! * A second interrupt more than [`GRACEFUL_STOP`] after the first kills the cell process.

use crate::procfs::{self, Disposition};
use crate::shared::{Shared, GRACEFUL_STOP};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(20);

pub fn request(shared: &Arc<Shared>) {
    let mut state = shared.interrupt.lock().unwrap();
    if !state.executing {
        return;
    }
    if state.requested {
        let waited = state.requested_at.map(|at| at.elapsed()).unwrap_or_default();
        if state.signalled && waited >= GRACEFUL_STOP {
            if let Some(pid) = shared.cell_pid() {
                procfs::send_signal(pid, libc::SIGKILL);
                state.killed = true;
            }
        }
        return;
    }
    state.requested = true;
    state.requested_at = Some(Instant::now());
    let generation = state.generation;
    drop(state);
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name("interrupt".to_owned())
        .spawn(move || watch(&shared, generation))
        .expect("spawning the interrupt thread");
}

/// Acts as soon as the execution reaches a point where an interrupt can land.
fn watch(shared: &Shared, generation: u64) {
    loop {
        {
            let state = shared.interrupt.lock().unwrap();
            if !state.executing || state.generation != generation {
                return;
            }
        }
        let cell_pid = shared.cell_pid();
        let compilers = compiler_processes(cell_pid);
        if !compilers.is_empty() {
            for pid in compilers {
                procfs::send_signal(pid, libc::SIGKILL);
            }
            shared.interrupt.lock().unwrap().killed = true;
        } else if let Some(pid) = cell_pid {
            // Idle cell process (waiting for evcxr's next instruction): the cell is still
            // being analysed or is about to compile; wait for either to show.
            if procfs::blocked_reading_stdin(pid) != Some(true) {
                signal_cell(shared, pid);
                return;
            }
        }
        std::thread::sleep(POLL);
    }
}

fn signal_cell(shared: &Shared, pid: u32) {
    let mut state = shared.interrupt.lock().unwrap();
    match procfs::disposition(pid, libc::SIGINT) {
        Some(Disposition::Ignored) => {
            procfs::send_signal(pid, libc::SIGKILL);
            state.killed = true;
        }
        Some(Disposition::Caught) => {
            procfs::send_signal(pid, libc::SIGINT);
            state.signalled = true;
        }
        Some(Disposition::Default) | None => {
            procfs::send_signal(pid, libc::SIGINT);
            state.signalled = true;
            state.killed = true;
        }
    }
}

/// Processes the kernel started besides the cell process: cargo, rustc, linkers, and shell
/// commands run by the cell (`! cmd`).
fn compiler_processes(cell_pid: Option<u32>) -> Vec<u32> {
    let kernel = std::process::id();
    let excluded: Vec<u32> = match cell_pid {
        Some(pid) => std::iter::once(pid).chain(procfs::descendants(pid)).collect(),
        None => Vec::new(),
    };
    procfs::descendants(kernel).into_iter().filter(|pid| !excluded.contains(pid)).collect()
}

/// Kills everything the kernel started (at shutdown).
pub fn kill_all_children() {
    for pid in procfs::descendants(std::process::id()) {
        procfs::send_signal(pid, libc::SIGKILL);
    }
}
