//! The data crate's one error type. Each variant says which file, and where in it, is at fault.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::rows::RowRef;

/// An I/O failure on one file, naming it: the one such error the data, train and eval crates share.
#[derive(Debug, Error)]
#[error("{}: {source}", path.display())]
pub struct IoError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    pub fn new(path: &Path, source: std::io::Error) -> Self {
        Self { path: path.to_path_buf(), source }
    }
}

#[derive(Debug, Error)]
pub enum DataError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{}: not a readable Parquet file: {message}", path.display())]
    Parquet { path: PathBuf, message: String },
    #[error("{}: the file has no rows", path.display())]
    Empty { path: PathBuf },
    /// A data flag that names nothing readable: a missing file, an empty glob, a Hub dataset or
    /// split that is not there.
    #[error("{0}")]
    Source(String),
    /// One row is wrong; the message says what was expected.
    #[error("{at}: {message}")]
    Row { at: RowRef, message: String },
}

impl DataError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        IoError::new(path, source).into()
    }

    pub fn row(at: &RowRef, message: impl Into<String>) -> Self {
        Self::Row { at: at.clone(), message: message.into() }
    }

    /// The row at fault when the error is one row's (the rest of the data may still be read);
    /// `None` when the data cannot be read at all.
    pub fn at(&self) -> Option<&RowRef> {
        match self {
            Self::Row { at, .. } => Some(at),
            _ => None,
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
