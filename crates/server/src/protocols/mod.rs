//! Request adapters. Each converts its clients' body into [`ScoreInput`]s, scores them through
//! [`AppState::score`] (one queue, one model for every route) and shapes the answer its clients
//! expect. None touches the tokenizer, the queue or the model directly.

pub mod native;
pub mod openai;
pub mod openrlhf;
pub mod slime;
pub mod vllm;

use std::sync::Arc;

use crate::error::ApiError;
use crate::input::ScoreInput;
use crate::state::{AppState, ItemNames, Timings};
use crate::types::{ResultShape, ScoreResult};

/// Scores with no per-request options: what the compatibility protocols can express.
pub async fn score_plain(
    state: &Arc<AppState>,
    inputs: Vec<ScoreInput>,
    names: ItemNames,
    truncate: bool,
) -> Result<(Vec<ScoreResult>, Timings), ApiError> {
    state.score(inputs, names, truncate, &ResultShape::default()).await
}

/// rewards followed by gating, the per-objective part of the `/pooling` and `/v1/embeddings`
/// vectors (empty for single-score models).
pub fn objective_vector(r: &ScoreResult) -> Vec<f32> {
    r.output.objectives.as_ref().map_or_else(Vec::new, |o| o.rewards.iter().chain(&o.gating).copied().collect())
}

/// P(a beats b) under Bradley-Terry, for any margin without overflow.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Unix seconds, for the `created` field of OpenAI-style responses.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A response id unique within this process, in the `kind-<hex>` style OpenAI clients expect.
pub fn response_id(kind: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{kind}-{:x}{n:08x}", unix_now())
}

#[cfg(test)]
mod tests {
    use super::sigmoid;

    #[test]
    fn sigmoid_is_stable_at_the_extremes() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!((sigmoid(2.0) + sigmoid(-2.0) - 1.0).abs() < 1e-15);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert!(sigmoid(-745.0) > 0.0 && sigmoid(-745.0).is_finite());
    }
}
