//! Reading rows from JSON, JSON Lines, CSV/TSV and Parquet files (one, a folder or a glob).
//!
//! JSON Lines are streamed line by line and Parquet reads only the columns the schema
//! needs, so [`LoadOptions::limit`] peeks at the start of a large file without reading
//! the rest.
use super::dataset::{Dataset, Skipped};
use super::example::Example;
use super::labels::LabelMap;
use super::schema::{describe, Schema, LABEL_ID_COLUMN, ORIGIN_COLUMN};
use crate::{Error, Result};
use polars::prelude::*;
use serde_json::{Map, Value};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// File formats. `Auto` decides by extension (`.json` files starting with `{` are read as
/// JSON Lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Auto,
    /// A JSON array of objects.
    Json,
    /// One JSON object per line.
    Jsonl,
    Csv,
    Tsv,
    Parquet,
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => Format::Auto,
            "json" => Format::Json,
            "jsonl" | "ndjson" => Format::Jsonl,
            "csv" => Format::Csv,
            "tsv" => Format::Tsv,
            "parquet" => Format::Parquet,
            other => {
                return Err(Error::Unsupported { what: "data format", name: other.into(), supported: "auto, json, jsonl, csv, tsv, parquet".into() })
            }
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Auto => "auto",
            Format::Json => "json",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Parquet => "parquet",
        })
    }
}

const DATA_EXTENSIONS: [&str; 6] = ["json", "jsonl", "ndjson", "csv", "tsv", "parquet"];

impl Format {
    /// The format of `path` by its extension (and, for `.json`, its first character).
    pub fn of_path(path: &Path) -> Result<Format> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
        Ok(match ext.as_str() {
            "jsonl" | "ndjson" => Format::Jsonl,
            "json" => sniff_json(path)?,
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "parquet" | "pq" => Format::Parquet,
            _ => {
                return Err(Error::bad_file(path, "unknown data file extension; expected .json, .jsonl, .csv, .tsv or .parquet (or pass the format)"))
            }
        })
    }
}

fn sniff_json(path: &Path) -> Result<Format> {
    let mut reader = BufReader::new(std::fs::File::open(path).map_err(|e| Error::io(path, e))?);
    loop {
        let buf = reader.fill_buf().map_err(|e| Error::io(path, e))?;
        let Some(pos) = buf.iter().position(|b| !b.is_ascii_whitespace() && !matches!(b, 0xEF | 0xBB | 0xBF)) else {
            if buf.is_empty() {
                return Ok(Format::Json);
            }
            let n = buf.len();
            reader.consume(n);
            continue;
        };
        return Ok(if buf[pos] == b'{' { Format::Jsonl } else { Format::Json });
    }
}

/// How to read a dataset.
///
/// ```no_run
/// use tunebook::data::{Dataset, Format, LoadOptions, Schema};
/// let reviews = Dataset::load_with(
///     "reviews/*.csv",
///     LoadOptions::new().format(Format::Csv).schema(Schema::classification("review", "stars")).limit(1000),
/// )?;
/// # Ok::<(), tunebook::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub format: Format,
    pub schema: Option<Schema>,
    pub labels: Option<LabelMap>,
    pub limit: Option<usize>,
}

impl LoadOptions {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }
    /// Declares which columns hold what instead of detecting it.
    pub fn schema(mut self, schema: Schema) -> Self {
        self.schema = Some(schema);
        self
    }
    /// Fixes the classes (e.g. the training set's); an unknown label is an error.
    pub fn labels(mut self, labels: LabelMap) -> Self {
        self.labels = Some(labels);
        self
    }
    /// Reads at most `rows` rows.
    pub fn limit(mut self, rows: usize) -> Self {
        self.limit = Some(rows);
        self
    }
}

/// The files a path names: a file, every data file in a folder, or a glob's matches; sorted.
pub fn expand_paths(source: &Path) -> Result<Vec<PathBuf>> {
    let text = source.to_string_lossy();
    if text.contains(['*', '?', '[']) {
        let paths = glob::glob(&text).map_err(|e| Error::InvalidArgument(format!("glob `{text}`: {e}")))?;
        let mut files = Vec::new();
        for entry in paths {
            let path = entry.map_err(|e| Error::io(e.path().to_path_buf(), std::io::Error::other(e.to_string())))?;
            if path.is_file() {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(Error::InvalidArgument(format!("no files match `{text}`")));
        }
        files.sort();
        return Ok(files);
    }
    if source.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(source).map_err(|e| Error::io(source, e))? {
            let path = entry.map_err(|e| Error::io(source, e))?.path();
            let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
            if path.is_file() && ext.is_some_and(|e| DATA_EXTENSIONS.contains(&e.as_str())) {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(Error::bad_file(source, "folder has no data files (.json, .jsonl, .csv, .tsv, .parquet)"));
        }
        files.sort();
        return Ok(files);
    }
    if !source.exists() {
        return Err(Error::io(source, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder")));
    }
    Ok(vec![source.to_path_buf()])
}

/// Loads every file `source` names into one dataset.
pub(crate) fn load(source: &Path, options: &LoadOptions) -> Result<Dataset> {
    let files = expand_paths(source)?;
    let mut builder = Builder::new(options.clone());
    for file in &files {
        let format = match options.format {
            Format::Auto => Format::of_path(file)?,
            f => f,
        };
        match format {
            Format::Jsonl => read_jsonl(file, &mut builder)?,
            Format::Json | Format::Auto => read_json(file, &mut builder)?,
            Format::Csv => read_csv(file, b',', &mut builder)?,
            Format::Tsv => read_csv(file, b'\t', &mut builder)?,
            Format::Parquet => read_parquet(file, &mut builder)?,
        }
        if builder.full() {
            break;
        }
    }
    let name = if files.len() == 1 { files[0].display().to_string() } else { source.display().to_string() };
    builder.finish(&name)
}

/// Collects examples from rows: fixes the schema on the first file's columns, converts
/// rows, and builds the label map at the end.
pub(crate) struct Builder {
    options: LoadOptions,
    schema: Option<Schema>,
    examples: Vec<Example>,
    origins: Vec<String>,
    label_ids: Vec<Option<i64>>,
}

impl Builder {
    pub(crate) fn new(options: LoadOptions) -> Self {
        let schema = options.schema.clone();
        Builder { options, schema, examples: Vec::new(), origins: Vec::new(), label_ids: Vec::new() }
    }

    pub(crate) fn full(&self) -> bool {
        self.options.limit.is_some_and(|n| self.examples.len() >= n)
    }

    /// Fixes (or checks) the schema against a file's columns.
    pub(crate) fn columns(&mut self, columns: &[&str], location: &str) -> Result<&Schema> {
        let schema = match self.schema.take() {
            Some(s) => s,
            None => Schema::detect(columns).map_err(|e| match e {
                Error::Data { message, .. } => Error::Data { location: location.into(), message },
                other => other,
            })?,
        };
        schema.check_columns(columns, location)?;
        Ok(self.schema.insert(schema))
    }

    /// The columns worth reading from a columnar file.
    fn wanted_columns(&self, present: &[&str]) -> Vec<String> {
        let mut wanted: Vec<String> = self.schema.iter().flat_map(|s| s.columns()).map(|(c, _)| c.to_string()).collect();
        wanted.extend([ORIGIN_COLUMN, LABEL_ID_COLUMN].map(String::from));
        wanted.retain(|c| present.contains(&c.as_str()));
        wanted.dedup();
        wanted
    }

    pub(crate) fn push(&mut self, row: &Map<String, Value>, location: String) -> Result<()> {
        let schema = self.schema.as_ref().ok_or_else(|| Error::Data { location: location.clone(), message: "row before the columns are known".into() })?;
        let example = schema.example(row, &location)?;
        let label_id = match row.get(LABEL_ID_COLUMN) {
            Some(Value::Number(n)) if schema.kind() == super::DataKind::Classification => n.as_i64(),
            _ => None,
        };
        let origin = match row.get(ORIGIN_COLUMN) {
            Some(Value::String(o)) => o.clone(),
            _ => location,
        };
        self.examples.push(example);
        self.origins.push(origin);
        self.label_ids.push(label_id);
        Ok(())
    }

    pub(crate) fn finish(self, name: &str) -> Result<Dataset> {
        let Some(schema) = self.schema else {
            return Err(Error::Data { location: name.into(), message: "no rows".into() });
        };
        if self.examples.is_empty() {
            return Err(Error::Data { location: name.into(), message: "no rows".into() });
        }
        let mut dataset = Dataset::from_parts(name.into(), schema.kind(), self.examples, self.origins, None, Vec::<Skipped>::new());
        if schema.kind() == super::DataKind::Classification {
            let saved_map = saved_label_map(&dataset, &self.label_ids)?;
            dataset = match self.options.labels.or(saved_map) {
                Some(map) => dataset.with_labels(map)?,
                None => {
                    let map = LabelMap::infer(dataset.examples().iter().filter_map(Example::label));
                    dataset.with_labels(map)?
                }
            };
        }
        Ok(dataset)
    }
}

/// The label map written by [`Dataset::save`] as a `label_id` column next to `label`.
fn saved_label_map(dataset: &Dataset, ids: &[Option<i64>]) -> Result<Option<LabelMap>> {
    if ids.is_empty() || ids.iter().any(Option::is_none) {
        return Ok(None);
    }
    let mut names: Vec<Option<String>> = Vec::new();
    for (i, (example, id)) in dataset.examples().iter().zip(ids).enumerate() {
        let (Some(label), Some(id)) = (example.label(), id.and_then(|v| usize::try_from(v).ok())) else {
            return Ok(None);
        };
        if names.len() <= id {
            names.resize(id + 1, None);
        }
        match &names[id] {
            Some(existing) if existing != label => {
                return Err(Error::Data {
                    location: dataset.origin(i).into(),
                    message: format!("`{LABEL_ID_COLUMN}` {id} is `{label}` here but `{existing}` in an earlier row"),
                })
            }
            _ => names[id] = Some(label.to_string()),
        }
    }
    Ok(Some(LabelMap::new(names.into_iter().enumerate().map(|(i, n)| n.unwrap_or_else(|| format!("unused_{i}"))))))
}

fn read_lines_error(path: &Path, line: usize, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        return Error::Data { location: format!("{}:{line}", path.display()), message: "not valid UTF-8 text".into() };
    }
    Error::io(path, e)
}

/// serde_json's message without its "at line 1 column N" tail, plus the column.
fn json_error(e: &serde_json::Error, with_line: bool) -> String {
    let text = e.to_string();
    let message = text.rsplit_once(" at line ").map_or(text.as_str(), |(m, _)| m);
    if with_line {
        format!("invalid JSON at line {} column {}: {message}", e.line(), e.column())
    } else {
        format!("invalid JSON at column {}: {message}", e.column())
    }
}

fn read_jsonl(path: &Path, builder: &mut Builder) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    read_jsonl_from(BufReader::new(file), path, builder)
}

/// JSON Lines from any reader; `path` names it in origins and errors.
pub(crate) fn read_jsonl_from(reader: impl BufRead, path: &Path, builder: &mut Builder) -> Result<()> {
    let mut seen_columns = false;
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| read_lines_error(path, number, e))?;
        let line = if number == 1 { line.trim_start_matches('\u{feff}') } else { &line };
        if line.trim().is_empty() {
            continue;
        }
        let location = format!("{}:{number}", path.display());
        let value: Value = serde_json::from_str(line).map_err(|e| Error::Data { location: location.clone(), message: json_error(&e, false) })?;
        let Value::Object(row) = value else {
            return Err(Error::Data { location, message: format!("expected a JSON object per line, found {}", describe(&value)) });
        };
        if !seen_columns {
            let keys: Vec<&str> = row.keys().map(String::as_str).collect();
            builder.columns(&keys, &location)?;
            seen_columns = true;
        }
        builder.push(&row, location)?;
        if builder.full() {
            break;
        }
    }
    Ok(())
}

fn read_json(path: &Path, builder: &mut Builder) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => Error::bad_file(path, "not valid UTF-8 text"),
        _ => Error::io(path, e),
    })?;
    let value: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| Error::Data { location: format!("{}:{}", path.display(), e.line()), message: json_error(&e, true) })?;
    let Value::Array(items) = value else {
        return Err(Error::bad_file(path, format!("expected a JSON array of objects, found {} (for one object per line use .jsonl)", describe(&value))));
    };
    for (index, item) in items.iter().enumerate() {
        let location = format!("{} item {}", path.display(), index + 1);
        let Value::Object(row) = item else {
            return Err(Error::Data { location, message: format!("expected an object, found {}", describe(item)) });
        };
        if index == 0 {
            let keys: Vec<&str> = row.keys().map(String::as_str).collect();
            builder.columns(&keys, &location)?;
        }
        builder.push(row, location)?;
        if builder.full() {
            break;
        }
    }
    Ok(())
}

fn polars_error<'a>(path: &'a Path, what: &str) -> impl Fn(PolarsError) -> Error + 'a {
    let what = what.to_string();
    move |e| Error::bad_file(path, format!("{what}: {e}"))
}

/// CSV/TSV with a header row. Every column is read as text (integer labels stay `"1"`),
/// so type errors cannot come from the file's own guesswork.
fn read_csv(path: &Path, separator: u8, builder: &mut Builder) -> Result<()> {
    let frame = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .with_n_rows(builder.options.limit.map(|n| n.saturating_sub(builder.examples.len())))
        .with_parse_options(CsvParseOptions::default().with_separator(separator))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
        .map_err(polars_error(path, "could not read as CSV"))?;
    push_frame(path, &frame, builder)
}

fn read_parquet(path: &Path, builder: &mut Builder) -> Result<()> {
    let open = || std::fs::File::open(path).map_err(|e| Error::io(path, e));
    let mut reader = ParquetReader::new(open()?);
    let schema = reader.schema().map_err(polars_error(path, "not a Parquet file"))?;
    let names: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
    let present: Vec<&str> = names.iter().map(String::as_str).collect();
    builder.columns(&present, &path.display().to_string())?;
    let wanted = builder.wanted_columns(&present);
    let remaining = builder.options.limit.map(|n| (0, n.saturating_sub(builder.examples.len())));
    let frame = ParquetReader::new(open()?)
        .with_columns(Some(wanted))
        .with_slice(remaining)
        .finish()
        .map_err(polars_error(path, "could not read Parquet"))?;
    push_frame(path, &frame, builder)
}

/// Converts a frame's rows (only the columns the schema reads) and pushes them.
fn push_frame(path: &Path, frame: &DataFrame, builder: &mut Builder) -> Result<()> {
    let names: Vec<String> = frame.get_column_names().iter().map(|n| n.to_string()).collect();
    let present: Vec<&str> = names.iter().map(String::as_str).collect();
    let file = path.display().to_string();
    builder.columns(&present, &file)?;
    let wanted = builder.wanted_columns(&present);
    let columns: Vec<&Column> = wanted.iter().map(|c| frame.column(c)).collect::<PolarsResult<_>>().map_err(polars_error(path, "column"))?;
    for row in 0..frame.height() {
        let mut map = Map::with_capacity(columns.len());
        for (name, column) in wanted.iter().zip(&columns) {
            let value = column.get(row).map_err(polars_error(path, "reading a value"))?;
            map.insert(name.clone(), any_to_json(&value));
        }
        builder.push(&map, format!("{file} row {}", row + 1))?;
        if builder.full() {
            break;
        }
    }
    Ok(())
}

/// A polars value as JSON, so every format goes through the same row conversion and
/// type checks. Types with no JSON counterpart become a tagged object, which field checks
/// then report as the wrong type.
fn any_to_json(value: &AnyValue) -> Value {
    use serde_json::Number;
    match value {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(*b),
        AnyValue::String(s) => Value::String(s.to_string()),
        AnyValue::StringOwned(s) => Value::String(s.to_string()),
        AnyValue::Int8(v) => Value::from(*v),
        AnyValue::Int16(v) => Value::from(*v),
        AnyValue::Int32(v) => Value::from(*v),
        AnyValue::Int64(v) => Value::from(*v),
        AnyValue::UInt8(v) => Value::from(*v),
        AnyValue::UInt16(v) => Value::from(*v),
        AnyValue::UInt32(v) => Value::from(*v),
        AnyValue::UInt64(v) => Value::from(*v),
        AnyValue::Float32(v) => Number::from_f64(f64::from(*v)).map_or(Value::Null, Value::Number),
        AnyValue::Float64(v) => Number::from_f64(*v).map_or(Value::Null, Value::Number),
        AnyValue::List(series) => Value::Array((0..series.len()).map(|i| series.get(i).map_or(Value::Null, |v| any_to_json(&v))).collect()),
        AnyValue::Struct(_, _, fields) => {
            let values: Vec<Value> = value._iter_struct_av().map(|v| any_to_json(&v)).collect();
            Value::Object(fields.iter().map(|f| f.name().to_string()).zip(values).collect())
        }
        AnyValue::StructOwned(parts) => {
            let (values, fields) = &**parts;
            Value::Object(fields.iter().map(|f| f.name().to_string()).zip(values.iter().map(any_to_json)).collect())
        }
        other => serde_json::json!({ "unsupported column type": other.dtype().to_string() }),
    }
}
