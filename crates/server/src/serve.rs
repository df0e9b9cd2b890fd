//! `armorm serve`: load, warm up, bind, serve, and drain on shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use armorm_batcher::{BatchPolicy, Batcher, CostModel};
use armorm_model::{Encoded, RewardModel};
use tokio::sync::{oneshot, Semaphore};

use crate::cli::ServeArgs;
use crate::connections::{self, ConnectionLimits};
use crate::metrics::Metrics;
use crate::model_scorer::ModelScorer;
use crate::routes;
use crate::state::{AppState, Limits};

pub struct RunningServer {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Stops accepting connections, lets in-flight requests (and so the queue) finish, then stops
    /// the model worker. Fails, saying what it dropped, when that takes longer than
    /// `--shutdown-timeout`.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("server task")?
    }
}

pub async fn start(args: &ServeArgs) -> anyhow::Result<RunningServer> {
    tracing::info!(config = ?args, "starting armorm serve");
    let api_key = args.api_key()?;
    let (source, options) = (args.model.source(), args.model.load_options());
    let model = tokio::task::spawn_blocking(move || RewardModel::load(&source, &options))
        .await?
        .with_context(|| format!("loading {}", args.model.model))?;
    let model = Arc::new(model);
    let max_input_tokens = args.max_input_tokens.min(model.max_positions());
    let max_input_origin = if max_input_tokens < args.max_input_tokens {
        format!("the model's max_position_embeddings, below --max-input-tokens {}", args.max_input_tokens)
    } else {
        "--max-input-tokens".to_string()
    };
    tracing::info!(
        max_input_tokens,
        max_input_origin,
        max_batch_tokens = args.max_batch_tokens,
        max_batch_size = args.max_batch_size.max(1),
        dtype = model.dtype().name(),
        batch_invariant = model.batch_invariant(),
        "effective limits"
    );
    if max_input_tokens > args.max_batch_tokens {
        bail!(
            "--max-input-tokens ({max_input_tokens}) exceeds --max-batch-tokens ({}): the longest input could never run",
            args.max_batch_tokens
        );
    }
    let policy = BatchPolicy {
        max_batch_tokens: args.max_batch_tokens,
        max_batch_size: args.max_batch_size.max(1),
        max_batch_wait: Duration::from_millis(args.max_batch_wait_ms),
        max_queue_tokens: args.max_queue_tokens,
        max_queue_items: args.max_queue_requests,
        // The backbone packs sequences on every device: no compute is spent on padding.
        cost: CostModel::Packed,
    };
    if !args.no_warmup {
        warm_up(&model, &policy, max_input_tokens).await?;
    }
    let metrics = Arc::new(Metrics::new(&routes::paths())?);
    let batcher = Batcher::start(ModelScorer(model.clone()), policy, metrics.clone())?;
    let workers = args.tokenizer_workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let state = Arc::new(AppState {
        model,
        batcher,
        metrics,
        limits: Limits {
            max_input_tokens,
            max_input_origin,
            max_body_bytes: args.max_body_bytes,
            body_read_timeout: Duration::from_secs(args.body_read_timeout),
        },
        content_special_tokens: args.content_special_tokens,
        api_key,
        auth_health_and_metrics: args.auth_health_and_metrics,
        ui: !args.no_ui,
        tokenizer_permits: Arc::new(Semaphore::new(workers.max(1))),
        ready: true.into(),
        in_flight: 0.into(),
    });
    let listener = tokio::net::TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = routes::router(state.clone());
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(args.header_read_timeout.max(1)),
        max_connections: args.max_connections,
        half_close: args.half_close,
    };
    let deadline = Duration::from_secs(args.shutdown_timeout);
    let task = tokio::spawn(async move {
        let stop = async {
            let _ = stopped.await;
            state.ready.store(false, Ordering::Release);
            tracing::info!(?deadline, "shutting down: no new connections, finishing in-flight requests");
        };
        let drain = connections::serve(listener, app, limits, state.metrics.clone(), stop).await;
        let finish = async {
            drain.shutdown().await;
            let draining = state.clone();
            tokio::task::spawn_blocking(move || draining.batcher.shutdown()).await
        };
        match tokio::time::timeout(deadline, finish).await {
            Ok(joined) => joined?,
            Err(_) => {
                let dropped = state.in_flight.load(Ordering::Acquire);
                let (queued, queued_tokens) = state.batcher.queue_depth();
                tracing::error!(dropped, queued, queued_tokens, "shutdown deadline passed; dropping the rest");
                bail!(
                    "shutdown did not finish within {deadline:?} (--shutdown-timeout): dropped {dropped} in-flight \
                     requests and {queued} queued conversations"
                );
            }
        }
        tracing::info!("stopped");
        Ok(())
    });
    tracing::info!(%addr, "ready");
    Ok(RunningServer { addr, stop, task })
}

/// One full-size batch before serving, so a budget the device cannot hold fails now, not under load.
async fn warm_up(model: &Arc<RewardModel>, policy: &BatchPolicy, max_input_tokens: usize) -> anyhow::Result<()> {
    let model = model.clone();
    let (budget, max_items) = (policy.max_batch_tokens, policy.max_batch_size);
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let per_item = max_input_tokens.min(budget.div_ceil(max_items)).max(1);
        let mut batch: Vec<Encoded> = Vec::new();
        let mut left = budget;
        while left > 0 && batch.len() < max_items {
            let len = per_item.min(left);
            batch.push(model.encoder().synthetic(len)?);
            left -= len;
        }
        let refs: Vec<&Encoded> = batch.iter().collect();
        model.forward(&refs).context("warm-up batch failed; lower --max-batch-tokens")?;
        let tokens: usize = batch.iter().map(Encoded::len).sum();
        tracing::info!(items = batch.len(), tokens, elapsed = ?started.elapsed(), "warm-up batch done");
        Ok(())
    })
    .await?
}
