//! The sockets: binds shell, control, stdin, IOPub and heartbeat, verifies every incoming
//! message, answers what needs no evaluation at once and queues the rest for the engine.

use crate::completeness::{self, Completeness};
use crate::connection::ConnectionInfo;
use crate::engine::{self, EngineConfig, Job};
use crate::shared::{Outbox, Outgoing, Shared};
use crate::wire::{Message, Signer, PROTOCOL_VERSION};
use crate::{interrupt, log};
use anyhow::{Context, Result};
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use tokio::sync::mpsc::{self, UnboundedReceiver};
use zeromq::{PubSocket, RepSocket, RouterRecvHalf, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Channel {
    Shell,
    Control,
}

struct Kernel {
    shared: Arc<Shared>,
    signer: Signer,
    jobs: std::sync::Mutex<Sender<Job>>,
    control: Outbox,
    work_dir: std::path::PathBuf,
}

pub fn run(connection: ConnectionInfo, config: EngineConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(connection, config))
}

async fn serve(connection: ConnectionInfo, config: EngineConfig) -> Result<()> {
    let signer = Signer::new(&connection.key);
    let bind_router = |port: u16| {
        let endpoint = connection.endpoint(port);
        async move {
            let mut socket = RouterSocket::new();
            socket.bind(&endpoint).await.with_context(|| format!("binding {endpoint}"))?;
            anyhow::Ok(socket.split())
        }
    };
    let (shell_send, shell_recv) = bind_router(connection.shell_port).await?;
    let (control_send, control_recv) = bind_router(connection.control_port).await?;
    let (stdin_send, stdin_recv) = bind_router(connection.stdin_port).await?;
    let mut iopub = PubSocket::new();
    let endpoint = connection.endpoint(connection.iopub_port);
    iopub.bind(&endpoint).await.with_context(|| format!("binding {endpoint}"))?;
    let mut heartbeat = RepSocket::new();
    let endpoint = connection.endpoint(connection.hb_port);
    heartbeat.bind(&endpoint).await.with_context(|| format!("binding {endpoint}"))?;

    let (iopub_out, iopub_queue) = mpsc::unbounded_channel();
    let (shell_out, shell_queue) = mpsc::unbounded_channel();
    let (stdin_out, stdin_queue) = mpsc::unbounded_channel();
    let (control_out, control_queue) = mpsc::unbounded_channel();
    tokio::spawn(send_loop(iopub, iopub_queue, signer.clone()));
    tokio::spawn(send_loop(shell_send, shell_queue, signer.clone()));
    tokio::spawn(send_loop(stdin_send, stdin_queue, signer.clone()));
    tokio::spawn(send_loop(control_send, control_queue, signer.clone()));
    tokio::spawn(async move {
        while let Ok(ping) = heartbeat.recv().await {
            if heartbeat.send(ping).await.is_err() {
                break;
            }
        }
    });

    let shared = Arc::new(Shared::new(iopub_out, shell_out, stdin_out));
    spawn_rustc_version_probe(Arc::clone(&shared));
    shared.publish_status(&Value::Null, "starting");
    let (jobs, job_queue) = std::sync::mpsc::channel();
    let work_dir = config.work_dir.clone();
    engine::spawn(Arc::clone(&shared), config, job_queue);
    let kernel = Arc::new(Kernel { shared, signer, jobs: std::sync::Mutex::new(jobs), control: control_out, work_dir });

    tokio::spawn(receive_loop(Arc::clone(&kernel), shell_recv, Channel::Shell));
    tokio::spawn(receive_stdin(Arc::clone(&kernel), stdin_recv));
    tokio::spawn(watch_signals(Arc::clone(&kernel)));
    receive_loop(kernel, control_recv, Channel::Control).await;
    Ok(())
}

async fn send_loop<S: SocketSend>(mut socket: S, mut queue: UnboundedReceiver<Outgoing>, signer: Signer) {
    while let Some(Outgoing { message, sent }) = queue.recv().await {
        let frames = message.to_frames(&signer);
        let result = match ZmqMessage::try_from(frames) {
            Ok(frames) => socket.send(frames).await.map_err(|e| e.to_string()),
            Err(_) => Err("empty message".to_owned()),
        };
        if let Err(error) = result {
            log(&format!("sending {}: {error}", message.msg_type()));
        }
        if let Some(sent) = sent {
            let _ = sent.send(());
        }
    }
}

/// Receives on a ROUTER socket; anything that fails verification is logged and dropped.
async fn receive(socket: &mut RouterRecvHalf, signer: &Signer, channel: &str) -> Option<Message> {
    loop {
        let frames: Vec<Bytes> = socket.recv().await.ok()?.into_vec();
        match Message::from_frames(&frames, signer) {
            Ok(message) => return Some(message),
            Err(error) => log(&format!("rejected a message on {channel}: {error}")),
        }
    }
}

async fn receive_loop(kernel: Arc<Kernel>, mut socket: RouterRecvHalf, channel: Channel) {
    let name = if channel == Channel::Shell { "shell" } else { "control" };
    while let Some(request) = receive(&mut socket, &kernel.signer, name).await {
        kernel.handle(request, channel).await;
    }
}

async fn receive_stdin(kernel: Arc<Kernel>, mut socket: RouterRecvHalf) {
    while let Some(reply) = receive(&mut socket, &kernel.signer, "stdin").await {
        if reply.msg_type() != "input_reply" {
            continue;
        }
        let value = reply.content["value"].as_str().unwrap_or_default().to_owned();
        if let Some(waiting) = kernel.shared.input_replies.lock().unwrap().as_ref() {
            let _ = waiting.send(value);
        }
    }
}

/// SIGINT (e.g. Ctrl-C in the terminal that started Jupyter) interrupts like the message;
/// SIGTERM shuts down cleanly.
async fn watch_signals(kernel: Arc<Kernel>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupts), Ok(mut terminations)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    loop {
        tokio::select! {
            _ = interrupts.recv() => interrupt::request(&kernel.shared),
            _ = terminations.recv() => kernel.exit(),
        }
    }
}

fn spawn_rustc_version_probe(shared: Arc<Shared>) {
    std::thread::spawn(move || {
        let version = std::process::Command::new("rustc")
            .arg("--version")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.split_whitespace().nth(1).map(str::to_owned))
            .unwrap_or_default();
        let _ = shared.rustc_version.set(version);
    });
}

impl Kernel {
    fn outbox(&self, channel: Channel) -> &Outbox {
        match channel {
            Channel::Shell => &self.shared.shell,
            Channel::Control => &self.control,
        }
    }

    /// Replies between busy and idle, as Jupyter expects for every request.
    fn answer(&self, request: &Message, channel: Channel, msg_type: &str, content: Value) {
        self.shared.publish_status(&request.header, "busy");
        self.shared.reply(self.outbox(channel), request, msg_type, content);
        self.shared.publish_status(&request.header, "idle");
    }

    fn queue(&self, job: Job) {
        let _ = self.jobs.lock().unwrap().send(job);
    }

    async fn handle(&self, request: Message, channel: Channel) {
        let content = &request.content;
        match request.msg_type() {
            "kernel_info_request" => self.answer(&request, channel, "kernel_info_reply", self.kernel_info()),
            "execute_request" => {
                self.shared.preload.lock().unwrap().execution_waiting(&self.shared, &request.header);
                self.queue(Job::Execute(request));
            }
            "is_complete_request" => {
                let reply = match completeness::check(content["code"].as_str().unwrap_or_default()) {
                    Completeness::Complete => json!({"status": "complete"}),
                    Completeness::Incomplete { indent } => json!({"status": "incomplete", "indent": indent}),
                    Completeness::Invalid => json!({"status": "invalid"}),
                };
                self.answer(&request, channel, "is_complete_reply", reply);
            }
            "complete_request" | "inspect_request" if self.shared.is_engine_busy() => {
                // Never make the frontend wait for a running cell just to complete a word.
                let cursor = content["cursor_pos"].as_u64().unwrap_or(0) as usize;
                if request.msg_type() == "complete_request" {
                    self.answer(&request, channel, "complete_reply", engine::empty_completion(cursor));
                } else {
                    self.answer(&request, channel, "inspect_reply", json!({"status": "ok", "found": false, "data": {}, "metadata": {}}));
                }
            }
            "complete_request" => self.queue(Job::Complete(request)),
            "inspect_request" => self.queue(Job::Inspect(request)),
            "history_request" => {
                let history = self.shared.history.lock().unwrap().query(content);
                self.answer(&request, channel, "history_reply", json!({"status": "ok", "history": history}));
            }
            "comm_info_request" => self.answer(&request, channel, "comm_info_reply", json!({"status": "ok", "comms": {}})),
            "comm_open" => {
                // No comm targets exist: close it, as the protocol asks for unknown targets.
                let comm_id = content["comm_id"].clone();
                self.shared.publish(&request.header, "comm_close", json!({"comm_id": comm_id, "data": {}}));
            }
            "comm_msg" | "comm_close" => {}
            "interrupt_request" => {
                interrupt::request(&self.shared);
                self.answer(&request, channel, "interrupt_reply", json!({"status": "ok"}));
            }
            "shutdown_request" => {
                let restart = content["restart"].as_bool().unwrap_or(false);
                self.shared.publish_status(&request.header, "busy");
                let (sent, confirmed) = tokio::sync::oneshot::channel();
                let message = self.shared.factory.reply(&request, "shutdown_reply", json!({"status": "ok", "restart": restart}));
                let _ = self.outbox(channel).send(Outgoing { message, sent: Some(sent) });
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), confirmed).await;
                // Give IOPub a moment to carry the last messages out.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                self.exit();
            }
            other => log(&format!("ignoring unsupported {other} on {channel:?}")),
        }
    }

    fn kernel_info(&self) -> Value {
        json!({
            "status": "ok",
            "protocol_version": PROTOCOL_VERSION,
            "implementation": "tunebook-kernel",
            "implementation_version": env!("CARGO_PKG_VERSION"),
            "language_info": {
                "name": "rust",
                "version": self.shared.rustc_version.get().cloned().unwrap_or_default(),
                "mimetype": "text/rust",
                "file_extension": ".rs",
                "pygments_lexer": "rust",
                "codemirror_mode": "rust",
            },
            "banner": "tunebook: fine-tune language models in Rust, cell by cell (evcxr inside)",
            "help_links": [
                {"text": "evcxr commands (:dep, :vars, ...)", "url": "https://github.com/evcxr/evcxr/blob/main/COMMON.md"},
            ],
            "debugger": false,
        })
    }

    /// Stops the cell process and compilers, removes the build directory, exits.
    fn exit(&self) -> ! {
        interrupt::kill_all_children();
        let _ = std::fs::remove_dir_all(&self.work_dir);
        std::process::exit(0)
    }
}
