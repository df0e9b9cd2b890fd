//! Predicted rewards from features: the regression layer and the reward transform applied to rows
//! of hidden states, in f64 (what debiasing ranks and stage 2 trains on).

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};

use crate::tensors::F32Tensor;

/// Predicted rewards `rows @ Wᵀ` in f64, row-major (rows, k).
pub fn predict<'r>(rows: impl Iterator<Item = &'r [f32]>, w: &F32Tensor) -> Vec<f64> {
    let (k, d) = (w.shape[0], w.shape[1]);
    let wt = Mat::from_fn(d, k, |i, j| f64::from(w.data[j * d + i]));
    let rows: Vec<&[f32]> = rows.collect();
    let mut out = Vec::with_capacity(rows.len() * k);
    for chunk in rows.chunks(1024) {
        let x = Mat::from_fn(chunk.len(), d, |i, j| f64::from(chunk[i][j]));
        let mut y = Mat::zeros(chunk.len(), k);
        matmul(&mut y, Accum::Replace, &x, &wt, 1.0, Par::rayon(0));
        out.extend((0..chunk.len()).flat_map(|i| (0..k).map(move |j| (i, j))).map(|(i, j)| y[(i, j)]));
    }
    out
}

/// `rewards @ T` for row-major (n, k) rewards.
pub fn apply_transform(rewards: &[f64], t: &[Vec<f32>]) -> Vec<f32> {
    let k = t.len();
    rewards
        .chunks(k)
        .flat_map(|r| (0..k).map(move |j| (0..k).map(|i| r[i] * f64::from(t[i][j])).sum::<f64>() as f32))
        .collect()
}
