//! One error type for the library; every variant says what was expected and where.
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A file is present but its content is not what was expected.
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    /// A model's config.json or GGUF metadata is missing a field or has a wrong one.
    #[error("config {field}: {message}")]
    Config { field: String, message: String },
    /// A weight is missing or has the wrong shape.
    #[error("tensor {name}: {message}")]
    Tensor { name: String, message: String },
    #[error("unsupported {what}: {name} (supported: {supported})")]
    Unsupported { what: &'static str, name: String, supported: String },
    #[error("model {model}: {message}")]
    ModelNotFound { model: String, message: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("data {location}: {message}")]
    Data { location: String, message: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// Joining a process group or a collective failed (peer gone, timeout, bad launch env).
    #[error("distributed: {0}")]
    Distributed(String),
    /// A chart or image could not be drawn or encoded.
    #[error("rendering {what}: {message}")]
    Render { what: String, message: String },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), message: message.into() }
    }
    pub fn tensor(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Tensor { name: name.into(), message: message.into() }
    }
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { field: field.into(), message: message.into() }
    }
}
