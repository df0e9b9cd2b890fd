//! HTTP plumbing shared by every route: JSON bodies with JSON errors, the error response, API-key
//! checks, per-request metrics and timing headers.

use std::sync::atomic::Ordering;
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

/// A JSON body read under the configured size limit and read timeout; every failure is an
/// [`ApiError`]. The body must say it is JSON: a browser form cannot post to the API.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.limits.max_body_bytes;
        let too_large = || ApiError::PayloadTooLarge(format!("request body exceeds {limit} bytes"));
        // A declared length over the limit is refused before waiting for a byte of it.
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let timeout = state.limits.body_read_timeout;
        let bytes = tokio::time::timeout(timeout, to_bytes(req.into_body(), limit))
            .await
            .map_err(|_| ApiError::RequestTimeout(format!("the request body did not arrive within {timeout:?}")))?
            .map_err(|_| too_large())?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::InvalidRequest(e.to_string()),
            _ => ApiError::MalformedJson(e.to_string()),
        })
    }
}

/// `application/json`, or any `+json` type, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The error code travels to the metrics middleware in a response extension.
#[derive(Clone, Copy)]
struct ErrorCode(&'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.body())).into_response();
        if let Some(retry_after_s) = self.retry_after_s() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}

/// A response with the stage timings of the scoring behind it; the middleware writes them as
/// `x-*-time` headers, so every scoring route sends them the same way.
pub struct Timed<T>(pub T, pub Timings);

impl<T: IntoResponse> IntoResponse for Timed<T> {
    fn into_response(self) -> Response {
        let mut response = self.0.into_response();
        response.extensions_mut().insert(self.1);
        response
    }
}

fn insert_timings(headers: &mut HeaderMap, t: &Timings) {
    for (name, d) in
        [("x-tokenization-time", t.tokenization), ("x-queue-time", t.queue), ("x-inference-time", t.inference)]
    {
        insert_ms(headers, name, d.as_secs_f64() * 1e3);
    }
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

/// Counts a request whose future was dropped before it answered (its client hung up, or shutdown
/// ran out of time) as `status="aborted"`.
struct InFlight {
    state: Arc<AppState>,
    route: String,
    answered: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.lifecycle.in_flight.fetch_sub(1, Ordering::AcqRel);
        if !self.answered {
            self.state.metrics.requests.with_label_values(&[self.route.as_str(), "aborted"]).inc();
        }
    }
}

/// Total header bytes (names and values) and count accepted; more is 431.
const MAX_HEADER_BYTES: usize = 32 * 1024;
pub const MAX_HEADERS: usize = 100;

/// Gives every request a span carrying its request id and W3C trace id (the batcher carries the span
/// to the model thread, so queue and inference events log under it), counts and times it by route
/// template (never the raw path, whose values are unbounded), and stamps `x-request-id`,
/// `x-total-time` and the stage timings a handler reported.
pub async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    state.lifecycle.in_flight.fetch_add(1, Ordering::AcqRel);
    let mut in_flight = InFlight { state: state.clone(), route: route.clone(), answered: false };
    let id = request_id(req.headers());
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        request_id = %id,
        trace_id = trace_id(req.headers()).as_deref().unwrap_or(""),
    );
    crate::telemetry::adopt_remote_parent(&span, req.headers());
    let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    let mut response = if header_bytes > MAX_HEADER_BYTES || req.headers().len() > MAX_HEADERS {
        ApiError::HeadersTooLarge(format!(
            "{} headers of {header_bytes} bytes; the limits are {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes",
            req.headers().len()
        ))
        .into_response()
    } else {
        next.run(req).instrument(span.clone()).await
    };
    in_flight.answered = true;
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
    if let Some(timings) = response.extensions().get::<Timings>().copied() {
        insert_timings(response.headers_mut(), &timings);
    }
    insert_ms(response.headers_mut(), "x-total-time", elapsed.as_secs_f64() * 1e3);
    response
}

/// The API key check, on the routes the router puts behind it ([`crate::routes::RouteKind`]).
pub async fn authorize(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Result<Response, ApiError> {
    let Some(key) = &state.access.api_key else { return Ok(next.run(req).await) };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()))
        .unwrap_or_default();
    // Constant-time, so response timing does not reveal how much of a guess was right.
    if bool::from(presented.as_bytes().ct_eq(key.as_bytes())) {
        Ok(next.run(req).await)
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 9110 section 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
}

/// 404 in JSON; at the root, where a person lands first, it says where to go.
pub async fn not_found(req: Request<Body>) -> ApiError {
    let path = req.uri().path();
    let hint = if path == "/" { "; see GET /ui (the explain page), GET /info and GET /openapi.yaml" } else { "" };
    ApiError::NotFound(format!("{} {path}{hint}", req.method()))
}

/// 405 in JSON, with the `Allow` header HTTP requires.
pub async fn method_not_allowed(allowed: axum::http::Method, req: Request<Body>) -> Response {
    let mut response = ApiError::MethodNotAllowed(format!("{} {}", req.method(), req.uri().path())).into_response();
    if let Ok(v) = HeaderValue::from_str(allowed.as_str()) {
        response.headers_mut().insert(header::ALLOW, v);
    }
    response
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
    fn bearer_scheme_is_case_insensitive_and_json_types_are_recognised() {
        for v in ["Bearer k", "bearer k", "BEARER k"] {
            assert_eq!(bearer_token(v), Some("k"), "{v}");
        }
        assert_eq!(bearer_token("Basic k"), None);
        for (ct, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/vnd.api+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
        ] {
            assert_eq!(is_json(&headers(&[("content-type", ct)])), ok, "{ct}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn request_ids_are_echoed_when_sane_and_generated_otherwise() {
        assert_eq!(request_id(&headers(&[("x-request-id", "job-42")])), "job-42");
        let generated = request_id(&headers(&[("x-request-id", "has space")]));
        assert_eq!(uuid::Uuid::parse_str(&generated).unwrap().get_version_num(), 4);
    }
}
