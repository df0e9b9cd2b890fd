//! The verbosity-bias audit: does the model rank answers by length? Spearman correlation of the
//! score (and, for ArmoRM, of each objective's raw and debiased reward) with the answer's length in
//! tokens over every distinct completion, and the accuracy on pairs where the chosen answer is the
//! shorter one versus the longer one.

use armorm_data::stats::spearman;
use serde::Serialize;

use crate::scoring::Scored;

#[derive(Debug, Clone, Serialize)]
pub struct ObjectiveAudit {
    pub objective: String,
    /// Spearman(reward, length).
    pub raw: f64,
    /// Spearman((rewards @ T)_i, length): after the model's own verbosity correction.
    pub debiased: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LengthSplit {
    pub pairs: usize,
    pub accuracy: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub completions: usize,
    /// `None` for a pairwise model, which gives no answer a score of its own.
    pub spearman_score_length: Option<f64>,
    pub objectives: Vec<ObjectiveAudit>,
    pub chosen_shorter: LengthSplit,
    pub chosen_longer: LengthSplit,
}

/// `pairs` are (chosen, rejected) indices into `scored`; `transform` is T when the head has one.
pub fn audit(scored: &[Scored], pairs: &[(usize, usize)], names: &[String], transform: Option<&[Vec<f32>]>) -> Audit {
    let lengths: Vec<f64> = scored.iter().map(|s| s.response_tokens as f64).collect();
    let scores: Vec<f64> = scored.iter().map(|s| f64::from(s.score)).collect();
    let mut objectives = Vec::new();
    if let Some(t) = transform {
        let rewards: Vec<&[f32]> =
            scored.iter().filter_map(|s| s.objectives.as_ref().map(|o| o.rewards.as_slice())).collect();
        if rewards.len() == scored.len() {
            for (i, name) in names.iter().enumerate() {
                let raw: Vec<f64> = rewards.iter().map(|r| f64::from(r[i])).collect();
                let debiased: Vec<f64> =
                    rewards.iter().map(|r| r.iter().zip(t).map(|(x, row)| f64::from(x * row[i])).sum()).collect();
                objectives.push(ObjectiveAudit {
                    objective: name.clone(),
                    raw: spearman(&raw, &lengths),
                    debiased: spearman(&debiased, &lengths),
                });
            }
        }
    }
    let split = |keep: fn(usize, usize) -> bool| {
        let chosen: Vec<bool> = pairs
            .iter()
            .filter(|(c, r)| keep(scored[*c].response_tokens, scored[*r].response_tokens))
            .map(|(c, r)| scored[*c].score > scored[*r].score)
            .collect();
        LengthSplit {
            pairs: chosen.len(),
            accuracy: (!chosen.is_empty()).then(|| chosen.iter().filter(|&&x| x).count() as f64 / chosen.len() as f64),
        }
    };
    Audit {
        completions: scored.len(),
        spearman_score_length: Some(spearman(&scores, &lengths)),
        objectives,
        chosen_shorter: split(|c, r| c < r),
        chosen_longer: split(|c, r| c > r),
    }
}
