//! Conversation request shapes shared by the HTTP routes and the offline `score` command, and the
//! one internal input every protocol adapter converts its body into.

use armorm_model::{Conversation, RawMessage};
use serde::Deserialize;

use crate::chat_text;
use crate::error::ApiError;

/// What gets scored: a validated conversation, or token ids a client already produced.
#[derive(Debug, Clone)]
pub enum ScoreInput {
    Conversation(Conversation),
    Ids(Vec<u32>),
}

impl ScoreInput {
    /// Text already rendered with some chat template (a policy's, usually), re-read as messages.
    pub fn from_chat_text(text: &str) -> Result<Self, ApiError> {
        Ok(Self::Conversation(Conversation::new(chat_text::parse(text)?)?))
    }
}

/// The prompt forms OpenAI/vLLM/SGLang clients send: text or token ids, one or many.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdsBatch(Vec<Vec<u32>>),
}

impl PromptInput {
    /// `field` names the request's key in error messages.
    pub fn into_inputs(self, field: &'static str) -> Result<Vec<ScoreInput>, ApiError> {
        let empty_ids = || ApiError::InvalidRequest(format!("{field}: the token id list is empty"));
        match self {
            Self::Text(t) => Ok(vec![ScoreInput::from_chat_text(&t)?]),
            Self::Texts(ts) => ApiError::per_item(field, &ts, |t| ScoreInput::from_chat_text(t)),
            Self::Ids(ids) if ids.is_empty() => Err(empty_ids()),
            Self::Ids(ids) => Ok(vec![ScoreInput::Ids(ids)]),
            Self::IdsBatch(batch) => ApiError::per_item(field, batch, |ids| {
                if ids.is_empty() {
                    Err(ApiError::InvalidRequest("the token id list is empty".into()))
                } else {
                    Ok(ScoreInput::Ids(ids))
                }
            }),
        }
    }
}

/// `{"messages": [...]}` or the `{"prompt": ..., "response": ...}` shorthand.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConversationInput {
    Messages { messages: Vec<RawMessage> },
    PromptResponse { prompt: String, response: String },
}

impl ConversationInput {
    pub fn into_conversation(self) -> Result<Conversation, ApiError> {
        match self {
            Self::Messages { messages } => Ok(Conversation::new(messages)?),
            Self::PromptResponse { prompt, response } => Ok(Conversation::from_prompt_response(prompt, response)),
        }
    }
}
