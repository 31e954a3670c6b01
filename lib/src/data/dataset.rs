//! [`Dataset`]: examples of one kind, where each came from, and the classes.
use super::example::{DataKind, Example};
use super::labels::LabelMap;
use super::load::{self, Builder, LoadOptions};
use crate::{Error, Result};
use serde::Serialize;
use std::path::Path;

/// A row a loader could not use, kept for the cleaning report instead of vanishing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub origin: String,
    pub reason: String,
}

/// Examples of one [`DataKind`], with the origin (file and line or row) of each and, for
/// classification, the [`LabelMap`].
///
/// ```
/// use tunebook::data::{Dataset, DataKind};
/// let rows = serde_json::json!([
///     {"prompt": "What are the common symptoms of the flu?", "response": "Fever, cough and aches."},
///     {"prompt": "What is the capital of France?", "response": "Paris."},
/// ]);
/// let data = Dataset::from_rows(rows.as_array().unwrap())?;
/// assert_eq!((data.kind(), data.len()), (DataKind::Chat, 2));
/// assert_eq!(data.origin(1), "row 2");
/// # Ok::<(), tunebook::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Dataset {
    name: String,
    kind: DataKind,
    examples: Vec<Example>,
    origins: Vec<String>,
    labels: Option<LabelMap>,
    skipped: Vec<Skipped>,
}

/// Equal when the examples, their origins and the classes are; the name is not compared.
impl PartialEq for Dataset {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.examples == other.examples && self.origins == other.origins && self.labels == other.labels
    }
}

impl Dataset {
    /// Loads a file, every data file in a folder, or a glob (`data/*.jsonl`), detecting
    /// format and schema. See [`LoadOptions`] to declare them.
    pub fn load(source: impl AsRef<Path>) -> Result<Dataset> {
        load::load(source.as_ref(), &LoadOptions::default())
    }

    pub fn load_with(source: impl AsRef<Path>, options: LoadOptions) -> Result<Dataset> {
        load::load(source.as_ref(), &options)
    }

    /// Builds a dataset from rows made in code: serde structs or `serde_json` objects with
    /// the same columns a file would have.
    pub fn from_rows<T: Serialize>(rows: impl IntoIterator<Item = T>) -> Result<Dataset> {
        Self::from_rows_with(rows, LoadOptions::default())
    }

    pub fn from_rows_with<T: Serialize>(rows: impl IntoIterator<Item = T>, options: LoadOptions) -> Result<Dataset> {
        let mut builder = Builder::new(options);
        for (index, row) in rows.into_iter().enumerate() {
            let location = format!("row {}", index + 1);
            let value = serde_json::to_value(row).map_err(|e| Error::Data { location: location.clone(), message: format!("cannot be serialised: {e}") })?;
            let serde_json::Value::Object(map) = value else {
                return Err(Error::Data { location, message: format!("expected a struct or JSON object, found {}", super::schema::describe(&value)) });
            };
            if index == 0 {
                let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                builder.columns(&keys, &location)?;
            }
            builder.push(&map, location)?;
            if builder.full() {
                break;
            }
        }
        builder.finish("rows")
    }

    /// Builds a dataset from examples of one kind; classes are inferred from the labels.
    pub fn from_examples(examples: Vec<Example>) -> Result<Dataset> {
        let kind = examples.first().map(Example::kind).ok_or_else(|| Error::InvalidArgument("no examples".into()))?;
        if let Some(i) = examples.iter().position(|e| e.kind() != kind) {
            return Err(Error::Data {
                location: format!("example {}", i + 1),
                message: format!("is a {} example but the first one is {kind}; a dataset holds one kind", examples[i].kind()),
            });
        }
        let origins = (1..=examples.len()).map(|i| format!("example {i}")).collect();
        let dataset = Dataset::from_parts("examples".into(), kind, examples, origins, None, Vec::new());
        if kind == DataKind::Classification {
            let map = LabelMap::infer(dataset.examples.iter().filter_map(Example::label));
            return dataset.with_labels(map);
        }
        Ok(dataset)
    }

    pub(crate) fn from_parts(
        name: String,
        kind: DataKind,
        examples: Vec<Example>,
        origins: Vec<String>,
        labels: Option<LabelMap>,
        skipped: Vec<Skipped>,
    ) -> Dataset {
        Dataset { name, kind, examples, origins, labels, skipped }
    }

    /// Where the data came from (file name, "rows", "<file>/train" after a split).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn kind(&self) -> DataKind {
        self.kind
    }

    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    pub fn examples(&self) -> &[Example] {
        &self.examples
    }

    pub fn get(&self, index: usize) -> Option<&Example> {
        self.examples.get(index)
    }

    /// Where example `index` came from: `file:line` for JSON Lines, `file row N` for CSV
    /// and Parquet, `file item N` for JSON arrays, `row N` for rows made in code.
    pub fn origin(&self, index: usize) -> &str {
        self.origins.get(index).map_or("", String::as_str)
    }

    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// The classes, for classification data.
    pub fn labels(&self) -> Option<&LabelMap> {
        self.labels.as_ref()
    }

    /// Rows a loader could not use (reported by [`Dataset::clean`]).
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Uses `labels` as the classes: every label must be a class name (or an integer id
    /// within range, which becomes that class's name). Use the training set's map on
    /// validation data to catch labels training never saw.
    pub fn with_labels(mut self, labels: LabelMap) -> Result<Dataset> {
        if self.kind != DataKind::Classification {
            return Err(Error::InvalidArgument(format!("{}: labels apply to classification data, this is {}", self.name, self.kind)));
        }
        for (example, origin) in self.examples.iter_mut().zip(&self.origins) {
            let Example::Labeled { label, .. } = example else { continue };
            let id = labels.resolve(label).ok_or_else(|| Error::Data {
                location: origin.clone(),
                message: format!("unknown label `{label}`; known labels: {}", labels.names().join(", ")),
            })?;
            if labels.names()[id] != *label {
                *label = labels.names()[id].clone();
            }
        }
        self.labels = Some(labels);
        Ok(self)
    }

    /// Examples per class, in class-id order (empty for other kinds).
    pub fn label_counts(&self) -> Vec<(String, usize)> {
        let Some(labels) = &self.labels else { return Vec::new() };
        let mut counts = vec![0usize; labels.len()];
        for example in &self.examples {
            if let Some(id) = example.label().and_then(|l| labels.id(l)) {
                counts[id] += 1;
            }
        }
        labels.names().iter().cloned().zip(counts).collect()
    }

    /// The first `n` examples.
    pub fn head(&self, n: usize) -> Dataset {
        let indices: Vec<usize> = (0..n.min(self.len())).collect();
        self.select(&indices, self.name.clone())
    }

    /// The examples at `indices`, in that order, under a new name.
    pub(crate) fn select(&self, indices: &[usize], name: String) -> Dataset {
        Dataset {
            name,
            kind: self.kind,
            examples: indices.iter().map(|&i| self.examples[i].clone()).collect(),
            origins: indices.iter().map(|&i| self.origins[i].clone()).collect(),
            labels: self.labels.clone(),
            skipped: Vec::new(),
        }
    }

    /// Replaces the examples (same length and kind), keeping origins and classes.
    pub(crate) fn into_parts(self) -> (String, DataKind, Vec<Example>, Vec<String>, Option<LabelMap>, Vec<Skipped>) {
        (self.name, self.kind, self.examples, self.origins, self.labels, self.skipped)
    }
}
