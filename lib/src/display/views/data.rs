//! Datasets and the data pipeline's reports as tables; label and length charts.

use super::{count, percent, with_text, Table};
use crate::data::{CleanReport, DataKind, Dataset, Example, Splits, TokenStats, TokenizedDataset};
use crate::display::{BarChart, Display, Histogram, MimeBundle};

/// Rows shown from each end of a dataset preview.
const PREVIEW_ROWS: usize = 5;

impl Dataset {
    /// Examples per class as a bar chart; for data without labels (chat, text), an empty
    /// chart that says so in its title.
    ///
    /// ```
    /// use tunebook::data::{Dataset, Example};
    /// let data = Dataset::from_examples(vec![
    ///     Example::labeled("great", "positive"),
    ///     Example::labeled("awful", "negative"),
    ///     Example::labeled("superb", "positive"),
    /// ])?;
    /// let svg = data.label_chart().to_svg()?;
    /// assert!(svg.contains("positive") && svg.contains("negative"));
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn label_chart(&self) -> BarChart {
        let counts = self.label_counts();
        let title = if counts.is_empty() {
            format!("Labels of {}: none ({} data)", self.name(), self.kind())
        } else {
            format!("Labels of {}", self.name())
        };
        BarChart::new(title).x_label("label").y_label("examples").bars(counts)
    }

    /// Column names and types of the preview, for this dataset's kind.
    fn preview_columns(&self) -> Vec<(&'static str, &'static str)> {
        match self.kind() {
            DataKind::Chat if self.has_long_conversations() => {
                vec![("prompt", "str"), ("response", "str"), ("messages", "u64")]
            }
            DataKind::Chat => vec![("prompt", "str"), ("response", "str")],
            DataKind::Classification => vec![("text", "str"), ("label", "str")],
            DataKind::Text => vec![("text", "str")],
        }
    }

    /// Whether some conversation is more than one prompt and one response (a system
    /// message, several turns): then the preview counts messages too.
    fn has_long_conversations(&self) -> bool {
        self.examples().iter().any(|example| matches!(example, Example::Chat(messages) if messages.len() != 2))
    }

    fn preview_table(&self) -> Table {
        let columns = self.preview_columns();
        let mut title = format!("{} ({} data", self.name(), self.kind());
        if let Some(labels) = self.labels() {
            title.push_str(&format!(", {} classes", labels.len()));
        }
        if !self.skipped().is_empty() {
            title.push_str(&format!(", {} unreadable rows left out", count(self.skipped().len())));
        }
        title.push(')');
        let mut table = Table::new().title(title).head_tail(PREVIEW_ROWS, PREVIEW_ROWS);
        for (name, dtype) in &columns {
            table = table.column(*name, *dtype);
        }
        let cells = |example: &Example| preview_cells(example, columns.len());
        let examples = self.examples();
        // Only the rows shown become text: a preview of a million rows stays instant.
        if examples.len() <= 2 * PREVIEW_ROWS + 1 {
            return table.rows(examples.iter().map(cells));
        }
        let tail = &examples[examples.len() - PREVIEW_ROWS..];
        table
            .rows(examples[..PREVIEW_ROWS].iter().map(cells))
            .skipped_rows(examples.len() - 2 * PREVIEW_ROWS)
            .rows(tail.iter().map(cells))
    }
}

/// The cells of one example under [`Dataset::preview_columns`] (`columns` of them).
fn preview_cells(example: &Example, columns: usize) -> Vec<String> {
    let mut cells: Vec<String> = match example {
        Example::Chat(messages) => vec![
            example.prompt().unwrap_or_default().to_owned(),
            example.response().unwrap_or_default().to_owned(),
            messages.len().to_string(),
        ],
        Example::Labeled { text, label } => vec![text.clone(), label.clone()],
        Example::Text(text) => vec![text.clone()],
    };
    cells.truncate(columns);
    cells
}

impl Display for Dataset {
    fn mime_bundle(&self) -> MimeBundle {
        self.preview_table().mime_bundle()
    }
}

impl Display for CleanReport {
    fn mime_bundle(&self) -> MimeBundle {
        let title = format!(
            "Cleaning {}: {} rows in, {} out ({} removed)",
            self.dataset,
            count(self.rows_in),
            count(self.rows_out),
            count(self.rows_in.saturating_sub(self.rows_out))
        );
        let rows = self.steps.iter().map(|step| {
            [
                step.name.clone(),
                count(step.removed),
                count(step.changed),
                step.examples.first().cloned().unwrap_or_default(),
            ]
        });
        let table = Table::new()
            .title(title)
            .column("step", "str")
            .column("removed", "u64")
            .column("changed", "u64")
            .column("example", "str")
            .rows(rows);
        with_text(&table, self)
    }
}

impl TokenStats {
    /// One row per dataset (e.g. each split's statistics), lengths in tokens per example.
    ///
    /// ```no_run
    /// use tunebook::data::{SplitOptions, TokenStats, TokenizeOptions};
    /// let model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
    /// let splits = tunebook::data::quickstart()?.split(&SplitOptions::default())?;
    /// let stats = splits.token_stats(model.tokenizer()?, &TokenizeOptions::default().max_len(256))?;
    /// tunebook::display::display(&TokenStats::table(&stats));
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn table<'a>(stats: impl IntoIterator<Item = &'a TokenStats>) -> Table {
        let stats: Vec<&TokenStats> = stats.into_iter().collect();
        let with_labels = stats.iter().any(|s| !s.label_counts.is_empty());
        let mut table = Table::new()
            .title("Token statistics (lengths in tokens per example)")
            .column("dataset", "str")
            .column("examples", "u64")
            .column("tokens", "u64")
            .column("loss tokens", "u64")
            .column("mean", "f64")
            .column("median", "f64")
            .column("p95", "u64")
            .column("max", "u64")
            .column("truncated", "u64")
            .column("tokens / epoch", "u64");
        if with_labels {
            table = table.column("labels", "str");
        }
        for s in stats {
            let mut cells = vec![
                s.name.clone(),
                count(s.examples),
                count(s.total_tokens),
                count(s.loss_tokens),
                format!("{:.1}", s.mean),
                format!("{:.1}", s.median),
                count(s.p95),
                count(s.max),
                format!("{} ({} tokens cut)", count(s.truncated), count(s.truncated_tokens)),
                count(s.tokens_per_epoch),
            ];
            if with_labels {
                cells.push(label_shares(&s.label_counts));
            }
            table = table.row(cells);
        }
        table
    }
}

/// `positive 40 (50.0%), negative 40 (50.0%)`.
fn label_shares(counts: &[(String, usize)]) -> String {
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    let shares: Vec<String> =
        counts.iter().map(|(label, n)| format!("{label} {} ({})", count(*n), percent(*n as f64, total as f64))).collect();
    shares.join(", ")
}

impl Display for TokenStats {
    fn mime_bundle(&self) -> MimeBundle {
        with_text(&TokenStats::table([self]), self)
    }
}

impl TokenizedDataset {
    /// Tokens per example before truncation, with the truncation limit (`max_len`) marked,
    /// so the examples it cuts are the bars right of the line; packed data also marks the
    /// row length.
    ///
    /// ```no_run
    /// use tunebook::data::TokenizeOptions;
    /// let model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
    /// let tokens = tunebook::data::quickstart()?.tokenize(model.tokenizer()?, &TokenizeOptions::default().max_len(256))?;
    /// tokens.length_histogram().save_svg("lengths.svg")?;
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn length_histogram(&self) -> Histogram {
        let full = &self.full_lengths;
        let truncated = full.iter().filter(|&&length| length > self.max_len).count();
        let series = format!("{} examples, {} longer than max_len", count(full.len()), count(truncated));
        let mut chart = Histogram::new(format!("Example lengths: {}", self.name))
            .x_label("tokens per example")
            .y_label("examples")
            .series(series, full)
            .marker(self.max_len, format!("max_len = {}", self.max_len));
        if let Some(packed) = self.packed_len.filter(|&packed| packed != self.max_len) {
            chart = chart.marker(packed, format!("packed rows = {packed}"));
        }
        chart
    }
}

impl Display for TokenizedDataset {
    fn mime_bundle(&self) -> MimeBundle {
        self.stats().mime_bundle()
    }
}

impl Display for Splits {
    fn mime_bundle(&self) -> MimeBundle {
        let total: usize = self.iter().map(|(_, part)| part.len()).sum();
        let with_labels = self.train.labels().is_some();
        let mut table = Table::new()
            .title(format!("Splits of {} examples", count(total)))
            .column("split", "str")
            .column("examples", "u64")
            .column("share", "f64");
        if with_labels {
            table = table.column("labels", "str");
        }
        for (name, part) in self.iter() {
            let mut cells = vec![name.to_owned(), count(part.len()), percent(part.len() as f64, total as f64)];
            if with_labels {
                cells.push(label_shares(&part.label_counts()));
            }
            table = table.row(cells);
        }
        with_text(&table, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_shares_add_up() {
        let counts = [("a".to_owned(), 3), ("b".to_owned(), 1)];
        assert_eq!(label_shares(&counts), "a 3 (75.0%), b 1 (25.0%)");
    }
}
