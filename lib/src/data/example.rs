//! The one internal form every schema maps to.
use crate::tokenizer::ChatMessage;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a dataset is for: it decides how examples are tokenized and what the labels are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataKind {
    /// Conversations (instruction pairs, Alpaca, chat messages, ShareGPT) for supervised fine-tuning.
    Chat,
    /// Texts with a class label.
    Classification,
    /// Raw text for continued pre-training.
    Text,
}

impl fmt::Display for DataKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataKind::Chat => "chat",
            DataKind::Classification => "classification",
            DataKind::Text => "text",
        })
    }
}

/// One example. Instruction pairs become a two-message [`Example::Chat`] (user, assistant).
///
/// ```
/// use tunebook::data::Example;
/// let ex = Example::pair("What is 2 + 2?", "4");
/// assert_eq!(ex.chars(), 15);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Example {
    Chat(Vec<ChatMessage>),
    Labeled { text: String, label: String },
    Text(String),
}

impl Example {
    /// A user prompt and the assistant's response.
    pub fn pair(prompt: impl Into<String>, response: impl Into<String>) -> Self {
        Example::Chat(vec![ChatMessage::user(prompt), ChatMessage::assistant(response)])
    }

    pub fn chat(messages: Vec<ChatMessage>) -> Self {
        Example::Chat(messages)
    }

    /// A text and its class label (integer labels are written as their decimal string).
    pub fn labeled(text: impl Into<String>, label: impl ToString) -> Self {
        Example::Labeled { text: text.into(), label: label.to_string() }
    }

    pub fn text(text: impl Into<String>) -> Self {
        Example::Text(text.into())
    }

    pub fn kind(&self) -> DataKind {
        match self {
            Example::Chat(_) => DataKind::Chat,
            Example::Labeled { .. } => DataKind::Classification,
            Example::Text(_) => DataKind::Text,
        }
    }

    /// The class label, for classification examples.
    pub fn label(&self) -> Option<&str> {
        match self {
            Example::Labeled { label, .. } => Some(label),
            _ => None,
        }
    }

    /// The first user message of a conversation: what to ask a model to compare its answer
    /// with [`Example::response`].
    ///
    /// ```
    /// use tunebook::data::Example;
    /// let ex = Example::pair("What is 2 + 2?", "4");
    /// assert_eq!((ex.prompt(), ex.response()), (Some("What is 2 + 2?"), Some("4")));
    /// assert_eq!(Example::text("plain").prompt(), None);
    /// ```
    pub fn prompt(&self) -> Option<&str> {
        match self {
            Example::Chat(messages) => messages.iter().find(|m| m.role == "user").map(|m| m.content.as_str()),
            _ => None,
        }
    }

    /// The last assistant message of a conversation: the reference answer.
    pub fn response(&self) -> Option<&str> {
        match self {
            Example::Chat(messages) => messages.iter().rev().find(|m| m.role == "assistant").map(|m| m.content.as_str()),
            _ => None,
        }
    }

    /// The texts a model reads (message contents, or the text), without the label.
    pub fn texts(&self) -> Vec<&str> {
        match self {
            Example::Chat(messages) => messages.iter().map(|m| m.content.as_str()).collect(),
            Example::Labeled { text, .. } | Example::Text(text) => vec![text.as_str()],
        }
    }

    /// Applies `f` to every text (message contents, or the text); labels and roles are kept.
    pub(crate) fn map_texts(&mut self, mut f: impl FnMut(&str) -> String) {
        match self {
            Example::Chat(messages) => messages.iter_mut().for_each(|m| m.content = f(&m.content)),
            Example::Labeled { text, .. } | Example::Text(text) => *text = f(text),
        }
    }

    /// Length in characters (Unicode scalar values) of all texts together.
    pub fn chars(&self) -> usize {
        self.texts().iter().map(|t| t.chars().count()).sum()
    }

    /// A one-line preview for reports: roles and texts, shortened to about `max` characters.
    pub fn preview(&self, max: usize) -> String {
        let full = match self {
            Example::Chat(messages) => messages.iter().map(|m| format!("{}: {}", m.role, m.content)).collect::<Vec<_>>().join(" | "),
            Example::Labeled { text, label } => format!("[{label}] {text}"),
            Example::Text(text) => text.clone(),
        };
        let flat: String = full.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        if flat.chars().count() <= max {
            return flat;
        }
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
