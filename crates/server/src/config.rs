//! `armorm serve`'s options, grouped by what they configure; each group converts into the runtime
//! struct that uses it. Every flag is also an `ARMORM_*` environment variable.

use std::time::Duration;

use armorm_batcher::{BatchPolicy, CostModel};
use armorm_model::cli::{EnvBool, ModelArgs};
use armorm_model::ContentSpecialTokens;
use clap::Args;

use crate::connections::ConnectionLimits;

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub listen: ListenOptions,
    #[command(flatten)]
    pub batching: BatchingOptions,
    #[command(flatten)]
    pub inputs: InputOptions,
    #[command(flatten)]
    pub connections: ConnectionOptions,
    #[command(flatten)]
    pub access: AccessOptions,
    #[command(flatten)]
    pub telemetry: TelemetryOptions,
}

/// Where the server listens.
#[derive(Debug, Clone, Args)]
pub struct ListenOptions {
    /// Address to bind. Loopback by default; the container image sets 0.0.0.0.
    #[arg(long, env = "ARMORM_HOST", default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port to bind (0 picks a free one).
    #[arg(long, env = "ARMORM_PORT", default_value_t = 8080)]
    pub port: u16,
}

/// How requests are batched and queued.
#[derive(Debug, Clone, Args)]
pub struct BatchingOptions {
    /// Token budget of one forward pass.
    #[arg(long, env = "ARMORM_MAX_BATCH_TOKENS", default_value_t = 16384)]
    pub max_batch_tokens: usize,
    /// Conversations in one forward pass.
    #[arg(long, env = "ARMORM_MAX_BATCH_SIZE", default_value_t = 64)]
    pub max_batch_size: usize,
    /// How long the oldest queued conversation waits for company before its batch runs.
    #[arg(long, env = "ARMORM_MAX_BATCH_WAIT_MS", default_value_t = 5)]
    pub max_batch_wait_ms: u64,
    /// Tokens allowed to wait in the queue; past it requests get 429 at once.
    #[arg(long, env = "ARMORM_MAX_QUEUE_TOKENS", default_value_t = 1 << 20)]
    pub max_queue_tokens: usize,
    /// Conversations allowed to wait in the queue; past it requests get 429 at once.
    #[arg(long, env = "ARMORM_MAX_QUEUE_REQUESTS", default_value_t = 4096)]
    pub max_queue_requests: usize,
    /// Skip the full-size warm-up batch at start (faster start, but a too-large budget then fails
    /// under load instead of at start).
    #[arg(long, env = "ARMORM_NO_WARMUP", value_parser = EnvBool)]
    pub no_warmup: bool,
}

impl BatchingOptions {
    pub fn policy(&self) -> BatchPolicy {
        BatchPolicy {
            max_batch_tokens: self.max_batch_tokens,
            max_batch_size: self.max_batch_size.max(1),
            max_batch_wait: Duration::from_millis(self.max_batch_wait_ms),
            max_queue_tokens: self.max_queue_tokens,
            max_queue_items: self.max_queue_requests,
            // The backbone packs sequences on every device: no compute is spent on padding.
            cost: CostModel::Packed,
        }
    }
}

/// What a request may hold, and how it is read.
#[derive(Debug, Clone, Args)]
pub struct InputOptions {
    /// Longest conversation accepted, in tokens (longer ones get 413 unless the request truncates);
    /// capped by the model's max_position_embeddings. Must not exceed --max-batch-tokens.
    #[arg(long, env = "ARMORM_MAX_INPUT_TOKENS", default_value_t = 8192)]
    pub max_input_tokens: usize,
    /// A pairwise preference model ranks N responses by comparing every pair in both orders, N(N-1)
    /// passes: requests with more responses than this get 413.
    #[arg(long, env = "ARMORM_MAX_RANK_PAIRWISE", default_value_t = 8)]
    pub max_rank_pairwise: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "ARMORM_MAX_BODY_BYTES", default_value_t = 8 << 20)]
    pub max_body_bytes: usize,
    /// What special-token text (e.g. `<|eot_id|>`) inside message content becomes: `parse` makes it
    /// the special token, as transformers does; `literal` tokenizes it as plain text, so content can
    /// never forge turn structure or move the gating anchor; `reject` answers 422.
    #[arg(long, env = "ARMORM_CONTENT_SPECIAL_TOKENS", value_enum, default_value_t = ContentSpecialTokens::Parse)]
    pub content_special_tokens: ContentSpecialTokens,
    /// Threads that render templates and tokenize, off the async runtime [default: CPU count].
    #[arg(long, env = "ARMORM_TOKENIZER_WORKERS")]
    pub tokenizer_workers: Option<usize>,
}

impl InputOptions {
    /// The tokenizer threads: the flag, else one per CPU.
    pub fn tokenizer_workers(&self) -> usize {
        let cpus = || std::thread::available_parallelism().map_or(2, |n| n.get());
        self.tokenizer_workers.unwrap_or_else(cpus).max(1)
    }
}

/// How connections are held and let go.
#[derive(Debug, Clone, Args)]
pub struct ConnectionOptions {
    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open. Late clients get 408 and the connection closes.
    #[arg(long, env = "ARMORM_HEADER_READ_TIMEOUT", default_value_t = 30)]
    pub header_read_timeout: u64,
    /// Seconds a client has to send a request's body once its headers are in (408 after).
    #[arg(long, env = "ARMORM_BODY_READ_TIMEOUT", default_value_t = 60)]
    pub body_read_timeout: u64,
    /// Open connections served at once; further ones get 503 and are closed.
    #[arg(long, env = "ARMORM_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Answer clients that shut down their sending side after the request (half-close). TCP cannot
    /// tell that from a client that hung up, so with this on, a hung-up client's request still runs
    /// to the end; off, it is cancelled at once (tokenization and queue included).
    #[arg(long, env = "ARMORM_HALF_CLOSE", value_parser = EnvBool)]
    pub half_close: bool,
    /// Seconds to finish in-flight requests after SIGTERM/SIGINT; then the process exits non-zero,
    /// logging what it dropped.
    #[arg(long, env = "ARMORM_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,
}

impl ConnectionOptions {
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout.max(1)),
            max_connections: self.max_connections,
            half_close: self.half_close,
        }
    }
}

/// Who may call what.
#[derive(Debug, Clone, Args)]
pub struct AccessOptions {
    #[command(flatten)]
    pub key: ApiKeyArgs,
    /// Also require the API key on /health and /metrics.
    #[arg(long, env = "ARMORM_AUTH_HEALTH_AND_METRICS", value_parser = EnvBool)]
    pub auth_health_and_metrics: bool,
    /// Do not serve the explain page at /ui (it is static and asks for the API key itself, so it is
    /// served without one).
    #[arg(long, env = "ARMORM_NO_UI", value_parser = EnvBool)]
    pub no_ui: bool,
}

/// Logs and traces.
#[derive(Debug, Clone, Args)]
pub struct TelemetryOptions {
    /// Log as JSON lines.
    #[arg(long, env = "ARMORM_JSON_LOGS", value_parser = EnvBool)]
    pub json_logs: bool,
    /// Export request traces over OTLP/HTTP to this collector (e.g. http://otel-collector:4318).
    #[arg(long, env = "ARMORM_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// A value that must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

/// The API key, given the same ways to the server that requires it and to the health check that
/// presents it.
#[derive(Debug, Clone, Args)]
pub struct ApiKeyArgs {
    /// The API key: the server requires `Authorization: Bearer <key>` (or `x-api-key: <key>`) on the
    /// API routes; the health check sends it.
    #[arg(long, env = "ARMORM_API_KEY", hide_env_values = true, conflicts_with = "api_key_file")]
    pub api_key: Option<Secret>,
    /// Read the API key from this file (its first line), so it never appears in the process list.
    #[arg(long, env = "ARMORM_API_KEY_FILE")]
    pub api_key_file: Option<std::path::PathBuf>,
}

impl ApiKeyArgs {
    /// The API key from --api-key or --api-key-file.
    pub fn key(&self) -> anyhow::Result<Option<String>> {
        if let Some(key) = &self.api_key {
            return Ok(Some(key.0.clone()));
        }
        let Some(path) = &self.api_key_file else { return Ok(None) };
        let text =
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("--api-key-file {}: {e}", path.display()))?;
        let key = text.lines().next().unwrap_or_default().trim();
        if key.is_empty() {
            anyhow::bail!("--api-key-file {}: the file is empty", path.display());
        }
        Ok(Some(key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    /// The flag's values, `/info`'s and the metrics' labels are one vocabulary.
    #[test]
    fn content_special_token_modes_have_one_name() {
        for mode in ContentSpecialTokens::ALL {
            assert_eq!(mode.to_possible_value().unwrap().get_name(), mode.name());
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.name());
        }
        assert_eq!(ContentSpecialTokens::value_variants().len(), ContentSpecialTokens::ALL.len());
    }
}
