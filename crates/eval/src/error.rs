//! The evaluation crate's one error type.

use std::path::Path;

use armorm_data::error::IoError;
use armorm_data::DataError;
use armorm_model::ModelError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EvalError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{0}")]
    Invalid(String),
}

impl EvalError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        IoError::new(path, source).into()
    }
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;
