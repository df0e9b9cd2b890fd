//! The route table (the single source the router and the OpenAPI test both read) and the native
//! handlers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use futures::future::try_join_all;
use serde::Serialize;

use crate::error::ApiError;
use crate::http::{authorize, not_found, observe, with_timings, ApiJson};
use crate::input::ScoreInput;
use crate::protocols;
use crate::state::{AppState, Timings};
use crate::types::{ResultShape, ScoreRequest, ScoreResult, ScoreResults, ScoreTarget};

pub const OPENAPI_YAML: &str = include_str!("../../../openapi.yaml");

type Handler = MethodRouter<Arc<AppState>>;

/// Every route the server answers: (method, path, handler).
pub fn table() -> Vec<(Method, &'static str, Handler)> {
    vec![
        (Method::POST, "/score", post(score)),
        (Method::POST, "/rank", post(protocols::native::rank)),
        (Method::POST, "/compare", post(protocols::native::compare)),
        (Method::POST, "/get_reward", post(protocols::openrlhf::get_reward)),
        (Method::POST, "/classify", post(protocols::vllm::classify)),
        (Method::POST, "/v1/classify", post(protocols::vllm::vllm_classify)),
        (Method::POST, "/pooling", post(protocols::vllm::pooling)),
        (Method::POST, "/v1/embeddings", post(protocols::openai::embeddings)),
        (Method::POST, "/reward", post(protocols::slime::reward)),
        (Method::GET, "/info", get(info)),
        (Method::GET, "/health", get(health)),
        (Method::GET, "/metrics", get(metrics)),
        (Method::GET, "/openapi.yaml", get(openapi)),
    ]
}

pub fn paths() -> Vec<&'static str> {
    table().into_iter().map(|(_, path, _)| path).collect()
}

pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    for (_, path, handler) in table() {
        router = router.route(path, handler);
    }
    router
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

pub fn ensure_ready(state: &AppState) -> Result<(), ApiError> {
    if state.is_healthy() {
        Ok(())
    } else {
        Err(ApiError::NotReady("the model is not loaded or its worker has stopped".into()))
    }
}

/// Scores conversations concurrently through the shared queue; results keep input order.
pub async fn score_many(
    state: &Arc<AppState>,
    inputs: Vec<ScoreInput>,
    truncate: bool,
    shape: &ResultShape,
) -> Result<(Vec<ScoreResult>, Timings), ApiError> {
    ensure_ready(state)?;
    let objectives = state.model.objectives();
    let jobs = inputs.into_iter().enumerate().map(|(i, input)| async move {
        let prepared = state.prepare(input, truncate).await.map_err(|e| e.in_item(i))?;
        let truncated = prepared.truncated;
        let (output, timings) = state.run(prepared).await.map_err(|e| e.in_item(i))?;
        Ok::<_, ApiError>((shape.result(output, truncated, objectives), timings))
    });
    let scored = try_join_all(jobs).await?;
    let timings = scored.iter().fold(Timings::default(), |acc, (_, t)| acc.merge(*t));
    Ok((scored.into_iter().map(|(r, _)| r).collect(), timings))
}

/// Unwraps the per-item error of a single-conversation request: there is no list to index into.
pub fn single(e: ApiError) -> ApiError {
    match e {
        ApiError::Item { source, .. } => *source,
        other => other,
    }
}

async fn score(State(state): State<Arc<AppState>>, ApiJson(req): ApiJson<ScoreRequest>) -> Result<Response, ApiError> {
    let (target, options) = req.into_target()?;
    let shape = ResultShape::new(&options, state.model.objectives())?;
    match target {
        ScoreTarget::One(conversation) => {
            let input = vec![ScoreInput::Conversation(conversation)];
            let (mut results, timings) = score_many(&state, input, options.truncate, &shape).await.map_err(single)?;
            Ok(with_timings(Json(results.remove(0)).into_response(), timings))
        }
        ScoreTarget::Many(conversations) => {
            let inputs = conversations.into_iter().map(ScoreInput::Conversation).collect();
            let (results, timings) = score_many(&state, inputs, options.truncate, &shape).await?;
            Ok(with_timings(Json(ScoreResults { results }).into_response(), timings))
        }
    }
}

#[derive(Serialize)]
struct Info<'a> {
    model_id: String,
    revision: Option<&'a str>,
    head: armorm_model::HeadKind,
    objectives: &'a [String],
    gating_pattern: Option<&'a [u32]>,
    dtype: armorm_model::ComputeDType,
    device: String,
    limits: InfoLimits,
    /// What each element of the `/pooling` and `/v1/embeddings` vectors is.
    vector_layouts: VectorLayouts,
    version: &'static str,
}

#[derive(Serialize)]
struct VectorLayouts {
    pooling: &'static str,
    embeddings: &'static str,
}

#[derive(Serialize)]
struct InfoLimits {
    max_input_tokens: usize,
    max_batch_tokens: usize,
    max_batch_size: usize,
    max_batch_wait_ms: u128,
    max_queue_tokens: usize,
    max_queue_requests: usize,
    max_body_bytes: usize,
}

async fn info(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.model;
    let policy = state.batcher.policy();
    Json(Info {
        model_id: m.source().id(),
        revision: m.source().revision(),
        head: m.head_kind(),
        objectives: m.objectives(),
        gating_pattern: m.encoder().pattern().map(|p| p.ids()),
        dtype: m.dtype(),
        device: m.device_name(),
        limits: InfoLimits {
            max_input_tokens: state.limits.max_input_tokens,
            max_batch_tokens: policy.max_batch_tokens,
            max_batch_size: policy.max_batch_size,
            max_batch_wait_ms: policy.max_batch_wait.as_millis(),
            max_queue_tokens: policy.max_queue_tokens,
            max_queue_requests: policy.max_queue_items,
            max_body_bytes: state.limits.max_body_bytes,
        },
        vector_layouts: VectorLayouts {
            pooling: "[score, rewards[0..k], gating[0..k]] (k = objectives.len(); [score] for single-score models)",
            embeddings: "[rewards[0..k], gating[0..k], score] (the score last)",
        },
        version: env!("CARGO_PKG_VERSION"),
    })
    .into_response()
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

async fn health(State(state): State<Arc<AppState>>) -> Result<Json<Health>, ApiError> {
    ensure_ready(&state)?;
    Ok(Json(Health { status: "ok" }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML).into_response()
}
