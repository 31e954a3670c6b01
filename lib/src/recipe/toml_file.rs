//! Recipe files as TOML: dotted `key=value` overrides, relative paths, and errors that
//! name the file, the dotted field and (when it is in the file) the line.
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use toml::{Table, Value};

/// Keys whose values are paths. A relative path means "relative to where it was written"
/// (the file's folder, or the working directory for `--set`), so it is made absolute
/// before it travels into another file's settings.
const PATH_KEYS: [&str; 5] = ["model.name", "model.chat_template", "data.path", "training.output_dir", "sweep.output_dir"];

/// One setting replaced from outside the file: `training.max_steps=3` on the command line,
/// or one value of a sweep parameter.
///
/// ```
/// use tunebook::recipe::Override;
/// let o: Override = "training.learning_rate=3e-4".parse()?;
/// assert_eq!(o.value, toml::Value::Float(3e-4));
/// let o: Override = "training.output_dir=runs/a".parse()?; // not TOML: a plain string
/// assert_eq!(o.value.as_str(), Some("runs/a"));
/// # Ok::<(), tunebook::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Dotted: section, then field (`method.r`).
    pub key: String,
    pub value: Value,
}

impl Override {
    pub fn new(key: impl Into<String>, value: impl Into<Value>) -> Self {
        Override { key: key.into(), value: value.into() }
    }

    /// Makes a relative path value absolute against `dir`, for the keys that hold paths.
    /// `model.name` changes only when `dir` has that path: it may be a shipped name or a hub id.
    pub fn relative_to(mut self, dir: &Path) -> Self {
        if let Some(resolved) = self.value.as_str().and_then(|v| resolve_path(&self.key, v, dir)) {
            self.value = Value::String(resolved.to_string_lossy().into_owned());
        }
        self
    }
}

impl FromStr for Override {
    type Err = Error;

    /// `KEY=VALUE`, the value in TOML syntax (`3`, `1e-4`, `true`, `["q_proj", "v_proj"]`,
    /// `"text"`); anything that is not TOML is taken as a plain string (`cosine`, `runs/a`).
    fn from_str(s: &str) -> Result<Self> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| Error::InvalidArgument(format!("override `{s}`: expected KEY=VALUE, e.g. training.max_steps=100")))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(Error::InvalidArgument(format!("override `{s}`: the key must be dotted names, e.g. training.max_steps")));
        }
        let value = value.trim();
        let parsed = toml::from_str::<Table>(&format!("v = {value}")).ok().and_then(|mut t| t.remove("v"));
        Ok(Override::new(key, parsed.unwrap_or_else(|| Value::String(value.to_string()))))
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            // Bare strings read back the same way (see `from_str`), and look like what was typed.
            Value::String(s) if toml::from_str::<Table>(&format!("v = {s}")).is_err() => write!(f, "{}={s}", self.key),
            other => write!(f, "{}={other}", self.key),
        }
    }
}

/// `value` of path key `key` made absolute against `dir`, when it is a relative path.
pub(crate) fn resolve_path(key: &str, value: &str, dir: &Path) -> Option<PathBuf> {
    let path = Path::new(value);
    if !PATH_KEYS.contains(&key) || path.is_absolute() || value.is_empty() {
        return None;
    }
    let joined = dir.join(path);
    // A model name or chat template may also be a hub id, "plain" or inline Jinja.
    let only_if_there = key == "model.name" || key == "model.chat_template";
    (!only_if_there || joined.exists()).then_some(joined)
}

/// The text of a TOML file and its table; syntax errors name the file and line.
pub(crate) fn read(path: &Path) -> Result<(String, Table)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let table = toml::from_str::<Table>(&text).map_err(|e| located(path, &text, &e, None))?;
    Ok((text, table))
}

/// Sets dotted `key` in `table`, creating the tables on the way. A key that the table
/// already holds with dots in it (`"training.learning_rate" = [...]` in a sweep's
/// parameters) is replaced as a whole rather than nested.
pub(crate) fn set(table: &mut Table, key: &str, value: Value) -> std::result::Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut current = table;
    for depth in 0..parts.len() {
        let rest = parts[depth..].join(".");
        if depth + 1 == parts.len() || current.contains_key(&rest) {
            current.insert(rest, value);
            return Ok(());
        }
        let entry = current.entry(parts[depth].to_string()).or_insert_with(|| Value::Table(Table::new()));
        current = entry.as_table_mut().ok_or_else(|| format!("{} is a value, not a section", parts[..=depth].join(".")))?;
    }
    Err("empty key".into())
}

/// Every leaf of `table` as an override under `prefix` (tables are walked, arrays are leaves).
pub(crate) fn flatten(prefix: &str, table: &Table, out: &mut Vec<Override>) {
    for (name, value) in table {
        let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        match value {
            Value::Table(inner) => flatten(&key, inner, out),
            leaf => out.push(Override::new(key, leaf.clone())),
        }
    }
}

/// Deserializes the file `path` (text `text`, table `table`) after applying `overrides`.
/// Without overrides the text itself is read, so errors point at its lines.
pub(crate) fn deserialize<T: DeserializeOwned>(path: &Path, text: &str, mut table: Table, overrides: &[Override]) -> Result<T> {
    if overrides.is_empty() {
        return toml::from_str(text).map_err(|e| located(path, text, &e, None));
    }
    for o in overrides {
        set(&mut table, &o.key, o.value.clone()).map_err(|message| field_error(path, &o.key, format!("cannot set {o}: {message}")))?;
    }
    Value::Table(table).try_into().map_err(|e| located(path, text, &e, Some(overrides)))
}

/// A problem with one setting of the file at `path`.
pub(crate) fn field_error(path: &Path, field: &str, message: impl fmt::Display) -> Error {
    Error::bad_file(path, format!("field {field}: {message}"))
}

/// A library error about a setting of section `section` (e.g. a [`Error::Config`] from
/// `TrainingArgs::validate`), said as a problem with the file's dotted field.
pub(crate) fn in_section(path: &Path, section: &str, error: Error) -> Error {
    match error {
        Error::Config { field, message } => field_error(path, &format!("{section}.{field}"), message),
        other => Error::bad_file(path, format!("[{section}]: {other}")),
    }
}

/// A deserialization error as `field a.b (line N): message`. toml tracks the keys leading
/// to an error but shows them only when it has no source text to quote, so they are read
/// back from that form of its message.
fn located(path: &Path, text: &str, error: &toml::de::Error, overrides: Option<&[Override]>) -> Error {
    let mut bare = error.clone();
    bare.set_input(None);
    let shown = bare.to_string();
    let keys = shown.lines().rev().find_map(|l| l.strip_prefix("in `")?.strip_suffix('`')).map(str::to_string);
    let message = error.message().trim();
    // Unknown and missing fields are named in the message; their table is in the keys.
    let named = ["unknown field `", "missing field `"].iter().find_map(|p| message.strip_prefix(p)?.split('`').next());
    let field = match (keys, named) {
        (Some(keys), Some(name)) => Some(format!("{keys}.{name}")),
        (keys, name) => keys.or(name.map(str::to_string)),
    };
    let overridden = field.as_deref().and_then(|f| overrides?.iter().find(|o| o.key == f));
    let place = match (overridden, overrides, error.span()) {
        (Some(o), _, _) => format!(" (set to {} by an override)", o.value),
        (None, None, Some(span)) => format!(" (line {})", text.get(..span.start).unwrap_or(text).matches('\n').count() + 1),
        _ => String::new(),
    };
    match field {
        Some(field) => field_error(path, &format!("{field}{place}"), message),
        None => Error::bad_file(path, format!("{message}{place}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read only through Debug: the tests look at errors
    struct Doc {
        training: Section,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        max_steps: i64,
        #[serde(default)]
        name: String,
    }

    fn error_of(text: &str, overrides: &[Override]) -> String {
        let table = toml::from_str::<Table>(text).unwrap();
        deserialize::<Doc>(Path::new("r.toml"), text, table, overrides).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_file_the_dotted_field_and_the_line() {
        let err = error_of("[training]\nmax_steps = 3\nmax_step = 4\n", &[]);
        assert!(err.starts_with("r.toml: field training.max_step (line 3): unknown field `max_step`"), "{err}");
        let err = error_of("[training]\n\nmax_steps = \"ten\"\n", &[]);
        assert!(err.starts_with("r.toml: field training.max_steps (line 3): invalid type: string \"ten\""), "{err}");
        let err = error_of("[training]\nname = \"a\"\n", &[]);
        assert!(err.contains("field training.max_steps") && err.contains("missing field"), "{err}");
        let err = error_of("[training]\nmax_steps = 3\n", &["training.max_steps=ten".parse().unwrap()]);
        assert!(err.contains("field training.max_steps (set to \"ten\" by an override)"), "{err}");
        let err = error_of("[training]\nmax_steps = 3\n", &["training.max_steps.x=1".parse().unwrap()]);
        assert!(err.contains("field training.max_steps.x: cannot set") && err.contains("not a section"), "{err}");
    }

    #[test]
    fn overrides_parse_toml_values_or_plain_strings_and_resolve_paths() {
        let o: Override = "method.target_modules=[\"q_proj\", \"v_proj\"]".parse().unwrap();
        assert_eq!(o.value.as_array().map(Vec::len), Some(2));
        assert_eq!("training.lr_scheduler_type=cosine".parse::<Override>().unwrap().to_string(), "training.lr_scheduler_type=cosine");
        assert_eq!("method.r=8".parse::<Override>().unwrap().value, Value::Integer(8));
        assert!("max_steps".parse::<Override>().is_err());
        assert!("training..x=1".parse::<Override>().is_err());
        let out = Override::new("training.output_dir", "runs/a").relative_to(Path::new("/base"));
        assert_eq!(out.value.as_str(), Some("/base/runs/a"));
        let lr = Override::new("training.learning_rate", 1e-3).relative_to(Path::new("/base"));
        assert_eq!(lr.value, Value::Float(1e-3));
        let shipped = Override::new("model.name", "smollm2-135m-instruct").relative_to(Path::new("/base"));
        assert_eq!(shipped.value.as_str(), Some("smollm2-135m-instruct"));
    }

    #[test]
    fn flatten_and_set_round_trip() {
        let table: Table = toml::from_str("[training]\nmax_steps = 3\n[sweep.parameters]\n\"method.r\" = [4, 8]\n").unwrap();
        let mut flat = Vec::new();
        flatten("", &table, &mut flat);
        let keys: Vec<&str> = flat.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["sweep.parameters.method.r", "training.max_steps"]);
        let mut rebuilt = Table::new();
        set(&mut rebuilt, "training.max_steps", Value::Integer(3)).unwrap();
        assert_eq!(rebuilt["training"]["max_steps"], Value::Integer(3));
        let mut sweep = table.clone();
        set(&mut sweep, "sweep.parameters.method.r", Value::Array(vec![Value::Integer(2)])).unwrap();
        let parameters = sweep["sweep"]["parameters"].as_table().unwrap();
        assert_eq!((parameters.len(), &parameters["method.r"]), (1, &Value::Array(vec![Value::Integer(2)])), "a quoted dotted key is replaced whole");
    }
}
