//! `armorm serve`: load, warm up, bind, serve, and drain on shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use armorm_batcher::{BatchPolicy, Batcher};
use armorm_model::{Encoded, RewardModel};
use tokio::sync::oneshot;

use crate::config::ServeConfig;
use crate::connections::{self, ConnectionLimits};
use crate::metrics::Metrics;
use crate::model_scorer::ModelScorer;
use crate::routes;
use crate::state::{Access, AppState, Limits};

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

pub async fn start(config: &ServeConfig) -> anyhow::Result<RunningServer> {
    tracing::info!(?config, "starting armorm serve");
    let access = Access {
        api_key: config.access.key.key()?,
        auth_health_and_metrics: config.access.auth_health_and_metrics,
        ui: !config.access.no_ui,
    };
    // Bound before the load, so a port in use is reported at once, not minutes into an 8B load.
    let (host, port) = (config.listen.host, config.listen.port);
    let listener =
        tokio::net::TcpListener::bind((host, port)).await.with_context(|| format!("binding {host}:{port}"))?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::new(&routes::paths())?);
    let connection_limits = config.connections.limits();
    tracing::info!(%addr, "listening; answering 503 until the model is loaded");
    let (listener, Loaded { model, policy, limits }) =
        not_ready_while(listener, connection_limits, metrics.clone(), load(config)).await?;
    let batcher = Batcher::start(ModelScorer(model.clone()), policy, metrics.clone())?;
    let parts = (model, batcher, metrics);
    let state = Arc::new(AppState::new(parts, limits, access, config.inputs.tokenizer_workers()));
    let deadline = Duration::from_secs(config.connections.shutdown_timeout);
    let (stop, task) = serve_until_stopped(listener, state, connection_limits, deadline);
    tracing::info!(%addr, "ready");
    Ok(RunningServer { addr, stop, task })
}

/// Serves `state`'s router on `listener` until the returned sender fires, then drains: no new
/// connections, in-flight requests finished, the model worker stopped, all within `deadline`.
fn serve_until_stopped(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    limits: ConnectionLimits,
    deadline: Duration,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let app = routes::router(state.clone());
    let task = tokio::spawn(async move {
        let stop = async {
            let _ = stopped.await;
            state.lifecycle.ready.store(false, Ordering::Release);
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
                let dropped = state.lifecycle.in_flight.load(Ordering::Acquire);
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
    (stop, task)
}

/// What serving needs from the load: the model, its batching policy and the input limits.
struct Loaded {
    model: Arc<RewardModel>,
    policy: BatchPolicy,
    limits: Limits,
}

/// Loads and warms up the model, and settles the limits it allows.
async fn load(config: &ServeConfig) -> anyhow::Result<Loaded> {
    let (source, options) = (config.model.source(), config.model.load_options());
    let model = tokio::task::spawn_blocking(move || RewardModel::load(&source, &options))
        .await?
        .with_context(|| format!("loading {}", config.model.model))?;
    let model = Arc::new(model);
    let (inputs, policy) = (&config.inputs, config.batching.policy());
    let max_input_tokens = inputs.max_input_tokens.min(model.max_positions());
    let max_input_origin = if max_input_tokens < inputs.max_input_tokens {
        format!("the model's max_position_embeddings, below --max-input-tokens {}", inputs.max_input_tokens)
    } else {
        "--max-input-tokens".to_string()
    };
    tracing::info!(
        max_input_tokens,
        max_input_origin,
        max_batch_tokens = policy.max_batch_tokens,
        max_batch_size = policy.max_batch_size,
        dtype = model.dtype().name(),
        batch_invariant = model.batch_invariant(),
        "effective limits"
    );
    if max_input_tokens > policy.max_batch_tokens {
        bail!(
            "--max-input-tokens ({max_input_tokens}) exceeds --max-batch-tokens ({}): the longest input could \
             never run",
            policy.max_batch_tokens
        );
    }
    if !config.batching.no_warmup {
        warm_up(&model, &policy, max_input_tokens).await?;
    }
    let limits = Limits {
        max_input_tokens,
        max_input_origin,
        max_body_bytes: inputs.max_body_bytes,
        max_rank_pairwise: inputs.max_rank_pairwise,
        body_read_timeout: Duration::from_secs(config.connections.body_read_timeout),
        content_special_tokens: inputs.content_special_tokens,
    };
    Ok(Loaded { model, policy, limits })
}

/// Runs `load` while every request on `listener` gets a JSON 503 `not_ready` (so health checks and
/// clients see a server that is loading, not a refused connection), then hands the listener back
/// for the real router.
async fn not_ready_while<T>(
    listener: tokio::net::TcpListener,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    load: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(tokio::net::TcpListener, T)> {
    let socket = listener.into_std()?;
    let loading = tokio::net::TcpListener::from_std(socket.try_clone()?)?;
    let app = axum::Router::new().fallback(|| async {
        crate::error::ApiError::NotReady("loading the model; /health answers 200 once it is ready".into())
    });
    let (loaded, stop) = oneshot::channel::<()>();
    let answering = tokio::spawn(async move {
        connections::serve(loading, app, limits, metrics, async {
            let _ = stop.await;
        })
        .await
        .shutdown()
        .await
    });
    let result = load.await;
    let _ = loaded.send(());
    answering.await.context("the loading server")?;
    Ok((tokio::net::TcpListener::from_std(socket)?, result?))
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
