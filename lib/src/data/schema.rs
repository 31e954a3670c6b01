//! Which columns hold what: detected from the column names, or declared.
use super::example::{DataKind, Example};
use crate::tokenizer::ChatMessage;
use crate::{Error, Result};
use serde_json::{Map, Value};
use std::fmt;

/// How rows map to [`Example`]s. Column names are configurable; [`Schema::detect`] finds
/// the usual ones.
///
/// ```
/// use tunebook::data::Schema;
/// let schema = Schema::detect(&["id", "question", "answer"]).unwrap();
/// assert_eq!(schema, Schema::pairs("question", "answer"));
/// assert!(Schema::detect(&["foo", "bar"]).unwrap_err().to_string().contains("columns found: foo, bar"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    /// A prompt and a response column (optionally a system prompt column).
    Pairs { prompt: String, response: String, system: Option<String> },
    /// Alpaca: `instruction`, optional `input` (appended to the instruction), `output`.
    Alpaca { instruction: String, input: Option<String>, output: String },
    /// A list of `{"role", "content"}` messages.
    Messages { column: String },
    /// ShareGPT: a list of `{"from", "value"}` turns (`human`/`gpt`/`system`).
    ShareGpt { column: String },
    /// A text and a label (string or integer).
    Classification { text: String, label: String },
    /// Raw text.
    Text { column: String },
}

/// Prompt/response column names recognised by [`Schema::detect`], most specific first.
const PAIR_NAMES: [(&str, &str); 4] = [("prompt", "response"), ("prompt", "completion"), ("question", "answer"), ("query", "response")];

/// The column that carries an example's origin in saved datasets.
pub(crate) const ORIGIN_COLUMN: &str = "origin";
/// The class id column written next to `label` in saved datasets (keeps the label map's order).
pub(crate) const LABEL_ID_COLUMN: &str = "label_id";

impl Schema {
    pub fn pairs(prompt: &str, response: &str) -> Self {
        Schema::Pairs { prompt: prompt.into(), response: response.into(), system: None }
    }

    pub fn alpaca() -> Self {
        Schema::Alpaca { instruction: "instruction".into(), input: Some("input".into()), output: "output".into() }
    }

    pub fn messages(column: &str) -> Self {
        Schema::Messages { column: column.into() }
    }

    pub fn sharegpt(column: &str) -> Self {
        Schema::ShareGpt { column: column.into() }
    }

    pub fn classification(text: &str, label: &str) -> Self {
        Schema::Classification { text: text.into(), label: label.into() }
    }

    pub fn text(column: &str) -> Self {
        Schema::Text { column: column.into() }
    }

    /// Finds the schema from column names: `messages`; `conversations` (ShareGPT);
    /// `instruction` + `output` (Alpaca); `prompt`/`response`, `prompt`/`completion`,
    /// `question`/`answer` or `query`/`response` (with an optional `system`);
    /// `text` + `label`; `text`. Other columns are ignored.
    pub fn detect(columns: &[&str]) -> Result<Schema> {
        let has = |c: &str| columns.contains(&c);
        let optional = |c: &str| has(c).then(|| c.to_string());
        if has("messages") {
            return Ok(Schema::messages("messages"));
        }
        if has("conversations") {
            return Ok(Schema::sharegpt("conversations"));
        }
        if has("instruction") && has("output") {
            return Ok(Schema::Alpaca { instruction: "instruction".into(), input: optional("input"), output: "output".into() });
        }
        if let Some((p, r)) = PAIR_NAMES.iter().find(|(p, r)| has(p) && has(r)) {
            return Ok(Schema::Pairs { prompt: p.to_string(), response: r.to_string(), system: optional("system") });
        }
        if has("text") && has("label") {
            return Ok(Schema::classification("text", "label"));
        }
        if has("text") {
            return Ok(Schema::text("text"));
        }
        Err(Error::Data {
            location: "schema".into(),
            message: format!(
                "no known columns; columns found: {}. Expected one of: messages; conversations; instruction/input/output; \
                 prompt/response; question/answer; text/label; text. Declare other names with Schema::pairs(..), Schema::classification(..) etc.",
                columns.join(", ")
            ),
        })
    }

    pub fn kind(&self) -> DataKind {
        match self {
            Schema::Classification { .. } => DataKind::Classification,
            Schema::Text { .. } => DataKind::Text,
            _ => DataKind::Chat,
        }
    }

    /// The columns this schema reads; `optional` ones may be absent.
    pub fn columns(&self) -> Vec<(&str, bool)> {
        fn req(c: &str) -> Option<(&str, bool)> {
            Some((c, false))
        }
        fn opt(c: &Option<String>) -> Option<(&str, bool)> {
            c.as_deref().map(|c| (c, true))
        }
        match self {
            Schema::Pairs { prompt, response, system } => [req(prompt), req(response), opt(system)].into_iter().flatten().collect(),
            Schema::Alpaca { instruction, input, output } => [req(instruction), opt(input), req(output)].into_iter().flatten().collect(),
            Schema::Messages { column } | Schema::ShareGpt { column } | Schema::Text { column } => req(column).into_iter().collect(),
            Schema::Classification { text, label } => [req(text), req(label)].into_iter().flatten().collect(),
        }
    }

    /// Checks that the required columns are present.
    pub(crate) fn check_columns(&self, columns: &[&str], location: &str) -> Result<()> {
        for (column, optional) in self.columns() {
            if !optional && !columns.contains(&column) {
                return Err(Error::Data {
                    location: location.into(),
                    message: format!("missing column `{column}` ({self}); columns found: {}", columns.join(", ")),
                });
            }
        }
        Ok(())
    }

    /// Converts one row. A null or absent optional field reads as empty (the cleaning step
    /// reports empty examples); a value of the wrong type is an error naming row and field.
    pub(crate) fn example(&self, row: &Map<String, Value>, location: &str) -> Result<Example> {
        let field = Field { row, location };
        Ok(match self {
            Schema::Pairs { prompt, response, system } => {
                let mut messages = Vec::with_capacity(3);
                if let Some(system) = system {
                    let text = field.text(system, true)?;
                    if !text.is_empty() {
                        messages.push(ChatMessage::system(text));
                    }
                }
                messages.push(ChatMessage::user(field.text(prompt, false)?));
                messages.push(ChatMessage::assistant(field.text(response, false)?));
                Example::Chat(messages)
            }
            Schema::Alpaca { instruction, input, output } => {
                let mut prompt = field.text(instruction, false)?;
                if let Some(input) = input {
                    let extra = field.text(input, true)?;
                    if !extra.trim().is_empty() {
                        prompt = format!("{prompt}\n\n{extra}");
                    }
                }
                Example::pair(prompt, field.text(output, false)?)
            }
            Schema::Messages { column } => Example::Chat(field.turns(column, "role", "content")?),
            Schema::ShareGpt { column } => Example::Chat(field.turns(column, "from", "value")?),
            Schema::Classification { text, label } => Example::Labeled { text: field.text(text, false)?, label: field.label(label)? },
            Schema::Text { column } => Example::Text(field.text(column, false)?),
        })
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schema::Pairs { prompt, response, system } => {
                write!(f, "instruction pairs {prompt}/{response}")?;
                system.as_ref().map_or(Ok(()), |s| write!(f, " (system: {s})"))
            }
            Schema::Alpaca { .. } => write!(f, "Alpaca instruction/input/output"),
            Schema::Messages { column } => write!(f, "chat messages in `{column}` (role/content)"),
            Schema::ShareGpt { column } => write!(f, "ShareGPT conversations in `{column}` (from/value)"),
            Schema::Classification { text, label } => write!(f, "classification {text}/{label}"),
            Schema::Text { column } => write!(f, "raw text in `{column}`"),
        }
    }
}

/// Typed access to one row's fields, with errors naming the row and the field.
struct Field<'a> {
    row: &'a Map<String, Value>,
    location: &'a str,
}

impl Field<'_> {
    fn error(&self, message: String) -> Error {
        Error::Data { location: self.location.into(), message }
    }

    fn get(&self, name: &str, optional: bool) -> Result<Option<&Value>> {
        match self.row.get(name) {
            None if optional => Ok(None),
            None => {
                let mut found: Vec<&str> = self.row.keys().map(String::as_str).collect();
                found.sort_unstable();
                Err(self.error(format!("missing field `{name}`; fields found: {}", found.join(", "))))
            }
            Some(Value::Null) => Ok(None),
            Some(v) => Ok(Some(v)),
        }
    }

    fn text(&self, name: &str, optional: bool) -> Result<String> {
        match self.get(name, optional)? {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(self.error(format!("field `{name}`: expected a string, found {}", describe(other)))),
        }
    }

    fn label(&self, name: &str) -> Result<String> {
        match self.get(name, false)? {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
            Some(other) => Err(self.error(format!("field `{name}`: expected a string or integer label, found {}", describe(other)))),
        }
    }

    /// A list of turns `{role_key, content_key}`; ShareGPT speaker names become chat roles.
    fn turns(&self, name: &str, role_key: &str, content_key: &str) -> Result<Vec<ChatMessage>> {
        let Some(value) = self.get(name, false)? else { return Ok(Vec::new()) };
        let Value::Array(items) = value else {
            return Err(self.error(format!("field `{name}`: expected a list of {{{role_key}, {content_key}}} turns, found {}", describe(value))));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = |what: String| self.error(format!("field `{name}`[{i}]: {what}"));
                let Value::Object(turn) = item else {
                    return Err(at(format!("expected an object with `{role_key}` and `{content_key}`, found {}", describe(item))));
                };
                let role = match turn.get(role_key) {
                    Some(Value::String(r)) => chat_role(r).ok_or_else(|| at(format!("unknown {role_key} `{r}` (expected system, user/human or assistant/gpt)")))?,
                    other => return Err(at(format!("`{role_key}`: expected a string, found {}", other.map_or("nothing".into(), describe)))),
                };
                let content = match turn.get(content_key) {
                    Some(Value::String(c)) => c.clone(),
                    None | Some(Value::Null) => String::new(),
                    Some(other) => return Err(at(format!("`{content_key}`: expected a string, found {}", describe(other)))),
                };
                Ok(ChatMessage::new(role, content))
            })
            .collect()
    }
}

/// Maps chat roles and ShareGPT speakers to the roles chat templates know.
fn chat_role(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "system" => Some("system"),
        "user" | "human" => Some("user"),
        "assistant" | "gpt" | "chatgpt" | "bot" | "model" => Some("assistant"),
        "tool" => Some("tool"),
        _ => None,
    }
}

/// "number 3.5", "list", … for type errors.
pub(crate) fn describe(value: &Value) -> String {
    let shorten = |s: String| if s.chars().count() > 40 { format!("{}…", s.chars().take(39).collect::<String>()) } else { s };
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {}", shorten(format!("{s:?}"))),
        Value::Array(a) => format!("a list of {} items", a.len()),
        Value::Object(_) => format!("an object {}", shorten(value.to_string())),
    }
}
