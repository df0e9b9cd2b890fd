//! The model thread: takes batches off the queue, runs them, answers each item exactly once.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use crate::queue::{Pending, Shared};
use crate::{BatchError, BatchRun, Scored, Scorer};

pub(crate) fn spawn<S: Scorer>(mut scorer: S, shared: Arc<Shared<S>>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("armorm-model".into()).spawn(move || {
        // However the loop ends (drained, or a panic outside the guarded forward pass), the
        // queue is told, so health turns unhealthy and waiters fail fast instead of hanging.
        struct Exit<S: Scorer>(Arc<Shared<S>>);
        impl<S: Scorer> Drop for Exit<S> {
            fn drop(&mut self) {
                self.0.mark_dead();
            }
        }
        let _exit = Exit(shared.clone());
        while let Some(batch) = shared.next_batch() {
            run_batch(&mut scorer, &shared, batch);
        }
    })
}

fn run_batch<S: Scorer>(scorer: &mut S, shared: &Shared<S>, batch: Vec<Pending<S>>) {
    let started = Instant::now();
    let items: Vec<&S::Item> = batch.iter().map(|p| &p.item).collect();
    let tokens: usize = batch.iter().map(|p| p.tokens).sum();
    let computed_tokens = scorer.computed_tokens(&items);
    // A panicking forward pass fails its own batch only; the worker keeps serving.
    let result = match catch_unwind(AssertUnwindSafe(|| scorer.score(&items))) {
        Ok(Ok(outputs)) if outputs.len() == batch.len() => Ok(outputs),
        Ok(Ok(outputs)) => Err(format!("scorer returned {} outputs for {} inputs", outputs.len(), batch.len())),
        Ok(Err(e)) => Err(e),
        Err(panic) => Err(panic_message(panic.as_ref())),
    };
    let elapsed = started.elapsed();
    shared.observer().batch(&BatchRun { items: batch.len(), tokens, computed_tokens, elapsed });
    let size = batch.len();
    match result {
        Ok(outputs) => {
            for (p, output) in batch.into_iter().zip(outputs) {
                let queue_time = started.saturating_duration_since(p.enqueued);
                p.span
                    .in_scope(|| tracing::debug!(batch_size = size, ?queue_time, inference_time = ?elapsed, "scored"));
                let _ = p.reply.send(Ok(Scored { output, queue_time, inference_time: elapsed, batch_size: size }));
            }
        }
        Err(message) => {
            tracing::error!(batch_size = size, tokens, %message, "forward pass failed");
            for p in batch {
                let _ = p.reply.send(Err(BatchError::Forward(message.clone())));
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("panic in forward pass: {detail}")
}
