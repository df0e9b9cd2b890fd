//! The one error type of the model crate. The server decides which HTTP status each variant means.

use thiserror::Error;

/// Why a conversation cannot be scored. These are the caller's fault, never the model's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConversationError {
    #[error("the conversation has no messages")]
    Empty,
    #[error("message {index} has unknown role {role:?}; expected system, user or assistant")]
    UnknownRole { index: usize, role: String },
    #[error("the last message must be the assistant's response, but it is a {role} message")]
    LastTurnNotAssistant { role: String },
    #[error(
        "the gating pattern {pattern:?} (the tokens that open the final assistant turn) does not occur in \
         the encoded conversation; ArmoRM needs a prompt turn before the assistant's response"
    )]
    GatingPatternNotFound { pattern: Vec<u32> },
    #[error("the conversation is {len} tokens long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error(
        "the conversation is {bytes} bytes of text, more than {max} tokens even at the tokenizer's longest \
         token ({max_token_bytes} bytes)"
    )]
    TextTooLong { bytes: usize, max: usize, max_token_bytes: usize },
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("message {index} contains the special token {token:?}, which this server refuses in content")]
    SpecialTokenInContent { index: usize, token: String },
    #[error("the content uses every private-use character, so its special-token text cannot be kept literal")]
    NoPlaceholderLeft,
}

impl ConversationError {
    /// Stable snake_case code for machine consumers (JSON error bodies, JSONL output).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty_conversation",
            Self::UnknownRole { .. } => "unknown_role",
            Self::LastTurnNotAssistant { .. } => "last_turn_not_assistant",
            Self::GatingPatternNotFound { .. } => "gating_pattern_not_found",
            Self::TooLong { .. } | Self::TextTooLong { .. } => "input_too_long",
            Self::SpecialTokenInContent { .. } | Self::NoPlaceholderLeft => "special_token_in_content",
            Self::TokenOutOfRange { .. } => "token_out_of_range",
        }
    }
}

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
