//! Logs (plain or JSON) and, when an OTLP endpoint is given, OpenTelemetry trace export: every
//! request span, with its W3C `traceparent` parent, goes to the collector.

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the exporter alive; dropping it flushes the spans still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("flushing traces failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber. `otlp_endpoint` is an OTLP/HTTP collector base URL such as
/// `http://otel-collector:4318` (spans go to `/v1/traces` under it).
pub fn init(json_logs: bool, otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour codes only for a person at a terminal, never in files, pipes or a cluster's log store.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let logs = if json_logs { logs.json().boxed() } else { logs.boxed() };
    let provider = match otlp_endpoint {
        None => None,
        Some(endpoint) => {
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/').trim_end_matches("/v1/traces"));
            let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(url).build()?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().with_service_name("armorm").build())
                    .build(),
            )
        }
    };
    let traces = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("armorm")));
    tracing_subscriber::registry().with(filter).with(logs).with(traces).try_init()?;
    Ok(Telemetry { provider })
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes the caller's trace (W3C `traceparent`) the parent of `span` in exported traces.
pub fn adopt_remote_parent(span: &tracing::Span, headers: &HeaderMap) {
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        // Without an exporter installed there is no OpenTelemetry context to attach to.
        let _ = span.set_parent(parent);
    }
}
