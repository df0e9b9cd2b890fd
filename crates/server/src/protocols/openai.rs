//! OpenAI-style `/v1/embeddings`: verl's SGLang reward path reads the last element as the score.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{objective_vector, score_plain};
use crate::error::ApiError;
use crate::http::{ApiJson, Timed};
use crate::input::PromptInput;
use crate::state::{AppState, ItemNames};

#[derive(Deserialize)]
pub struct EmbeddingsRequest {
    #[serde(default, deserialize_with = "crate::input::present")]
    model: Option<String>,
    input: PromptInput,
    #[serde(default)]
    truncate: bool,
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: usize,
    /// [rewards..., gating..., score]: the score last.
    embedding: Vec<f32>,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

#[derive(Serialize)]
pub struct EmbeddingsResponse {
    object: &'static str,
    data: Vec<Embedding>,
    model: String,
    usage: Usage,
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<EmbeddingsRequest>,
) -> Result<Response, ApiError> {
    let (results, timings) =
        score_plain(&state, req.input.into_inputs("input")?, ItemNames::List("input"), req.truncate).await?;
    let tokens = results.iter().map(|r| r.output.num_tokens).sum();
    let data = results
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let mut embedding = objective_vector(r);
            embedding.push(r.output.score);
            Embedding { object: "embedding", index, embedding }
        })
        .collect();
    let model = req.model.unwrap_or_else(|| state.model.source().id());
    let usage = Usage { prompt_tokens: tokens, total_tokens: tokens };
    Ok(Timed(Json(EmbeddingsResponse { object: "list", data, model, usage }), timings).into_response())
}
