//! OpenRLHF's remote reward model protocol: `POST /get_reward` with the policy's rendered queries.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{score_plain, sigmoid};
use crate::error::ApiError;
use crate::http::ApiJson;
use crate::input::ScoreInput;
use crate::state::AppState;

/// OpenRLHF also sends `prompts` and `labels`; the query already holds the prompt, and a reward
/// model has no use for labels, so both are accepted and ignored.
#[derive(Deserialize)]
pub struct GetRewardRequest {
    /// Full conversations (prompt + response) rendered with the policy's chat template.
    query: Vec<String>,
    /// Not sent by OpenRLHF; lets a deployment opt in to left-truncation.
    #[serde(default)]
    truncate: bool,
}

#[derive(Serialize)]
pub struct GetRewardResponse {
    /// The raw reward-model score (what the policy is optimised on).
    rewards: Vec<f32>,
    /// sigmoid(score), in [0, 1], for OpenRLHF's dynamic filtering.
    scores: Vec<f64>,
    /// Per-objective rewards, one list per objective (empty for single-score models).
    extra_logs: BTreeMap<String, Vec<f32>>,
}

pub async fn get_reward(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<GetRewardRequest>,
) -> Result<Json<GetRewardResponse>, ApiError> {
    // OpenRLHF shards a batch across servers and may send an empty shard.
    let inputs = ApiError::per_item(&req.query, |q| ScoreInput::from_chat_text(q))?;
    let results = if inputs.is_empty() { Vec::new() } else { score_plain(&state, inputs, req.truncate).await? };
    let mut extra_logs: BTreeMap<String, Vec<f32>> =
        state.model.objectives().iter().map(|name| (name.clone(), Vec::with_capacity(results.len()))).collect();
    for r in &results {
        if let Some(o) = &r.output.objectives {
            for (name, reward) in state.model.objectives().iter().zip(&o.rewards) {
                extra_logs.entry(name.clone()).or_default().push(*reward);
            }
        }
    }
    Ok(Json(GetRewardResponse {
        rewards: results.iter().map(|r| r.output.score).collect(),
        scores: results.iter().map(|r| sigmoid(f64::from(r.output.score))).collect(),
        extra_logs,
    }))
}
