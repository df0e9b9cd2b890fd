//! Verbosity debiasing: how much of the verbosity reward to subtract from each other objective so
//! that it no longer ranks answers by length. On the reference set's predicted rewards (chosen and
//! rejected answers pooled), objective i gets the smallest λ of [`LAMBDA_GRID`] for which
//! Spearman(r_i − λ r_v, r_v) ≤ the threshold (the paper's [`THRESHOLD`] unless told; λ = 1 when
//! no grid value reaches it), verbosity itself gets 1, and the reward-transform matrix T is the
//! identity with row v reduced by λ, so `rewards @ T` is the debiased rewards and the head's
//! `gating @ Tᵀ` gives the coefficients.

use armorm_data::stats::{average_ranks, pearson};
use serde::{Deserialize, Serialize};

use super::regression::Regression;
use crate::cli::StageName;
use crate::context::{Context, FORMAT};
use crate::error::{Result, TrainError};
use crate::features::Matrix;
use crate::rewards::predict;
use crate::stage::Stage;
use crate::store::{fresh, key, read_json, write_json, Keyed};
use crate::tensors::F32Tensor;

const DEFAULT_VERBOSITY: &str = "helpsteer-verbosity";

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

/// The verbosity objective (`--verbosity-objective`, else helpsteer-verbosity) and its index among
/// `names`; checked before any feature extraction, so a wrong flag fails in seconds.
pub fn verbosity_index(cx: &Context, names: &[String]) -> Result<(String, usize)> {
    let verbosity = match &cx.args.verbosity_objective {
        Some(v) => v.clone(),
        None if names.iter().any(|n| n == DEFAULT_VERBOSITY) => DEFAULT_VERBOSITY.to_string(),
        None => {
            return Err(TrainError::Invalid(format!(
                "no {DEFAULT_VERBOSITY} objective: name the verbosity objective with --verbosity-objective (one of {})",
                names.join(", ")
            )))
        }
    };
    let v = names.iter().position(|n| *n == verbosity).ok_or_else(|| {
        TrainError::Invalid(format!(
            "--verbosity-objective {verbosity:?} is not among the objectives: {}",
            names.join(", ")
        ))
    })?;
    Ok((verbosity, v))
}

/// Debiasing as a stage of the run: stage 1's weights and the reference set's features in, λ and T
/// out (`<work>/debias.json`).
pub struct DebiasStage<'a> {
    pub regression: &'a (Regression, F32Tensor),
}

impl Stage for DebiasStage<'_> {
    const NAME: StageName = StageName::Debias;
    type Output = Debias;

    fn key(&self, cx: &Context) -> Result<String> {
        let (verbosity, _) = verbosity_index(cx, &self.regression.0.names())?;
        let threshold = cx.args.spearman_threshold.to_string();
        let mut parts = vec![FORMAT, &self.regression.0.key, &cx.reference()?.key, &verbosity];
        // The paper's threshold adds nothing to the key, so results from before the flag stay valid.
        if cx.args.spearman_threshold != THRESHOLD {
            parts.push(&threshold);
        }
        Ok(key(&parts))
    }

    fn load(&self, cx: &Context, key: &str) -> Option<Debias> {
        fresh(&cx.work.join("debias.json"), key)
    }

    fn result_file(&self, cx: &Context) -> Option<std::path::PathBuf> {
        Some(cx.work.join("debias.json"))
    }

    fn changes(&self, cx: &Context) -> Option<String> {
        let old = read_json::<Debias>(&cx.work.join("debias.json")).ok()?;
        let threshold = cx.args.spearman_threshold;
        if old.threshold != threshold {
            return Some(format!("--spearman-threshold was {}, is {threshold}", old.threshold));
        }
        let (verbosity, _) = verbosity_index(cx, &old.objectives).ok()?;
        (old.verbosity != verbosity).then(|| format!("--verbosity-objective was {:?}, is {verbosity:?}", old.verbosity))
    }

    fn compute(&self, cx: &Context, key: String) -> Result<Debias> {
        let (regression, weights) = self.regression;
        let names = regression.names();
        let (verbosity, v) = verbosity_index(cx, &names)?;
        let threshold = cx.args.spearman_threshold;
        let feats = cx.features(cx.reference()?)?;
        let rows = feats
            .rows()
            .flat_map(|(_, set, i)| [set.matrix(Matrix::Chosen).row(i), set.matrix(Matrix::Rejected).row(i)]);
        let predicted = predict(rows, weights); // (2n, k)
        let k = names.len();
        let n = predicted.len() / k;
        let columns: Vec<Vec<f64>> = (0..k).map(|j| (0..n).map(|i| predicted[i * k + j]).collect()).collect();
        let (lambda, spearman, sweep) = lambdas(&columns, v, threshold);
        for (name, l) in names.iter().zip(&lambda) {
            tracing::info!(objective = %name, lambda = l, "debiasing");
        }
        let d = Debias {
            key,
            verbosity,
            objectives: names,
            transform: transform(&lambda, v),
            lambda,
            spearman,
            sweep,
            threshold,
            reference_rows: n,
        };
        write_json(&cx.work.join("debias.json"), &d)?;
        Ok(d)
    }
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
