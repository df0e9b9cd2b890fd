//! The stage-2 training loop: AdamW with cosine decay to zero, batches of pairs drawn with
//! replacement from the training split, dropout on the hidden layers, validation accuracy on the
//! held-out pairs (a tie counts as wrong).

use candle_core::{Device, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::net::{bt_loss, margins, GatingNet};
use crate::error::Result;
use crate::stage::Keyed;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatingSettings {
    pub steps: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub dropout: f32,
    pub hidden_dim: usize,
    pub n_hidden: usize,
    pub temperature: f64,
    pub seed: u64,
}

impl Default for GatingSettings {
    /// The paper's recipe.
    fn default() -> Self {
        Self {
            steps: 2000,
            batch_size: 1024,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            dropout: 0.2,
            hidden_dim: 1024,
            n_hidden: 3,
            temperature: 10.0,
            seed: 0,
        }
    }
}

/// Stage 2's outcome; the weights go to a safetensors file beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatingReport {
    pub key: String,
    pub settings: GatingSettings,
    pub train_pairs: usize,
    pub val_pairs: usize,
    /// Pairs dropped because a side is longer than the token limit.
    pub skipped_too_long: usize,
    /// Pairs dropped as unreadable (`--skip-bad-rows`).
    #[serde(default)]
    pub skipped_bad: usize,
    /// The training loss at every step.
    pub loss: Vec<f32>,
    pub train_accuracy: f64,
    pub val_accuracy: f64,
    pub steps_per_s: f64,
}

impl Keyed for GatingReport {
    fn key(&self) -> &str {
        &self.key
    }
}

/// The training inputs: each pair's prompt feature and both answers' debiased rewards.
pub struct PairData<'a> {
    pub prompts: Vec<&'a [f32]>,
    /// n x k, row-major: (features @ Wᵀ) @ T of the chosen answers.
    pub chosen: Vec<f32>,
    pub rejected: Vec<f32>,
    pub objectives: usize,
}

impl PairData<'_> {
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    fn batch(&self, idx: &[usize], device: &Device) -> Result<(Tensor, Tensor, Tensor)> {
        let (k, d) = (self.objectives, self.prompts.first().map_or(0, |p| p.len()));
        let mut x = Vec::with_capacity(idx.len() * d);
        let (mut c, mut r) = (Vec::with_capacity(idx.len() * k), Vec::with_capacity(idx.len() * k));
        for &i in idx {
            x.extend_from_slice(self.prompts[i]);
            c.extend_from_slice(&self.chosen[i * k..(i + 1) * k]);
            r.extend_from_slice(&self.rejected[i * k..(i + 1) * k]);
        }
        let n = idx.len();
        Ok((
            Tensor::from_vec(x, (n, d), device)?,
            Tensor::from_vec(c, (n, k), device)?,
            Tensor::from_vec(r, (n, k), device)?,
        ))
    }
}

/// PyTorch's CosineAnnealingLR (eta_min 0) in closed form: the rate used at `step` of `total`.
pub fn cosine_lr(base: f64, step: usize, total: usize) -> f64 {
    base * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos()) / 2.0
}

/// Trains on pairs `train` for `settings.steps` steps of `settings.batch_size` pairs drawn with
/// replacement (seeded); returns the loss of every step. Progress: a bar with the running loss on a
/// terminal, and a log line about every twentieth of the run with the step, the mean loss since the
/// last line, the accuracy on the held-out pairs `val` and the time left.
pub fn fit(
    net: &GatingNet,
    data: &PairData,
    pairs: Split<'_>,
    settings: &GatingSettings,
    device: &Device,
) -> Result<Vec<f32>> {
    let Split { train, val } = pairs;
    let mut sampler = ChaCha8Rng::seed_from_u64(settings.seed.wrapping_add(1));
    let batches: Vec<Vec<usize>> = (0..settings.steps)
        .map(|_| (0..settings.batch_size).map(|_| train[sampler.random_range(0..train.len())]).collect())
        .collect();
    let progress = crate::progress::progress_bar(settings.steps as u64, "stage 2: gating steps");
    let every = (settings.steps / 20).max(1);
    let started = std::time::Instant::now();
    let (mut step, mut window) = (0usize, Vec::with_capacity(every));
    let mut on_step = |loss: f32| {
        step += 1;
        window.push(loss);
        progress.inc(1);
        if step % every != 0 && step != settings.steps {
            return;
        }
        let mean = window.iter().sum::<f32>() / window.len() as f32;
        window.clear();
        progress.set_message(format!("stage 2: loss {mean:.4}"));
        let elapsed = started.elapsed().as_secs_f64();
        let eta_s = elapsed / step as f64 * (settings.steps - step) as f64;
        // Dropout is off in `accuracy`, so measuring mid-run leaves training untouched.
        let val_accuracy = accuracy(net, data, val, device).unwrap_or(f64::NAN);
        progress.suspend(|| {
            tracing::info!(step, steps = settings.steps, loss = mean, val_accuracy, eta_s = eta_s.round(), "stage 2")
        });
    };
    let losses = run_steps(net, data, &batches, settings, device, &mut on_step);
    progress.finish_and_clear();
    losses
}

/// Which pairs train the gating network and which are held out to measure it.
#[derive(Debug, Clone, Copy)]
pub struct Split<'a> {
    pub train: &'a [usize],
    pub val: &'a [usize],
}

/// The optimisation itself over given batches; `on_step` sees each step's loss.
pub fn run_steps(
    net: &GatingNet,
    data: &PairData,
    batches: &[Vec<usize>],
    settings: &GatingSettings,
    device: &Device,
    on_step: &mut dyn FnMut(f32),
) -> Result<Vec<f32>> {
    let params =
        ParamsAdamW { lr: settings.learning_rate, weight_decay: settings.weight_decay, ..ParamsAdamW::default() };
    let mut opt = AdamW::new(net.vars(), params)?;
    let mut masks_rng = ChaCha8Rng::seed_from_u64(settings.seed.wrapping_add(2));
    let hidden: Vec<usize> = net.shape.layers().iter().take(net.shape.n_hidden).map(|&(_, o)| o).collect();
    let mut losses = Vec::with_capacity(batches.len());
    for (step, idx) in batches.iter().enumerate() {
        opt.set_learning_rate(cosine_lr(settings.learning_rate, step, batches.len()));
        let (x, c, r) = data.batch(idx, device)?;
        let masks = (settings.dropout > 0.0)
            .then(|| dropout_masks(&mut masks_rng, idx.len(), &hidden, settings.dropout, device))
            .transpose()?;
        let gating = net.forward(&x, masks.as_deref())?;
        let loss = bt_loss(&margins(&gating, &c, &r)?)?;
        opt.backward_step(&loss)?;
        let value = loss.to_scalar::<f32>()?;
        losses.push(value);
        on_step(value);
    }
    Ok(losses)
}

/// Inverted-dropout keep masks (scaled by 1/(1-p)) from a seeded generator: candle's own dropout
/// draws from an unseeded one, and runs must be reproducible.
fn dropout_masks(rng: &mut ChaCha8Rng, n: usize, widths: &[usize], p: f32, device: &Device) -> Result<Vec<Tensor>> {
    let keep = 1.0 / (1.0 - p);
    widths
        .iter()
        .map(|&w| {
            let m: Vec<f32> = (0..n * w).map(|_| if rng.random::<f32>() < p { 0.0 } else { keep }).collect();
            Ok(Tensor::from_vec(m, (n, w), device)?)
        })
        .collect()
}

/// Share of `pairs` whose chosen answer scores strictly higher (no dropout).
pub fn accuracy(net: &GatingNet, data: &PairData, pairs: &[usize], device: &Device) -> Result<f64> {
    if pairs.is_empty() {
        return Ok(f64::NAN);
    }
    let mut correct = 0usize;
    for chunk in pairs.chunks(4096) {
        let (x, c, r) = data.batch(chunk, device)?;
        let m = margins(&net.forward(&x, None)?, &c, &r)?.to_vec1::<f32>()?;
        correct += m.iter().filter(|&&v| v > 0.0).count();
    }
    Ok(correct as f64 / pairs.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_starts_at_the_base_rate_and_ends_near_zero() {
        assert_eq!(cosine_lr(1e-3, 0, 100), 1e-3);
        assert!((cosine_lr(1e-3, 50, 100) - 5e-4).abs() < 1e-15);
        assert!(cosine_lr(1e-3, 99, 100) < 1e-6);
    }
}
