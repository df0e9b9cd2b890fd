//! The native API: `/score` (one conversation or many), `/rank` (best-of-N labelling for online DPO
//! and rejection sampling) and `/compare` (one preference pair). A pairwise preference model answers
//! `/compare` and `/rank` from its comparisons, and no route that scores responses one at a time.

use std::sync::Arc;

use armorm_model::{Conversation, HeadKind, Prompt, RawMessage};
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
    if state.model.head_kind() == HeadKind::Pairwise {
        return rank_pairwise(&state, req).await;
    }
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
    if state.model.head_kind() == HeadKind::Pairwise {
        refuse_truncation(req.options.truncate)?;
        ResultShape::new(&req.options, state.model.objectives())?;
        let prompt = Prompt::new(messages).map_err(|e| ApiError::from(e).at("messages"))?;
        let (verdicts, timings) = state.compare_pairwise(prompt, vec![chosen, rejected], vec![(0, 1)]).await?;
        let v = verdicts[0];
        let orders = Orders { chosen_first: v.chosen_first, chosen_second: v.chosen_second };
        let body = PairwiseCompared { preference: v.preference, margin: v.margin, orders };
        return Ok(Timed(Json(body), timings).into_response());
    }
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

/// A pairwise preference model's answer to `/compare`: one preference, no per-response scores.
#[derive(Serialize)]
pub struct PairwiseCompared {
    /// P(chosen beats rejected): the mean of both orders' P(chosen).
    preference: f64,
    /// ln(preference / (1 - preference)).
    margin: f64,
    orders: Orders,
}

/// P(chosen) in each order the model read the pair in.
#[derive(Serialize)]
pub struct Orders {
    /// Chosen as response A.
    chosen_first: f64,
    /// Chosen as response B.
    chosen_second: f64,
}

/// `/rank` from a pairwise preference model: every pair compared in both orders.
#[derive(Serialize)]
pub struct PairwiseRanked {
    /// Each response's mean preference over the others.
    scores: Vec<f64>,
    /// `preferences[i][j]` = P(response i beats response j); 0.5 on the diagonal.
    preferences: Vec<Vec<f64>>,
    /// Indices, best first; equal scores keep input order.
    ranking: Vec<usize>,
    best: usize,
    worst: usize,
    /// best score - worst score
    margin: f64,
    /// Forward passes it took: N(N-1).
    comparisons: usize,
}

/// Cutting a comparison's start would cut the markers the model reads it by.
fn refuse_truncation(truncate: bool) -> Result<(), ApiError> {
    if truncate {
        return Err(ApiError::InvalidRequest(
            "\"truncate\" is not available for a pairwise preference model: cutting a comparison would cut its \
             [CONTEXT] marker"
                .into(),
        ));
    }
    Ok(())
}

/// Ranks N responses by all-pairs comparison: N(N-1)/2 pairs, each in both orders.
async fn rank_pairwise(state: &Arc<AppState>, req: RankRequest) -> Result<Response, ApiError> {
    refuse_truncation(req.options.truncate)?;
    ResultShape::new(&req.options, state.model.objectives())?;
    let (prompt, responses) = match (req.messages, req.responses, req.conversations) {
        (Some(prompt), Some(responses), None) => (prompt, responses),
        (None, None, Some(conversations)) => same_prompt(conversations)?,
        _ => {
            return Err(ApiError::InvalidRequest(
                "give \"messages\" (the prompt turns) with \"responses\", or \"conversations\"".into(),
            ))
        }
    };
    let n = responses.len();
    if n < 2 {
        return Err(ApiError::InvalidRequest("a pairwise preference model ranks at least two responses".into()));
    }
    let limit = state.limits.max_rank_pairwise;
    if n > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "ranking {n} responses with a pairwise preference model takes N(N-1) = {} forward passes; this server \
             ranks at most {limit} (--max-rank-pairwise): send fewer responses",
            n * (n - 1)
        )));
    }
    let prompt = Prompt::new(prompt).map_err(|e| ApiError::from(e).at("messages"))?;
    let pairs: Vec<(usize, usize)> = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).collect();
    let (verdicts, timings) = state.compare_pairwise(prompt, responses, pairs.clone()).await?;
    let mut preferences = vec![vec![0.5; n]; n];
    for (&(i, j), v) in pairs.iter().zip(&verdicts) {
        preferences[i][j] = v.preference;
        preferences[j][i] = v.reversed().preference;
    }
    let scores: Vec<f64> =
        preferences.iter().enumerate().map(|(i, row)| (row.iter().sum::<f64>() - row[i]) / (n - 1) as f64).collect();
    let mut ranking: Vec<usize> = (0..n).collect();
    ranking.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (best, worst) = (ranking[0], ranking[n - 1]);
    let margin = scores[best] - scores[worst];
    let body = PairwiseRanked { scores, preferences, ranking, best, worst, margin, comparisons: n * (n - 1) };
    Ok(Timed(Json(body), timings).into_response())
}

/// The `conversations` form: every conversation must answer the same prompt.
fn same_prompt(conversations: Vec<Vec<RawMessage>>) -> Result<(Vec<RawMessage>, Vec<String>), ApiError> {
    let mut prompt: Option<Vec<RawMessage>> = None;
    let mut responses = Vec::with_capacity(conversations.len());
    for (i, mut conversation) in conversations.into_iter().enumerate() {
        let at = format!("conversations[{i}]");
        let last = conversation.pop().filter(|m| m.role == "assistant").ok_or_else(|| {
            ApiError::InvalidRequest("each conversation must end with the assistant's response".into()).at(&at)
        })?;
        match &prompt {
            Some(p) if *p != conversation => {
                return Err(ApiError::InvalidRequest(
                    "a pairwise preference model compares responses to one prompt: every conversation must have \
                     the same turns before its response"
                        .into(),
                )
                .at(at))
            }
            Some(_) => {}
            None => prompt = Some(conversation),
        }
        responses.push(last.content);
    }
    Ok((prompt.unwrap_or_default(), responses))
}
