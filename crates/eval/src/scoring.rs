//! Scores every distinct conversation once: identical completions (the same token ids) share one
//! forward pass, and batches go through the model's packed forward, so answers to one prompt share
//! its computation too.

use std::collections::HashMap;

use armorm_model::{Encoded, ObjectiveScores, RewardModel};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Result;

/// One distinct conversation's result.
#[derive(Debug, Clone)]
pub struct Scored {
    pub score: f32,
    /// The final answer's length in tokens, on its own.
    pub response_tokens: usize,
    pub objectives: Option<ObjectiveScores>,
}

/// Distinct conversations collected before scoring.
#[derive(Default)]
pub struct Distinct {
    encoded: Vec<Encoded>,
    response_tokens: Vec<usize>,
    index: HashMap<Vec<u32>, usize>,
}

impl Distinct {
    /// The index of this conversation among the distinct ones (added if new).
    pub fn add(&mut self, encoded: Encoded, response_tokens: usize) -> usize {
        if let Some(&i) = self.index.get(encoded.ids()) {
            return i;
        }
        let i = self.encoded.len();
        self.index.insert(encoded.ids().to_vec(), i);
        self.encoded.push(encoded);
        self.response_tokens.push(response_tokens);
        i
    }

    pub fn len(&self) -> usize {
        self.encoded.len()
    }

    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// Scores them all, `batch_size` conversations a forward pass, with a progress bar.
    pub fn score(self, model: &RewardModel, batch_size: usize) -> Result<Vec<Scored>> {
        let bar = ProgressBar::new(self.encoded.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("scoring {wide_bar} {pos}/{len} [{per_sec}, ETA {eta}]") {
            bar.set_style(style);
        }
        let mut out = Vec::with_capacity(self.encoded.len());
        for (chunk, lengths) in
            self.encoded.chunks(batch_size.max(1)).zip(self.response_tokens.chunks(batch_size.max(1)))
        {
            let batch: Vec<&Encoded> = chunk.iter().collect();
            for (o, &response_tokens) in model.forward(&batch)?.into_iter().zip(lengths) {
                out.push(Scored { score: o.score, response_tokens, objectives: o.objectives });
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(out)
    }
}
