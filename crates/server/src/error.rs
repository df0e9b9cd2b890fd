//! The server crate's one error type, and the one place that maps errors to HTTP status codes and
//! stable machine-readable codes. Every error body is `{"error": {"code": ..., "message": ...}}`.

use armorm_model::{ConversationError, ModelError};
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("malformed request body: {0}")]
    MalformedJson(String),
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error(transparent)]
    InvalidConversation(#[from] ConversationError),
    /// Over the server's input limit, said with where the limit comes from and what to do.
    #[error("{0}")]
    InputTooLong(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the server is overloaded; retry after {retry_after_s} s")]
    Overloaded { retry_after_s: u64 },
    #[error("{0}")]
    NotReady(String),
    #[error("model failure: {0}")]
    Model(String),
    #[error("no route for {0}")]
    NotFound(String),
    #[error("{0} is not allowed on this route")]
    MethodNotAllowed(String),
    #[error("request bodies must be JSON: send `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    HeadersTooLarge(String),
    /// A single-response route asked of a pairwise preference model.
    #[error("{0} (this route scores responses one at a time: use /compare or /rank)")]
    PairwiseModel(ModelError),
    /// The client went away; nobody reads this answer, but metrics count it.
    #[error("the client closed the request")]
    Cancelled,
    /// One item of a multi-item request; status and code are the item's own. `at` names it as the
    /// request did (`conversations[2]`, `responses[0]`, `chosen`, ...).
    #[error("{at}: {source}")]
    Item { at: String, source: Box<ApiError> },
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Conversation(c) => Self::InvalidConversation(c),
            e @ ModelError::PairwiseModel => Self::PairwiseModel(e),
            // Templates raise on conversations they do not accept (e.g. roles out of order).
            ModelError::Template(msg) => {
                Self::InvalidRequest(format!("chat template rejected the conversation: {msg}"))
            }
            other => Self::Model(other.to_string()),
        }
    }
}

#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize)]
pub struct ErrorDetail<'a> {
    pub code: &'a str,
    pub message: String,
}

/// Every error code the server answers with, with its HTTP status and its wire name: the one list
/// the status mapping, the metrics and the docs (openapi.yaml, README; held by a test) use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    MalformedJson,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    InputTooLong,
    UnsupportedMediaType,
    InvalidRequest,
    EmptyConversation,
    UnknownRole,
    LastTurnNotAssistant,
    GatingPatternNotFound,
    TokenOutOfRange,
    SpecialTokenInContent,
    PairwiseModel,
    Overloaded,
    HeaderFieldsTooLarge,
    ClientClosedRequest,
    ModelError,
    NotReady,
}

impl ErrorCode {
    pub const ALL: [Self; 21] = [
        Self::MalformedJson,
        Self::Unauthorized,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::PayloadTooLarge,
        Self::InputTooLong,
        Self::UnsupportedMediaType,
        Self::InvalidRequest,
        Self::EmptyConversation,
        Self::UnknownRole,
        Self::LastTurnNotAssistant,
        Self::GatingPatternNotFound,
        Self::TokenOutOfRange,
        Self::SpecialTokenInContent,
        Self::PairwiseModel,
        Self::Overloaded,
        Self::HeaderFieldsTooLarge,
        Self::ClientClosedRequest,
        Self::ModelError,
        Self::NotReady,
    ];

    pub fn status(self) -> u16 {
        match self {
            Self::MalformedJson => 400,
            Self::Unauthorized => 401,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::PayloadTooLarge | Self::InputTooLong => 413,
            Self::UnsupportedMediaType => 415,
            Self::InvalidRequest
            | Self::EmptyConversation
            | Self::UnknownRole
            | Self::LastTurnNotAssistant
            | Self::GatingPatternNotFound
            | Self::TokenOutOfRange
            | Self::SpecialTokenInContent
            | Self::PairwiseModel => 422,
            Self::Overloaded => 429,
            Self::HeaderFieldsTooLarge => 431,
            Self::ClientClosedRequest => 499,
            Self::ModelError => 500,
            Self::NotReady => 503,
        }
    }

    /// The snake_case name clients read in `{"error": {"code": ...}}`.
    pub fn name(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::PayloadTooLarge => "payload_too_large",
            Self::InputTooLong => "input_too_long",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidRequest => "invalid_request",
            Self::EmptyConversation => "empty_conversation",
            Self::UnknownRole => "unknown_role",
            Self::LastTurnNotAssistant => "last_turn_not_assistant",
            Self::GatingPatternNotFound => "gating_pattern_not_found",
            Self::TokenOutOfRange => "token_out_of_range",
            Self::SpecialTokenInContent => "special_token_in_content",
            Self::PairwiseModel => "pairwise_model",
            Self::Overloaded => "overloaded",
            Self::HeaderFieldsTooLarge => "header_fields_too_large",
            Self::ClientClosedRequest => "client_closed_request",
            Self::ModelError => "model_error",
            Self::NotReady => "not_ready",
        }
    }

    /// A conversation's refusal, as the model crate names it.
    fn of_conversation(e: &ConversationError) -> Self {
        match e {
            ConversationError::Empty => Self::EmptyConversation,
            ConversationError::UnknownRole { .. } => Self::UnknownRole,
            ConversationError::LastTurnNotAssistant { .. } => Self::LastTurnNotAssistant,
            ConversationError::GatingPatternNotFound { .. } => Self::GatingPatternNotFound,
            ConversationError::TooLong { .. } | ConversationError::TextTooLong { .. } => Self::InputTooLong,
            ConversationError::TokenOutOfRange { .. } => Self::TokenOutOfRange,
            ConversationError::SpecialTokenInContent { .. } | ConversationError::NoPlaceholderLeft => {
                Self::SpecialTokenInContent
            }
        }
    }
}

impl ApiError {
    /// This error's code (and so its HTTP status): the only mapping from errors to statuses.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::MalformedJson(_) => ErrorCode::MalformedJson,
            Self::Unauthorized => ErrorCode::Unauthorized,
            Self::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::InputTooLong(_) => ErrorCode::InputTooLong,
            Self::InvalidConversation(c) => ErrorCode::of_conversation(c),
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::PairwiseModel(_) => ErrorCode::PairwiseModel,
            Self::Overloaded { .. } => ErrorCode::Overloaded,
            Self::NotReady(_) => ErrorCode::NotReady,
            Self::Model(_) => ErrorCode::ModelError,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            Self::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Self::RequestTimeout(_) => ErrorCode::RequestTimeout,
            Self::HeadersTooLarge(_) => ErrorCode::HeaderFieldsTooLarge,
            Self::Cancelled => ErrorCode::ClientClosedRequest,
            Self::Item { source, .. } => source.error_code(),
        }
    }

    /// HTTP status and stable snake_case code.
    pub fn status_and_code(&self) -> (u16, &'static str) {
        let code = self.error_code();
        (code.status(), code.name())
    }

    /// The seconds a client should wait before retrying, for errors that are worth retrying.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            Self::Overloaded { retry_after_s } => Some(*retry_after_s),
            Self::Item { source, .. } => source.retry_after_s(),
            _ => None,
        }
    }

    /// This error, as the error of the request's item `at`.
    pub fn at(self, at: impl Into<String>) -> Self {
        Self::Item { at: at.into(), source: Box::new(self) }
    }

    /// Converts every item of the request's list `field`; the first failure names its index.
    pub fn per_item<T, U>(
        field: &'static str,
        items: impl IntoIterator<Item = T>,
        mut convert: impl FnMut(T) -> Result<U, ApiError>,
    ) -> Result<Vec<U>, ApiError> {
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| convert(item).map_err(|e| e.at(format!("{field}[{i}]"))))
            .collect()
    }

    /// A single-item request has no list to index into: the item's own error.
    pub fn unwrap_item(self) -> Self {
        match self {
            Self::Item { source, .. } => *source,
            other => other,
        }
    }

    pub fn code(&self) -> &'static str {
        self.error_code().name()
    }

    pub fn body(&self) -> ErrorBody<'static> {
        ErrorBody { error: ErrorDetail { code: self.code(), message: self.to_string() } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_codes_are_the_model_crates_names() {
        let refusals = [
            ConversationError::Empty,
            ConversationError::UnknownRole { index: 0, role: "x".into() },
            ConversationError::LastTurnNotAssistant { role: "user".into() },
            ConversationError::GatingPatternNotFound { pattern: vec![1] },
            ConversationError::TooLong { len: 2, max: 1 },
            ConversationError::TextTooLong { bytes: 2, max: 1, max_token_bytes: 1 },
            ConversationError::TokenOutOfRange { id: 9, vocab: 1 },
            ConversationError::SpecialTokenInContent { index: 0, token: "<s>".into() },
            ConversationError::NoPlaceholderLeft,
        ];
        for e in refusals {
            assert_eq!(ErrorCode::of_conversation(&e).name(), e.code(), "{e}");
        }
        let names: std::collections::BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "names are unique");
    }
}
