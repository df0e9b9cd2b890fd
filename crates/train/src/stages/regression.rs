//! Stage 1: one ridge regression per objective from the reward features to that objective's ratings,
//! on the rows where it is rated. Objectives rated on exactly the same rows (one source dataset,
//! usually) share a split and one pair of Gram matrices; features stream from disk once.
//!
//! ```text
//! <work>/regression.json          the summary (alphas, validation MSEs, rows)
//! <work>/regression.safetensors   the (objectives, hidden) weights
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cli::StageName;
use crate::context::{Context, FORMAT};
use crate::error::{Result, TrainError};
use crate::features::{Features, Matrix};
use crate::ratings::Labels;
use crate::ridge::{fit, Moments, ALPHAS};
use crate::split::validation_mask;
use crate::stage::Stage;
use crate::store::{fresh, key, read_json, write_json, Keyed};
use crate::tensors::{self, F32Tensor};

/// The tensor name of the weights, as the exported checkpoint stores them.
pub const WEIGHT: &str = "regression_layer.weight";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectiveFit {
    pub name: String,
    pub alpha: f64,
    pub val_mse: f64,
    pub mse_by_alpha: Vec<f64>,
    pub train_rows: usize,
    pub val_rows: usize,
}

/// What stage 1 found; the weights themselves go to a safetensors file beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Regression {
    pub key: String,
    pub seed: u64,
    pub hidden_size: usize,
    /// Ratings rows with features, and rows skipped for being longer than the token limit.
    pub rows: usize,
    pub skipped_too_long: usize,
    /// Rows skipped as unreadable, or kept without ratings because theirs are (`--skip-bad-rows`).
    #[serde(default)]
    pub skipped_bad: usize,
    pub alphas: Vec<f64>,
    pub objectives: Vec<ObjectiveFit>,
}

impl Keyed for Regression {
    fn key(&self) -> &str {
        &self.key
    }
}

impl Regression {
    pub fn names(&self) -> Vec<String> {
        self.objectives.iter().map(|o| o.name.clone()).collect()
    }
}

/// Fits every objective of `labels` on the reward features; returns the summary and the (k, d)
/// weight matrix.
pub fn run(labels: &Labels, features: &Features, seed: u64, key: &str) -> Result<(Regression, F32Tensor)> {
    let rows: Vec<_> = features.rows().collect();
    if let Some((record, ..)) = rows.iter().find(|(r, ..)| *r >= labels.rows()) {
        return Err(TrainError::Invalid(format!(
            "the ratings features name record {record}, but the ratings file has {} rows: features from another file?",
            labels.rows()
        )));
    }
    let (k, d) = (labels.objectives.len(), features.hidden_size());
    let present = |j: usize| -> Vec<bool> { rows.iter().map(|(r, ..)| !labels.get(*r, j).is_nan()).collect() };
    let mut groups: Vec<(Vec<bool>, Vec<usize>)> = Vec::new();
    for j in 0..k {
        let mask = present(j);
        match groups.iter_mut().find(|(m, _)| *m == mask) {
            Some((_, objectives)) => objectives.push(j),
            None => groups.push((mask, vec![j])),
        }
    }
    // Per group and row: None when the group's objectives are not rated there, else whether it validates.
    let roles: Vec<Vec<Option<bool>>> = groups
        .iter()
        .map(|(mask, objectives)| {
            let records: Vec<u64> = rows.iter().zip(mask).filter(|(_, &p)| p).map(|((r, ..), _)| *r as u64).collect();
            if records.len() < 2 {
                return Err(TrainError::Invalid(format!(
                    "objective {:?} is rated on {} of the kept rows; at least 2 are needed (one to fit, one to validate)",
                    labels.objectives[objectives[0]],
                    records.len()
                )));
            }
            let mut val = validation_mask(seed, &records).into_iter();
            Ok(mask.iter().map(|&p| p.then(|| val.next().expect("one per present row"))).collect())
        })
        .collect::<Result<_>>()?;
    tracing::info!(
        objectives = k,
        groups = groups.len(),
        rows = rows.len(),
        gram_mib = (groups.len() * 2 * d * d * 8) >> 20,
        "stage 1: accumulating Gram matrices"
    );
    let mut moments: Vec<(Moments, Moments)> =
        groups.iter().map(|(_, o)| (Moments::new(d, o.len()), Moments::new(d, o.len()))).collect();
    let progress = crate::progress::progress_bar(rows.len() as u64, "stage 1: Gram matrices");
    for (i, (record, set, row)) in rows.iter().enumerate() {
        let x = set.matrix(Matrix::Reward).row(*row);
        for ((_, objectives), (role, (train, val))) in groups.iter().zip(roles.iter().zip(moments.iter_mut())) {
            if let Some(is_val) = role[i] {
                let y: Vec<f64> = objectives.iter().map(|&j| labels.get(*record, j)).collect();
                if is_val {
                    val.push(x, &y)
                } else {
                    train.push(x, &y)
                }
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    let mut fits: Vec<Option<ObjectiveFit>> = vec![None; k];
    let mut weights = vec![0f32; k * d];
    for ((_, objectives), (train, val)) in groups.iter().zip(moments) {
        let (train_rows, val_rows) = (train.rows(), val.rows());
        let results = fit(train, val, &ALPHAS)
            .map_err(|e| TrainError::Invalid(format!("stage 1: the ridge solve failed: {e:?}")))?;
        for (&j, r) in objectives.iter().zip(results) {
            for (w, &v) in weights[j * d..(j + 1) * d].iter_mut().zip(&r.weights) {
                *w = v as f32;
            }
            tracing::info!(objective = %labels.objectives[j], alpha = r.alpha, val_mse = r.val_mse, "stage 1 fit");
            fits[j] = Some(ObjectiveFit {
                name: labels.objectives[j].clone(),
                alpha: r.alpha,
                val_mse: r.val_mse,
                mse_by_alpha: r.mse_by_alpha,
                train_rows,
                val_rows,
            });
        }
    }
    let summary = Regression {
        key: key.to_string(),
        seed,
        hidden_size: d,
        rows: rows.len(),
        skipped_too_long: features.too_long(),
        skipped_bad: features
            .bad_records()
            .chain(labels.bad.iter().copied())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        alphas: ALPHAS.to_vec(),
        objectives: fits.into_iter().map(|f| f.expect("every objective is in a group")).collect(),
    };
    Ok((summary, F32Tensor::new(vec![k, d], weights)))
}

/// The weights as the tensor map a safetensors file holds.
pub fn tensors(weights: F32Tensor) -> BTreeMap<String, F32Tensor> {
    BTreeMap::from([(WEIGHT.to_string(), weights)])
}

/// Stage 1 as a stage of the run: the ratings' features in, the summary and weights out.
pub struct RegressionStage;

impl RegressionStage {
    fn files(cx: &Context) -> (std::path::PathBuf, std::path::PathBuf) {
        (cx.work.join("regression.json"), cx.work.join("regression.safetensors"))
    }
}

impl Stage for RegressionStage {
    const NAME: StageName = StageName::Regression;
    type Output = (Regression, F32Tensor);

    fn key(&self, cx: &Context) -> Result<String> {
        let spec = format!("{:?}|{:?}", cx.args.objectives, cx.args.scales);
        Ok(key(&[FORMAT, &cx.ratings()?.key, &spec, &cx.args.seed.to_string()]))
    }

    fn load(&self, cx: &Context, key: &str) -> Option<Self::Output> {
        let (json, st) = Self::files(cx);
        let r = fresh::<Regression>(&json, key)?;
        let shape = [r.objectives.len(), r.hidden_size];
        let w = tensors::load(&st).and_then(|mut t| tensors::take(&mut t, &st, WEIGHT, &shape)).ok()?;
        Some((r, w))
    }

    fn result_file(&self, cx: &Context) -> Option<std::path::PathBuf> {
        Some(Self::files(cx).0)
    }

    fn changes(&self, cx: &Context) -> Option<String> {
        let old = read_json::<Regression>(&Self::files(cx).0).ok()?;
        (old.seed != cx.args.seed).then(|| format!("--seed was {}, is {}", old.seed, cx.args.seed))
    }

    fn compute(&self, cx: &Context, key: String) -> Result<Self::Output> {
        let (json, st) = Self::files(cx);
        let started = std::time::Instant::now();
        let feats = cx.features(cx.ratings()?)?;
        let (summary, weights) = run(cx.labels()?, &feats, cx.args.seed, &key)?;
        tensors::save(&st, &tensors(weights.clone()))?;
        write_json(&json, &summary)?;
        tracing::info!(secs = started.elapsed().as_secs_f64(), "stage 1 done");
        Ok((summary, weights))
    }
}
