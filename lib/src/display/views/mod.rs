//! How tunebook's own values show themselves in a notebook: datasets and their reports,
//! model and parameter summaries, evaluations and training results render as tables, and
//! the chart builders next to them (`label_chart`, `length_histogram`, `loss_chart`, …)
//! draw what a table cannot.
//!
//! One file per domain: [`data`], [`model`] and [`train`].

mod data;
mod model;
mod train;

pub use model::compare_generations;
pub(crate) use train::LossCurves;

use super::progress::format_metric;
use super::{group_thousands, MimeBundle, Table};

/// The table as HTML with the type's own text form (its `fmt::Display`, already what a
/// terminal prints) as text/plain, where the table's plain form would cut cells short.
fn with_text(table: &Table, text: impl ToString) -> MimeBundle {
    MimeBundle::plain(text.to_string()).with_html(table.to_html())
}

/// A one-row table of named figures under `title`: summaries read left to right like a
/// report line, with units in the column types.
pub(crate) fn figures_table<N: Into<String>>(
    title: impl Into<String>,
    figures: impl IntoIterator<Item = (N, &'static str, String)>,
) -> Table {
    let mut table = Table::new().title(title);
    let mut values = Vec::new();
    for (name, dtype, value) in figures {
        table = table.column(name, dtype);
        values.push(value);
    }
    table.row(values)
}

/// `12345` → `12,345`; negative values (never counts) as 0.
pub(crate) fn count(value: impl TryInto<u64>) -> String {
    group_thousands(value.try_into().unwrap_or(0))
}

/// `part` as a percentage of `whole`, one decimal; `–` when `whole` is 0.
fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1}%", 100.0 * part / whole)
    } else {
        "–".to_owned()
    }
}

/// A metric value with four significant digits.
fn metric(value: f64) -> String {
    format_metric(value)
}

/// `1536` → `1.5 KiB`.
pub(crate) fn bytes(value: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = value.max(0) as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{size} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

/// Wall-clock time: `12.3 s` under a minute, else `M:SS` or `H:MM:SS`.
fn seconds(value: f64) -> String {
    if !value.is_finite() || value < 0.0 {
        return "–".to_owned();
    }
    if value < 60.0 {
        return format!("{value:.1} s");
    }
    let whole = value.round() as u64;
    let (hours, minutes, secs) = (whole / 3600, whole / 60 % 60, whole % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{secs:02}")
    } else {
        format!("{minutes}:{secs:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_are_short() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(269_030_016), "256.6 MiB");
        assert_eq!(seconds(3.21), "3.2 s");
        assert_eq!(seconds(83.0), "1:23");
        assert_eq!(seconds(3725.0), "1:02:05");
        assert_eq!(percent(1.0, 3.0), "33.3%");
        assert_eq!(percent(1.0, 0.0), "–");
    }

    #[test]
    fn figures_table_is_one_row_with_typed_columns() {
        let table = figures_table("model", [("layers", "u64", "30".into()), ("dtype", "str", "Float".into())]);
        assert_eq!((table.row_count(), table.column_count()), (1, 2));
        assert!(table.to_html().contains("<div class=\"tb-dtype\">u64</div>"));
    }
}
