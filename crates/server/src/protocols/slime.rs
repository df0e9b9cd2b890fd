//! slime-style remote reward model: `POST /reward` with one prompt and one response.

use std::collections::BTreeMap;
use std::sync::Arc;

use armorm_model::{Conversation, RawMessage};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::score_plain;
use crate::chat_text;
use crate::error::ApiError;
use crate::http::{ApiJson, Timed};
use crate::input::ScoreInput;
use crate::state::{AppState, ItemNames};

/// The prompt as plain text, as chat text rendered by the policy's template, or as messages.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum SlimePrompt {
    Text(String),
    Messages(Vec<RawMessage>),
}

/// slime may also send `label` (ground truth for rule-based rewards); a reward model ignores it.
#[derive(Deserialize)]
pub struct RewardRequest {
    prompt: SlimePrompt,
    response: String,
    #[serde(default)]
    truncate: bool,
}

#[derive(Serialize)]
pub struct RewardResponse {
    score: f32,
    num_tokens: usize,
    /// Objective name -> reward (empty for single-score models).
    objectives: BTreeMap<String, f32>,
}

pub async fn reward(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<RewardRequest>,
) -> Result<Response, ApiError> {
    let mut messages = match req.prompt {
        SlimePrompt::Messages(m) => m,
        SlimePrompt::Text(t) => match chat_text::parse(&t) {
            Ok(parsed) => parsed,
            // Not chat-formatted: the whole text is the user's turn.
            Err(_) => vec![RawMessage { role: "user".into(), content: t }],
        },
    };
    // A prompt rendered with a generation prompt ends in an empty assistant turn: drop it.
    if messages.last().is_some_and(|m| m.role == "assistant" && m.content.is_empty()) {
        messages.pop();
    }
    messages.push(RawMessage { role: "assistant".into(), content: req.response });
    let input = ScoreInput::Conversation(Conversation::new(messages)?);
    let (mut results, timings) = score_plain(&state, vec![input], ItemNames::List("prompt"), req.truncate)
        .await
        .map_err(ApiError::unwrap_item)?;
    let result = results.remove(0);
    let objectives = match &result.output.objectives {
        Some(o) => state.model.objectives().iter().cloned().zip(o.rewards.iter().copied()).collect(),
        None => BTreeMap::new(),
    };
    let body = RewardResponse { score: result.output.score, num_tokens: result.output.num_tokens, objectives };
    Ok(Timed(Json(body), timings).into_response())
}
