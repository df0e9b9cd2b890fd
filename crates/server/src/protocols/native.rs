//! `/rank` (best-of-N labelling for online DPO and rejection sampling) and `/compare` (one
//! preference pair).

use std::sync::Arc;

use armorm_model::{Conversation, RawMessage};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::sigmoid;
use crate::error::ApiError;
use crate::http::{with_timings, ApiJson};
use crate::input::ScoreInput;
use crate::routes::score_many;
use crate::state::AppState;
use crate::types::{ResultShape, ScoreOptions, ScoreResult};

/// The prompt turns followed by `response` as the assistant's turn.
fn answered(prompt: &[RawMessage], response: String) -> Result<Conversation, ApiError> {
    let mut messages = prompt.to_vec();
    messages.push(RawMessage { role: "assistant".into(), content: response });
    Ok(Conversation::new(messages)?)
}

#[derive(Deserialize)]
pub struct RankRequest {
    messages: Option<Vec<RawMessage>>,
    responses: Option<Vec<String>>,
    conversations: Option<Vec<Vec<RawMessage>>>,
    #[serde(flatten)]
    options: ScoreOptions,
}

#[derive(Serialize)]
pub struct Ranked {
    results: Vec<ScoreResult>,
    /// Indices, best first; equal scores keep input order.
    ranking: Vec<usize>,
    best: usize,
    worst: usize,
    /// best score - worst score
    margin: f32,
}

pub async fn rank(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<RankRequest>,
) -> Result<Response, ApiError> {
    let conversations: Vec<Conversation> = match (req.messages, req.responses, req.conversations) {
        (Some(prompt), Some(responses), None) => ApiError::per_item(responses, |r| answered(&prompt, r))?,
        (None, None, Some(conversations)) => ApiError::per_item(conversations, |m| Ok(Conversation::new(m)?))?,
        _ => {
            return Err(ApiError::InvalidRequest(
                "give \"messages\" (the prompt turns) with \"responses\", or \"conversations\"".into(),
            ))
        }
    };
    if conversations.is_empty() {
        return Err(ApiError::InvalidRequest("nothing to rank".into()));
    }
    let shape = ResultShape::new(&req.options, state.model.objectives())?;
    let inputs = conversations.into_iter().map(ScoreInput::Conversation).collect();
    let (results, timings) = score_many(&state, inputs, req.options.truncate, &shape).await?;
    let mut ranking: Vec<usize> = (0..results.len()).collect();
    ranking.sort_by(|&a, &b| results[b].output.score.total_cmp(&results[a].output.score));
    let (best, worst) = (ranking[0], ranking[ranking.len() - 1]);
    let margin = results[best].output.score - results[worst].output.score;
    Ok(with_timings(Json(Ranked { results, ranking, best, worst, margin }).into_response(), timings))
}

#[derive(Deserialize)]
pub struct CompareRequest {
    messages: Vec<RawMessage>,
    chosen: String,
    rejected: String,
    #[serde(flatten)]
    options: ScoreOptions,
}

#[derive(Serialize)]
pub struct Compared {
    chosen: ScoreResult,
    rejected: ScoreResult,
    /// P(chosen beats rejected) = sigmoid(score_chosen - score_rejected)
    preference: f64,
    margin: f32,
}

pub async fn compare(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<CompareRequest>,
) -> Result<Response, ApiError> {
    let shape = ResultShape::new(&req.options, state.model.objectives())?;
    let inputs = vec![
        ScoreInput::Conversation(answered(&req.messages, req.chosen).map_err(|e| e.in_item(0))?),
        ScoreInput::Conversation(answered(&req.messages, req.rejected).map_err(|e| e.in_item(1))?),
    ];
    let (mut results, timings) = score_many(&state, inputs, req.options.truncate, &shape).await?;
    let (rejected, chosen) = (results.remove(1), results.remove(0));
    let margin = chosen.output.score - rejected.output.score;
    let preference = sigmoid(f64::from(margin));
    Ok(with_timings(Json(Compared { chosen, rejected, preference, margin }).into_response(), timings))
}
