//! armorm's forward pass on the workloads: tokens/s, conversations/s and MFU against the GPU's
//! dense bf16 peak.

use std::time::Instant;

use anyhow::Context;

use armorm_model::{Encoded, RewardModel};
use serde::Serialize;

use crate::bench::{batches, checkpoint::Shape, stats};
use crate::workloads::Workload;

/// Dense bf16 tensor-core peak of an H100/H200 SXM, TFLOP/s; override with ARMORM_PEAK_TFLOPS.
pub const DEFAULT_PEAK_TFLOPS: f64 = 989.0;

/// Tokens per forward batch: what an 80 GB card holds for the 8B model with room to spare.
pub const BATCH_TOKENS: usize = 32768;

#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub workload: &'static str,
    pub conversations: usize,
    pub tokens: usize,
    pub tokens_per_s: f64,
    pub conv_per_s: f64,
    pub model_tflops: f64,
    pub mfu: f64,
}

fn flops_per_token(s: &Shape, context: usize) -> f64 {
    let hd = s.head_dim;
    let linear =
        s.hidden * (s.heads * hd + 2 * s.kv_heads * hd) + s.heads * hd * s.hidden + 3 * s.hidden * s.intermediate;
    // Causal attention: QK^T and PV over on average half the context.
    let attention = 2 * s.heads * hd * context / 2 * 2;
    2.0 * (linear * s.layers) as f64 + (attention * s.layers) as f64
}

/// The median of three timed passes over the workload in batches of up to [`BATCH_TOKENS`], in
/// order (best-of-8 groups stay together), after a warm-up batch.
pub fn measure(model: &RewardModel, shape: &Shape, w: &Workload, peak_tflops: f64) -> anyhow::Result<Measured> {
    let refs: Vec<&Encoded> = w.conversations.iter().collect();
    model.forward(&refs[..refs.len().min(8)])?;
    let batches = batches::by_tokens(refs.iter().copied(), BATCH_TOKENS);
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        for b in &batches {
            model.forward(b)?;
        }
        rounds.push(started.elapsed().as_secs_f64());
    }
    let seconds = stats::median(rounds);
    let tokens: usize = refs.iter().map(|e| e.len()).sum();
    // Every token's FLOPs as if computed (best-of-8 computes fewer: MFU over 100% there is prompt
    // sharing, not a miscount).
    let flops: f64 = refs.iter().map(|e| e.len() as f64 * flops_per_token(shape, e.len())).sum();
    let model_tflops = flops / seconds / 1e12;
    Ok(Measured {
        workload: w.name,
        conversations: refs.len(),
        tokens,
        tokens_per_s: tokens as f64 / seconds,
        conv_per_s: refs.len() as f64 / seconds,
        model_tflops,
        mfu: model_tflops / peak_tflops,
    })
}

/// Conversations/s computing each conversation alone, as `--batch-invariant` does (one timed pass
/// after a warm-up conversation): the price of invariance where the kernels do not promise it.
pub fn measure_alone(model: &RewardModel, w: &Workload) -> anyhow::Result<f64> {
    let first = w.conversations.first().context("an empty workload")?;
    model.forward(&[first])?;
    let started = Instant::now();
    for e in &w.conversations {
        model.forward(&[e])?;
    }
    Ok(w.conversations.len() as f64 / started.elapsed().as_secs_f64())
}
