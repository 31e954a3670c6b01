//! Runs inside the cell process (the kernel binary re-executed by evcxr): puts a line
//! relay between the cell's stdout and the pipe evcxr reads.
//!
//! Two reasons:
//! * evcxr recognises its protocol lines (`EVCXR_EXECUTION_COMPLETE`, ...) only at the start
//!   of a line, so a cell ending in `print!("no newline")` would hang the kernel; the relay
//!   starts a new line before every protocol marker.
//! * evcxr consumes its panic / `?`-error notifications itself; the relay adds a kernel
//!   marker in front of them so the kernel can reply with an error.
//! * stderr reaches the kernel on a pipe of its own, unordered with stdout; when a cell
//!   completes, the relay writes a fence on both so the kernel knows when it has all of the
//!   cell's stderr.

use crate::display::{FAILED_MARKER, PANICKED_MARKER, STDERR_FENCE};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const EVCXR_PANIC: &str = "EVCXR_PANIC_NOTIFICATION";
const EVCXR_USER_ERROR: &str = "EVCXR_ERROR_OCCURRED";
/// Lines that must start at column 0 to be understood by evcxr or by the kernel.
const LINE_START_MARKERS: [&str; 7] = [
    EXECUTION_COMPLETE,
    EVCXR_PANIC,
    EVCXR_USER_ERROR,
    "EVCXR_BEGIN_CONTENT ",
    "EVCXR_END_CONTENT",
    crate::display::DISPLAY_PREFIX,
    crate::display::CLEAR_PREFIX,
];

/// The lines to pass on for one line the cell wrote (without its newline).
pub fn relay_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        let split = LINE_START_MARKERS
            .iter()
            .filter_map(|marker| rest.find(marker))
            .filter(|&index| index > 0)
            .min();
        match split {
            Some(index) => {
                push_with_markers(&mut out, &rest[..index]);
                rest = &rest[index..];
            }
            None => {
                push_with_markers(&mut out, rest);
                return out;
            }
        }
    }
}

fn push_with_markers(out: &mut Vec<String>, line: &str) {
    if line == EVCXR_PANIC {
        out.push(PANICKED_MARKER.to_owned());
    } else if line == EVCXR_USER_ERROR {
        out.push(FAILED_MARKER.to_owned());
    }
    out.push(line.to_owned());
}

/// Names the flush helper library in the cell process's environment.
pub const FLUSH_HELPER_VAR: &str = "TUNEBOOK_STDOUT_FLUSH_HELPER";
const FLUSH_SYMBOL: &str = "tunebook_flush_stdout";
const EXECUTION_COMPLETE: &str = "EVCXR_EXECUTION_COMPLETE";

/// Cells link Rust's std dynamically, evcxr's runtime (this binary) statically: a cell that
/// ends with `print!` without a newline leaves its text in the shared library's stdout
/// buffer, where it would surface in a later cell. This helper, compiled against the same
/// libstd as the cells, flushes that buffer; the relay calls it when a cell completes.
pub fn build_flush_helper(dir: &Path) -> Result<(), String> {
    let source = dir.join("tunebook_stdout_flush.rs");
    let library = flush_helper_path(dir);
    std::fs::write(
        &source,
        format!("#[no_mangle]\npub extern \"C\" fn {FLUSH_SYMBOL}() {{\n    use std::io::Write;\n    let _ = std::io::stdout().flush();\n}}\n"),
    )
    .map_err(|error| format!("writing {}: {error}", source.display()))?;
    let output = std::process::Command::new("rustc")
        .args(["--crate-type", "cdylib", "-C", "prefer-dynamic", "-C", "rpath", "-C", "opt-level=1", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
        .map_err(|error| format!("running rustc: {error}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(())
}

pub fn flush_helper_path(dir: &Path) -> PathBuf {
    dir.join("libtunebook_stdout_flush.so")
}

fn load_flush_helper() -> Option<unsafe extern "C" fn()> {
    let path = CString::new(std::env::var_os(FLUSH_HELPER_VAR)?.as_bytes()).ok()?;
    let symbol = CString::new(FLUSH_SYMBOL).ok()?;
    // SAFETY: the library is the helper built by build_flush_helper; its only symbol of
    // interest has exactly this signature.
    unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            return None;
        }
        let function = libc::dlsym(handle, symbol.as_ptr());
        (!function.is_null()).then(|| std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn()>(function))
    }
}

/// Redirects fd 1 through the relay. Called once, first thing, in the cell process.
pub fn install() -> std::io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: plain fd syscalls on fds we own; runs before any other thread exists.
    let (read_end, real_stdout) = unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let real_stdout = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if real_stdout < 0 || libc::dup2(fds[1], 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::close(fds[1]);
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(real_stdout))
    };
    let flush_cells_stdout = load_flush_helper();
    std::thread::Builder::new().name("stdout-relay".to_owned()).spawn(move || {
        let mut relay = Relay {
            input: std::fs::File::from(read_end),
            output: std::io::BufWriter::new(std::fs::File::from(real_stdout)),
            pending: Vec::new(),
            flush_cells_stdout,
            completions: 0,
        };
        let _ = relay.run();
    })?;
    Ok(())
}

struct Relay {
    input: std::fs::File,
    output: std::io::BufWriter<std::fs::File>,
    /// Bytes read but not yet forwarded: an unfinished line.
    pending: Vec<u8>,
    flush_cells_stdout: Option<unsafe extern "C" fn()>,
    /// Cells completed by this process, evcxr's start-up evaluation included: numbers the
    /// fences (with the pid, which a restarted cell process does not share).
    completions: u64,
}

impl Relay {
    fn run(&mut self) -> std::io::Result<()> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let read = self.input.read(&mut chunk)?;
            if read == 0 {
                return Ok(());
            }
            self.pending.extend_from_slice(&chunk[..read]);
            while let Some(end) = self.pending.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                self.forward(&String::from_utf8_lossy(&line[..end]))?;
            }
            self.output.flush()?;
        }
    }

    fn forward(&mut self, line: &str) -> std::io::Result<()> {
        for piece in relay_line(line) {
            if piece == EXECUTION_COMPLETE {
                self.forward_late_output()?;
                self.completions += 1;
                // The cell has returned, so its stderr writes are all in the pipe before this.
                let fence = format!("{STDERR_FENCE} {} {}", std::process::id(), self.completions);
                write_stderr_line(&fence);
                // Not for the first completion, evcxr's own start-up evaluation: evcxr then
                // waits for its stdout channel to be drained, and the kernel does not read it
                // yet. (So after a restart of the cell process its first cell goes unfenced.)
                if self.completions > 1 {
                    self.output.write_all(fence.as_bytes())?;
                    self.output.write_all(b"\n")?;
                }
            }
            self.output.write_all(piece.as_bytes())?;
            self.output.write_all(b"\n")?;
        }
        Ok(())
    }

    /// What the finished cell left in its stdout buffer goes out before the completion.
    fn forward_late_output(&mut self) -> std::io::Result<()> {
        let Some(flush) = self.flush_cells_stdout else {
            return Ok(());
        };
        // SAFETY: flushing std's stdout from the helper; no arguments, no return value.
        unsafe { flush() };
        let mut late = std::mem::take(&mut self.pending);
        let mut chunk = vec![0u8; 64 * 1024];
        let mut poll = libc::pollfd { fd: self.input.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll on our own pipe fd with a zero timeout.
        while unsafe { libc::poll(&mut poll, 1, 0) } > 0 && poll.revents & libc::POLLIN != 0 {
            let read = self.input.read(&mut chunk)?;
            if read == 0 {
                break;
            }
            late.extend_from_slice(&chunk[..read]);
        }
        if late.is_empty() {
            return Ok(());
        }
        for line in String::from_utf8_lossy(&late).lines() {
            for piece in relay_line(line) {
                self.output.write_all(piece.as_bytes())?;
                self.output.write_all(b"\n")?;
            }
        }
        Ok(())
    }
}

/// Straight to fd 2 (unbuffered, like the cells' own `eprintln!`).
fn write_stderr_line(line: &str) {
    let line = format!("{line}\n");
    let mut rest = line.as_bytes();
    while !rest.is_empty() {
        // SAFETY: writing our own buffer to fd 2.
        let written = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if written > 0 {
            rest = &rest[written as usize..];
        } else if written < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        } else {
            // stderr closed: the kernel's wait for the fence ends with its timeout.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_lines_pass_unchanged() {
        assert_eq!(relay_line("loss 0.5"), vec!["loss 0.5"]);
        assert_eq!(relay_line(""), vec![""]);
    }

    #[test]
    fn unterminated_print_before_completion_gets_its_own_line() {
        assert_eq!(
            relay_line("50%EVCXR_EXECUTION_COMPLETE"),
            vec!["50%", "EVCXR_EXECUTION_COMPLETE"]
        );
    }

    #[test]
    fn panic_and_error_notifications_are_announced_to_the_kernel() {
        assert_eq!(
            relay_line("EVCXR_PANIC_NOTIFICATION"),
            vec![PANICKED_MARKER, "EVCXR_PANIC_NOTIFICATION"]
        );
        assert_eq!(
            relay_line("partialEVCXR_ERROR_OCCURRED"),
            vec!["partial", FAILED_MARKER, "EVCXR_ERROR_OCCURRED"]
        );
    }

    #[test]
    fn several_markers_on_one_line_are_split() {
        assert_eq!(
            relay_line(r#"a TUNEBOOK_DISPLAY {"data":{}}EVCXR_EXECUTION_COMPLETE"#),
            vec!["a ", r#"TUNEBOOK_DISPLAY {"data":{}}"#, "EVCXR_EXECUTION_COMPLETE"]
        );
    }
}
