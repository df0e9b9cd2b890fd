//! The one error type of the model crate. The server decides which HTTP status each variant means.

use thiserror::Error;

pub use armorm_chat::ConversationError;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error(transparent)]
    Conversation(#[from] ConversationError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("unsupported configuration: {0}")]
    UnsupportedConfig(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("downloading from the Hugging Face Hub: {0}")]
    Hub(String),
    #[error("not enough memory: {0}")]
    OutOfMemory(String),
    #[error(
        "this is a pairwise preference model: it compares two responses to one prompt (/compare, /rank) and \
         gives no score to a response alone"
    )]
    PairwiseModel,
    #[error("tensor computation: {0}")]
    Compute(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

impl ModelError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io { path: path.display().to_string(), source }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl From<armorm_hub::HubError> for ModelError {
    fn from(e: armorm_hub::HubError) -> Self {
        Self::Hub(e.0)
    }
}
