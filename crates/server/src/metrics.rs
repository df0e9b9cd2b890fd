//! Prometheus metrics. Every series the dashboard reads exists (at zero) from start-up, so a panel
//! shows 0 rather than "no data" before the first request.

use armorm_batcher::{BatchRun, Observer};
use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use armorm_model::ContentSpecialTokens;

use crate::error::ErrorCode;

/// Score buckets dense around 0 (where ArmoRM scores live) and wide enough for Bradley-Terry logits.
const SCORE_BUCKETS: &[f64] = &[
    -10.0, -5.0, -3.0, -2.0, -1.5, -1.0, -0.75, -0.5, -0.4, -0.3, -0.2, -0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2,
    0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub queue_duration: Histogram,
    pub inference_duration: Histogram,
    pub tokenization_duration: Histogram,
    pub batch_size: Histogram,
    pub batch_tokens: Histogram,
    pub shared_prompt_tokens: IntCounter,
    pub queue_depth: IntGauge,
    pub queue_tokens: IntGauge,
    pub input_tokens: Histogram,
    pub score: Histogram,
    pub errors: IntCounterVec,
    pub tokenizer_busy: IntGauge,
    pub content_special_tokens: IntCounterVec,
    pub connections: IntGauge,
    pub connections_refused: IntCounter,
}

fn seconds(name: &str, help: &str) -> HistogramOpts {
    // 100 us .. ~52 s
    HistogramOpts::new(name, help).buckets(exponential_buckets(1e-4, 2.0, 20).expect("static bucket spec"))
}

impl Metrics {
    pub fn new(routes: &[&str]) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new("armorm_requests_total", "HTTP requests by route and status code"),
                &["route", "status"],
            )?,
            request_duration: HistogramVec::new(
                seconds("armorm_request_duration_seconds", "End-to-end request latency"),
                &["route"],
            )?,
            queue_duration: Histogram::with_opts(seconds(
                "armorm_queue_duration_seconds",
                "Time a conversation waited in the batch queue",
            ))?,
            inference_duration: Histogram::with_opts(seconds(
                "armorm_inference_duration_seconds",
                "Forward pass time of the batch a conversation ran in",
            ))?,
            tokenization_duration: Histogram::with_opts(seconds(
                "armorm_tokenization_duration_seconds",
                "Template rendering and tokenization time per conversation",
            ))?,
            batch_size: Histogram::with_opts(
                HistogramOpts::new("armorm_batch_size", "Conversations per forward pass")
                    .buckets(exponential_buckets(1.0, 2.0, 10).expect("static bucket spec")),
            )?,
            batch_tokens: Histogram::with_opts(
                HistogramOpts::new("armorm_batch_tokens", "Tokens per forward pass")
                    .buckets(exponential_buckets(16.0, 2.0, 14).expect("static bucket spec")),
            )?,
            shared_prompt_tokens: IntCounter::new(
                "armorm_shared_prompt_tokens_total",
                "Prompt tokens computed once for several conversations of a batch instead of once for each",
            )?,
            queue_depth: IntGauge::new("armorm_queue_depth", "Conversations waiting for the model")?,
            queue_tokens: IntGauge::new("armorm_queue_tokens", "Tokens waiting for the model")?,
            input_tokens: Histogram::with_opts(
                HistogramOpts::new("armorm_input_tokens", "Tokens per scored conversation")
                    .buckets(exponential_buckets(16.0, 2.0, 12).expect("static bucket spec")),
            )?,
            score: Histogram::with_opts(
                HistogramOpts::new("armorm_score", "Returned scores (watch for reward drift)")
                    .buckets(SCORE_BUCKETS.to_vec()),
            )?,
            errors: IntCounterVec::new(Opts::new("armorm_errors_total", "Error responses by code"), &["code"])?,
            tokenizer_busy: IntGauge::new(
                "armorm_tokenizer_threads_busy",
                "Threads rendering and tokenizing now (at most --tokenizer-workers)",
            )?,
            content_special_tokens: IntCounterVec::new(
                Opts::new(
                    "armorm_content_special_tokens_total",
                    "Conversations whose message content held special-token text, by --content-special-tokens mode",
                ),
                &["mode"],
            )?,
            connections: IntGauge::new("armorm_open_connections", "Open client connections")?,
            connections_refused: IntCounter::new(
                "armorm_connections_refused_total",
                "Connections answered 503 because --max-connections were open",
            )?,
            registry,
        };
        m.registry.register(Box::new(m.requests.clone()))?;
        m.registry.register(Box::new(m.request_duration.clone()))?;
        m.registry.register(Box::new(m.queue_duration.clone()))?;
        m.registry.register(Box::new(m.inference_duration.clone()))?;
        m.registry.register(Box::new(m.tokenization_duration.clone()))?;
        m.registry.register(Box::new(m.batch_size.clone()))?;
        m.registry.register(Box::new(m.batch_tokens.clone()))?;
        m.registry.register(Box::new(m.shared_prompt_tokens.clone()))?;
        m.registry.register(Box::new(m.queue_depth.clone()))?;
        m.registry.register(Box::new(m.queue_tokens.clone()))?;
        m.registry.register(Box::new(m.input_tokens.clone()))?;
        m.registry.register(Box::new(m.score.clone()))?;
        m.registry.register(Box::new(m.errors.clone()))?;
        m.registry.register(Box::new(m.tokenizer_busy.clone()))?;
        m.registry.register(Box::new(m.content_special_tokens.clone()))?;
        m.registry.register(Box::new(m.connections.clone()))?;
        m.registry.register(Box::new(m.connections_refused.clone()))?;
        for route in routes {
            m.requests.with_label_values(&[route, "200"]);
            m.request_duration.with_label_values(&[route]);
        }
        // Every route and error code has its series before it first happens.
        for code in ErrorCode::ALL {
            m.errors.with_label_values(&[code.name()]);
        }
        for mode in ContentSpecialTokens::ALL {
            m.content_special_tokens.with_label_values(&[mode.name()]);
        }
        Ok(m)
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families, which the registry ensures.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Observer for Metrics {
    fn queue_depth(&self, items: usize, tokens: usize) {
        self.queue_depth.set(items as i64);
        self.queue_tokens.set(tokens as i64);
    }

    fn batch(&self, run: &BatchRun) {
        self.batch_size.observe(run.items as f64);
        self.batch_tokens.observe(run.tokens as f64);
        self.shared_prompt_tokens.inc_by(run.tokens.saturating_sub(run.computed_tokens) as u64);
    }
}
