//! The live-display wire format: single stdout lines a cell (usually the tunebook
//! library's display module) prints to show rich output while it runs.
//!
//! ```text
//! TUNEBOOK_DISPLAY {"display_id": "loss" | null, "update": false, "data": {"text/html": "..."}}
//! TUNEBOOK_CLEAR {"wait": true}
//! ```
//!
//! See kernel/README.md for the contract with the library.

use serde_json::{Map, Value};

pub const DISPLAY_PREFIX: &str = "TUNEBOOK_DISPLAY ";
pub const CLEAR_PREFIX: &str = "TUNEBOOK_CLEAR";
/// Written by the cell process's stdout relay when evcxr reports a caught panic.
pub const PANICKED_MARKER: &str = "TUNEBOOK_CELL_PANICKED";
/// Written by the relay when a `?` in the cell returned an error early.
pub const FAILED_MARKER: &str = "TUNEBOOK_CELL_FAILED";
/// `TUNEBOOK_STDERR_FENCE <pid> <n>`: written by the relay of cell process `pid` on stderr
/// and on stdout when its n-th cell's code has returned. stderr travels on its own pipe, so
/// without it a cell's last `eprintln!` could reach the kernel after the cell's reply; the
/// kernel waits until fence n has come through stderr.
pub const STDERR_FENCE: &str = "TUNEBOOK_STDERR_FENCE";

/// What one stdout line of a running cell means to the kernel.
#[derive(Debug, PartialEq)]
pub enum CellLine {
    /// Plain output, forwarded as a stdout stream.
    Text(String),
    Display {
        display_id: Option<String>,
        update: bool,
        data: Map<String, Value>,
        metadata: Map<String, Value>,
    },
    Clear {
        wait: bool,
    },
    Panicked,
    ReturnedError,
    /// The cell process has put this [`Fence`] behind everything the cell wrote to stderr.
    StderrFence(Fence),
}

/// A [`STDERR_FENCE`]: the cell process and how many cells it had completed.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Fence {
    pub pid: u32,
    pub number: u64,
}

/// A fence line, on either stream.
pub fn parse_stderr_fence(line: &str) -> Option<Fence> {
    let mut fields = line.strip_prefix(STDERR_FENCE)?.strip_prefix(' ')?.split(' ');
    let fence = Fence { pid: fields.next()?.parse().ok()?, number: fields.next()?.parse().ok()? };
    fields.next().is_none().then_some(fence)
}

pub fn parse_stdout_line(line: &str) -> CellLine {
    if line == PANICKED_MARKER {
        return CellLine::Panicked;
    }
    if line == FAILED_MARKER {
        return CellLine::ReturnedError;
    }
    if let Some(fence) = parse_stderr_fence(line) {
        return CellLine::StderrFence(fence);
    }
    if let Some(json) = line.strip_prefix(DISPLAY_PREFIX) {
        // A malformed payload stays visible as text rather than vanishing.
        return parse_display(json).unwrap_or_else(|| CellLine::Text(line.to_owned()));
    }
    if let Some(rest) = line.strip_prefix(CLEAR_PREFIX) {
        let rest = rest.trim();
        if rest.is_empty() {
            return CellLine::Clear { wait: false };
        }
        if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(rest) {
            let wait = fields.get("wait").and_then(Value::as_bool).unwrap_or(false);
            return CellLine::Clear { wait };
        }
    }
    CellLine::Text(line.to_owned())
}

fn parse_display(json: &str) -> Option<CellLine> {
    let Value::Object(mut fields) = serde_json::from_str::<Value>(json).ok()? else {
        return None;
    };
    let Some(Value::Object(data)) = fields.remove("data") else {
        return None;
    };
    let display_id = match fields.remove("display_id") {
        Some(Value::String(id)) => Some(id),
        None | Some(Value::Null) => None,
        Some(_) => return None,
    };
    let update = fields.get("update").and_then(Value::as_bool).unwrap_or(false);
    let metadata = match fields.remove("metadata") {
        Some(Value::Object(metadata)) => metadata,
        _ => Map::new(),
    };
    Some(CellLine::Display {
        // An update needs an id to target; without one it can only be shown anew.
        update: update && display_id.is_some(),
        display_id,
        data,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn display_line_becomes_display_with_id() {
        let line = r#"TUNEBOOK_DISPLAY {"display_id": "loss", "update": false, "data": {"text/html": "<b>1</b>", "text/plain": "1"}}"#;
        match parse_stdout_line(line) {
            CellLine::Display { display_id, update, data, metadata } => {
                assert_eq!(display_id.as_deref(), Some("loss"));
                assert!(!update);
                assert_eq!(data["text/html"], json!("<b>1</b>"));
                assert!(metadata.is_empty());
            }
            other => panic!("expected display, got {other:?}"),
        }
    }

    #[test]
    fn update_with_null_id_degrades_to_new_display() {
        let line = r#"TUNEBOOK_DISPLAY {"display_id": null, "update": true, "data": {"text/plain": "x"}}"#;
        assert!(matches!(
            parse_stdout_line(line),
            CellLine::Display { display_id: None, update: false, .. }
        ));
    }

    #[test]
    fn update_with_id_and_metadata() {
        let line = r#"TUNEBOOK_DISPLAY {"display_id": "p", "update": true, "data": {"image/svg+xml": "<svg/>"}, "metadata": {"isolated": true}}"#;
        match parse_stdout_line(line) {
            CellLine::Display { update, metadata, .. } => {
                assert!(update);
                assert_eq!(metadata["isolated"], json!(true));
            }
            other => panic!("expected display, got {other:?}"),
        }
    }

    #[test]
    fn malformed_display_stays_visible_as_text() {
        for line in [
            "TUNEBOOK_DISPLAY {not json",
            r#"TUNEBOOK_DISPLAY {"display_id": "a"}"#,
            r#"TUNEBOOK_DISPLAY {"display_id": 3, "data": {}}"#,
        ] {
            assert_eq!(parse_stdout_line(line), CellLine::Text(line.to_owned()));
        }
    }

    #[test]
    fn clear_lines() {
        assert_eq!(parse_stdout_line(r#"TUNEBOOK_CLEAR {"wait": true}"#), CellLine::Clear { wait: true });
        assert_eq!(parse_stdout_line("TUNEBOOK_CLEAR"), CellLine::Clear { wait: false });
        assert_eq!(
            parse_stdout_line("TUNEBOOK_CLEARANCE sale"),
            CellLine::Text("TUNEBOOK_CLEARANCE sale".to_owned())
        );
    }

    #[test]
    fn markers_and_plain_text() {
        assert_eq!(parse_stdout_line(PANICKED_MARKER), CellLine::Panicked);
        assert_eq!(parse_stdout_line(FAILED_MARKER), CellLine::ReturnedError);
        assert_eq!(parse_stdout_line("TUNEBOOK_STDERR_FENCE 345 12"), CellLine::StderrFence(Fence { pid: 345, number: 12 }));
        assert_eq!(parse_stdout_line("TUNEBOOK_STDERR_FENCE"), CellLine::Text("TUNEBOOK_STDERR_FENCE".to_owned()));
        assert_eq!(parse_stdout_line("epoch 1"), CellLine::Text("epoch 1".to_owned()));
    }
}
