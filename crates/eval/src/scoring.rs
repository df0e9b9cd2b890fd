//! Scores every distinct conversation once: identical completions (the same token ids) share one
//! forward pass, and batches go through the model's packed forward, so answers to one prompt share
//! its computation too.

use std::collections::HashMap;

use armorm_model::{Encoded, ObjectiveScores, RewardModel};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cache::ScoreCache;
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

    /// Scores them all, `batch_size` conversations a forward pass, with a progress bar; those the
    /// cache holds are taken from it, and each batch computed is added to it.
    pub fn score(
        self,
        model: &RewardModel,
        batch_size: usize,
        mut cache: Option<&mut ScoreCache>,
    ) -> Result<Vec<Scored>> {
        let cached = |e: &Encoded| cache.as_deref().and_then(|c| c.get(e.ids())).cloned();
        let mut out: Vec<Option<Scored>> = self
            .encoded
            .iter()
            .zip(&self.response_tokens)
            .map(|(e, &response_tokens)| {
                cached(e).map(|c| Scored { score: c.score, response_tokens, objectives: c.objectives })
            })
            .collect();
        let todo: Vec<usize> = (0..out.len()).filter(|&i| out[i].is_none()).collect();
        if let Some(c) = cache.as_deref() {
            tracing::info!(cached = out.len() - todo.len(), to_score = todo.len(), cache = %c.path().display(), "scores");
        }
        let bar = ProgressBar::new(todo.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("scoring {wide_bar} {pos}/{len} [{per_sec}, ETA {eta}]") {
            bar.set_style(style);
        }
        for chunk in todo.chunks(batch_size.max(1)) {
            let batch: Vec<&Encoded> = chunk.iter().map(|&i| &self.encoded[i]).collect();
            let outputs = model.forward(&batch)?;
            if let Some(c) = cache.as_deref_mut() {
                c.put(
                    chunk
                        .iter()
                        .zip(&outputs)
                        .map(|(&i, o)| (self.encoded[i].ids().to_vec(), o.score, o.objectives.clone())),
                )?;
            }
            for (&i, o) in chunk.iter().zip(outputs) {
                out[i] =
                    Some(Scored { score: o.score, response_tokens: self.response_tokens[i], objectives: o.objectives });
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(out.into_iter().map(|s| s.expect("every conversation is cached or scored")).collect())
    }
}
