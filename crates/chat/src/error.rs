//! Why a conversation cannot be scored: the one vocabulary of refusals every crate and the server's
//! error codes use.

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
