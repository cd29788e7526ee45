//! The library's error type: every message says what was expected, what was found, and where.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config {path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("config key `{key}`: {message}")]
    ConfigValue { key: String, message: String },

    #[error("{path}: {reason}")]
    Image { path: PathBuf, reason: String },

    #[error("dataset {path}: {message}")]
    Dataset { path: PathBuf, message: String },

    #[error("model {path}: {message}")]
    Model { path: PathBuf, message: String },

    #[error("model does not match the data: {0}")]
    ModelMismatch(String),

    #[error("{method} is not supported for this model, because {reason}")]
    Unsupported { method: String, reason: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The audit's database writer closed its channel: it stopped on an error, which
    /// `store::Writer::finish` returns; the caller reports that cause instead of this.
    #[error("the database writer stopped")]
    WriterStopped,

    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
    pub fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::ConfigValue {
            key: key.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
