//! What every handler shares: the model (for its encoder), the batcher, limits, metrics, readiness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use armorm_batcher::{BatchError, Batcher};
use armorm_model::{ConversationError, Encoded, RewardModel, RewardOutput};
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::input::ScoreInput;
use crate::metrics::Metrics;

pub struct Limits {
    pub max_input_tokens: usize,
    pub max_body_bytes: usize,
}

pub struct AppState {
    pub model: Arc<RewardModel>,
    pub batcher: Batcher<Arc<RewardModel>>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub api_key: Option<String>,
    pub auth_health_and_metrics: bool,
    /// One permit per tokenizer worker: encoding runs on the blocking pool, at most this many at once.
    pub tokenizer_permits: Semaphore,
    pub ready: AtomicBool,
}

/// A conversation ready for the queue.
pub struct Prepared {
    pub encoded: Encoded,
    pub truncated: bool,
    pub tokenization_time: Duration,
}

/// Where one scored conversation spent its time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub tokenization: Duration,
    pub queue: Duration,
    pub inference: Duration,
}

impl Timings {
    /// Conversations of one request run concurrently: the request waited as long as its slowest.
    pub fn merge(self, other: Timings) -> Timings {
        Timings {
            tokenization: self.tokenization.max(other.tokenization),
            queue: self.queue.max(other.queue),
            inference: self.inference.max(other.inference),
        }
    }
}

impl AppState {
    pub fn is_healthy(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.batcher.is_alive()
    }

    /// Renders and tokenizes on the blocking pool, so a long input never stalls the HTTP loop.
    /// Token ids cannot be truncated (there are no turns to cut), so over-long ids are refused.
    pub async fn prepare(self: &Arc<Self>, input: ScoreInput, truncate: bool) -> Result<Prepared, ApiError> {
        let _permit = self.tokenizer_permits.acquire().await.map_err(|_| ApiError::NotReady("shutting down".into()))?;
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let max = state.limits.max_input_tokens;
            let encoder = state.model.encoder();
            let (encoded, truncated) = match input {
                ScoreInput::Conversation(c) if truncate => encoder.encode_truncated(&c, max)?,
                ScoreInput::Conversation(c) => (encoder.encode(&c)?, false),
                ScoreInput::Ids(ids) => (encoder.encode_ids(ids)?, false),
            };
            if encoded.len() > max {
                return Err(ConversationError::TooLong { len: encoded.len(), max }.into());
            }
            let tokenization_time = started.elapsed();
            state.metrics.tokenization_duration.observe(tokenization_time.as_secs_f64());
            Ok(Prepared { encoded, truncated, tokenization_time })
        })
        .await
        .map_err(|e| ApiError::Model(format!("tokenizer task failed: {e}")))?
    }

    /// Queues a prepared conversation and waits for its score.
    pub async fn run(&self, prepared: Prepared) -> Result<(RewardOutput, Timings), ApiError> {
        let scored = self.batcher.submit(prepared.encoded).await.map_err(|e| self.batch_error(e))?;
        let m = &self.metrics;
        m.queue_duration.observe(scored.queue_time.as_secs_f64());
        m.inference_duration.observe(scored.inference_time.as_secs_f64());
        m.input_tokens.observe(scored.output.num_tokens as f64);
        m.score.observe(f64::from(scored.output.score));
        let timings = Timings {
            tokenization: prepared.tokenization_time,
            queue: scored.queue_time,
            inference: scored.inference_time,
        };
        Ok((scored.output, timings))
    }

    fn batch_error(&self, e: BatchError) -> ApiError {
        match e {
            BatchError::Overloaded { .. } => ApiError::Overloaded { retry_after_s: self.retry_after_s() },
            BatchError::TooLarge { tokens, budget } => ConversationError::TooLong { len: tokens, max: budget }.into(),
            BatchError::Forward(msg) => ApiError::Model(msg),
            BatchError::WorkerGone => ApiError::NotReady("the model worker has stopped".into()),
            BatchError::ShuttingDown => ApiError::NotReady("the server is shutting down".into()),
        }
    }

    /// A hint for 429s: roughly how long the current queue takes to drain, at least a second.
    fn retry_after_s(&self) -> u64 {
        let (_, tokens) = self.batcher.queue_depth();
        let policy = self.batcher.policy();
        let batches = tokens.div_ceil(policy.max_batch_tokens.max(1)) as u64;
        batches.clamp(1, 60)
    }
}
