//! What every handler shares, and the one scoring service they all call: [`AppState::score`]
//! renders and tokenizes each conversation off the async runtime, queues the request's items all
//! or none, and shapes each result.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use armorm_batcher::{BatchError, Batcher, Scored};
use armorm_model::preference::Verdict;
use armorm_model::text::tokenize::share_common_prefix;
use armorm_model::{
    ContentSpecialTokens, ConversationError, EncodeLimits, Encoded, HeadKind, ModelError, Prompt, RewardModel,
    RewardOutput,
};
use futures::future::try_join_all;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::input::ScoreInput;
use crate::metrics::Metrics;
use crate::model_scorer::ModelScorer;
use crate::types::{ResultShape, ScoreResult};

/// What a request may hold, and how its text is read.
pub struct Limits {
    pub max_input_tokens: usize,
    /// Where `max_input_tokens` comes from, for 413 messages.
    pub max_input_origin: String,
    pub max_body_bytes: usize,
    /// The most responses `/rank` compares pairwise (N(N-1) passes).
    pub max_rank_pairwise: usize,
    /// How long a client may take to send its body once the headers are in.
    pub body_read_timeout: Duration,
    /// What special-token text in message content becomes.
    pub content_special_tokens: ContentSpecialTokens,
}

/// Who may call what.
pub struct Access {
    pub api_key: Option<String>,
    pub auth_health_and_metrics: bool,
    /// Serve the explain page (`/ui`); `--no-ui` turns it off.
    pub ui: bool,
}

/// Whether the server takes requests, and how many it is answering.
#[derive(Default)]
pub struct Lifecycle {
    pub ready: AtomicBool,
    /// Requests being answered now (what a shutdown deadline drops).
    pub in_flight: AtomicUsize,
}

pub struct AppState {
    pub(crate) model: Arc<RewardModel>,
    pub(crate) batcher: Batcher<ModelScorer>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    pub(crate) access: Access,
    pub(crate) lifecycle: Lifecycle,
    /// One permit per tokenizer worker. The blocking task holds it until it returns, so however many
    /// clients hang up, no more than this many threads ever render and tokenize.
    tokenizer_permits: Arc<Semaphore>,
}

/// How a request names its items in error messages.
#[derive(Debug, Clone, Copy)]
pub enum ItemNames {
    /// `field[i]`: the request's own list (`conversations`, `responses`, `query`, ...).
    List(&'static str),
    /// One name per item (`chosen`, `rejected`).
    Fixed(&'static [&'static str]),
}

impl ItemNames {
    fn name(self, index: usize) -> String {
        match self {
            Self::List(field) => format!("{field}[{index}]"),
            Self::Fixed(names) => names.get(index).map_or_else(|| format!("[{index}]"), |n| n.to_string()),
        }
    }
}

/// A conversation ready for the queue.
struct Prepared {
    encoded: Encoded,
    truncated: bool,
    special_tokens_in_content: bool,
    tokenization_time: Duration,
}

/// Where one request spent its time; its items run concurrently, so each stage is the slowest item's.
/// Handlers put it in the response's extensions and the middleware writes the `x-*-time` headers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub tokenization: Duration,
    pub queue: Duration,
    pub inference: Duration,
}

impl Timings {
    fn merge(self, other: Timings) -> Timings {
        Timings {
            tokenization: self.tokenization.max(other.tokenization),
            queue: self.queue.max(other.queue),
            inference: self.inference.max(other.inference),
        }
    }
}

/// Set when the request's future is dropped (its client hung up): tokenization not yet started
/// for it is skipped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl AppState {
    /// Ready to serve, with `tokenizer_workers` threads to render and tokenize.
    pub fn new(
        (model, batcher, metrics): (Arc<RewardModel>, Batcher<ModelScorer>, Arc<Metrics>),
        limits: Limits,
        access: Access,
        tokenizer_workers: usize,
    ) -> Self {
        let lifecycle = Lifecycle { ready: true.into(), in_flight: 0.into() };
        let tokenizer_permits = Arc::new(Semaphore::new(tokenizer_workers.max(1)));
        Self { model, batcher, metrics, limits, access, lifecycle, tokenizer_permits }
    }

    pub fn is_healthy(&self) -> bool {
        self.lifecycle.ready.load(Ordering::Acquire) && self.batcher.is_alive()
    }

    pub fn ensure_ready(&self) -> Result<(), ApiError> {
        if self.is_healthy() {
            Ok(())
        } else {
            Err(ApiError::NotReady("the model is not loaded or its worker has stopped".into()))
        }
    }

    /// Scores a request's items; results keep input order. Items are admitted to the queue all or
    /// none, so an overloaded server never runs half a request, and a request larger than the queue
    /// could ever hold is told so (413) instead of being asked to retry.
    pub async fn score(
        self: &Arc<Self>,
        inputs: Vec<ScoreInput>,
        names: ItemNames,
        truncate: bool,
        shape: &ResultShape,
    ) -> Result<(Vec<ScoreResult>, Timings), ApiError> {
        self.ensure_ready()?;
        if self.model.head_kind() == HeadKind::Pairwise {
            return Err(ModelError::PairwiseModel.into());
        }
        self.fits_queue(inputs.len(), || format!("{} conversations", inputs.len()))?;
        let cancel = CancelOnDrop(Arc::default());
        let prepared = try_join_all(inputs.into_iter().enumerate().map(|(i, input)| {
            let flag = cancel.0.clone();
            async move { self.prepare(input, truncate, flag).await.map_err(|e| e.at(names.name(i))) }
        }))
        .await?;
        let encoded = prepared.iter().map(|p| p.encoded.clone()).collect();
        let scored = self.batcher.submit_all(encoded).await.map_err(|e| self.batch_error(e))?;
        let objectives = self.model.objectives();
        let mut timings = Timings::default();
        let mut results = Vec::with_capacity(prepared.len());
        for (i, (p, scored)) in prepared.into_iter().zip(scored).enumerate() {
            let scored = scored.map_err(|e| self.batch_error(e).at(names.name(i)))?;
            self.metrics.score.observe(f64::from(scored.output.score));
            timings = timings.merge(Timings { tokenization: p.tokenization_time, ..self.observe(&scored) });
            results.push(shape.result(scored.output, p.truncated, p.special_tokens_in_content, objectives));
        }
        Ok((results, timings))
    }

    /// A pairwise preference model's verdicts on `pairs` (indices into `responses`) after `prompt`.
    /// Both orders of every pair are encoded on the blocking pool, share what they all begin with
    /// (the prompt's context, computed once per batch), and are queued all or none.
    pub async fn compare_pairwise(
        self: &Arc<Self>,
        prompt: Prompt,
        responses: Vec<String>,
        pairs: Vec<(usize, usize)>,
    ) -> Result<(Vec<Verdict>, Timings), ApiError> {
        self.ensure_ready()?;
        self.fits_queue(2 * pairs.len(), || format!("{} comparisons (two orders each)", pairs.len()))?;
        let cancel = CancelOnDrop(Arc::default());
        let (encoded, tokenization) = self
            .tokenize(cancel.0.clone(), move |state| {
                pairs
                    .iter()
                    .map(|&(i, j)| {
                        let pair = (responses[i].as_str(), responses[j].as_str());
                        let at = || format!("responses[{i}] vs responses[{j}]");
                        state.encode_comparison(&prompt, pair).map_err(|e| e.at(at()))
                    })
                    .collect::<Result<Vec<[Encoded; 2]>, ApiError>>()
            })
            .await?;
        let mut items: Vec<Encoded> = encoded.into_iter().flatten().collect();
        share_common_prefix(&mut items);
        let scored = self.batcher.submit_all(items).await.map_err(|e| self.batch_error(e))?;
        let mut timings = Timings { tokenization, ..Timings::default() };
        let mut outputs = Vec::with_capacity(scored.len());
        for scored in scored {
            let scored = scored.map_err(|e| self.batch_error(e))?;
            timings = timings.merge(self.observe(&scored));
            outputs.push(scored.output);
        }
        Ok((Verdict::of_orders(&outputs)?, timings))
    }

    /// Refuses (413) a request of `items` queue items that the queue could never hold, so that it
    /// is not asked to retry; `what` says what the items are.
    fn fits_queue(&self, items: usize, what: impl FnOnce() -> String) -> Result<(), ApiError> {
        let max = self.batcher.policy().max_queue_items;
        if items > max {
            return Err(ApiError::PayloadTooLarge(format!(
                "{} exceed the {max} the queue can hold (--max-queue-requests)",
                what()
            )));
        }
        Ok(())
    }

    /// Records one scored item's queue and inference time and length in the metrics; returns those
    /// times.
    fn observe(&self, scored: &Scored<RewardOutput>) -> Timings {
        let m = &self.metrics;
        m.queue_duration.observe(scored.queue_time.as_secs_f64());
        m.inference_duration.observe(scored.inference_time.as_secs_f64());
        m.input_tokens.observe(scored.output.num_tokens as f64);
        Timings { tokenization: Duration::ZERO, queue: scored.queue_time, inference: scored.inference_time }
    }

    /// Both orders of one comparison under the server's input limit (never truncated).
    fn encode_comparison(&self, prompt: &Prompt, pair: (&str, &str)) -> Result<[Encoded; 2], ApiError> {
        let limits = EncodeLimits {
            max_tokens: self.limits.max_input_tokens,
            truncate: false,
            content_special_tokens: self.limits.content_special_tokens,
        };
        let [first, second] = self
            .model
            .encoder()
            .encode_comparison(prompt, pair, &limits)
            .map_err(|e| self.over_limit(e.into(), ": the comparison request holds both responses"))?;
        Ok([first.encoded, second.encoded])
    }

    /// Renders and tokenizes on the blocking pool, so a long input never stalls the HTTP loop.
    /// Token ids cannot be truncated (there are no turns to cut), so over-long ids are refused.
    async fn prepare(
        self: &Arc<Self>,
        input: ScoreInput,
        truncate: bool,
        cancelled: Arc<AtomicBool>,
    ) -> Result<Prepared, ApiError> {
        let ((encoded, truncated, special_tokens_in_content), tokenization_time) =
            self.tokenize(cancelled, move |state| state.encode(input, truncate)).await?;
        Ok(Prepared { encoded, truncated, special_tokens_in_content, tokenization_time })
    }

    /// Runs `work` (rendering and tokenizing) on the blocking pool under a tokenizer permit, which
    /// the thread holds until it returns, so however many clients hang up no more than the permits'
    /// threads ever tokenize; skipped when `cancelled` is set first. Returns its result and time.
    async fn tokenize<T: Send + 'static>(
        self: &Arc<Self>,
        cancelled: Arc<AtomicBool>,
        work: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<(T, Duration), ApiError> {
        let permit = self
            .tokenizer_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::NotReady("shutting down".into()))?;
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            if cancelled.load(Ordering::Acquire) {
                return Err(ApiError::Cancelled);
            }
            let m = &state.metrics;
            m.tokenizer_busy.inc();
            let started = Instant::now();
            let result = work(&state);
            m.tokenizer_busy.dec();
            let elapsed = started.elapsed();
            m.tokenization_duration.observe(elapsed.as_secs_f64());
            result.map(|r| (r, elapsed))
        })
        .await
        .map_err(|e| ApiError::Model(format!("tokenizer task failed: {e}")))?
    }

    fn encode(&self, input: ScoreInput, truncate: bool) -> Result<(Encoded, bool, bool), ApiError> {
        let advice = match (&input, truncate) {
            (ScoreInput::Ids(_), _) => "",
            (_, false) => "; send \"truncate\": true to cut the earliest turns from the left instead",
            (_, true) => {
                "; truncation was tried, but the turns' template text alone is longer than the limit: send fewer \
                 turns"
            }
        };
        self.encode_within_limit(input, truncate).map_err(|e| self.over_limit(e, advice))
    }

    /// An input over the limit as a 413 that says where the limit comes from, then `advice`.
    fn over_limit(&self, e: ApiError, advice: &str) -> ApiError {
        match e {
            ApiError::InvalidConversation(
                c @ (ConversationError::TooLong { .. } | ConversationError::TextTooLong { .. }),
            ) => ApiError::InputTooLong(format!("{c} ({}){advice}", self.limits.max_input_origin)),
            other => other,
        }
    }

    fn encode_within_limit(&self, input: ScoreInput, truncate: bool) -> Result<(Encoded, bool, bool), ApiError> {
        let max_tokens = self.limits.max_input_tokens;
        let encoder = self.model.encoder();
        match input {
            ScoreInput::Conversation(c) => {
                let limits =
                    EncodeLimits { max_tokens, truncate, content_special_tokens: self.limits.content_special_tokens };
                let result = encoder.encode_within(&c, &limits);
                let flagged = match &result {
                    Ok(e) => e.special_tokens_in_content,
                    Err(armorm_model::ModelError::Conversation(ConversationError::SpecialTokenInContent {
                        ..
                    })) => true,
                    Err(_) => false,
                };
                if flagged {
                    let mode = self.limits.content_special_tokens.name();
                    self.metrics.content_special_tokens.with_label_values(&[mode]).inc();
                }
                let e = result?;
                Ok((e.encoded, e.truncated, e.special_tokens_in_content))
            }
            ScoreInput::Ids(ids) => {
                if ids.len() > max_tokens {
                    return Err(ConversationError::TooLong { len: ids.len(), max: max_tokens }.into());
                }
                Ok((encoder.encode_ids(ids)?, false, false))
            }
        }
    }

    fn batch_error(&self, e: BatchError) -> ApiError {
        match e {
            BatchError::Overloaded { .. } => ApiError::Overloaded { retry_after_s: self.retry_after_s() },
            BatchError::ExceedsQueue { .. } => {
                ApiError::PayloadTooLarge(format!("{e} (--max-queue-requests, --max-queue-tokens): split the request"))
            }
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
