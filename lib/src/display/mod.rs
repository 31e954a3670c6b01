//! Rich output for notebooks: tables, charts and progress bars.
//!
//! Everything here renders plain Rust data (numbers, strings) to a [`MimeBundle`]: text for
//! terminals, HTML for notebooks, SVG (and PNG on request) for charts. Charts and tables are
//! styled to stay readable in both light and dark notebook themes.
//!
//! ```no_run
//! use tunebook::display::{display, DisplayHandle, LineChart};
//!
//! let mut chart = LineChart::new("Training loss").x_label("step").y_label("loss (nats)");
//! let live = DisplayHandle::show(&chart);
//! for step in 0..100 {
//!     chart.push("train", step, 2.5 / (1.0 + step as f64 / 10.0));
//!     if step % 10 == 0 {
//!         live.update(&chart); // re-renders the same output in place
//!     }
//! }
//! display(&chart); // or a second, independent copy
//! ```
//!
//! tunebook's own values show themselves the same way: datasets, cleaning reports, token
//! statistics, splits, model summaries, trainable parameters, evaluations, classification
//! reports, training summaries and sweep results are tables; their charts come from
//! `Dataset::label_chart`, `TokenizedDataset::length_histogram`,
//! `ClassificationReport::confusion_heatmap`, `TrainSummary::loss_chart` and
//! `SweepResults::curves`, and [`compare_generations`] puts generations side by side.
//! In a notebook, `Trainer::train` draws a live loss chart below its progress bar.
//!
//! Inside the tunebook kernel (`TUNEBOOK_KERNEL=1`) each display is one stdout line,
//! `TUNEBOOK_DISPLAY {json}` (see [`DisplayMessage`]); elsewhere the text/plain form is printed.
//! The public types also have evcxr's `evcxr_display` method, so a table or chart as the last
//! expression of a cell renders in a stock evcxr kernel too.

mod chart;
mod html;
mod progress;
mod table;
mod views;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use serde::{Deserialize, Serialize};

pub use chart::{BarChart, Heatmap, Histogram, LineChart, Number};
pub use progress::ProgressBar;
pub use table::Table;
pub use views::compare_generations;
pub(crate) use views::{bytes, count, figures_table, LossCurves};

/// Prefix of the stdout line that carries one display to the tunebook kernel.
pub const DISPLAY_PREFIX: &str = "TUNEBOOK_DISPLAY ";
/// The stdout line that asks the tunebook kernel to clear the cell's output.
pub const CLEAR_LINE: &str = r#"TUNEBOOK_CLEAR {"wait": true}"#;
/// Environment variable set by the tunebook kernel; `1` switches output to the wire format.
pub const KERNEL_ENV: &str = "TUNEBOOK_KERNEL";

/// One value rendered to several MIME types; the frontend picks the richest it supports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MimeBundle {
    /// `text/plain`, always present: what a terminal shows.
    pub plain: String,
    /// `text/html`.
    pub html: Option<String>,
    /// `image/svg+xml`.
    pub svg: Option<String>,
    /// `image/png` as raw bytes (base64-encoded on the wire).
    pub png: Option<Vec<u8>>,
}

impl MimeBundle {
    /// A bundle with only text.
    pub fn plain(text: impl Into<String>) -> Self {
        MimeBundle { plain: text.into(), ..Default::default() }
    }

    pub fn with_html(mut self, html: impl Into<String>) -> Self {
        self.html = Some(html.into());
        self
    }

    pub fn with_svg(mut self, svg: impl Into<String>) -> Self {
        self.svg = Some(svg.into());
        self
    }

    pub fn with_png(mut self, png: Vec<u8>) -> Self {
        self.png = Some(png);
        self
    }

    /// MIME type to content as sent to Jupyter (PNG base64-encoded).
    pub fn data(&self) -> BTreeMap<String, String> {
        let mut data = BTreeMap::new();
        data.insert("text/plain".to_owned(), self.plain.clone());
        if let Some(html) = &self.html {
            data.insert("text/html".to_owned(), html.clone());
        }
        if let Some(svg) = &self.svg {
            data.insert("image/svg+xml".to_owned(), svg.clone());
        }
        if let Some(png) = &self.png {
            data.insert("image/png".to_owned(), base64::engine::general_purpose::STANDARD.encode(png));
        }
        data
    }

    /// The message the tunebook kernel turns into `display_data` / `update_display_data`.
    pub fn message(&self, display_id: Option<&str>, update: bool) -> DisplayMessage {
        DisplayMessage { display_id: display_id.map(str::to_owned), update, data: self.data() }
    }

    /// evcxr's output convention: one `EVCXR_BEGIN_CONTENT <mime>` … `EVCXR_END_CONTENT` block
    /// per MIME type, HTML first.
    pub fn evcxr_content(&self) -> String {
        let mut data = self.data();
        let mut out = String::new();
        let html_first = data.remove_entry("text/html");
        for (mime, content) in html_first.into_iter().chain(data) {
            out.push_str(&format!("EVCXR_BEGIN_CONTENT {mime}\n{content}\nEVCXR_END_CONTENT\n"));
        }
        out
    }
}

/// What one `TUNEBOOK_DISPLAY` line carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DisplayMessage {
    /// Set for outputs that can later be updated in place; `None` for one-off displays.
    pub display_id: Option<String>,
    /// `true` re-renders the output previously shown under `display_id`.
    pub update: bool,
    /// MIME type to content (PNG as base64).
    pub data: BTreeMap<String, String>,
}

impl DisplayMessage {
    /// The single stdout line, without the trailing newline (compact JSON has none inside).
    pub fn to_line(&self) -> String {
        let json = serde_json::to_string(self).expect("a map of strings always serializes");
        format!("{DISPLAY_PREFIX}{json}")
    }

    /// Parses a line written by [`DisplayMessage::to_line`]; `None` for any other line.
    pub fn from_line(line: &str) -> Option<DisplayMessage> {
        let json = line.trim_end_matches(['\r', '\n']).strip_prefix(DISPLAY_PREFIX)?;
        serde_json::from_str(json).ok()
    }
}

/// A value that can show itself in a notebook.
pub trait Display {
    fn mime_bundle(&self) -> MimeBundle;
}

impl Display for MimeBundle {
    fn mime_bundle(&self) -> MimeBundle {
        self.clone()
    }
}

/// Shows `value` below the current cell (or prints its text outside a notebook).
///
/// ```no_run
/// use tunebook::display::{display, Table};
/// display(&Table::new().column("text", "str").row(["hello"]));
/// ```
pub fn display<T: Display + ?Sized>(value: &T) {
    emit(&value.mime_bundle(), None, false);
}

/// Clears the cell's output when the next display arrives (no flicker); no-op in a terminal.
pub fn clear_output() {
    if in_kernel() {
        write_stdout_line(CLEAR_LINE);
    }
}

/// An output that can be re-rendered in place, e.g. a live training curve or progress bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayHandle {
    id: String,
}

impl DisplayHandle {
    /// Displays `value` and returns the handle that updates that output.
    pub fn show<T: Display + ?Sized>(value: &T) -> DisplayHandle {
        let handle = DisplayHandle { id: new_display_id() };
        emit(&value.mime_bundle(), Some(&handle.id), false);
        handle
    }

    /// Replaces the output shown by [`DisplayHandle::show`] with `value`.
    pub fn update<T: Display + ?Sized>(&self, value: &T) {
        emit(&value.mime_bundle(), Some(&self.id), true);
    }

    /// The Jupyter `display_id`.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Unique across kernel restarts too: a notebook keeps outputs from earlier runs, and an id
/// reused from one of them would update that old output.
fn new_display_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("tunebook-{nanos:x}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn in_kernel() -> bool {
    std::env::var(KERNEL_ENV).is_ok_and(|value| value == "1")
}

fn emit(bundle: &MimeBundle, display_id: Option<&str>, update: bool) {
    if in_kernel() {
        write_stdout_line(&bundle.message(display_id, update).to_line());
    } else {
        write_stdout_line(&bundle.plain);
    }
}

/// One write under the stdout lock so lines from concurrent threads never interleave. A closed
/// stdout is not worth a panic in the middle of training, so errors are dropped.
fn write_stdout_line(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(format!("{line}\n").as_bytes());
    let _ = stdout.flush();
}

/// Gives each type evcxr's `evcxr_display` inherent method (evcxr looks it up by name).
macro_rules! impl_evcxr_display {
    ($($type:ty),* $(,)?) => {$(
        impl $type {
            /// Renders this value as a cell's result in evcxr-based kernels.
            pub fn evcxr_display(&self) {
                print!("{}", $crate::display::Display::mime_bundle(self).evcxr_content());
            }
        }
    )*};
}
// Types outside this module (e.g. in private modules) invoke it where they are defined.
pub(crate) use impl_evcxr_display;
impl_evcxr_display!(
    MimeBundle,
    Table,
    ProgressBar,
    LineChart,
    Histogram,
    BarChart,
    Heatmap,
    crate::data::Dataset,
    crate::data::CleanReport,
    crate::data::TokenStats,
    crate::data::TokenizedDataset,
    crate::data::Splits,
    crate::peft::TrainableParameters,
    crate::train::Evaluation,
    crate::train::ClassificationReport,
    crate::train::TrainSummary,
    crate::train::SweepResults,
);

/// `12345` → `12,345`.
fn group_thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_line_is_one_line_and_parses_back() {
        let bundle = MimeBundle::plain("a\nb").with_html("<b>\"x\"</b>\n").with_png(vec![0, 1, 2, 255]);
        let message = bundle.message(Some("id-1"), true);
        let line = message.to_line();
        assert!(!line.contains('\n'));
        assert!(line.starts_with("TUNEBOOK_DISPLAY {"));
        let parsed = DisplayMessage::from_line(&line).unwrap();
        assert_eq!(parsed, message);
        assert_eq!(parsed.data["image/png"], "AAEC/w==");
        assert_eq!(DisplayMessage::from_line("loss 2.3"), None);
    }

    #[test]
    fn evcxr_content_puts_html_first() {
        let content = MimeBundle::plain("text").with_html("<i>x</i>").evcxr_content();
        assert_eq!(
            content,
            "EVCXR_BEGIN_CONTENT text/html\n<i>x</i>\nEVCXR_END_CONTENT\n\
             EVCXR_BEGIN_CONTENT text/plain\ntext\nEVCXR_END_CONTENT\n"
        );
    }

    #[test]
    fn display_ids_are_unique() {
        assert_ne!(new_display_id(), new_display_id());
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(1234567), "1,234,567");
    }
}
