//! The execution thread: owns the evcxr context, preloads the library, runs cells,
//! answers completion and inspection. Requests arrive in order through a channel.

use crate::diagnostics::{self, CellError, CellSpan, Diagnostic};
use crate::forwarder::{result_data, CellReport, Forwarder};
use crate::preload::Locations;
use crate::template;
use crate::shared::{OutputRoute, PreloadPhase, Shared};
use crate::wire::Message;
use evcxr::{CommandContext, EvalCallbacks};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Interval of "still building" notes while the preload compiles.
const PRELOAD_TICK: Duration = Duration::from_secs(15);

pub enum Job {
    Execute(Message),
    Complete(Message),
    Inspect(Message),
}

pub struct EngineConfig {
    /// What to preload; `Err` says why nothing is preloaded.
    pub preload: Result<Locations, String>,
    /// evcxr's build directory for this kernel (`EVCXR_TMPDIR`).
    pub work_dir: PathBuf,
    /// Environment for the cell process.
    pub cell_env: Vec<(String, String)>,
}

pub fn spawn(shared: Arc<Shared>, config: EngineConfig, jobs: Receiver<Job>) {
    std::thread::Builder::new()
        .name("engine".to_owned())
        .spawn(move || Engine::start(shared, config).serve(jobs))
        .expect("spawning the execution thread");
}

/// The evcxr command that starts cell processes: this very binary, which turns into
/// evcxr's runtime when it sees evcxr's environment variable (see main).
pub fn cell_process_command(cell_env: &[(String, String)]) -> std::io::Result<std::process::Command> {
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.envs(cell_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Ok(command)
}

/// Links the prebuilt library into `work_dir` and runs the preload cells in `context`,
/// reporting each step. Shared by kernels and `warm`'s check (which skips the indexing).
pub fn run_preload(
    context: &mut CommandContext,
    locations: &Locations,
    work_dir: &Path,
    index: bool,
    progress: &mut dyn FnMut(String),
) -> Result<(), String> {
    template::install_into(locations, work_dir)?;
    let run = |context: &mut CommandContext, code: &str| {
        context.execute(code).map(drop).map_err(|error| describe_evcxr_error(&error, code))
    };
    for (step, code) in locations.preload_cells(work_dir)? {
        let started = Instant::now();
        progress(format!("tunebook: {step}..."));
        run(context, &code)?;
        progress(format!("tunebook: {step}: done in {:.1} s", started.elapsed().as_secs_f64()));
    }
    if index {
        let started = Instant::now();
        progress("tunebook: indexing the library for completions and type inference...".to_owned());
        warm_analysis(context);
        progress(format!("tunebook: indexed in {:.1} s", started.elapsed().as_secs_f64()));
    }
    Ok(())
}

/// rust-analyzer loads std's (and the preloaded library's) definitions lazily, which would
/// make the first cell with a `let` take seconds; a completion request loads them now
/// without defining anything in the notebook.
pub fn warm_analysis(context: &mut CommandContext) {
    let code = "let tunebook_kernel_warmup = 0u8;\ntunebook_kernel_warmup.";
    let _ = context.completions(code, code.len());
}

fn describe_evcxr_error(error: &evcxr::Error, code: &str) -> String {
    match error {
        evcxr::Error::CompilationErrors(errors) => {
            let diagnostics: Vec<Diagnostic> = errors.iter().map(to_diagnostic).collect();
            let rendered: Vec<String> = errors.iter().map(|e| e.rendered()).filter(|r| !r.is_empty()).collect();
            if rendered.is_empty() {
                diagnostics::compile_error(&diagnostics, code).traceback.join("\n")
            } else {
                rendered.join("\n")
            }
        }
        other => other.to_string(),
    }
}

fn to_diagnostic(error: &evcxr::CompilationError) -> Diagnostic {
    let mut labels: Vec<(Option<CellSpan>, String)> = Vec::new();
    let mut messages: Vec<_> = error.spanned_messages().iter().collect();
    // Primary span first: that is where the location line points.
    messages.sort_by_key(|message| !message.is_primary);
    for message in messages {
        let span = message.span.map(|s| CellSpan {
            start_line: s.start_line,
            start_column: s.start_column,
            end_line: s.end_line,
            end_column: s.end_column,
        });
        labels.push((span, message.label.clone()));
    }
    Diagnostic {
        code: error.code().map(str::to_owned),
        message: error.message(),
        labels,
        help: error.help(),
    }
}

struct Engine {
    shared: Arc<Shared>,
    /// Set once the library is preloaded.
    stub: Option<template::StubManifest>,
    context: Result<CommandContext, String>,
    forwarder: Option<Forwarder>,
    execution_count: u64,
}

impl Engine {
    fn start(shared: Arc<Shared>, config: EngineConfig) -> Engine {
        shared.set_route(OutputRoute { parent: Value::Null, silent: true });
        let started = Instant::now();
        let ticker = spawn_preload_ticker(Arc::clone(&shared), started);
        let progress = |line: String| shared.preload.lock().unwrap().progress(&shared, line);
        // A library that cannot be found is reported in the first cell, like a failed build.
        let library_missing = config.preload.is_err();
        let preload = match config.preload {
            Ok(locations) if preload_enabled() => Some(locations),
            Ok(_) => {
                // Asked for explicitly: nothing to report to the cells.
                shared.preload.lock().unwrap().finish(PreloadPhase::Disabled);
                None
            }
            Err(reason) => {
                progress(format!("tunebook: not preloaded: {reason}"));
                None
            }
        };
        // A library changed since `warm` (or never built for notebooks) is built now: about a
        // minute when its workspace build is current, since that build's dependencies are reused.
        let mut build_failed = None;
        if let Some(locations) = &preload {
            if !template::is_current(locations) {
                progress(
                    "tunebook: the library changed since it was last built for notebooks (or never was); \
                     building it now"
                        .to_owned(),
                );
                let build_started = Instant::now();
                let mut report = |line: String| progress(line);
                match template::build(locations, &mut report) {
                    Ok(()) => progress(format!("tunebook: built in {:.0} s", build_started.elapsed().as_secs_f64())),
                    Err(error) => build_failed = Some(error),
                }
            }
        }

        if let Err(error) = crate::relay::build_flush_helper(&config.work_dir) {
            crate::log(&format!("stdout flush helper unavailable, a cell's last unterminated line shows late: {error}"));
        }
        let mut engine = Engine { shared: Arc::clone(&shared), stub: None, context: Err(String::new()), forwarder: None, execution_count: 0 };
        engine.context = cell_process_command(&config.cell_env)
            .map_err(|error| error.to_string())
            .and_then(|command| evcxr::EvalContext::with_subprocess_command(command).map_err(|e| e.to_string()))
            .map(|(eval_context, outputs)| {
                engine.forwarder = Some(Forwarder::spawn(Arc::clone(&shared), outputs.stdout, outputs.stderr));
                CommandContext::with_eval_context(eval_context)
            })
            .map_err(|error| format!("could not start the Rust evaluation context: {error}"));

        let phase = match (&mut engine.context, &preload) {
            (Err(error), _) => {
                progress(format!("tunebook: {error}"));
                PreloadPhase::Failed
            }
            (Ok(context), Some(locations)) => {
                *shared.cell_process.lock().unwrap() = Some(context.process_handle());
                let mut report = |line: String| progress(line);
                let loaded = match build_failed {
                    Some(error) => Err(error),
                    None => run_preload(context, locations, &config.work_dir, true, &mut report),
                };
                match loaded {
                    Ok(()) => {
                        let mut stub = template::StubManifest::installed(&config.work_dir);
                        if let Err(error) = stub.set(false) {
                            crate::log(&format!("cells keep checking the whole library graph: {error}"));
                        }
                        engine.stub = Some(stub);
                        progress(format!("tunebook: ready in {:.1} s", started.elapsed().as_secs_f64()));
                        PreloadPhase::Done
                    }
                    Err(error) => {
                        progress(format!(
                            "tunebook: the library could not be loaded; cells run without it. \
                             Fix the error and restart the kernel.\n{error}"
                        ));
                        PreloadPhase::Failed
                    }
                }
            }
            (Ok(context), None) => {
                *shared.cell_process.lock().unwrap() = Some(context.process_handle());
                warm_analysis(context);
                if library_missing { PreloadPhase::Failed } else { PreloadPhase::Disabled }
            }
        };
        shared.preload.lock().unwrap().finish(phase);
        drop(ticker);
        engine
    }

    fn serve(mut self, jobs: Receiver<Job>) {
        self.shared.engine_busy.store(false, Ordering::SeqCst);
        while let Ok(job) = jobs.recv() {
            self.shared.engine_busy.store(true, Ordering::SeqCst);
            match job {
                Job::Execute(request) => {
                    let to_abort = self.execute(&request, &jobs);
                    self.abort(to_abort);
                }
                Job::Complete(request) => self.complete(&request),
                Job::Inspect(request) => self.inspect(&request),
            }
            self.shared.engine_busy.store(false, Ordering::SeqCst);
        }
    }

    /// Runs one execute request; returns the requests to abort because it failed.
    fn execute(&mut self, request: &Message, jobs: &Receiver<Job>) -> Vec<Job> {
        let shared = Arc::clone(&self.shared);
        let parent = request.header.clone();
        let content = &request.content;
        let flag = |name: &str, default: bool| content[name].as_bool().unwrap_or(default);
        let code = content["code"].as_str().unwrap_or_default().to_owned();
        let silent = flag("silent", false);
        let store_history = !silent && flag("store_history", true);
        let stop_on_error = flag("stop_on_error", true);
        let allow_stdin = flag("allow_stdin", true);

        shared.publish_status(&parent, "busy");
        if store_history {
            self.execution_count += 1;
            shared.history.lock().unwrap().push(self.execution_count, code.clone());
        }
        if !silent {
            shared.publish(&parent, "execute_input", json!({"code": code, "execution_count": self.execution_count}));
        }
        shared.set_route(OutputRoute { parent: parent.clone(), silent });
        if let Some(note) = shared.preload.lock().unwrap().take_unseen_failure(&parent) {
            shared.publish_output("stream", json!({"name": "stderr", "text": note}));
        }

        let outcome = self.run_cell(&code, request, allow_stdin);
        // Jupyter's stop_on_error: what was queued behind a failed cell ("Run all") is not
        // run. Taken before the reply goes out, so nothing sent in response to it counts.
        let to_abort = if outcome.is_err() && stop_on_error { jobs.try_iter().collect() } else { Vec::new() };
        let reply = match outcome {
            Ok(data) => {
                if let (true, Some(Value::String(text))) = (store_history, data.get("text/plain")) {
                    shared.history.lock().unwrap().set_output(self.execution_count, text.clone());
                }
                if !silent && !data.is_empty() {
                    shared.publish(
                        &parent,
                        "execute_result",
                        json!({"execution_count": self.execution_count, "data": data, "metadata": {}}),
                    );
                }
                json!({
                    "status": "ok",
                    "execution_count": self.execution_count,
                    "user_expressions": {},
                    "payload": [],
                })
            }
            Err(error) => {
                if !silent {
                    shared.publish(&parent, "error", error.content());
                }
                let mut reply = error.content();
                reply["status"] = json!("error");
                reply["execution_count"] = json!(self.execution_count);
                reply
            }
        };
        self.reply_with_status(request, "execute_reply", reply, false);
        to_abort
    }

    fn run_cell(&mut self, code: &str, request: &Message, allow_stdin: bool) -> Result<Map<String, Value>, CellError> {
        let context = match &mut self.context {
            Ok(context) => context,
            Err(error) => return Err(CellError::simple("KernelError", error.clone())),
        };
        if code.lines().any(|line| line.trim() == ":quit" || line.trim().starts_with(":quit ")) {
            return Err(CellError::simple(
                "UnsupportedCommand",
                ":quit would end the kernel process; use the notebook's Shut Down or Restart instead",
            ));
        }
        {
            let mut interrupt = self.shared.interrupt.lock().unwrap();
            interrupt.generation += 1;
            interrupt.executing = true;
            interrupt.requested = false;
            interrupt.signalled = false;
            interrupt.killed = false;
            interrupt.requested_at = None;
        }
        let shared = Arc::clone(&self.shared);
        let mut callbacks = EvalCallbacks {
            input_reader: &move |input| read_input(&shared, request, allow_stdin, &input.prompt, input.is_password),
        };
        if let Some(stub) = &mut self.stub {
            if let Err(error) = stub.before_cell(code) {
                crate::log(&format!("stub manifest: {error}"));
            }
        }
        let result = context.execute_with_callbacks(code, &mut callbacks);
        if let Some(stub) = &mut self.stub {
            stub.after_cell();
        }
        let report = self.forwarder.as_ref().map(Forwarder::flush).unwrap_or_default();
        let interrupted = {
            let mut interrupt = self.shared.interrupt.lock().unwrap();
            interrupt.executing = false;
            interrupt.interrupted()
        };
        let generated = context.last_source().ok();
        classify(result, report, interrupted, code, generated.as_deref())
    }

    /// Answers queued executions as aborted; other queued requests are served.
    fn abort(&mut self, queued: Vec<Job>) {
        for job in queued {
            match job {
                Job::Execute(request) => {
                    let content = json!({"status": "aborted", "execution_count": self.execution_count});
                    self.reply_with_status(&request, "execute_reply", content, true);
                }
                Job::Complete(request) => self.complete(&request),
                Job::Inspect(request) => self.inspect(&request),
            }
        }
    }

    fn complete(&mut self, request: &Message) {
        let code = request.content["code"].as_str().unwrap_or_default();
        let cursor = request.content["cursor_pos"].as_u64().unwrap_or(0) as usize;
        let byte_cursor = char_to_byte(code, cursor);
        let completions = match &mut self.context {
            Ok(context) => context.completions(code, byte_cursor).ok(),
            Err(_) => None,
        };
        let content = match completions {
            Some(found) => {
                let start = byte_to_char(code, found.start_offset);
                let end = byte_to_char(code, found.end_offset);
                let matches: Vec<&str> = found.completions.iter().map(|c| c.code.as_str()).collect();
                let types: Vec<Value> = found
                    .completions
                    .iter()
                    .map(|c| json!({"start": start, "end": end, "text": c.code, "type": c.kind, "signature": c.label}))
                    .collect();
                json!({
                    "status": "ok", "matches": matches, "cursor_start": start, "cursor_end": end,
                    "metadata": {"_jupyter_types_experimental": types},
                })
            }
            None => empty_completion(cursor),
        };
        self.reply_with_status(request, "complete_reply", content, true);
    }

    fn inspect(&mut self, request: &Message) {
        let code = request.content["code"].as_str().unwrap_or_default();
        let cursor = request.content["cursor_pos"].as_u64().unwrap_or(0) as usize;
        let end = identifier_end(code, char_to_byte(code, cursor));
        let hover = match &mut self.context {
            Ok(context) if end > 0 => context.hover_at(code, end).ok(),
            _ => None,
        };
        let content = match hover {
            Some((text, html)) if text != "No documentation found" && !text.trim().is_empty() => json!({
                "status": "ok", "found": true,
                "data": {"text/plain": text, "text/html": html}, "metadata": {},
            }),
            _ => json!({"status": "ok", "found": false, "data": {}, "metadata": {}}),
        };
        self.reply_with_status(request, "inspect_reply", content, true);
    }

    /// Sends the reply to `request` and its idle status (and before them busy, unless the
    /// caller announced it). The engine counts as free from here on: a completion the frontend
    /// sends once it has the reply must be served, not answered empty as during a running cell.
    fn reply_with_status(&self, request: &Message, msg_type: &str, content: Value, announce_busy: bool) {
        if announce_busy {
            self.shared.publish_status(&request.header, "busy");
        }
        self.shared.engine_busy.store(false, Ordering::SeqCst);
        self.shared.reply(&self.shared.shell, request, msg_type, content);
        self.shared.publish_status(&request.header, "idle");
    }
}

pub fn empty_completion(cursor: usize) -> Value {
    json!({"status": "ok", "matches": [], "cursor_start": cursor, "cursor_end": cursor, "metadata": {}})
}

/// Asks the frontend for a line of input on the stdin socket and waits for the reply.
fn read_input(shared: &Shared, request: &Message, allow_stdin: bool, prompt: &str, password: bool) -> String {
    if !allow_stdin {
        shared.publish_output("stream", json!({"name": "stderr", "text": "input requested, but this frontend does not accept input; using an empty line\n"}));
        return String::new();
    }
    let (sender, replies) = std::sync::mpsc::channel();
    *shared.input_replies.lock().unwrap() = Some(sender);
    let message = shared.factory.stdin_request(request, "input_request", json!({"prompt": prompt, "password": password}));
    let _ = shared.stdin.send(crate::shared::Outgoing { message, sent: None });
    let value = loop {
        match replies.recv_timeout(Duration::from_millis(100)) {
            Ok(value) => break value,
            Err(RecvTimeoutError::Timeout) => {
                if shared.interrupt.lock().unwrap().requested {
                    break String::new();
                }
            }
            Err(RecvTimeoutError::Disconnected) => break String::new(),
        }
    };
    *shared.input_replies.lock().unwrap() = None;
    value
}

fn classify(
    result: Result<evcxr::EvalOutputs, evcxr::Error>,
    report: CellReport,
    interrupted: bool,
    code: &str,
    generated: Option<&str>,
) -> Result<Map<String, Value>, CellError> {
    const STATE_LOST: &str = "the cell process was restarted: variables are gone; \
                              definitions (fn, struct, use) and :dep crates are kept";
    if interrupted {
        let evalue = match &result {
            Err(evcxr::Error::SubprocessTerminated(_)) => format!("cell interrupted; {STATE_LOST}"),
            Err(_) => "cell interrupted before it ran; variables are kept".to_owned(),
            Ok(_) => "cell stopped on interrupt; variables are kept".to_owned(),
        };
        return Err(CellError::simple("Interrupted", evalue));
    }
    match result {
        Ok(outputs) => {
            if report.panicked {
                return Err(diagnostics::panic_error(&report.panic_lines, generated, code));
            }
            if report.returned_error {
                let message = report.last_stderr_line.unwrap_or_else(|| "the cell returned an error".to_owned());
                return Err(CellError::new("Error", message.clone(), vec![format!("Error: {message}"), "returned early by `?` in this cell".to_owned()]));
            }
            Ok(result_data(&outputs))
        }
        Err(evcxr::Error::CompilationErrors(errors)) => {
            let diagnostics: Vec<Diagnostic> = errors.iter().map(to_diagnostic).collect();
            Err(diagnostics::compile_error(&diagnostics, code))
        }
        Err(evcxr::Error::SubprocessTerminated(message)) => Err(CellError::new(
            "ProcessExited",
            format!("{}; {STATE_LOST}", message.trim()),
            message.lines().map(str::to_owned).chain([STATE_LOST.to_owned()]).collect(),
        )),
        Err(other) => Err(CellError::simple("Error", other.to_string())),
    }
}

fn preload_enabled() -> bool {
    std::env::var("TUNEBOOK_KERNEL_PRELOAD").map_or(true, |value| value != "0")
}

/// While the preload runs, a note every [`PRELOAD_TICK`] so a waiting cell shows life.
fn spawn_preload_ticker(shared: Arc<Shared>, started: Instant) -> std::sync::mpsc::Sender<()> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || loop {
        match stopped.recv_timeout(PRELOAD_TICK) {
            Err(RecvTimeoutError::Timeout) => {
                let mut board = shared.preload.lock().unwrap();
                if board.phase != PreloadPhase::Running {
                    return;
                }
                board.progress(&shared, format!("tunebook: still preparing ({:.0} s)", started.elapsed().as_secs_f64()));
            }
            _ => return,
        }
    });
    stop
}

/// Jupyter counts cursor positions in Unicode code points; evcxr in bytes.
pub fn char_to_byte(text: &str, chars: usize) -> usize {
    text.char_indices().nth(chars).map_or(text.len(), |(byte, _)| byte)
}

pub fn byte_to_char(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].chars().count()
}

/// End (byte offset) of the identifier or path under the cursor, for hover.
pub fn identifier_end(code: &str, cursor: usize) -> usize {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    match code[cursor..].char_indices().find(|(_, c)| !is_ident(*c)) {
        Some((offset, _)) => cursor + offset,
        None => code.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_conversions_count_code_points() {
        let code = "let é = 1; é.";
        assert_eq!(char_to_byte(code, 4), 4);
        assert_eq!(char_to_byte(code, 5), 6);
        assert_eq!(byte_to_char(code, 6), 5);
        assert_eq!(char_to_byte(code, 100), code.len());
    }

    #[test]
    fn hover_position_extends_to_the_end_of_the_word() {
        assert_eq!(identifier_end("Vec::new()", 1), 3);
        assert_eq!(identifier_end("Vec::new()", 5), 8);
        assert_eq!(identifier_end("abc", 0), 3);
    }
}
