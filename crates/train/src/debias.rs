//! Verbosity debiasing: how much of the verbosity reward to subtract from each other objective so
//! that it no longer ranks answers by length. On the reference set's predicted rewards (chosen and
//! rejected answers pooled), objective i gets the smallest λ of [`LAMBDA_GRID`] for which
//! Spearman(r_i − λ r_v, r_v) ≤ the threshold (the paper's [`THRESHOLD`] unless told; λ = 1 when
//! no grid value reaches it), verbosity itself gets 1, and the reward-transform matrix T is the
//! identity with row v reduced by λ, so `rewards @ T` is the debiased rewards and the head's
//! `gating @ Tᵀ` gives the coefficients.

use armorm_data::stats::{average_ranks, pearson};
use serde::{Deserialize, Serialize};

use crate::stage::Keyed;

pub const LAMBDA_GRID: [f64; 24] = [
    0.0, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75,
    0.8, 0.85, 0.9, 0.95,
];
pub const THRESHOLD: f64 = 0.03;
/// The tensor name of T, as the exported checkpoint stores it.
pub const TRANSFORM: &str = "reward_transform_matrix";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Debias {
    pub key: String,
    pub verbosity: String,
    pub objectives: Vec<String>,
    /// λ per objective (1 for verbosity itself and for objectives no grid value debiases).
    pub lambda: Vec<f64>,
    /// Spearman(r_i − λ_i r_v, r_v) at the chosen λ (NaN-free: 0 where a column is constant).
    pub spearman: Vec<f64>,
    /// The sweep behind the choice: `sweep[i][g]` = Spearman(r_i − grid[g] r_v, r_v).
    pub sweep: Vec<Vec<f64>>,
    /// The correlation a λ had to reach (`--spearman-threshold`; results from before the flag
    /// used the paper's).
    #[serde(default = "paper_threshold")]
    pub threshold: f64,
    /// Rows of the reference set the correlations were measured on (both answers of each pair).
    pub reference_rows: usize,
    /// T, k x k, row-major.
    pub transform: Vec<Vec<f32>>,
}

impl Keyed for Debias {
    fn key(&self) -> &str {
        &self.key
    }
}

fn paper_threshold() -> f64 {
    THRESHOLD
}

/// λ for each column of `rewards` (each column one objective over the same rows), debiasing against
/// column `v` until Spearman ≤ `threshold`; also the full sweep.
pub fn lambdas(rewards: &[Vec<f64>], v: usize, threshold: f64) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
    let k = rewards.len();
    let verbosity_ranks = average_ranks(&rewards[v]);
    let sweep: Vec<Vec<f64>> = (0..k)
        .map(|i| {
            LAMBDA_GRID
                .iter()
                .map(|&lambda| {
                    let adjusted: Vec<f64> =
                        rewards[i].iter().zip(&rewards[v]).map(|(r, rv)| r - lambda * rv).collect();
                    pearson(&average_ranks(&adjusted), &verbosity_ranks)
                })
                .collect()
        })
        .collect();
    let mut lambda = vec![1.0; k];
    let mut rho = vec![0.0; k];
    for i in (0..k).filter(|&i| i != v) {
        match sweep[i].iter().position(|&c| c <= threshold) {
            Some(g) => (lambda[i], rho[i]) = (LAMBDA_GRID[g], sweep[i][g]),
            None => rho[i] = sweep[i].iter().cloned().filter(|c| !c.is_nan()).fold(f64::INFINITY, f64::min),
        }
        if !rho[i].is_finite() {
            rho[i] = 0.0;
        }
    }
    (lambda, rho, sweep)
}

/// T = I with row v reduced by λ (so T[v][v] = 0 when λ_v = 1).
pub fn transform(lambda: &[f64], v: usize) -> Vec<Vec<f32>> {
    let k = lambda.len();
    (0..k)
        .map(|i| (0..k).map(|j| f32::from(u8::from(i == j)) - if i == v { lambda[j] as f32 } else { 0.0 }).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_subtracts_lambda_times_verbosity() {
        let t = transform(&[0.25, 1.0, 0.0], 1);
        assert_eq!(t, vec![vec![1.0, 0.0, 0.0], vec![-0.25, 0.0, 0.0], vec![0.0, 0.0, 1.0]]);
        // rewards @ T: r_j - λ_j r_v
        let r = [2.0f32, 4.0, 3.0];
        let debiased: Vec<f32> = (0..3).map(|j| (0..3).map(|i| r[i] * t[i][j]).sum()).collect();
        assert_eq!(debiased, [1.0, 0.0, 3.0]);
    }

    #[test]
    fn uncorrelated_objectives_keep_lambda_zero_and_copies_of_verbosity_need_one() {
        let v: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let unrelated: Vec<f64> = (0..50).map(|i| ((i * 37) % 50) as f64 - 25.0).collect();
        let (lambda, _, sweep) = lambdas(&[v.clone(), unrelated, v.clone()], 0, THRESHOLD);
        assert_eq!(lambda[0], 1.0);
        assert!(sweep[1][0] <= THRESHOLD && lambda[1] == 0.0, "{:?}", sweep[1]);
        assert_eq!(lambda[2], 1.0, "r_v - λ r_v keeps r_v's ranks for every λ < 1");
    }
}
