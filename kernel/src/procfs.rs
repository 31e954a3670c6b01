//! What the kernel needs to know about its child processes, read from /proc (Linux).

use std::fs;

/// How a process will react to a signal.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Disposition {
    /// Default action (for SIGINT: terminate).
    Default,
    Caught,
    Ignored,
}

/// Parent pid from the contents of `/proc/<pid>/stat`.
pub fn parse_parent_pid(stat: &str) -> Option<u32> {
    // The command name is in parentheses and may itself contain spaces and parentheses.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// Disposition of `signal` from the contents of `/proc/<pid>/status`.
pub fn parse_disposition(status: &str, signal: i32) -> Option<Disposition> {
    let mask = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        u64::from_str_radix(line[name.len()..].trim(), 16).ok()
    };
    let bit = 1u64 << (signal - 1);
    if mask("SigIgn:")? & bit != 0 {
        Some(Disposition::Ignored)
    } else if mask("SigCgt:")? & bit != 0 {
        Some(Disposition::Caught)
    } else {
        Some(Disposition::Default)
    }
}

/// Whether `/proc/<pid>/syscall` shows the process blocked in `read(0, ...)`: for the cell
/// process that means it is idle, waiting for evcxr's next instruction.
pub fn parse_blocked_reading_stdin(syscall: &str) -> bool {
    let mut fields = syscall.split_whitespace();
    fields.next() == Some(&libc::SYS_read.to_string()) && fields.next() == Some("0x0")
}

pub fn disposition(pid: u32, signal: i32) -> Option<Disposition> {
    parse_disposition(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?, signal)
}

/// `None` when /proc does not tell (no permission, process gone).
pub fn blocked_reading_stdin(pid: u32) -> Option<bool> {
    let syscall = fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    // "running" means it was on a CPU when sampled.
    Some(parse_blocked_reading_stdin(&syscall))
}

/// All descendants of `root` (children, grandchildren, ...), parents before children.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(parent) = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .as_deref()
                .and_then(parse_parent_pid)
            {
                parent_of.push((pid, parent));
            }
        }
    }
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(parent_of.iter().filter(|(_, p)| *p == parent).map(|(pid, _)| *pid));
        next += 1;
    }
    found.remove(0);
    found
}

pub fn send_signal(pid: u32, signal: i32) -> bool {
    // SAFETY: kill(2) has no memory effects; pids come from our own process tree.
    unsafe { libc::kill(pid as libc::pid_t, signal) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_survives_odd_command_names() {
        assert_eq!(parse_parent_pid("4242 (cargo) S 17 4242 17 0 -1"), Some(17));
        assert_eq!(parse_parent_pid("9 (a) (b c) R 3 9 9 0"), Some(3));
        assert_eq!(parse_parent_pid("garbage"), None);
    }

    #[test]
    fn sigint_disposition_from_status_masks() {
        let status = |ign: &str, cgt: &str| format!("Name:\tx\nSigBlk:\t0000000000000000\nSigIgn:\t{ign}\nSigCgt:\t{cgt}\n");
        assert_eq!(parse_disposition(&status("0000000000000000", "0000000000000000"), libc::SIGINT), Some(Disposition::Default));
        assert_eq!(parse_disposition(&status("0000000000000000", "0000000000000002"), libc::SIGINT), Some(Disposition::Caught));
        assert_eq!(parse_disposition(&status("0000000000000002", "0000000000000000"), libc::SIGINT), Some(Disposition::Ignored));
        assert_eq!(parse_disposition("Name: x", libc::SIGINT), None);
    }

    #[test]
    fn idle_cell_process_is_blocked_in_read_on_fd_0() {
        let read = libc::SYS_read;
        assert!(parse_blocked_reading_stdin(&format!("{read} 0x0 0x55d0 0x2000 0x0 0x0 0x0 0x7ffd 0x7f12")));
        assert!(!parse_blocked_reading_stdin(&format!("{read} 0x5 0x55d0 0x2000 0x0 0x0 0x0 0x7ffd 0x7f12")));
        assert!(!parse_blocked_reading_stdin("running"));
        assert!(!parse_blocked_reading_stdin("202 0x7f 0x80 0x0 0x0 0x0 0x0 0x7ffd 0x7f12"));
    }

    #[test]
    fn finds_our_own_child_processes() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let found = descendants(std::process::id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&child.id()), "{found:?} lacks {}", child.id());
    }
}
