//! The native API: `/score` (one conversation or many), `/rank` (best-of-N labelling for online DPO
//! and rejection sampling) and `/compare` (one preference pair).

use std::sync::Arc;

use armorm_model::{Conversation, RawMessage};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::sigmoid;
use crate::error::ApiError;
use crate::http::{ApiJson, Timed};
use crate::input::ScoreInput;
use crate::state::{AppState, ItemNames};
use crate::types::{ResultShape, ScoreOptions, ScoreRequest, ScoreResult, ScoreResults, ScoreTarget};

pub async fn score(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<ScoreRequest>,
) -> Result<Response, ApiError> {
    req.options.reject_unknown(&["messages", "prompt", "response", "conversations"])?;
    let (target, options) = req.into_target()?;
    let shape = ResultShape::new(&options, state.model.objectives())?;
    match target {
        ScoreTarget::One(conversation) => {
            let input = vec![ScoreInput::Conversation(conversation)];
            let (mut results, timings) = state
                .score(input, ItemNames::List("conversations"), options.truncate, &shape)
                .await
                .map_err(ApiError::unwrap_item)?;
            Ok(Timed(Json(results.remove(0)), timings).into_response())
        }
        ScoreTarget::Many(conversations) => {
            let inputs = conversations.into_iter().map(ScoreInput::Conversation).collect();
            let (results, timings) =
                state.score(inputs, ItemNames::List("conversations"), options.truncate, &shape).await?;
            Ok(Timed(Json(ScoreResults { results }), timings).into_response())
        }
    }
}

/// The prompt turns followed by `response` as the assistant's turn.
fn answered(prompt: &[RawMessage], response: String) -> Result<Conversation, ApiError> {
    let mut messages = prompt.to_vec();
    messages.push(RawMessage { role: "assistant".into(), content: response });
    Ok(Conversation::new(messages)?)
}

#[derive(Deserialize)]
pub struct RankRequest {
    #[serde(default, deserialize_with = "crate::input::present")]
    messages: Option<Vec<RawMessage>>,
    #[serde(default, deserialize_with = "crate::input::present")]
    responses: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::input::present")]
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
    req.options.reject_unknown(&["messages", "responses", "conversations"])?;
    let (conversations, names): (Vec<Conversation>, _) = match (req.messages, req.responses, req.conversations) {
        (Some(prompt), Some(responses), None) => {
            (ApiError::per_item("responses", responses, |r| answered(&prompt, r))?, ItemNames::List("responses"))
        }
        (None, None, Some(conversations)) => (
            ApiError::per_item("conversations", conversations, |m| Ok(Conversation::new(m)?))?,
            ItemNames::List("conversations"),
        ),
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
    let (results, timings) = state.score(inputs, names, req.options.truncate, &shape).await?;
    let mut ranking: Vec<usize> = (0..results.len()).collect();
    ranking.sort_by(|&a, &b| results[b].output.score.total_cmp(&results[a].output.score));
    let (best, worst) = (ranking[0], ranking[ranking.len() - 1]);
    let margin = results[best].output.score - results[worst].output.score;
    Ok(Timed(Json(Ranked { results, ranking, best, worst, margin }), timings).into_response())
}

/// Every field optional to serde, so that a misspelled one is named before a missing one.
#[derive(Deserialize)]
pub struct CompareRequest {
    #[serde(default, deserialize_with = "crate::input::present")]
    messages: Option<Vec<RawMessage>>,
    #[serde(default, deserialize_with = "crate::input::present")]
    chosen: Option<String>,
    #[serde(default, deserialize_with = "crate::input::present")]
    rejected: Option<String>,
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
    req.options.reject_unknown(&["messages", "chosen", "rejected"])?;
    let (Some(messages), Some(chosen), Some(rejected)) = (req.messages, req.chosen, req.rejected) else {
        return Err(ApiError::InvalidRequest("\"messages\", \"chosen\" and \"rejected\" are all required".into()));
    };
    let shape = ResultShape::new(&req.options, state.model.objectives())?;
    let inputs = vec![
        ScoreInput::Conversation(answered(&messages, chosen).map_err(|e| e.at("chosen"))?),
        ScoreInput::Conversation(answered(&messages, rejected).map_err(|e| e.at("rejected"))?),
    ];
    let names = ItemNames::Fixed(&["chosen", "rejected"]);
    let (mut results, timings) = state.score(inputs, names, req.options.truncate, &shape).await?;
    let (rejected, chosen) = (results.remove(1), results.remove(0));
    let margin = chosen.output.score - rejected.output.score;
    let preference = sigmoid(f64::from(margin));
    Ok(Timed(Json(Compared { chosen, rejected, preference, margin }), timings).into_response())
}
