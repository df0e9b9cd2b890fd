//! What the batcher drives (a model, or a fake in tests) and what it reports to.

use std::time::Duration;

/// Runs one batch at a time on the worker thread.
pub trait Scorer: Send + 'static {
    type Item: Send + 'static;
    type Output: Send + 'static;

    /// The item's length in tokens: what the batch budget and the queue bound count.
    fn tokens(item: &Self::Item) -> usize;

    /// One output per item, in order, or an error that fails the whole batch.
    fn score(&mut self, batch: &[&Self::Item]) -> Result<Vec<Self::Output>, String>;

    /// The tokens a batch's computation costs: its items' tokens, unless the scorer computes some
    /// once for several items (prompts they share).
    fn computed_tokens(&self, batch: &[&Self::Item]) -> usize {
        batch.iter().map(|item| Self::tokens(item)).sum()
    }
}

/// One batch, as the worker ran it.
#[derive(Debug, Clone, Copy)]
pub struct BatchRun {
    pub items: usize,
    /// The items' tokens.
    pub tokens: usize,
    /// What the scorer computed of them ([`Scorer::computed_tokens`]).
    pub computed_tokens: usize,
    pub elapsed: Duration,
}

/// Hooks for metrics; called from the worker thread and from submitters, so keep them cheap.
pub trait Observer: Send + Sync {
    /// The queue now holds `items` items of `tokens` tokens in total.
    fn queue_depth(&self, _items: usize, _tokens: usize) {}
    /// A batch ran.
    fn batch(&self, _run: &BatchRun) {}
}

/// Reports nowhere.
pub struct NoObserver;

impl Observer for NoObserver {}
