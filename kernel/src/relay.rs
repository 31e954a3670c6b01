//! Runs inside the cell process (the kernel binary re-executed by evcxr): puts a line
//! relay between the cell's stdout and the pipe evcxr reads.
//!
//! Two reasons:
//! * evcxr recognises its protocol lines (`EVCXR_EXECUTION_COMPLETE`, ...) only at the start
//!   of a line, so a cell ending in `print!("no newline")` would hang the kernel; the relay
//!   starts a new line before every protocol marker.
//! * evcxr consumes its panic / `?`-error notifications itself; the relay adds a kernel
//!   marker in front of them so the kernel can reply with an error.

use crate::display::{FAILED_MARKER, PANICKED_MARKER};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};

const EVCXR_PANIC: &str = "EVCXR_PANIC_NOTIFICATION";
const EVCXR_USER_ERROR: &str = "EVCXR_ERROR_OCCURRED";
/// Lines that must start at column 0 to be understood by evcxr or by the kernel.
const LINE_START_MARKERS: [&str; 7] = [
    "EVCXR_EXECUTION_COMPLETE",
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
    std::thread::Builder::new().name("stdout-relay".to_owned()).spawn(move || {
        let mut reader = BufReader::new(std::fs::File::from(read_end));
        let mut writer = std::io::BufWriter::new(std::fs::File::from(real_stdout));
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&raw);
            let line = text.strip_suffix('\n').unwrap_or(&text);
            for piece in relay_line(line) {
                if writer.write_all(piece.as_bytes()).and_then(|_| writer.write_all(b"\n")).is_err() {
                    return;
                }
            }
            // Live output: flush whenever the cell has nothing more queued for us.
            if reader.buffer().is_empty() && writer.flush().is_err() {
                return;
            }
        }
    })?;
    Ok(())
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
