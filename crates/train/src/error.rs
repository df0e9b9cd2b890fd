//! The training crate's one error type. Data errors already name their file and line; the rest say
//! which file or which flag is wrong.

use std::path::{Path, PathBuf};

use armorm_data::error::IoError;
use armorm_data::DataError;
use armorm_model::ModelError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Io(#[from] IoError),
    /// A file this crate wrote (features, stage outputs) is not what it should be.
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    /// Flags or inputs that cannot work together.
    #[error("{0}")]
    Invalid(String),
}

impl TrainError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        IoError::new(path, source).into()
    }

    pub fn corrupt(path: &Path, message: impl Into<String>) -> Self {
        Self::Corrupt { path: path.to_path_buf(), message: message.into() }
    }

    /// One row's fault (the rest of the data can still be read).
    pub fn is_row_error(&self) -> bool {
        matches!(self, Self::Data(e) if e.at().is_some())
    }
}

impl From<safetensors::SafeTensorError> for TrainError {
    fn from(e: safetensors::SafeTensorError) -> Self {
        Self::Invalid(format!("safetensors: {e}"))
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
