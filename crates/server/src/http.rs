//! HTTP plumbing shared by every route: JSON bodies with JSON errors, the error response, API-key
//! checks, per-request metrics and timing headers.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;
use tracing::Instrument;

use crate::error::ApiError;
use crate::state::{AppState, Timings};

/// A JSON body read under the configured size limit; every failure is an [`ApiError`].
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let limit = state.limits.max_body_bytes;
        let bytes = to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(format!("request body exceeds {limit} bytes")))?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::InvalidRequest(e.to_string()),
            _ => ApiError::MalformedJson(e.to_string()),
        })
    }
}

/// The error code travels to the metrics middleware in a response extension.
#[derive(Clone, Copy)]
struct ErrorCode(&'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.body())).into_response();
        if let ApiError::Overloaded { retry_after_s } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}

/// Adds the stage timings (ms) a client can use to see where its latency went.
pub fn with_timings(mut response: Response, t: Timings) -> Response {
    let headers = response.headers_mut();
    for (name, d) in
        [("x-tokenization-time", t.tokenization), ("x-queue-time", t.queue), ("x-inference-time", t.inference)]
    {
        insert_ms(headers, name, d.as_secs_f64() * 1e3);
    }
    response
}

fn insert_ms(headers: &mut HeaderMap, name: &'static str, ms: f64) {
    if let Ok(v) = HeaderValue::from_str(&format!("{ms:.3}")) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

const REQUEST_ID: &str = "x-request-id";

/// The caller's `x-request-id` when it is a sane token, else a fresh UUID.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`).
fn trace_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2) && hex(trace, 32) && hex(span, 16) && hex(flags, 2) && trace != "0".repeat(32);
    valid.then(|| trace.to_ascii_lowercase())
}

/// Gives every request a span carrying its request id and W3C trace id (the batcher carries the span
/// to the model thread, so queue and inference events log under it), counts and times it by route
/// template (never the raw path, whose values are unbounded), and stamps `x-request-id` and
/// `x-total-time`.
pub async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let id = request_id(req.headers());
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        request_id = %id,
        trace_id = trace_id(req.headers()).as_deref().unwrap_or(""),
    );
    crate::telemetry::adopt_remote_parent(&span, req.headers());
    let mut response = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::debug!(status = response.status().as_u16(), elapsed_ms = elapsed.as_secs_f64() * 1e3, "served")
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HeaderName::from_static(REQUEST_ID), v);
    }
    let m = &state.metrics;
    m.requests.with_label_values(&[route.as_str(), response.status().as_str()]).inc();
    m.request_duration.with_label_values(&[route.as_str()]).observe(elapsed.as_secs_f64());
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        m.errors.with_label_values(&[code]).inc();
    }
    insert_ms(response.headers_mut(), "x-total-time", elapsed.as_secs_f64() * 1e3);
    response
}

/// Paths reachable without the API key unless the server is told to protect them too.
const OPEN_PATHS: &[&str] = &["/health", "/metrics"];

pub async fn authorize(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Result<Response, ApiError> {
    let Some(key) = &state.api_key else { return Ok(next.run(req).await) };
    if !state.auth_health_and_metrics && OPEN_PATHS.contains(&req.uri().path()) {
        return Ok(next.run(req).await);
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()))
        .unwrap_or_default();
    // Constant-time, so response timing does not reveal how much of a guess was right.
    if bool::from(presented.as_bytes().ct_eq(key.as_bytes())) {
        Ok(next.run(req).await)
    } else {
        Err(ApiError::Unauthorized)
    }
}

pub async fn not_found(req: Request<Body>) -> ApiError {
    ApiError::NotFound(format!("{} {}", req.method(), req.uri().path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn traceparent_is_parsed_strictly() {
        let ok = headers(&[("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")]);
        assert_eq!(trace_id(&ok).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in ["00-xyz-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "junk"] {
            assert_eq!(trace_id(&headers(&[("traceparent", bad)])), None, "{bad}");
        }
    }

    #[test]
    fn request_ids_are_echoed_when_sane_and_generated_otherwise() {
        assert_eq!(request_id(&headers(&[("x-request-id", "job-42")])), "job-42");
        let generated = request_id(&headers(&[("x-request-id", "has space")]));
        assert_eq!(uuid::Uuid::parse_str(&generated).unwrap().get_version_num(), 4);
    }
}
