//! Streams what the cell process prints to IOPub while the cell runs: stdout and stderr
//! text, live displays (`TUNEBOOK_DISPLAY`), clears, and the panic / error markers that
//! decide the cell's status.

use crate::diagnostics::parse_panic_header;
use crate::display::{parse_stderr_fence, parse_stdout_line, CellLine, Fence, STDERR_FENCE};
use crate::shared::Shared;
use crossbeam_channel::{select, Receiver, RecvTimeoutError, Sender};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Above this much buffered text a stream message goes out even if more is queued.
const MAX_STREAM_CHUNK: usize = 64 * 1024;
/// How long to wait for a panic message on stderr after evcxr reported the panic.
const PANIC_MESSAGE_WAIT: Duration = Duration::from_millis(500);
/// Quiet time after which a panic message is considered complete.
const PANIC_MESSAGE_QUIET: Duration = Duration::from_millis(30);
/// How long an empty stderr line is held back in case a panic message follows: Rust starts
/// those with an empty line, which is part of the panic, not output of its own.
const BLANK_LINE_HOLD: Duration = Duration::from_millis(50);
/// Longest wait for the cell process's stderr fences: the relay writes them right after the
/// cell returns, so only a cell that closed or redirected its stderr makes this run out.
const STDERR_FENCE_WAIT: Duration = Duration::from_secs(5);
/// How long the output thread waits for lines when nothing is held back.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// What the finished cell printed that matters for its reply.
#[derive(Default, Debug)]
pub struct CellReport {
    pub panicked: bool,
    /// What the panic printed on stderr, header line first.
    pub panic_lines: Vec<String>,
    /// A `?` in the cell returned an error (evcxr printed it on stderr).
    pub returned_error: bool,
    pub last_stderr_line: Option<String>,
}

pub struct Forwarder {
    flush_requests: Sender<Sender<CellReport>>,
}

impl Forwarder {
    pub fn spawn(shared: Arc<Shared>, stdout: Receiver<String>, stderr: Receiver<String>) -> Forwarder {
        let (flush_requests, flushes) = crossbeam_channel::unbounded();
        let mut state = State { shared, stdout, stderr, report: CellReport::default(), capturing_panic: false, stdout_text: String::new(), stderr_text: String::new(), held_blank_lines: 0, fence_announced: None, fence_seen: None };
        std::thread::Builder::new()
            .name("cell-output".to_owned())
            .spawn(move || state.run(flushes))
            .expect("spawning the output thread");
        Forwarder { flush_requests }
    }

    /// Waits until everything the finished cell printed has been published, and returns
    /// what it signalled. evcxr has handed over all stdout lines by the time a cell returns,
    /// so after this call no output of the cell can follow its reply.
    pub fn flush(&self) -> CellReport {
        let (reply, report) = crossbeam_channel::bounded(1);
        if self.flush_requests.send(reply).is_err() {
            return CellReport::default();
        }
        report.recv().unwrap_or_default()
    }
}

struct State {
    shared: Arc<Shared>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    report: CellReport,
    capturing_panic: bool,
    stdout_text: String,
    stderr_text: String,
    /// Empty stderr lines not yet forwarded (see [`BLANK_LINE_HOLD`]).
    held_blank_lines: usize,
    /// The last [`STDERR_FENCE`]s announced on stdout and arrived on stderr.
    fence_announced: Option<Fence>,
    fence_seen: Option<Fence>,
}

impl State {
    fn run(&mut self, flushes: Receiver<Sender<CellReport>>) {
        let (stdout, stderr) = (self.stdout.clone(), self.stderr.clone());
        loop {
            let wait = if self.held_blank_lines > 0 { BLANK_LINE_HOLD } else { IDLE_WAIT };
            select! {
                recv(stdout) -> line => match line {
                    Ok(line) => self.on_stdout(line),
                    Err(_) => return,
                },
                recv(stderr) -> line => match line {
                    Ok(line) => self.on_stderr(line),
                    Err(_) => return,
                },
                recv(flushes) -> reply => match reply {
                    Ok(reply) => {
                        let report = self.finish_cell();
                        let _ = reply.send(report);
                    }
                    Err(_) => return,
                },
                default(wait) => {
                    self.release_blank_lines();
                    self.send_text();
                }
            }
        }
    }

    fn on_stdout(&mut self, line: String) {
        match parse_stdout_line(&line) {
            CellLine::Text(text) => {
                self.stdout_text.push_str(&text);
                self.stdout_text.push('\n');
                if self.stdout.is_empty() || self.stdout_text.len() > MAX_STREAM_CHUNK {
                    self.send_text();
                }
            }
            CellLine::Display { display_id, update, data, metadata } => {
                self.send_text();
                let transient = match display_id {
                    Some(id) => json!({"display_id": id}),
                    None => json!({}),
                };
                let msg_type = if update { "update_display_data" } else { "display_data" };
                self.shared.publish_output(
                    msg_type,
                    json!({"data": data, "metadata": metadata, "transient": transient}),
                );
            }
            CellLine::Clear { wait } => {
                self.send_text();
                self.shared.publish_output("clear_output", json!({"wait": wait}));
            }
            CellLine::Panicked => self.report.panicked = true,
            CellLine::ReturnedError => self.report.returned_error = true,
            CellLine::StderrFence(fence) => self.fence_announced = Some(fence),
        }
    }

    fn on_stderr(&mut self, line: String) {
        if let Some(at) = line.find(STDERR_FENCE) {
            if let Some(fence) = parse_stderr_fence(&line[at..]) {
                // Text before it is an unfinished line (`eprint!`) the cell left.
                if at > 0 {
                    self.on_stderr(line[..at].to_owned());
                }
                self.fence_seen = Some(fence);
                return;
            }
        }
        if !self.capturing_panic && parse_panic_header(&line).is_some() {
            self.held_blank_lines = 0;
            self.send_text();
            self.capturing_panic = true;
        }
        if self.capturing_panic {
            self.report.panic_lines.push(line);
            return;
        }
        if line.is_empty() {
            self.held_blank_lines += 1;
            return;
        }
        self.release_blank_lines();
        if !line.trim().is_empty() {
            self.report.last_stderr_line = Some(line.clone());
        }
        self.stderr_text.push_str(&line);
        self.stderr_text.push('\n');
        if self.stderr.is_empty() || self.stderr_text.len() > MAX_STREAM_CHUNK {
            self.send_text();
        }
    }

    fn release_blank_lines(&mut self) {
        let held = std::mem::take(&mut self.held_blank_lines);
        self.stderr_text.extend(std::iter::repeat_n('\n', held));
    }

    fn send_text(&mut self) {
        for (name, text) in [("stdout", &mut self.stdout_text), ("stderr", &mut self.stderr_text)] {
            if !text.is_empty() {
                let text = std::mem::take(text);
                self.shared.publish_output("stream", json!({"name": name, "text": text}));
            }
        }
    }

    fn finish_cell(&mut self) -> CellReport {
        while let Ok(line) = self.stdout.try_recv() {
            self.on_stdout(line);
        }
        self.await_stderr_fences();
        if self.report.panicked {
            self.await_panic_message();
        }
        while let Ok(line) = self.stderr.try_recv() {
            self.on_stderr(line);
        }
        self.release_blank_lines();
        self.send_text();
        self.capturing_panic = false;
        let mut report = std::mem::take(&mut self.report);
        if !report.panicked && !report.panic_lines.is_empty() {
            // A panic in a background thread: not the cell's failure, but keep it visible.
            let text: String = report.panic_lines.drain(..).map(|line| line + "\n").collect();
            self.shared.publish_output("stream", json!({"name": "stderr", "text": text}));
        }
        report
    }

    /// Reads stderr until the last fence the cell process announced on stdout has arrived.
    fn await_stderr_fences(&mut self) {
        let deadline = Instant::now() + STDERR_FENCE_WAIT;
        while let Some(announced) = self.fence_announced {
            // Fences of one process arrive in order; a restarted process starts again at 1.
            if self.fence_seen.is_some_and(|seen| seen.pid == announced.pid && seen.number >= announced.number) {
                break;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.on_stderr(line),
                Err(_) => break,
            }
        }
        // Awaited once: a fence that never came does not hold up later cells.
        self.fence_announced = None;
    }

    /// The panic message travels on stderr, separately from evcxr's notification on stdout.
    fn await_panic_message(&mut self) {
        let deadline = Instant::now() + PANIC_MESSAGE_WAIT;
        while self.report.panic_lines.is_empty() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.on_stderr(line),
                Err(_) => return,
            }
        }
        loop {
            match self.stderr.recv_timeout(PANIC_MESSAGE_QUIET) {
                Ok(line) => self.on_stderr(line),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// Content of an `execute_result` from evcxr's collected mime outputs.
pub fn result_data(outputs: &evcxr::EvalOutputs) -> serde_json::Map<String, Value> {
    outputs
        .content_by_mime_type
        .iter()
        .map(|(mime, content)| {
            // JSON mime types carry structured data, not a string.
            let value = if mime == "application/json" || mime.ends_with("+json") {
                serde_json::from_str(content).unwrap_or_else(|_| Value::String(content.clone()))
            } else {
                Value::String(content.clone())
            };
            (mime.clone(), value)
        })
        .collect()
}
