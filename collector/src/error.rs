use std::path::Path;

/// Errors of the collector, sorted by whose fault they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client sent something that is not valid (maps to HTTP 400).
    #[error("{0}")]
    BadInput(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Stored data does not have the expected form.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Anything else (a bug, or a library failing).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io { path: path.display().to_string(), source }
    }
}

impl From<pharos_model::Error> for Error {
    fn from(e: pharos_model::Error) -> Self {
        Error::BadInput(e.to_string())
    }
}

impl From<parquet::errors::ParquetError> for Error {
    fn from(e: parquet::errors::ParquetError) -> Self {
        Error::Internal(format!("parquet: {e}"))
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::Internal(format!("arrow: {e}"))
    }
}

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Self {
        Error::Internal(format!("tantivy: {e}"))
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
