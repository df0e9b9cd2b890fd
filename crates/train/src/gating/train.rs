//! The stage-2 training loop: AdamW with cosine decay to zero, batches of pairs drawn with
//! replacement from the training split, dropout on the hidden layers, validation accuracy on the
//! held-out pairs (a tie counts as wrong).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::adamw::AdamW;
use super::backprop::{Backprop, Batch};
use super::net::{margins, GatingNet};
use crate::split::splitmix64;
use crate::store::Keyed;

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

    /// The pairs `idx` gathered into one batch's buffers (prompts, chosen, rejected).
    fn gather(&self, idx: &[usize], into: &mut BatchBuffers) {
        let (k, d) = (self.objectives, self.prompts.first().map_or(0, |p| p.len()));
        into.prompts.resize(idx.len() * d, 0.0);
        into.prompts.par_chunks_mut(d.max(1)).zip(idx).for_each(|(row, &i)| row.copy_from_slice(self.prompts[i]));
        into.chosen.clear();
        into.rejected.clear();
        for &i in idx {
            into.chosen.extend_from_slice(&self.chosen[i * k..(i + 1) * k]);
            into.rejected.extend_from_slice(&self.rejected[i * k..(i + 1) * k]);
        }
    }
}

#[derive(Default)]
struct BatchBuffers {
    prompts: Vec<f32>,
    chosen: Vec<f32>,
    rejected: Vec<f32>,
}

impl BatchBuffers {
    fn batch(&self, n: usize) -> Batch<'_> {
        Batch { n, prompts: &self.prompts, chosen: &self.chosen, rejected: &self.rejected }
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
pub fn fit(net: &mut GatingNet, data: &PairData, pairs: Split<'_>, settings: &GatingSettings) -> Vec<f32> {
    let Split { train, val } = pairs;
    let mut sampler = ChaCha8Rng::seed_from_u64(settings.seed.wrapping_add(1));
    let batches: Vec<Vec<usize>> = (0..settings.steps)
        .map(|_| (0..settings.batch_size).map(|_| train[sampler.random_range(0..train.len())]).collect())
        .collect();
    let progress = crate::progress::progress_bar(settings.steps as u64, "stage 2: gating steps");
    let every = (settings.steps / 20).max(1);
    let started = std::time::Instant::now();
    let (mut step, mut window) = (0usize, Vec::with_capacity(every));
    let mut on_step = |net: &GatingNet, loss: f32| {
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
        let val_accuracy = accuracy(net, data, val);
        progress.suspend(|| {
            tracing::info!(step, steps = settings.steps, loss = mean, val_accuracy, eta_s = eta_s.round(), "stage 2")
        });
    };
    let losses = run_steps(net, data, &batches, settings, &mut on_step);
    progress.finish_and_clear();
    losses
}

/// Which pairs train the gating network and which are held out to measure it.
#[derive(Debug, Clone, Copy)]
pub struct Split<'a> {
    pub train: &'a [usize],
    pub val: &'a [usize],
}

/// The optimisation itself over given batches; `on_step` sees the network and each step's loss.
pub fn run_steps(
    net: &mut GatingNet,
    data: &PairData,
    batches: &[Vec<usize>],
    settings: &GatingSettings,
    on_step: &mut dyn FnMut(&GatingNet, f32),
) -> Vec<f32> {
    let mut opt = AdamW::new(net, settings.weight_decay);
    let mut backprop = Backprop::new(net);
    let hidden: Vec<usize> = net.shape.layers().iter().take(net.shape.n_hidden).map(|&(_, o)| o).collect();
    let mut buffers = BatchBuffers::default();
    let mut losses = Vec::with_capacity(batches.len());
    for (step, idx) in batches.iter().enumerate() {
        data.gather(idx, &mut buffers);
        let masks =
            (settings.dropout > 0.0).then(|| dropout_masks(settings.seed, step, idx.len(), &hidden, settings.dropout));
        let loss = backprop.step(net, &buffers.batch(idx.len()), masks.as_deref());
        opt.step(net, &backprop.grads, cosine_lr(settings.learning_rate, step, batches.len()));
        losses.push(loss);
        on_step(net, loss);
    }
    losses
}

/// Inverted-dropout keep masks (0 or 1/(1 − p)) for step `step`, n rows of each width: seeded
/// (candle's and PyTorch's dropout draw from unseeded generators, and runs must be reproducible),
/// and drawn in blocks of rows on independent streams, so they are the same bits on any number of
/// threads.
pub fn dropout_masks(seed: u64, step: usize, n: usize, widths: &[usize], p: f32) -> Vec<Vec<f32>> {
    let keep = 1.0 / (1.0 - p);
    let base = splitmix64(seed.wrapping_add(2));
    widths
        .iter()
        .enumerate()
        .map(|(layer, &w)| {
            let key = splitmix64(base ^ (step * widths.len() + layer) as u64);
            let mut mask = vec![0.0f32; n * w];
            mask.par_chunks_mut((MASK_ROWS * w).max(1)).enumerate().for_each(|(block, m)| {
                let mut rng = ChaCha8Rng::seed_from_u64(key);
                rng.set_stream(block as u64);
                m.iter_mut().for_each(|v| *v = if rng.random::<f32>() < p { 0.0 } else { keep });
            });
            mask
        })
        .collect()
}

/// Rows per independently seeded block of a dropout mask.
const MASK_ROWS: usize = 64;

/// Share of `pairs` whose chosen answer scores strictly higher (no dropout).
pub fn accuracy(net: &GatingNet, data: &PairData, pairs: &[usize]) -> f64 {
    if pairs.is_empty() {
        return f64::NAN;
    }
    let k = data.objectives;
    let mut buffers = BatchBuffers::default();
    let mut correct = 0usize;
    for chunk in pairs.chunks(4096) {
        data.gather(chunk, &mut buffers);
        let gating = net.forward(&buffers.prompts, chunk.len());
        correct += margins(&gating, &buffers.chosen, &buffers.rejected, k).iter().filter(|&&m| m > 0.0).count();
    }
    correct as f64 / pairs.len() as f64
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
