//! The core's one error type. Each variant is a kind the Python layer maps to its own exception
//! class; the message says what failed and names the path, reference or box involved.

use std::path::Path;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("invalid state: {0}")]
    InvalidState(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("configuration error: {0}")]
    Config(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("image error: {0}")]
    Image(String),
    #[error("network error: {0}")]
    Network(String),
    #[error("execution error: {0}")]
    Execution(String),
    #[error("stopped: {0}")]
    Stopped(String),
    #[error("engine error: {0}")]
    Engine(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// This process or host has no room for more (descriptors, id ranges, kept sessions).
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A storage failure on `path` while doing `operation` ("failed to {operation} {path}").
    pub fn storage(operation: &str, path: &Path, source: &std::io::Error) -> Self {
        Self::Storage(format!("failed to {operation} {}: {source}", path.display()))
    }

    /// [`Error::storage`] for `map_err`.
    pub fn storage_at<'a>(operation: &'a str, path: &'a Path) -> impl Fn(std::io::Error) -> Self + 'a {
        move |source| Self::storage(operation, path, &source)
    }
}

/// Tree errors name their path and what failed.
impl From<boxlite_trees::TreeError> for Error {
    fn from(error: boxlite_trees::TreeError) -> Self {
        Self::Storage(error.to_string())
    }
}

impl From<boxlite_trees::files::FileError> for Error {
    fn from(error: boxlite_trees::files::FileError) -> Self {
        use boxlite_trees::files::FileError;
        match error {
            FileError::InvalidArgument(message) => Self::InvalidArgument(message),
            FileError::NotFound(message) => Self::NotFound(message),
            FileError::AlreadyExists(message) => Self::AlreadyExists(message),
            FileError::Config(message) => Self::Config(message),
            FileError::Storage(message) => Self::Storage(message),
        }
    }
}

/// fs-err errors already name their path.
impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Self::Storage(error.to_string())
    }
}
