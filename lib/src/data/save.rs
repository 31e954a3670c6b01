//! Saving a processed dataset as Parquet or JSON Lines, in the columns the loader detects.
use super::dataset::Dataset;
use super::example::Example;
use super::load::Format;
use super::schema::{LABEL_ID_COLUMN, ORIGIN_COLUMN};
use crate::{Error, Result};
use polars::prelude::*;
use serde_json::json;
use std::io::{BufWriter, Write};
use std::path::Path;

impl Dataset {
    /// Writes the dataset as Parquet (`.parquet`) or JSON Lines (`.jsonl`), with columns
    /// `messages` (list of role/content), `text` + `label` + `label_id`, or `text`, and each
    /// example's `origin`. [`Dataset::load`] reads it back identical (classes in the same
    /// order).
    ///
    /// ```no_run
    /// # use tunebook::data::Dataset;
    /// let data = tunebook::data::quickstart()?;
    /// data.save("/tmp/quickstart.parquet")?;
    /// assert_eq!(Dataset::load("/tmp/quickstart.parquet")?, data);
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        match Format::of_path(path) {
            Ok(Format::Parquet) => self.save_parquet(path),
            Ok(Format::Jsonl) => self.save_jsonl(path),
            _ => Err(Error::bad_file(path, "save writes .parquet or .jsonl files")),
        }
    }

    fn label_id(&self, label: &str) -> Option<i64> {
        self.labels().and_then(|m| m.id(label)).map(|i| i as i64)
    }

    fn save_jsonl(&self, path: &Path) -> Result<()> {
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut out = BufWriter::new(file);
        for (example, origin) in self.examples().iter().zip(self.origins()) {
            let row = match example {
                Example::Chat(messages) => json!({ "messages": messages, ORIGIN_COLUMN: origin }),
                Example::Labeled { text, label } => json!({ "text": text, "label": label, LABEL_ID_COLUMN: self.label_id(label), ORIGIN_COLUMN: origin }),
                Example::Text(text) => json!({ "text": text, ORIGIN_COLUMN: origin }),
            };
            serde_json::to_writer(&mut out, &row).map_err(|e| Error::io(path, e.into()))?;
            out.write_all(b"\n").map_err(|e| Error::io(path, e))?;
        }
        out.flush().map_err(|e| Error::io(path, e))
    }

    fn save_parquet(&self, path: &Path) -> Result<()> {
        let polars_err = |e: PolarsError| Error::bad_file(path, format!("writing Parquet: {e}"));
        let text_column = || Column::new("text".into(), self.examples().iter().map(|e| e.texts().first().copied().unwrap_or_default()).collect::<Vec<_>>());
        let mut columns = match self.examples().first() {
            Some(Example::Chat(_)) | None => {
                let lists = self
                    .examples()
                    .iter()
                    .map(|e| {
                        let messages = match e {
                            Example::Chat(m) => m.as_slice(),
                            _ => &[],
                        };
                        let roles = Series::new("role".into(), messages.iter().map(|m| m.role.as_str()).collect::<Vec<_>>());
                        let contents = Series::new("content".into(), messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>());
                        StructChunked::from_series("".into(), messages.len(), [roles, contents].iter()).map(|s| s.into_series())
                    })
                    .collect::<PolarsResult<Vec<Series>>>()
                    .map_err(polars_err)?;
                vec![Column::new("messages".into(), lists)]
            }
            Some(Example::Labeled { .. }) => {
                let labels: Vec<&str> = self.examples().iter().map(|e| e.label().unwrap_or_default()).collect();
                let ids: Vec<Option<i64>> = labels.iter().map(|l| self.label_id(l)).collect();
                vec![
                    text_column(),
                    Column::new("label".into(), labels),
                    Column::new(LABEL_ID_COLUMN.into(), ids),
                ]
            }
            Some(Example::Text(_)) => vec![text_column()],
        };
        columns.push(Column::new(ORIGIN_COLUMN.into(), self.origins().to_vec()));
        let mut frame = DataFrame::new(self.len(), columns).map_err(polars_err)?;
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        ParquetWriter::new(file).finish(&mut frame).map_err(polars_err)?;
        Ok(())
    }
}
