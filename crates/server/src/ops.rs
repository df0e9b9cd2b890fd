//! The operational routes: `/info`, `/health`, `/metrics`, `/openapi.yaml`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

pub const OPENAPI_YAML: &str = include_str!("../../../openapi.yaml");

#[derive(Serialize)]
struct Info<'a> {
    model_id: String,
    revision: Option<&'a str>,
    /// The checkpoint's class (`architectures[0]`) and decoder family (`model_type`).
    architecture: &'a str,
    family: armorm_model::arch::Family,
    /// Where the checkpoint keeps its tensors (transformers' classes, or Starling-RM's own).
    layout: armorm_model::arch::layout::TensorLayout,
    head: armorm_model::HeadKind,
    objectives: &'a [String],
    gating_pattern: Option<&'a [u32]>,
    dtype: armorm_model::ComputeDType,
    /// Why `dtype` (the `--dtype auto` rule, or the flag).
    dtype_reason: &'a str,
    device: String,
    /// The kernels the load chose for this device and dtype.
    kernels: &'static str,
    /// Whether a conversation's numbers are bit-identical whatever it is batched with.
    batch_invariant: bool,
    /// What special-token text in message content becomes (`--content-special-tokens`).
    content_special_tokens: &'static str,
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
    max_rank_pairwise: usize,
}

pub async fn info(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.model;
    let policy = state.batcher.policy();
    Json(Info {
        model_id: m.source().id(),
        revision: m.source().revision(),
        architecture: &m.architecture().class,
        family: m.architecture().family,
        layout: m.layout(),
        head: m.head_kind(),
        objectives: m.objectives(),
        gating_pattern: m.encoder().pattern().map(|p| p.ids()),
        dtype: m.dtype(),
        dtype_reason: &m.dtype_choice().reason,
        device: m.device_name(),
        kernels: m.kernels().name(),
        batch_invariant: m.batch_invariant(),
        content_special_tokens: state.limits.content_special_tokens.name(),
        limits: InfoLimits {
            max_input_tokens: state.limits.max_input_tokens,
            max_batch_tokens: policy.max_batch_tokens,
            max_batch_size: policy.max_batch_size,
            max_batch_wait_ms: policy.max_batch_wait.as_millis(),
            max_queue_tokens: policy.max_queue_tokens,
            max_queue_requests: policy.max_queue_items,
            max_body_bytes: state.limits.max_body_bytes,
            max_rank_pairwise: state.limits.max_rank_pairwise,
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
pub struct Health {
    status: &'static str,
}

pub async fn health(State(state): State<Arc<AppState>>) -> Result<Json<Health>, ApiError> {
    state.ensure_ready()?;
    Ok(Json(Health { status: "ok" }))
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML).into_response()
}
