//! Conversation request shapes shared by the HTTP routes and the offline `score` command.

use armorm_model::{Conversation, RawMessage};
use serde::Deserialize;

use crate::error::ApiError;

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
