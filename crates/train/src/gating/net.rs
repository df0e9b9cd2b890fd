//! The gating MLP, its PyTorch-compatible initialisation, and its parameters as checkpoint tensors.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var, D};
use rand::Rng;

use crate::error::Result;
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

pub struct GatingNet {
    pub shape: GatingShape,
    /// (weight (out, in), bias (out)) per layer, as nn.Linear stores them.
    layers: Vec<(Var, Var)>,
    logit_scale: Var,
}

impl GatingNet {
    /// nn.Linear's default initialisation (weights and biases uniform in ±1/√fan_in), logit_scale 1.
    pub fn init(shape: GatingShape, rng: &mut impl Rng, device: &Device) -> Result<Self> {
        let mut uniform = |n: usize, fan_in: usize| -> Vec<f32> {
            let bound = 1.0 / (fan_in as f32).sqrt();
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        };
        let mut tensors = BTreeMap::new();
        for (i, (input, output)) in shape.layers().into_iter().enumerate() {
            tensors.insert(weight_name(i), F32Tensor::new(vec![output, input], uniform(output * input, input)));
            tensors.insert(bias_name(i), F32Tensor::new(vec![output], uniform(output, input)));
        }
        tensors.insert(SCALE.to_string(), F32Tensor::new(vec![1], vec![1.0]));
        Self::from_tensors(shape, &tensors, device)
    }

    pub fn from_tensors(shape: GatingShape, tensors: &BTreeMap<String, F32Tensor>, device: &Device) -> Result<Self> {
        let var = |name: &str, dims: &[usize]| -> Result<Var> {
            let t = tensors.get(name).filter(|t| t.shape == dims).ok_or_else(|| {
                crate::error::TrainError::Invalid(format!("gating tensors: no {name} of shape {dims:?}"))
            })?;
            Ok(Var::from_tensor(&Tensor::from_slice(&t.data, dims, device)?)?)
        };
        let layers = shape
            .layers()
            .into_iter()
            .enumerate()
            .map(|(i, (input, output))| Ok((var(&weight_name(i), &[output, input])?, var(&bias_name(i), &[output])?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { shape, layers, logit_scale: var(SCALE, &[1])? })
    }

    /// The parameters under the names the exported checkpoint uses.
    pub fn to_tensors(&self) -> Result<BTreeMap<String, F32Tensor>> {
        let host = |v: &Var| -> Result<F32Tensor> {
            Ok(F32Tensor::new(v.dims().to_vec(), v.as_tensor().flatten_all()?.to_dtype(DType::F32)?.to_vec1()?))
        };
        let mut out = BTreeMap::new();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            out.insert(weight_name(i), host(w)?);
            out.insert(bias_name(i), host(b)?);
        }
        out.insert(SCALE.to_string(), host(&self.logit_scale)?);
        Ok(out)
    }

    pub fn vars(&self) -> Vec<Var> {
        self.layers.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).chain([self.logit_scale.clone()]).collect()
    }

    /// (n, input) -> (n, objectives). `dropout` holds one keep-mask per hidden layer (already scaled
    /// by 1/(1-p)), for training; `None` evaluates.
    pub fn forward(&self, x: &Tensor, dropout: Option<&[Tensor]>) -> Result<Tensor> {
        let mut x = x.clone();
        let last = self.layers.len() - 1;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            x = x.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())?;
            if i < last {
                x = x.relu()?;
                if let Some(masks) = dropout {
                    x = (x * &masks[i])?;
                }
            }
        }
        let logits = (x / self.shape.temperature)?;
        // Softmax over the objectives; the max is a constant shift, so no gradient flows through it.
        let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?.detach())?;
        let e = shifted.exp()?;
        let gating = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        Ok(gating.broadcast_mul(self.logit_scale.as_tensor())?)
    }
}

/// Each pair's score difference under `gating` (n, k), with the debiased rewards of both answers
/// (n, k): s_c − s_r = Σ_k gating · (r_c − r_r).
pub fn margins(gating: &Tensor, chosen: &Tensor, rejected: &Tensor) -> Result<Tensor> {
    Ok((gating * (chosen - rejected)?)?.sum(D::Minus1)?)
}

/// Mean Bradley-Terry loss softplus(−m) = max(−m, 0) + log(1 + exp(−|m|)), stable for any margin.
pub fn bt_loss(margins: &Tensor) -> Result<Tensor> {
    let neg = margins.neg()?;
    let soft = (neg.relu()? + (margins.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    Ok(soft.mean_all()?)
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
        let m = Tensor::new(&[0.0f32, 2.0, -3.0, 200.0, -200.0], &Device::Cpu).unwrap();
        let per: Vec<f32> =
            [0.0f64, 2.0, -3.0, 200.0, -200.0].iter().map(|&x| (1.0 + (-x).exp()).ln() as f32).collect();
        let want = per.iter().map(|&x| if x.is_finite() { x } else { 200.0 }).sum::<f32>() / 5.0;
        let got = bt_loss(&m).unwrap().to_scalar::<f32>().unwrap();
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }
}
