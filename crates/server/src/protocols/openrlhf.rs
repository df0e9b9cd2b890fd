//! OpenRLHF's remote reward model protocol: `POST /get_reward` with the policy's rendered queries.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::score_plain;
use crate::error::ApiError;
use crate::http::{ApiJson, Timed};
use crate::input::ScoreInput;
use crate::state::{AppState, ItemNames, Timings};

/// OpenRLHF also sends `prompts` and `labels`; the query already holds the prompt, and a reward
/// model has no use for labels, so both are accepted and ignored.
#[derive(Deserialize)]
pub struct GetRewardRequest {
    /// Full conversations (prompt + response) rendered with the policy's chat template.
    query: Vec<String>,
    /// Checked for shape only (the spec's contract), then ignored.
    #[serde(default, rename = "prompts", deserialize_with = "crate::input::present")]
    _prompts: Option<Vec<String>>,
    #[serde(default, rename = "labels", deserialize_with = "crate::input::present")]
    _labels: Option<Vec<serde_json::Value>>,
    /// Not sent by OpenRLHF; lets a deployment opt in to left-truncation.
    #[serde(default)]
    truncate: bool,
}

#[derive(Serialize)]
pub struct GetRewardResponse {
    /// The raw reward-model score (what the policy is optimised on).
    rewards: Vec<f32>,
    /// The same raw scores: OpenRLHF's own reward server sends `scores == rewards`, and its dynamic
    /// filtering reads this field, so a different value here would change what it filters.
    scores: Vec<f32>,
    /// Per-objective rewards, one list per objective (empty for single-score models).
    extra_logs: BTreeMap<String, Vec<f32>>,
}

pub async fn get_reward(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<GetRewardRequest>,
) -> Result<Response, ApiError> {
    // OpenRLHF shards a batch across servers and may send an empty shard.
    let inputs = ApiError::per_item("query", &req.query, |q| ScoreInput::from_chat_text(q))?;
    let (results, timings) = if inputs.is_empty() {
        (Vec::new(), Timings::default())
    } else {
        score_plain(&state, inputs, ItemNames::List("query"), req.truncate).await?
    };
    let mut extra_logs: BTreeMap<String, Vec<f32>> =
        state.model.objectives().iter().map(|name| (name.clone(), Vec::with_capacity(results.len()))).collect();
    for r in &results {
        if let Some(o) = &r.output.objectives {
            for (name, reward) in state.model.objectives().iter().zip(&o.rewards) {
                extra_logs.entry(name.clone()).or_default().push(*reward);
            }
        }
    }
    let rewards: Vec<f32> = results.iter().map(|r| r.output.score).collect();
    Ok(Timed(Json(GetRewardResponse { scores: rewards.clone(), rewards, extra_logs }), timings).into_response())
}
