//! The gating MLP's parameters, its PyTorch-compatible initialisation, its forward pass and its
//! parameters as checkpoint tensors. Everything lives in host f32 arrays: stage 2's backward pass
//! ([`super::backprop`]) is written by hand over the same arrays.

use std::collections::BTreeMap;

use armorm_model::kernels::matmul::{product, Out, View};
use rand::Rng;
use rayon::prelude::*;

use crate::error::{Result, TrainError};
use crate::tensors::F32Tensor;

/// Linear(input -> hidden), ReLU, (Linear(hidden -> hidden), ReLU) x (n_hidden - 1),
/// Linear(hidden -> objectives); softmax(logits / temperature) * logit_scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GatingShape {
    pub input: usize,
    pub hidden: usize,
    pub n_hidden: usize,
    pub objectives: usize,
    pub temperature: f64,
}

impl GatingShape {
    /// (in, out) of each linear layer.
    pub fn layers(&self) -> Vec<(usize, usize)> {
        let mut dims = vec![self.input];
        dims.extend(std::iter::repeat_n(self.hidden, self.n_hidden));
        dims.push(self.objectives);
        dims.windows(2).map(|w| (w[0], w[1])).collect()
    }
}

/// One nn.Linear: `weight` is (output, input) row-major, as PyTorch stores it.
#[derive(Debug, Clone)]
pub struct Linear {
    pub input: usize,
    pub output: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Linear {
    /// `out` (n x output) = `x` (n x input) · Wᵀ + b.
    pub(super) fn apply(&self, x: &[f32], n: usize, out: &mut Vec<f32>) {
        out.clear();
        out.extend((0..n).flat_map(|_| self.bias.iter().copied()));
        let w = View::row_major(&self.weight, self.output, self.input).t();
        product(Out::Accumulate(out), View::row_major(x, n, self.input), w, threads());
    }
}

#[derive(Debug, Clone)]
pub struct GatingNet {
    pub shape: GatingShape,
    pub layers: Vec<Linear>,
    pub logit_scale: f32,
}

impl GatingNet {
    /// nn.Linear's default initialisation (weights and biases uniform in ±1/√fan_in), logit_scale 1.
    pub fn init(shape: GatingShape, rng: &mut impl Rng) -> Self {
        let mut uniform = |n: usize, fan_in: usize| -> Vec<f32> {
            let bound = 1.0 / (fan_in as f32).sqrt();
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        };
        let layers = shape
            .layers()
            .into_iter()
            .map(|(input, output)| Linear {
                input,
                output,
                weight: uniform(output * input, input),
                bias: uniform(output, input),
            })
            .collect();
        Self { shape, layers, logit_scale: 1.0 }
    }

    pub fn from_tensors(shape: GatingShape, tensors: &BTreeMap<String, F32Tensor>) -> Result<Self> {
        let take = |name: &str, dims: &[usize]| -> Result<Vec<f32>> {
            let t = tensors
                .get(name)
                .filter(|t| t.shape == dims)
                .ok_or_else(|| TrainError::Invalid(format!("gating tensors: no {name} of shape {dims:?}")))?;
            Ok(t.data.clone())
        };
        let layers = shape
            .layers()
            .into_iter()
            .enumerate()
            .map(|(i, (input, output))| {
                let (weight, bias) = (take(&weight_name(i), &[output, input])?, take(&bias_name(i), &[output])?);
                Ok(Linear { input, output, weight, bias })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { shape, layers, logit_scale: take(SCALE, &[1])?[0] })
    }

    /// The parameters under the names the exported checkpoint uses.
    pub fn to_tensors(&self) -> BTreeMap<String, F32Tensor> {
        let mut out = BTreeMap::new();
        for (i, l) in self.layers.iter().enumerate() {
            out.insert(weight_name(i), F32Tensor::new(vec![l.output, l.input], l.weight.clone()));
            out.insert(bias_name(i), F32Tensor::new(vec![l.output], l.bias.clone()));
        }
        out.insert(SCALE.to_string(), F32Tensor::new(vec![1], vec![self.logit_scale]));
        out
    }

    /// The gating weights (n x objectives) of `x` (n x input), without dropout.
    pub fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut outputs = vec![Vec::new(); self.layers.len()];
        self.forward_into(x, n, None, &mut outputs);
        let mut gating = outputs.pop().expect("the net has layers");
        gating.iter_mut().for_each(|g| *g *= self.logit_scale);
        gating
    }

    /// Every layer's output of `x` (n x input) into `outputs` (one per layer): each hidden layer's
    /// after ReLU and its dropout keep-mask (`masks`, one per hidden layer, n x width), the last's
    /// softmax(logits / temperature) before the logit scale. Stage 2's backward pass reads them.
    pub(super) fn forward_into(&self, x: &[f32], n: usize, masks: Option<&[Vec<f32>]>, outputs: &mut [Vec<f32>]) {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let (done, rest) = outputs.split_at_mut(i);
            let input = done.last().map_or(x, Vec::as_slice);
            layer.apply(input, n, &mut rest[0]);
            if i < last {
                relu_dropout(&mut rest[0], masks.map(|m| m[i].as_slice()));
            }
        }
        let temperature = self.shape.temperature as f32;
        outputs[last].par_chunks_mut(self.shape.objectives).for_each(|row| softmax(row, temperature));
    }
}

/// `a = relu(z) ⊙ mask` in place.
fn relu_dropout(z: &mut [f32], mask: Option<&[f32]>) {
    match mask {
        Some(mask) => z.par_chunks_mut(CHUNK).zip(mask.par_chunks(CHUNK)).for_each(|(z, m)| {
            z.iter_mut().zip(m).for_each(|(v, m)| *v = v.max(0.0) * m);
        }),
        None => z.par_chunks_mut(CHUNK).for_each(|z| z.iter_mut().for_each(|v| *v = v.max(0.0))),
    }
}

/// Elements per parallel task of the elementwise passes.
pub(super) const CHUNK: usize = 1 << 14;

/// softmax(row / temperature) in place.
fn softmax(row: &mut [f32], temperature: f32) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v / temperature));
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v / temperature - max).exp();
        sum += *v;
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

/// Each pair's score difference Σ_k gating · (r_chosen − r_rejected), from the gating (n x k) and
/// both answers' debiased rewards (n x k).
pub fn margins(gating: &[f32], chosen: &[f32], rejected: &[f32], k: usize) -> Vec<f32> {
    gating
        .chunks(k)
        .zip(chosen.chunks(k).zip(rejected.chunks(k)))
        .map(|(g, (c, r))| g.iter().zip(c.iter().zip(r)).map(|(g, (c, r))| g * (c - r)).sum())
        .collect()
}

/// The Bradley-Terry loss of one margin, softplus(−m) = max(−m, 0) + log(1 + exp(−|m|)), stable
/// for any margin.
pub fn bt_loss(margin: f32) -> f32 {
    (-margin).max(0.0) + (-margin.abs()).exp().ln_1p()
}

/// The threads the products run on: rayon's pool, as the backbone's products use it.
pub(super) fn threads() -> usize {
    rayon::current_num_threads()
}

const SCALE: &str = "gating.logit_scale";

fn weight_name(i: usize) -> String {
    format!("gating.layers.{i}.weight")
}

fn bias_name(i: usize) -> String {
    format!("gating.layers.{i}.bias")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_softplus_of_the_negative_margin_even_for_huge_margins() {
        for m in [0.0f64, 2.0, -3.0, 200.0, -200.0] {
            let want = (1.0 + (-m).exp()).ln();
            let want = if want.is_finite() { want } else { -m };
            let got = f64::from(bt_loss(m as f32));
            assert!((got - want).abs() < 1e-5, "margin {m}: {got} vs {want}");
        }
    }
}
