//! Stage 2's loss and its gradient, written out by hand: the forward pass keeps each hidden
//! layer's output, the backward pass runs the chain rule over them with one matrix product per
//! weight gradient and one per input gradient, and the first layer's input gradient (the frozen
//! prompt features') is never computed. An autograd would also differentiate the features and
//! materialise transposes; at the paper's shape the first layer's products are most of the work.
//!
//! With p = softmax(z / T), s the logit scale and δ = r_chosen − r_rejected, each pair's margin is
//! m = s Σ p δ and its loss softplus(−m), averaged over the batch:
//!
//! ```text
//! ∂L/∂m = −σ(−m) / n      ∂L/∂s = Σ_pairs ∂L/∂m · Σ p δ      ∂L/∂p = ∂L/∂m · s δ
//! ∂L/∂z = p ⊙ (∂L/∂p − Σ p ⊙ ∂L/∂p) / T
//! ∂L/∂W = (∂L/∂z)ᵀ a      ∂L/∂b = Σ_rows ∂L/∂z      ∂L/∂a = ∂L/∂z · W
//! ```
//! and through a hidden layer's ReLU and dropout mask: ∂L/∂z = ∂L/∂a ⊙ mask where its output is
//! positive, else 0.

use armorm_model::kernels::matmul::{product, Out, View};
use rayon::prelude::*;

use super::net::{bt_loss, threads, GatingNet, CHUNK};

/// One step's pairs: the prompt features (n x input) and both answers' debiased rewards (n x k).
pub struct Batch<'a> {
    pub n: usize,
    pub prompts: &'a [f32],
    pub chosen: &'a [f32],
    pub rejected: &'a [f32],
}

/// Gradients in the parameters' own layout: (weight, bias) per layer, then the logit scale.
pub struct Grads {
    pub layers: Vec<(Vec<f32>, Vec<f32>)>,
    pub logit_scale: f32,
}

/// The buffers one step needs, kept between steps.
pub struct Backprop {
    /// Each hidden layer's output after ReLU and dropout, then the softmax of the last.
    outputs: Vec<Vec<f32>>,
    /// ∂L/∂ of the layer being differentiated, and of its input.
    dz: Vec<f32>,
    da: Vec<f32>,
    pub grads: Grads,
}

impl Backprop {
    pub fn new(net: &GatingNet) -> Self {
        Self {
            outputs: vec![Vec::new(); net.layers.len()],
            dz: Vec::new(),
            da: Vec::new(),
            grads: Grads {
                layers: net.layers.iter().map(|l| (vec![0.0; l.weight.len()], vec![0.0; l.bias.len()])).collect(),
                logit_scale: 0.0,
            },
        }
    }

    /// The batch's mean loss; the gradients are left in `self.grads`. `masks` holds one inverted
    /// dropout keep-mask (0 or 1/(1 − p)) per hidden layer, n x width each; `None`: no dropout.
    pub fn step(&mut self, net: &GatingNet, batch: &Batch<'_>, masks: Option<&[Vec<f32>]>) -> f32 {
        let (n, k, t) = (batch.n, net.shape.objectives, net.shape.temperature as f32);
        let last = net.layers.len() - 1;
        net.forward_into(batch.prompts, n, masks, &mut self.outputs);
        let p = &self.outputs[last];

        // The head: loss, ∂L/∂s and ∂L/∂z of the last layer.
        let s = net.logit_scale;
        let deltas = batch.chosen.iter().zip(batch.rejected).map(|(c, r)| c - r);
        let delta: Vec<f32> = deltas.collect();
        let (mut loss, mut d_scale) = (0.0f32, 0.0f32);
        self.dz.clear();
        for (row, d) in p.chunks(k).zip(delta.chunks(k)) {
            let pd: f32 = row.iter().zip(d).map(|(p, d)| p * d).sum();
            let m = s * pd;
            loss += bt_loss(m);
            let dm = -1.0 / (1.0 + m.exp()) / n as f32;
            d_scale += dm * pd;
            // ∂L/∂p_k = dm s δ_k; Σ p ∂L/∂p = dm s Σ p δ = dm m.
            let centre = dm * m;
            self.dz.extend(row.iter().zip(d).map(|(p, d)| p * (dm * s * d - centre) / t));
        }
        self.grads.logit_scale = d_scale;

        for i in (0..=last).rev() {
            let layer = &net.layers[i];
            let input = if i == 0 { batch.prompts } else { &self.outputs[i - 1] };
            let (dw, db) = &mut self.grads.layers[i];
            let dz = View::row_major(&self.dz, n, layer.output);
            product(Out::Replace(dw), dz.t(), View::row_major(input, n, layer.input), threads());
            db.iter_mut().for_each(|b| *b = 0.0);
            for row in self.dz.chunks(layer.output) {
                db.iter_mut().zip(row).for_each(|(b, g)| *b += g);
            }
            if i == 0 {
                break;
            }
            self.da.resize(n * layer.input, 0.0);
            let w = View::row_major(&layer.weight, layer.output, layer.input);
            product(Out::Replace(&mut self.da), dz, w, threads());
            // Through the ReLU and the dropout mask of the layer below.
            let mask = masks.map(|m| m[i - 1].as_slice());
            relu_dropout_backward(&mut self.da, input, mask);
            std::mem::swap(&mut self.dz, &mut self.da);
        }
        loss / n as f32
    }
}

/// `∂L/∂z = ∂L/∂a ⊙ mask` where the layer's output `a` is positive, else 0. A positive output has
/// a kept unit and a positive pre-activation, so the output alone decides where the gradient flows.
fn relu_dropout_backward(da: &mut [f32], a: &[f32], mask: Option<&[f32]>) {
    let ones = mask.is_none();
    let mask = mask.unwrap_or(a);
    da.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(mask.par_chunks(CHUNK))).for_each(|(d, (a, m))| {
        for ((d, a), m) in d.iter_mut().zip(a).zip(m) {
            *d = if *a > 0.0 {
                if ones {
                    *d
                } else {
                    *d * m
                }
            } else {
                0.0
            };
        }
    });
}
