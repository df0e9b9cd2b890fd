//! AdamW as PyTorch's `torch.optim.AdamW` computes it (betas 0.9/0.999, eps 1e-8, no amsgrad),
//! one fused pass over each parameter array and its two moment arrays.

use rayon::prelude::*;

use super::backprop::Grads;
use super::net::{GatingNet, CHUNK};

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

pub struct AdamW {
    weight_decay: f64,
    step: i32,
    /// First and second moments, in the order of [`AdamW::arrays`].
    moments: Vec<(Vec<f32>, Vec<f32>)>,
}

impl AdamW {
    pub fn new(net: &GatingNet, weight_decay: f64) -> Self {
        let moments = arrays(net).map(|len| (vec![0.0; len], vec![0.0; len])).collect();
        Self { weight_decay, step: 0, moments }
    }

    /// One update of every parameter of `net` with `grads` at learning rate `lr`.
    pub fn step(&mut self, net: &mut GatingNet, grads: &Grads, lr: f64) {
        self.step += 1;
        let (bc1, bc2) = (1.0 - f64::from(BETA1).powi(self.step), 1.0 - f64::from(BETA2).powi(self.step));
        let coeffs = Coefficients {
            decay: (1.0 - lr * self.weight_decay) as f32,
            step_size: (lr / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
        };
        let mut scale = [net.logit_scale];
        let params = net.layers.iter_mut().flat_map(|l| [&mut l.weight[..], &mut l.bias[..]]);
        let params = params.chain([&mut scale[..]]);
        let g_scale = [grads.logit_scale];
        let gs = grads.layers.iter().flat_map(|(w, b)| [&w[..], &b[..]]).chain([&g_scale[..]]);
        for ((p, g), (m, v)) in params.zip(gs).zip(&mut self.moments) {
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                .for_each(|((p, g), (m, v))| coeffs.apply(p, g, m, v));
        }
        net.logit_scale = scale[0];
    }
}

#[derive(Clone, Copy)]
struct Coefficients {
    decay: f32,
    step_size: f32,
    bc2_sqrt: f32,
}

impl Coefficients {
    fn apply(self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *p *= self.decay;
            *m += (1.0 - BETA1) * (g - *m);
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *p -= self.step_size * *m / (v.sqrt() / self.bc2_sqrt + EPS);
        }
    }
}

/// The length of each parameter array: each layer's weight and bias, then the logit scale.
fn arrays(net: &GatingNet) -> impl Iterator<Item = usize> + '_ {
    net.layers.iter().flat_map(|l| [l.weight.len(), l.bias.len()]).chain([1])
}
