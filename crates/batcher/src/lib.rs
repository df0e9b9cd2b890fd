//! Dynamic batching in front of one model worker thread.
//!
//! Async callers [`Batcher::submit`] items and await their own reply; one OS thread owns the
//! [`Scorer`] and runs every forward pass, so the async runtime never computes. Batches are formed
//! by a token budget, grouping items of similar length around the oldest waiting item, which bounds
//! every item's wait (no starvation). A bounded queue answers `Overloaded` at once instead of
//! growing without limit.
//!
//! Not here: tokenization, HTTP, metrics backends (see [`Observer`]).

mod policy;
mod queue;
mod scorer;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

pub use policy::{BatchPolicy, CostModel};
pub use scorer::{BatchRun, NoObserver, Observer, Scorer};

use queue::{Pending, Shared};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("queue full ({queued_items} items, {queued_tokens} tokens waiting)")]
    Overloaded { queued_items: usize, queued_tokens: usize },
    /// More than the queue can hold even when empty: retrying cannot help.
    #[error(
        "{items} items of {tokens} tokens exceed what the queue can ever hold ({max_items} items, {max_tokens} tokens)"
    )]
    ExceedsQueue { items: usize, tokens: usize, max_items: usize, max_tokens: usize },
    #[error("input of {tokens} tokens exceeds the batch token budget of {budget}")]
    TooLarge { tokens: usize, budget: usize },
    #[error("forward pass failed: {0}")]
    Forward(String),
    #[error("the model worker has stopped")]
    WorkerGone,
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// One item's result with the timings of its trip through the queue.
#[derive(Debug)]
pub struct Scored<O> {
    pub output: O,
    pub queue_time: Duration,
    pub inference_time: Duration,
    pub batch_size: usize,
}

pub struct Batcher<S: Scorer> {
    shared: Arc<Shared<S>>,
    worker: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl<S: Scorer> Batcher<S> {
    pub fn start(scorer: S, policy: BatchPolicy, observer: Arc<dyn Observer>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::new(policy, observer));
        let worker = worker::spawn(scorer, shared.clone())?;
        Ok(Self { shared, worker: std::sync::Mutex::new(Some(worker)) })
    }

    /// Queues `item` and waits for its result. Dropping the returned future withdraws the item: the
    /// worker skips items whose caller has gone before they reach the model.
    pub async fn submit(&self, item: S::Item) -> Result<Scored<S::Output>, BatchError> {
        let mut results = self.submit_all(vec![item]).await?;
        results.pop().unwrap_or(Err(BatchError::WorkerGone))
    }

    /// Queues all of `items` or none of them (the queue is full, or they would never fit), then waits
    /// for every result, in order. Dropping the future withdraws the items not yet running.
    pub async fn submit_all(
        &self,
        items: Vec<S::Item>,
    ) -> Result<Vec<Result<Scored<S::Output>, BatchError>>, BatchError> {
        let now = Instant::now();
        let mut receivers = Vec::with_capacity(items.len());
        let pending = items
            .into_iter()
            .map(|item| {
                let (reply, rx) = oneshot::channel();
                receivers.push(rx);
                Pending { tokens: S::tokens(&item), item, reply, enqueued: now, span: tracing::Span::current() }
            })
            .collect();
        self.shared.push_all(pending)?;
        let mut results = Vec::with_capacity(receivers.len());
        for rx in receivers {
            results.push(rx.await.unwrap_or(Err(BatchError::WorkerGone)));
        }
        Ok(results)
    }

    /// The worker thread is running and accepting work.
    pub fn is_alive(&self) -> bool {
        self.shared.is_alive()
    }

    /// Items and tokens waiting now.
    pub fn queue_depth(&self) -> (usize, usize) {
        self.shared.depth()
    }

    pub fn policy(&self) -> &BatchPolicy {
        self.shared.policy()
    }

    /// Stops accepting new items, lets the worker finish everything already queued, and joins it.
    /// Blocks the calling thread until then.
    pub fn shutdown(&self) {
        self.shared.close();
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(worker) = worker {
            // A worker that panicked has already answered WorkerGone to its callers.
            let _ = worker.join();
        }
    }
}

impl<S: Scorer> Drop for Batcher<S> {
    fn drop(&mut self) {
        self.shutdown();
    }
}
