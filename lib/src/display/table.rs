//! HTML/text tables with typed columns, head/tail elision and truncated cells.

use super::html::{escape, one_line, truncate};
use super::{group_thousands, Display, MimeBundle};

/// A table of text cells, e.g. a preview of a dataset.
///
/// Long tables show their first and last rows with `… N more rows …` between; long cells are
/// cut (the full text is in the cell's tooltip). Rows may be shorter or longer than the header:
/// missing cells render empty.
///
/// ```
/// use tunebook::display::Table;
///
/// let table = Table::new()
///     .title("train split")
///     .column("text", "str")
///     .column("label", "i64")
///     .row(["I loved it", "1"])
///     .row(["Meh.", "0"]);
/// assert_eq!(table.row_count(), 2);
/// ```
///
/// For a large frame, convert only its ends and say how many rows lie between:
///
/// ```
/// # use tunebook::display::Table;
/// let table = Table::new()
///     .column("id", "u64")
///     .rows((0..5).map(|i| [i]))
///     .skipped_rows(999_990)
///     .rows((999_995..1_000_000).map(|i| [i]));
/// assert_eq!(table.row_count(), 1_000_000);
/// ```
#[derive(Clone, Debug)]
pub struct Table {
    title: Option<String>,
    columns: Vec<Column>,
    rows: Vec<Row>,
    head: usize,
    tail: usize,
    max_cell_chars: usize,
}

#[derive(Clone, Debug)]
struct Column {
    name: String,
    dtype: String,
}

#[derive(Clone, Debug)]
enum Row {
    Cells(Vec<String>),
    /// Rows left out by the caller (never converted to text).
    Skipped(usize),
}

/// A row as laid out for rendering: its absolute index and cells, or a gap.
enum VisibleRow<'a> {
    Cells(usize, &'a [String]),
    Gap(usize),
}

/// Plain text cells are narrower than HTML ones: a terminal has no tooltips or wrapping.
const PLAIN_CELL_CHARS: usize = 32;

impl Default for Table {
    fn default() -> Self {
        Table { title: None, columns: Vec::new(), rows: Vec::new(), head: 10, tail: 5, max_cell_chars: 80 }
    }
}

impl Table {
    /// An empty table; add columns and rows with the builder methods.
    pub fn new() -> Self {
        Self::default()
    }

    /// A caption shown above the table.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Adds a column with its type shown under the name (`""` for none), e.g. `("label", "i64")`.
    /// Numeric types (`i64`, `f32`, `u8`, `int`, `float`, …) are right-aligned.
    pub fn column(mut self, name: impl Into<String>, dtype: impl Into<String>) -> Self {
        self.columns.push(Column { name: name.into(), dtype: dtype.into() });
        self
    }

    /// Adds untyped columns.
    pub fn columns<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        for name in names {
            self = self.column(name, "");
        }
        self
    }

    /// Adds one row.
    pub fn row<T: ToString>(mut self, cells: impl IntoIterator<Item = T>) -> Self {
        self.rows.push(Row::Cells(cells.into_iter().map(|cell| cell.to_string()).collect()));
        self
    }

    /// Adds rows.
    pub fn rows<R, T>(mut self, rows: impl IntoIterator<Item = R>) -> Self
    where
        R: IntoIterator<Item = T>,
        T: ToString,
    {
        for row in rows {
            self = self.row(row);
        }
        self
    }

    /// Records `count` rows that exist at this position but were not given, so that a large
    /// frame can be previewed from its head and tail alone. Row numbers and the row count
    /// include them.
    pub fn skipped_rows(mut self, count: usize) -> Self {
        if count > 0 {
            self.rows.push(Row::Skipped(count));
        }
        self
    }

    /// How many rows to show at the start and at the end of a longer table (default 10 and 5).
    pub fn head_tail(mut self, head: usize, tail: usize) -> Self {
        self.head = head;
        self.tail = tail;
        self
    }

    /// Cells longer than this many characters are cut in HTML (default 80).
    pub fn max_cell_chars(mut self, max_chars: usize) -> Self {
        self.max_cell_chars = max_chars.max(2);
        self
    }

    /// Rows in the table, including skipped ones.
    pub fn row_count(&self) -> usize {
        self.rows
            .iter()
            .map(|row| match row {
                Row::Cells(_) => 1,
                Row::Skipped(count) => *count,
            })
            .sum()
    }

    /// Columns shown: the header's, or more when a row is longer.
    pub fn column_count(&self) -> usize {
        let widest_row = self.rows.iter().map(|row| match row {
            Row::Cells(cells) => cells.len(),
            Row::Skipped(_) => 0,
        });
        widest_row.max().unwrap_or(0).max(self.columns.len())
    }

    /// The rows to render: head and tail of the given rows, each run of hidden or skipped rows
    /// merged into one gap.
    fn visible_rows(&self) -> Vec<VisibleRow<'_>> {
        let total = self.row_count();
        let elide = total > self.head + self.tail + 1;
        let mut visible = Vec::new();
        let mut index = 0;
        let push_gap = |visible: &mut Vec<VisibleRow>, count: usize| match visible.last_mut() {
            Some(VisibleRow::Gap(previous)) => *previous += count,
            _ => visible.push(VisibleRow::Gap(count)),
        };
        for row in &self.rows {
            match row {
                Row::Cells(cells) => {
                    if !elide || index < self.head || index >= total - self.tail {
                        visible.push(VisibleRow::Cells(index, cells));
                    } else {
                        push_gap(&mut visible, 1);
                    }
                    index += 1;
                }
                Row::Skipped(count) => {
                    push_gap(&mut visible, *count);
                    index += count;
                }
            }
        }
        visible
    }

    fn column_header(&self, index: usize) -> (&str, &str) {
        self.columns.get(index).map_or(("", ""), |column| (column.name.as_str(), column.dtype.as_str()))
    }

    fn summary_line(&self) -> String {
        let rows = self.row_count();
        let columns = self.column_count();
        format!(
            "{} row{} × {} column{}",
            group_thousands(rows as u64),
            if rows == 1 { "" } else { "s" },
            columns,
            if columns == 1 { "" } else { "s" }
        )
    }

    pub fn to_html(&self) -> String {
        let width = self.column_count();
        let mut html = String::from("<div class=\"tunebook-table\">");
        html.push_str(TABLE_STYLE);
        if let Some(title) = &self.title {
            html.push_str(&format!("<div class=\"tb-title\">{}</div>", escape(title)));
        }
        html.push_str("<table class=\"tb\"><thead><tr><th class=\"tb-index\"></th>");
        for column in 0..width {
            let (name, dtype) = self.column_header(column);
            html.push_str(&format!("<th{}>{}", align_class(dtype), escape(name)));
            if !dtype.is_empty() {
                html.push_str(&format!("<div class=\"tb-dtype\">{}</div>", escape(dtype)));
            }
            html.push_str("</th>");
        }
        html.push_str("</tr></thead><tbody>");
        for row in self.visible_rows() {
            match row {
                VisibleRow::Cells(index, cells) => {
                    html.push_str(&format!("<tr><td class=\"tb-index\">{index}</td>"));
                    for column in 0..width {
                        let text = cells.get(column).map_or("", String::as_str);
                        let (shown, cut) = truncate(&one_line(text), self.max_cell_chars);
                        let title = if cut { format!(" title=\"{}\"", escape(text)) } else { String::new() };
                        let class = align_class(self.column_header(column).1);
                        html.push_str(&format!("<td{class}{title}>{}</td>", escape(&shown)));
                    }
                    html.push_str("</tr>");
                }
                VisibleRow::Gap(count) => html.push_str(&format!(
                    "<tr class=\"tb-gap\"><td colspan=\"{}\">{}</td></tr>",
                    width + 1,
                    more_rows(count)
                )),
            }
        }
        html.push_str(&format!("</tbody></table><div class=\"tb-footer\">{}</div></div>", self.summary_line()));
        html
    }

    pub fn to_text(&self) -> String {
        let width = self.column_count();
        let cell = |text: &str| truncate(&one_line(text), PLAIN_CELL_CHARS).0;
        let visible = self.visible_rows();
        let mut lines: Vec<Vec<String>> = Vec::new();
        let mut gaps = Vec::new();
        lines.push(std::iter::once(String::new()).chain((0..width).map(|c| cell(self.column_header(c).0))).collect());
        if self.columns.iter().any(|column| !column.dtype.is_empty()) {
            lines.push(
                std::iter::once(String::new()).chain((0..width).map(|c| cell(self.column_header(c).1))).collect(),
            );
        }
        for row in &visible {
            match row {
                VisibleRow::Cells(index, cells) => lines.push(
                    std::iter::once(index.to_string())
                        .chain((0..width).map(|c| cell(cells.get(c).map_or("", String::as_str))))
                        .collect(),
                ),
                VisibleRow::Gap(count) => {
                    gaps.push((lines.len(), *count));
                    lines.push(Vec::new());
                }
            }
        }
        let widths: Vec<usize> = (0..=width)
            .map(|c| lines.iter().filter_map(|line| line.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        if let Some(title) = &self.title {
            out.push_str(title);
            out.push('\n');
        }
        for (number, line) in lines.iter().enumerate() {
            if let Some((_, count)) = gaps.iter().find(|(at, _)| *at == number) {
                out.push_str(&more_rows(*count));
                out.push('\n');
                continue;
            }
            let padded: Vec<String> = line.iter().zip(&widths).map(|(text, w)| format!("{text:<w$}")).collect();
            out.push_str(padded.join("  ").trim_end());
            out.push('\n');
        }
        out.push_str(&self.summary_line());
        out
    }
}

impl Display for Table {
    fn mime_bundle(&self) -> MimeBundle {
        MimeBundle::plain(self.to_text()).with_html(self.to_html())
    }
}

fn more_rows(count: usize) -> String {
    format!("… {} more row{} …", group_thousands(count as u64), if count == 1 { "" } else { "s" })
}

fn align_class(dtype: &str) -> &'static str {
    if is_numeric_type(dtype) {
        " class=\"tb-num\""
    } else {
        ""
    }
}

/// `i64`, `u8`, `f32`, `int`, `float64`, `Int64`, … (Rust, polars, numpy and pandas spellings).
fn is_numeric_type(dtype: &str) -> bool {
    let lower = dtype.to_ascii_lowercase();
    ["int", "uint", "float", "i", "u", "f"]
        .iter()
        .any(|prefix| lower.strip_prefix(prefix).is_some_and(|bits| bits.chars().all(|c| c.is_ascii_digit())))
}

/// Theme-aware: JupyterLab variables with neutral fallbacks, translucent greys instead of
/// fixed backgrounds. Selectors are specific enough to beat JupyterLab's own table rules.
const TABLE_STYLE: &str = "<style>\
.tunebook-table{color:var(--jp-ui-font-color1,inherit);font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:var(--jp-ui-font-size1,13px);margin:4px 0}\
.tunebook-table .tb-title{font-weight:600;margin-bottom:4px}\
.tunebook-table table.tb{border-collapse:collapse;table-layout:auto;margin:0;background:transparent;color:inherit;font-size:inherit}\
.tunebook-table table.tb th,.tunebook-table table.tb td{padding:3px 10px;text-align:left;vertical-align:top;max-width:40em;white-space:normal;overflow-wrap:anywhere;border:none;border-bottom:1px solid var(--jp-border-color2,rgba(128,128,128,.25));color:inherit;background:transparent}\
.tunebook-table table.tb thead th{border-bottom:1px solid var(--jp-border-color1,rgba(128,128,128,.6));font-weight:600;vertical-align:bottom}\
.tunebook-table table.tb tbody tr:nth-child(odd){background:transparent}\
.tunebook-table table.tb tbody tr:nth-child(even){background:rgba(128,128,128,.08)}\
.tunebook-table table.tb tbody tr:hover{background:rgba(128,128,128,.16)}\
.tunebook-table table.tb .tb-num{text-align:right;font-variant-numeric:tabular-nums}\
.tunebook-table table.tb .tb-index{text-align:right;color:var(--jp-ui-font-color2,#888);font-variant-numeric:tabular-nums}\
.tunebook-table .tb-dtype{font-weight:normal;font-size:.85em;color:var(--jp-ui-font-color2,#888)}\
.tunebook-table table.tb tr.tb-gap td{text-align:center;font-style:italic;color:var(--jp-ui-font-color2,#888)}\
.tunebook-table td[title]{cursor:help}\
.tunebook-table .tb-footer{margin-top:4px;font-size:.85em;color:var(--jp-ui-font-color2,#888)}\
</style>";

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(count: usize) -> Table {
        Table::new().column("n", "i64").rows((0..count).map(|i| [i]))
    }

    #[test]
    fn short_tables_show_every_row() {
        let html = numbered(16).to_html();
        assert!(!html.contains("more row"));
        assert_eq!(html.matches("<tr><td").count(), 16);
    }

    #[test]
    fn long_tables_show_head_and_tail_with_hidden_count() {
        let table = numbered(100).head_tail(3, 2);
        let html = table.to_html();
        assert_eq!(html.matches("<tr><td").count(), 5);
        assert!(html.contains("… 95 more rows …"));
        assert!(html.contains("<td class=\"tb-index\">99</td>"));
        assert!(html.contains("100 rows × 1 column"));
        let text = table.to_text();
        assert!(text.contains("… 95 more rows …"), "{text}");
        assert!(text.lines().any(|line| line.starts_with("99")), "{text}");
    }

    #[test]
    fn skipped_rows_merge_with_hidden_ones_and_keep_row_numbers() {
        let table = Table::new().column("n", "").rows([[0], [1]]).skipped_rows(10).rows([[12], [13]]).head_tail(1, 1);
        let html = table.to_html();
        assert!(html.contains("… 12 more rows …"), "{html}");
        assert!(html.contains("<td class=\"tb-index\">13</td><td>13</td>"), "{html}");
        assert_eq!(table.row_count(), 14);
    }

    #[test]
    fn numeric_types_are_recognised() {
        for dtype in ["i64", "u8", "f32", "int", "Int64", "float64"] {
            assert!(is_numeric_type(dtype), "{dtype}");
        }
        for dtype in ["str", "", "list[i64]", "bool", "u8x"] {
            assert!(!is_numeric_type(dtype), "{dtype}");
        }
    }

    #[test]
    fn ragged_rows_do_not_lose_cells() {
        let table = Table::new().column("a", "").row(["1", "extra"]).row(Vec::<String>::new());
        assert_eq!(table.column_count(), 2);
        assert!(table.to_html().contains("<td>extra</td>"));
    }
}
