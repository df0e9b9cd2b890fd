//! vLLM's `/classify` and `/pooling` (what verl's reward loop calls), and SGLang's native
//! `/classify`, which shares vLLM's path and is told apart by its body keys.

use std::sync::Arc;

use armorm_model::RawMessage;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{objective_vector, response_id, score_plain, sigmoid, unix_now};
use crate::error::ApiError;
use crate::http::{ApiJson, Timed};
use crate::input::{PromptInput, ScoreInput};
use crate::state::{AppState, ItemNames};
use crate::types::ScoreResult;

/// `{"model"?, "input": str | [str] | ids | [ids]}` or `{"messages": [...]}`.
#[derive(Deserialize)]
pub struct VllmRequest {
    #[serde(default, deserialize_with = "crate::input::present")]
    model: Option<String>,
    #[serde(default, deserialize_with = "crate::input::present")]
    input: Option<PromptInput>,
    #[serde(default, deserialize_with = "crate::input::present")]
    messages: Option<Vec<RawMessage>>,
    /// vLLM's switch for the classifier's activation; `activation` is its older name.
    #[serde(default, deserialize_with = "crate::input::present")]
    use_activation: Option<bool>,
    #[serde(default, deserialize_with = "crate::input::present")]
    activation: Option<bool>,
    #[serde(default)]
    truncate: bool,
}

impl VllmRequest {
    fn inputs(self) -> Result<(Vec<ScoreInput>, Option<String>, bool, bool), ApiError> {
        let activation = self.use_activation.or(self.activation).unwrap_or(true);
        let inputs = match (self.input, self.messages) {
            (Some(input), None) => input.into_inputs("input")?,
            (None, Some(messages)) => vec![ScoreInput::Conversation(armorm_model::Conversation::new(messages)?)],
            _ => return Err(ApiError::InvalidRequest("give exactly one of \"input\" or \"messages\"".into())),
        };
        Ok((inputs, self.model, activation, self.truncate))
    }
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
    completion_tokens: usize,
}

fn usage(results: &[ScoreResult]) -> Usage {
    let tokens = results.iter().map(|r| r.output.num_tokens).sum();
    Usage { prompt_tokens: tokens, total_tokens: tokens, completion_tokens: 0 }
}

#[derive(Serialize)]
struct ListResponse<T> {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    data: Vec<T>,
    usage: Usage,
}

fn list<T>(kind: &str, model: String, data: Vec<T>, results: &[ScoreResult]) -> ListResponse<T> {
    ListResponse { id: response_id(kind), object: "list", created: unix_now(), model, data, usage: usage(results) }
}

#[derive(Serialize)]
struct ClassifyItem {
    index: usize,
    label: &'static str,
    /// One class: the score, through a sigmoid unless the request turned the activation off.
    probs: [f64; 1],
    num_classes: usize,
}

/// `/v1/classify` (vLLM only).
pub async fn vllm_classify(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<VllmRequest>,
) -> Result<Response, ApiError> {
    classify_vllm(&state, req).await
}

/// `/classify`: SGLang's body (`text` or `input_ids`) or vLLM's (`input` or `messages`).
pub async fn classify(State(state): State<Arc<AppState>>, ApiJson(body): ApiJson<Value>) -> Result<Response, ApiError> {
    let is_sglang = body.get("text").is_some() || body.get("input_ids").is_some();
    let parse_err = |e: serde_json::Error| ApiError::InvalidRequest(e.to_string());
    if is_sglang {
        classify_sglang(&state, serde_json::from_value(body).map_err(parse_err)?).await
    } else {
        classify_vllm(&state, serde_json::from_value(body).map_err(parse_err)?).await
    }
}

async fn classify_vllm(state: &Arc<AppState>, req: VllmRequest) -> Result<Response, ApiError> {
    let (inputs, model, activation, truncate) = req.inputs()?;
    let (results, timings) = score_plain(state, inputs, ItemNames::List("input"), truncate).await?;
    let data = results
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let score = f64::from(r.output.score);
            ClassifyItem {
                index,
                label: "LABEL_0",
                probs: [if activation { sigmoid(score) } else { score }],
                num_classes: 1,
            }
        })
        .collect();
    let model = model.unwrap_or_else(|| state.model.source().id());
    Ok(Timed(Json(list("classify", model, data, &results)), timings).into_response())
}

#[derive(Serialize)]
struct PoolingItem {
    index: usize,
    object: &'static str,
    /// [score, rewards..., gating...]; `GET /info` documents the layout.
    data: Vec<f32>,
}

/// The vector `/pooling` returns, in the layout `/info` documents.
pub fn pooled(r: &ScoreResult) -> Vec<f32> {
    let mut v = vec![r.output.score];
    v.extend(objective_vector(r));
    v
}

pub async fn pooling(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<VllmRequest>,
) -> Result<Response, ApiError> {
    let (inputs, model, _, truncate) = req.inputs()?;
    let (results, timings) = score_plain(&state, inputs, ItemNames::List("input"), truncate).await?;
    let data = results
        .iter()
        .enumerate()
        .map(|(index, r)| PoolingItem { index, object: "pooling", data: pooled(r) })
        .collect();
    let model = model.unwrap_or_else(|| state.model.source().id());
    Ok(Timed(Json(list("pool", model, data, &results)), timings).into_response())
}

/// SGLang: `{"text": str | [str]}` or `{"input_ids": ids | [ids]}`.
#[derive(Deserialize)]
pub struct SglangRequest {
    #[serde(default, deserialize_with = "crate::input::present")]
    text: Option<PromptInput>,
    #[serde(default, deserialize_with = "crate::input::present")]
    input_ids: Option<PromptInput>,
    #[serde(default)]
    truncate: bool,
}

#[derive(Serialize)]
struct SglangItem {
    embedding: [f32; 1],
    meta_info: SglangMeta,
}

#[derive(Serialize)]
struct SglangMeta {
    id: String,
    prompt_tokens: usize,
    finish_reason: Value,
}

async fn classify_sglang(state: &Arc<AppState>, req: SglangRequest) -> Result<Response, ApiError> {
    let (inputs, field) = match (req.text, req.input_ids) {
        (Some(t @ (PromptInput::Text(_) | PromptInput::Texts(_))), None) => (t.into_inputs("text")?, "text"),
        (None, Some(ids @ (PromptInput::Ids(_) | PromptInput::IdsBatch(_)))) => {
            (ids.into_inputs("input_ids")?, "input_ids")
        }
        // `[]` reads as an empty list of texts: it is an empty id list here.
        (None, Some(PromptInput::Texts(t))) if t.is_empty() => {
            return Err(ApiError::InvalidRequest("input_ids is empty: give at least one token id".into()))
        }
        _ => return Err(ApiError::InvalidRequest("give \"text\" (strings) or \"input_ids\" (token ids)".into())),
    };
    let (results, timings) = score_plain(state, inputs, ItemNames::List(field), req.truncate).await?;
    let items: Vec<SglangItem> = results
        .iter()
        .map(|r| SglangItem {
            embedding: [r.output.score],
            meta_info: SglangMeta {
                id: response_id("classify"),
                prompt_tokens: r.output.num_tokens,
                finish_reason: serde_json::json!({"type": "length", "length": 0}),
            },
        })
        .collect();
    Ok(Timed(Json(items), timings).into_response())
}
