//! The shared queue between submitters and the worker: a mutex-guarded deque with a condition
//! variable, bounded in items and tokens.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::{BatchError, BatchPolicy, Observer, Scored, Scorer};

pub(crate) type Reply<O> = oneshot::Sender<Result<Scored<O>, BatchError>>;

pub(crate) struct Pending<S: Scorer> {
    pub item: S::Item,
    pub tokens: usize,
    pub reply: Reply<S::Output>,
    pub enqueued: Instant,
    pub span: tracing::Span,
}

struct State<S: Scorer> {
    items: VecDeque<Pending<S>>,
    tokens: usize,
    closed: bool,
}

pub(crate) struct Shared<S: Scorer> {
    state: Mutex<State<S>>,
    wake: Condvar,
    policy: BatchPolicy,
    observer: Arc<dyn Observer>,
    alive: AtomicBool,
}

impl<S: Scorer> Shared<S> {
    pub fn new(policy: BatchPolicy, observer: Arc<dyn Observer>) -> Self {
        Self {
            state: Mutex::new(State { items: VecDeque::new(), tokens: 0, closed: false }),
            wake: Condvar::new(),
            policy,
            observer,
            alive: AtomicBool::new(true),
        }
    }

    /// A panic while the lock was held cannot leave the queue half-updated (every update is a
    /// push/pop plus a counter), so a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, State<S>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn policy(&self) -> &BatchPolicy {
        &self.policy
    }

    pub fn observer(&self) -> &dyn Observer {
        self.observer.as_ref()
    }

    /// Admits all of `items` or none: a request never half-runs because the queue filled midway.
    pub fn push_all(&self, items: Vec<Pending<S>>) -> Result<(), BatchError> {
        let mut state = self.lock();
        if state.closed {
            return Err(BatchError::ShuttingDown);
        }
        if !self.is_alive() {
            return Err(BatchError::WorkerGone);
        }
        if let Some(p) = items.iter().find(|p| p.tokens > self.policy.max_batch_tokens) {
            return Err(BatchError::TooLarge { tokens: p.tokens, budget: self.policy.max_batch_tokens });
        }
        let tokens: usize = items.iter().map(|p| p.tokens).sum();
        if items.len() > self.policy.max_queue_items || tokens > self.policy.max_queue_tokens {
            return Err(BatchError::ExceedsQueue {
                items: items.len(),
                tokens,
                max_items: self.policy.max_queue_items,
                max_tokens: self.policy.max_queue_tokens,
            });
        }
        if state.items.len() + items.len() > self.policy.max_queue_items
            || state.tokens + tokens > self.policy.max_queue_tokens
        {
            return Err(BatchError::Overloaded { queued_items: state.items.len(), queued_tokens: state.tokens });
        }
        state.tokens += tokens;
        state.items.extend(items);
        self.observer.queue_depth(state.items.len(), state.tokens);
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    pub fn depth(&self) -> (usize, usize) {
        let state = self.lock();
        (state.items.len(), state.tokens)
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Called once the worker has exited: whatever is still queued learns so at once.
    pub fn mark_dead(&self) {
        self.alive.store(false, Ordering::Release);
        let mut state = self.lock();
        state.tokens = 0;
        for p in state.items.drain(..) {
            let _ = p.reply.send(Err(BatchError::WorkerGone));
        }
    }

    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }

    /// Blocks until a batch is due; `None` once closed and drained.
    pub fn next_batch(&self) -> Option<Vec<Pending<S>>> {
        let mut state = self.lock();
        loop {
            // Callers that went away no longer want an answer: their work never reaches the model.
            let before = state.items.len();
            state.items.retain(|p| !p.reply.is_closed());
            if state.items.len() != before {
                state.tokens = state.items.iter().map(|p| p.tokens).sum();
                self.observer.queue_depth(state.items.len(), state.tokens);
            }
            let Some(oldest) = state.items.front() else {
                if state.closed {
                    return None;
                }
                state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            let deadline = oldest.enqueued + self.policy.max_batch_wait;
            let now = Instant::now();
            if !state.closed && now < deadline && !self.policy.is_full(state.items.len(), state.tokens) {
                state = self.wake.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
                continue;
            }
            let lengths: Vec<usize> = state.items.iter().map(|p| p.tokens).collect();
            let chosen = self.policy.select(&lengths);
            let mut batch = Vec::with_capacity(chosen.len());
            for &i in chosen.iter().rev() {
                if let Some(p) = state.items.remove(i) {
                    state.tokens -= p.tokens;
                    batch.push(p);
                }
            }
            batch.reverse();
            self.observer.queue_depth(state.items.len(), state.tokens);
            return Some(batch);
        }
    }
}
