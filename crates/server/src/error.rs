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

impl ApiError {
    /// HTTP status and stable snake_case code: the only mapping from errors to statuses.
    pub fn status_and_code(&self) -> (u16, &'static str) {
        match self {
            Self::MalformedJson(_) => (400, "malformed_json"),
            Self::Unauthorized => (401, "unauthorized"),
            Self::PayloadTooLarge(_) => (413, "payload_too_large"),
            Self::InvalidConversation(
                c @ (ConversationError::TooLong { .. } | ConversationError::TextTooLong { .. }),
            ) => (413, c.code()),
            Self::InputTooLong(_) => (413, "input_too_long"),
            Self::InvalidConversation(c) => (422, c.code()),
            Self::InvalidRequest(_) => (422, "invalid_request"),
            Self::PairwiseModel(_) => (422, "pairwise_model"),
            Self::Overloaded { .. } => (429, "overloaded"),
            Self::NotReady(_) => (503, "not_ready"),
            Self::Model(_) => (500, "model_error"),
            Self::NotFound(_) => (404, "not_found"),
            Self::MethodNotAllowed(_) => (405, "method_not_allowed"),
            Self::UnsupportedMediaType => (415, "unsupported_media_type"),
            Self::RequestTimeout(_) => (408, "request_timeout"),
            Self::HeadersTooLarge(_) => (431, "header_fields_too_large"),
            Self::Cancelled => (499, "client_closed_request"),
            Self::Item { source, .. } => source.status_and_code(),
        }
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
        self.status_and_code().1
    }

    pub fn body(&self) -> ErrorBody<'static> {
        ErrorBody { error: ErrorDetail { code: self.code(), message: self.to_string() } }
    }
}
