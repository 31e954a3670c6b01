//! Turns compiler errors and runtime panics into Jupyter `error` content
//! (ename / evalue / traceback) that points at the cell's own lines.

use serde_json::{json, Value};

/// An error to report for a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellError {
    pub ename: String,
    pub evalue: String,
    pub traceback: Vec<String>,
}

impl CellError {
    pub fn new(ename: &str, evalue: impl Into<String>, traceback: Vec<String>) -> CellError {
        CellError { ename: ename.to_owned(), evalue: evalue.into(), traceback }
    }

    /// The error with a one-line traceback repeating the message.
    pub fn simple(ename: &str, evalue: impl Into<String>) -> CellError {
        let evalue = evalue.into();
        let traceback = vec![format!("{ename}: {evalue}")];
        CellError { ename: ename.to_owned(), evalue, traceback }
    }

    pub fn content(&self) -> Value {
        json!({"ename": self.ename, "evalue": self.evalue, "traceback": self.traceback})
    }
}

/// A position in the cell: 1-based line and column, end column exclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellSpan {
    pub start_line: usize,
    pub start_column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

/// The parts of a compiler diagnostic the kernel shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub code: Option<String>,
    pub message: String,
    /// Labelled spans; the primary one first.
    pub labels: Vec<(Option<CellSpan>, String)>,
    pub help: Vec<String>,
}

impl Diagnostic {
    pub fn headline(&self) -> String {
        match &self.code {
            Some(code) => format!("error[{code}]: {}", self.message),
            None => format!("error: {}", self.message),
        }
    }

    pub fn first_line(&self) -> Option<usize> {
        self.labels.iter().find_map(|(span, _)| span.map(|s| s.start_line))
    }
}

/// rustc-style rendering against the cell's source, one traceback entry per line.
pub fn render(diagnostic: &Diagnostic, cell: &str) -> Vec<String> {
    let cell_lines: Vec<&str> = cell.lines().collect();
    let mut out = vec![diagnostic.headline()];
    let gutter = diagnostic
        .labels
        .iter()
        .filter_map(|(span, _)| span.map(|s| s.end_line.to_string().len()))
        .max()
        .unwrap_or(1);
    let pad = " ".repeat(gutter);
    let mut wrote_location = false;
    for (span, label) in &diagnostic.labels {
        let Some(span) = span else {
            if !label.is_empty() {
                out.push(format!("{pad} = note: {label}"));
            }
            continue;
        };
        if !wrote_location {
            out.push(format!("{pad}--> cell line {}, column {}", span.start_line, span.start_column));
            out.push(format!("{pad} |"));
            wrote_location = true;
        }
        let Some(text) = cell_lines.get(span.start_line.wrapping_sub(1)) else {
            continue;
        };
        out.push(format!("{:>gutter$} | {text}", span.start_line));
        let start = span.start_column.saturating_sub(1);
        let end = if span.end_line == span.start_line {
            span.end_column.saturating_sub(1).max(start + 1)
        } else {
            text.chars().count().max(start + 1)
        };
        out.push(format!(
            "{pad} | {}{} {label}",
            " ".repeat(start),
            "^".repeat(end - start)
        ));
    }
    for help in &diagnostic.help {
        out.push(format!("{pad} = help: {}", help.replace('\n', &format!("\n{pad}   "))));
    }
    out
}

/// The error for a cell that failed to compile.
pub fn compile_error(diagnostics: &[Diagnostic], cell: &str) -> CellError {
    let Some(first) = diagnostics.first() else {
        return CellError::simple("CompileError", "compilation failed without a diagnostic");
    };
    let mut evalue = first.headline();
    if let Some(line) = first.first_line() {
        evalue.push_str(&format!(" (cell line {line})"));
    }
    let mut traceback = Vec::new();
    for diagnostic in diagnostics {
        if !traceback.is_empty() {
            traceback.push(String::new());
        }
        traceback.extend(render(diagnostic, cell));
    }
    CellError { ename: "CompileError".to_owned(), evalue, traceback }
}

/// `thread 'main' (123) panicked at src/lib.rs:12:5:` → ("src/lib.rs", 12, 5).
pub fn parse_panic_header(line: &str) -> Option<(String, usize, usize)> {
    if !line.starts_with("thread ") {
        return None;
    }
    let location = line[line.find(" panicked at ")? + " panicked at ".len()..].trim_end();
    let location = location.strip_suffix(':').unwrap_or(location);
    let mut parts = location.rsplitn(3, ':');
    let column = parts.next()?.parse().ok()?;
    let line_number = parts.next()?.parse().ok()?;
    Some((parts.next()?.to_owned(), line_number, column))
}

/// evcxr compiles the cell into a generated `src/lib.rs`; finds which cell line the
/// generated line `lib_line` (1-based) came from, by its text.
pub fn cell_line_for(generated: &str, lib_line: usize, cell: &str) -> Option<usize> {
    let wanted = generated.lines().nth(lib_line.checked_sub(1)?)?.trim();
    if wanted.is_empty() {
        return None;
    }
    let matches: Vec<usize> = cell
        .lines()
        .enumerate()
        .filter(|(_, text)| text.trim() == wanted)
        .map(|(index, _)| index + 1)
        .collect();
    matches.first().copied()
}

/// The error for a cell whose code panicked. `panic_lines` is what the panic printed on
/// stderr, header first.
pub fn panic_error(panic_lines: &[String], generated: Option<&str>, cell: &str) -> CellError {
    let header = panic_lines.first().map(String::as_str).unwrap_or_default();
    let details: Vec<&str> = panic_lines
        .iter()
        .skip(1)
        .map(String::as_str)
        .filter(|line| !line.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    // With RUST_BACKTRACE set the message is followed by the backtrace: traceback only.
    let message_end = details.iter().position(|line| *line == "stack backtrace:").unwrap_or(details.len());
    let message = &details[..message_end];
    let evalue = if message.is_empty() { "the cell panicked".to_owned() } else { message.join("\n") };
    let mut traceback = Vec::new();
    let location = parse_panic_header(header);
    let cell_line = location.as_ref().and_then(|(file, line, _)| {
        (file == "src/lib.rs").then(|| generated.and_then(|g| cell_line_for(g, *line, cell)))?
    });
    match (cell_line, &location) {
        (Some(line), _) => {
            traceback.push(format!("panicked at cell line {line}:"));
            if let Some(text) = cell.lines().nth(line - 1) {
                traceback.push(format!("{line:>4} | {text}"));
            }
        }
        (None, Some((file, line, column))) if file != "src/lib.rs" => {
            traceback.push(format!("panicked at {file}:{line}:{column}:"));
        }
        _ => traceback.push("panicked:".to_owned()),
    }
    traceback.extend(details.iter().map(|line| line.to_string()));
    CellError { ename: "panic".to_owned(), evalue, traceback }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch() -> Diagnostic {
        Diagnostic {
            code: Some("E0308".to_owned()),
            message: "mismatched types".to_owned(),
            labels: vec![(
                Some(CellSpan { start_line: 2, start_column: 14, end_line: 2, end_column: 17 }),
                "expected `i32`, found `&str`".to_owned(),
            )],
            help: vec![],
        }
    }

    #[test]
    fn compile_error_points_at_the_cell_line_with_carets() {
        let cell = "let a = 1;\nlet x: i32 = \"a\";";
        let error = compile_error(&[mismatch()], cell);
        assert_eq!(error.ename, "CompileError");
        assert_eq!(error.evalue, "error[E0308]: mismatched types (cell line 2)");
        assert_eq!(
            error.traceback,
            vec![
                "error[E0308]: mismatched types",
                " --> cell line 2, column 14",
                "  |",
                "2 | let x: i32 = \"a\";",
                "  |              ^^^ expected `i32`, found `&str`",
            ]
        );
    }

    #[test]
    fn several_diagnostics_are_separated_and_help_is_kept() {
        let mut second = mismatch();
        second.code = None;
        second.message = "cannot find value `y`".to_owned();
        second.help = vec!["a local variable with a similar name exists: `x`".to_owned()];
        let error = compile_error(&[mismatch(), second], "let a = 1;\nlet x: i32 = \"a\";");
        assert!(error.traceback.contains(&String::new()));
        assert!(error.traceback.contains(&"error: cannot find value `y`".to_owned()));
        assert!(error.traceback.last().unwrap().contains("help: a local variable"));
    }

    #[test]
    fn panic_header_with_and_without_thread_id() {
        assert_eq!(
            parse_panic_header("thread 'main' (4242) panicked at src/lib.rs:12:5:"),
            Some(("src/lib.rs".to_owned(), 12, 5))
        );
        assert_eq!(
            parse_panic_header("thread '<unnamed>' panicked at /x/y.rs:1:2:"),
            Some(("/x/y.rs".to_owned(), 1, 2))
        );
        assert_eq!(parse_panic_header("loss went up"), None);
    }

    #[test]
    fn panic_is_located_in_the_cell_through_the_generated_source() {
        let generated = "fn x() {\n    let a = 1;\n    panic!(\"boom {a}\");\n}";
        let cell = "let a = 1;\npanic!(\"boom {a}\");";
        let lines = vec![
            "thread 'main' (7) panicked at src/lib.rs:3:5:".to_owned(),
            "boom 1".to_owned(),
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace".to_owned(),
        ];
        let error = panic_error(&lines, Some(generated), cell);
        assert_eq!(error.ename, "panic");
        assert_eq!(error.evalue, "boom 1");
        assert_eq!(
            error.traceback,
            vec!["panicked at cell line 2:", "   2 | panic!(\"boom {a}\");", "boom 1"]
        );
    }

    #[test]
    fn backtrace_goes_to_the_traceback_not_the_message() {
        let lines: Vec<String> = ["thread 'main' panicked at src/lib.rs:1:1:", "boom", "stack backtrace:", "   0: f"]
            .map(str::to_owned)
            .to_vec();
        let error = panic_error(&lines, Some("panic!(\"boom\")"), "panic!(\"boom\")");
        assert_eq!(error.evalue, "boom");
        assert_eq!(error.traceback.last().unwrap(), "   0: f");
    }

    #[test]
    fn panic_inside_a_library_keeps_the_library_location() {
        let lines = vec!["thread 'main' panicked at lib/src/train.rs:40:9:".to_owned(), "nan loss".to_owned()];
        let error = panic_error(&lines, Some(""), "train()");
        assert_eq!(error.traceback[0], "panicked at lib/src/train.rs:40:9:");
    }
}
