//! The reward model as the batcher's [`Scorer`]: the newtype keeps the batcher crate free of the
//! model crate.

use std::sync::Arc;

use armorm_batcher::Scorer;
use armorm_model::{Encoded, RewardModel, RewardOutput};

pub struct ModelScorer(pub Arc<RewardModel>);

impl Scorer for ModelScorer {
    type Item = Encoded;
    type Output = RewardOutput;

    fn tokens(item: &Encoded) -> usize {
        item.len()
    }

    fn score(&mut self, batch: &[&Encoded]) -> Result<Vec<RewardOutput>, String> {
        self.0.forward(batch).map_err(|e| e.to_string())
    }

    fn computed_tokens(&self, batch: &[&Encoded]) -> usize {
        self.0.computed_tokens(batch)
    }
}
