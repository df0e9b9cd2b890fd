//! Stage 2 as a stage of the run: stage 1's weights, T and the pairs' features in, the trained
//! gating network out (`<work>/gating.json` with its report, `<work>/gating.safetensors`). The
//! network and its optimisation are [`crate::gating`]'s.

use std::path::PathBuf;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::debias::Debias;
use super::regression::Regression;
use crate::cli::StageName;
use crate::context::{Context, FORMAT};
use crate::error::{Result, TrainError};
use crate::features::Matrix;
use crate::gating::train::{accuracy, fit, Split};
use crate::gating::{GatingNet, GatingReport, GatingSettings, GatingShape, PairData};
use crate::rewards::{apply_transform, predict};
use crate::split::validation_mask;
use crate::stage::Stage;
use crate::store::{fresh, key, read_json, write_json};
use crate::tensors::{self, F32Tensor};

pub struct GatingStage<'a> {
    pub regression: &'a (Regression, F32Tensor),
    pub debias: &'a Debias,
}

impl GatingStage<'_> {
    fn files(cx: &Context) -> (PathBuf, PathBuf) {
        (cx.work.join("gating.json"), cx.work.join("gating.safetensors"))
    }

    fn settings(cx: &Context) -> GatingSettings {
        let args = cx.args;
        GatingSettings {
            steps: args.steps,
            batch_size: args.batch_size,
            hidden_dim: args.hidden_dim,
            n_hidden: args.n_hidden,
            learning_rate: args.learning_rate,
            dropout: args.dropout,
            temperature: args.temperature,
            seed: args.seed,
            ..GatingSettings::default()
        }
    }

    fn shape(&self, settings: &GatingSettings) -> GatingShape {
        let regression = &self.regression.0;
        GatingShape {
            input: regression.hidden_size,
            hidden: settings.hidden_dim,
            n_hidden: settings.n_hidden,
            objectives: regression.objectives.len(),
            temperature: settings.temperature,
        }
    }
}

impl Stage for GatingStage<'_> {
    const NAME: StageName = StageName::Gating;
    type Output = (GatingReport, GatingNet);

    fn key(&self, cx: &Context) -> Result<String> {
        let settings = serde_json::to_string(&Self::settings(cx)).unwrap_or_default();
        Ok(key(&[FORMAT, &self.regression.0.key, &self.debias.key, &cx.pairs()?.key, &settings]))
    }

    fn load(&self, cx: &Context, key: &str) -> Option<Self::Output> {
        let (json, st) = Self::files(cx);
        let report = fresh::<GatingReport>(&json, key)?;
        let net = tensors::load(&st).and_then(|t| GatingNet::from_tensors(self.shape(&report.settings), &t)).ok()?;
        Some((report, net))
    }

    fn result_file(&self, cx: &Context) -> Option<PathBuf> {
        Some(Self::files(cx).0)
    }

    fn changes(&self, cx: &Context) -> Option<String> {
        let old = read_json::<GatingReport>(&Self::files(cx).0).ok()?;
        let changed = settings_changes(&old.settings, &Self::settings(cx));
        (!changed.is_empty()).then(|| changed.join(", "))
    }

    fn compute(&self, cx: &Context, key: String) -> Result<Self::Output> {
        let (json, st) = Self::files(cx);
        let (settings, pairs) = (Self::settings(cx), cx.pairs()?);
        let shape = self.shape(&settings);
        let feats = cx.features(pairs)?;
        if feats.len() < 2 {
            return Err(TrainError::Invalid(format!(
                "{}: at least 2 usable pairs are needed, found {}",
                pairs.dataset.name,
                feats.len()
            )));
        }
        let debiased = |which: Matrix| -> Vec<f32> {
            let raw = predict(feats.rows().map(|(_, set, i)| set.matrix(which).row(i)), &self.regression.1);
            apply_transform(&raw, &self.debias.transform)
        };
        let data = PairData {
            prompts: feats.rows().map(|(_, set, i)| set.matrix(Matrix::Prompt).row(i)).collect(),
            chosen: debiased(Matrix::Chosen),
            rejected: debiased(Matrix::Rejected),
            objectives: shape.objectives,
        };
        let records: Vec<u64> = feats.rows().map(|(r, ..)| r as u64).collect();
        let val_mask = validation_mask(settings.seed, &records);
        let train: Vec<usize> = (0..records.len()).filter(|&i| !val_mask[i]).collect();
        let val: Vec<usize> = (0..records.len()).filter(|&i| val_mask[i]).collect();
        let mut net = GatingNet::init(shape, &mut ChaCha8Rng::seed_from_u64(settings.seed));
        let started = std::time::Instant::now();
        let loss = fit(&mut net, &data, Split { train: &train, val: &val }, &settings);
        let steps_per_s = settings.steps as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let report = GatingReport {
            key,
            train_accuracy: accuracy(&net, &data, &train),
            val_accuracy: accuracy(&net, &data, &val),
            settings,
            train_pairs: train.len(),
            val_pairs: val.len(),
            skipped_too_long: feats.too_long(),
            skipped_bad: feats.bad_records().count(),
            loss,
            steps_per_s,
        };
        tracing::info!(val_accuracy = report.val_accuracy, steps_per_s, "stage 2 done");
        tensors::save(&st, &net.to_tensors())?;
        write_json(&json, &report)?;
        Ok((report, net))
    }
}

/// The stage-2 flags whose values differ between two runs, as "--flag was A, is B".
fn settings_changes(old: &GatingSettings, new: &GatingSettings) -> Vec<String> {
    let (old, new) = (serde_json::to_value(old).unwrap_or_default(), serde_json::to_value(new).unwrap_or_default());
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else { return Vec::new() };
    new.iter()
        .filter(|&(name, value)| old.get(name) != Some(value))
        .map(|(name, value)| {
            let was = old.get(name).map_or_else(|| "unset".to_string(), ToString::to_string);
            format!("--{} was {was}, is {value}", name.replace('_', "-"))
        })
        .collect()
}
