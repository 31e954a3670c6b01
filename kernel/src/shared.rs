//! State shared by the socket tasks, the execution thread and the output forwarder.

use crate::wire::{Message, MessageFactory};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A message for one of the sending tasks; `sent` fires once it is on the wire.
pub struct Outgoing {
    pub message: Message,
    pub sent: Option<oneshot::Sender<()>>,
}

pub type Outbox = mpsc::UnboundedSender<Outgoing>;

/// Where cell output goes: the request that is running (or ran last).
#[derive(Clone, Default)]
pub struct OutputRoute {
    pub parent: Value,
    pub silent: bool,
}

pub struct Shared {
    pub factory: MessageFactory,
    pub iopub: Outbox,
    pub shell: Outbox,
    pub stdin: Outbox,
    route: Mutex<OutputRoute>,
    pub preload: Mutex<PreloadBoard>,
    /// True while the execution thread is doing anything (preload, execute, complete).
    pub engine_busy: AtomicBool,
    pub history: Mutex<crate::history::History>,
    pub interrupt: Mutex<InterruptState>,
    /// The evcxr cell process, once the execution context exists.
    pub cell_process: Mutex<Option<Arc<Mutex<std::process::Child>>>>,
    /// Input replies from the stdin socket, for a cell waiting in `input_request`.
    pub input_replies: Mutex<Option<std::sync::mpsc::Sender<String>>>,
    pub rustc_version: std::sync::OnceLock<String>,
}

impl Shared {
    pub fn new(iopub: Outbox, shell: Outbox, stdin: Outbox) -> Shared {
        Shared {
            factory: MessageFactory::new(),
            iopub,
            shell,
            stdin,
            route: Mutex::new(OutputRoute::default()),
            preload: Mutex::new(PreloadBoard::default()),
            engine_busy: AtomicBool::new(true),
            history: Mutex::new(crate::history::History::default()),
            interrupt: Mutex::new(InterruptState::default()),
            cell_process: Mutex::new(None),
            input_replies: Mutex::new(None),
            rustc_version: std::sync::OnceLock::new(),
        }
    }

    pub fn publish(&self, parent: &Value, msg_type: &str, content: Value) {
        let message = self.factory.broadcast(parent, msg_type, content);
        let _ = self.iopub.send(Outgoing { message, sent: None });
    }

    pub fn publish_status(&self, parent: &Value, state: &str) {
        self.publish(parent, "status", json!({"execution_state": state}));
    }

    pub fn reply(&self, outbox: &Outbox, request: &Message, msg_type: &str, content: Value) {
        let message = self.factory.reply(request, msg_type, content);
        let _ = outbox.send(Outgoing { message, sent: None });
    }

    pub fn route(&self) -> OutputRoute {
        self.route.lock().unwrap().clone()
    }

    pub fn set_route(&self, route: OutputRoute) {
        *self.route.lock().unwrap() = route;
    }

    /// Output of the running cell (or a background thread of an earlier one).
    pub fn publish_output(&self, msg_type: &str, content: Value) {
        let route = self.route();
        if !route.silent {
            self.publish(&route.parent, msg_type, content);
        }
    }

    pub fn is_engine_busy(&self) -> bool {
        self.engine_busy.load(Ordering::SeqCst)
    }

    pub fn cell_pid(&self) -> Option<u32> {
        let handle = self.cell_process.lock().unwrap().clone()?;
        let child = handle.lock().ok()?;
        Some(child.id())
    }
}

/// Progress of the background library preload, shown (on stdout: it is news, not an error)
/// in the first cell that waits for it.
#[derive(Default)]
pub struct PreloadBoard {
    pub phase: PreloadPhase,
    lines: Vec<String>,
    /// The execute request that is waiting for the preload and sees its progress live.
    audience: Option<Value>,
    failure_shown: bool,
}

#[derive(Default, Clone, PartialEq, Debug)]
pub enum PreloadPhase {
    #[default]
    Running,
    Done,
    Failed,
    Disabled,
}

impl PreloadBoard {
    /// Records a progress line and shows it to a waiting cell, if any.
    pub fn progress(&mut self, shared: &Shared, line: String) {
        if let Some(parent) = &self.audience {
            shared.publish(parent, "stream", json!({"name": "stdout", "text": format!("{line}\n")}));
        }
        self.lines.push(line);
    }

    /// An execute request arrived; if the preload is still running, it becomes the audience
    /// and sees everything reported so far.
    pub fn execution_waiting(&mut self, shared: &Shared, request: &Value) {
        if self.phase != PreloadPhase::Running || self.audience.is_some() {
            return;
        }
        self.audience = Some(request.clone());
        if !self.lines.is_empty() {
            let text: String = self.lines.iter().map(|line| format!("{line}\n")).collect();
            shared.publish(request, "stream", json!({"name": "stdout", "text": text}));
        }
    }

    /// What a starting execution must still show: a failure nobody has seen yet.
    pub fn take_unseen_failure(&mut self, request: &Value) -> Option<String> {
        if self.phase != PreloadPhase::Failed || self.failure_shown {
            return None;
        }
        self.failure_shown = true;
        if self.audience.as_ref() == Some(request) {
            return None;
        }
        Some(self.lines.iter().map(|line| format!("{line}\n")).collect())
    }

    pub fn finish(&mut self, phase: PreloadPhase) {
        self.phase = phase;
        if self.audience.is_some() && self.phase == PreloadPhase::Failed {
            self.failure_shown = true;
        }
    }
}

/// Interrupt bookkeeping for the running execution.
#[derive(Default)]
pub struct InterruptState {
    /// An execution is running user code (not preload).
    pub executing: bool,
    /// Increments per execution, so a late interrupt cannot hit the next cell.
    pub generation: u64,
    pub requested: bool,
    /// SIGINT was delivered to the cell process.
    pub signalled: bool,
    /// The cell process (or a compiler run) had to be killed.
    pub killed: bool,
    pub requested_at: Option<Instant>,
}

/// How long a cell process that handles SIGINT gets to stop on its own before a second
/// interrupt request kills it.
pub const GRACEFUL_STOP: Duration = Duration::from_secs(2);

impl InterruptState {
    pub fn interrupted(&self) -> bool {
        self.requested && (self.signalled || self.killed)
    }
}
