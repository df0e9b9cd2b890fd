//! The reward heads on top of the backbone, always in f32: ArmoRM's regression layer, gating network
//! and reward-transform matrix, or a sequence-classification `score` head (Bradley-Terry).

use candle_core::{DType, Tensor, D};

use crate::arch::config::{GatingConfig, ModelConfig};
use crate::error::{ModelError, Result};
use crate::layers::linear::matmul;
use crate::load::weights::Weights;

/// Linear(hidden -> gh), ReLU, (Linear(gh -> gh), ReLU) x (n_hidden - 1), Linear(gh -> k); then
/// softmax(logits / temperature) * logit_scale.
struct GatingNetwork {
    /// (weight transposed (in, out), bias (out))
    layers: Vec<(Tensor, Tensor)>,
    temperature: f64,
    logit_scale: Tensor,
}

impl GatingNetwork {
    fn load(w: &Weights, hidden: usize, g: &GatingConfig) -> Result<Self> {
        let mut dims = vec![hidden];
        dims.extend(std::iter::repeat_n(g.hidden_dim, g.n_hidden));
        dims.push(g.num_objectives);
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(i, io)| {
                let weight = w.get(&format!("gating.layers.{i}.weight"), &[io[1], io[0]], DType::F32)?;
                let bias = w.get(&format!("gating.layers.{i}.bias"), &[io[1]], DType::F32)?;
                Ok((weight.t()?.contiguous()?, bias))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers, temperature: g.temperature, logit_scale: w.get("gating.logit_scale", &[1], DType::F32)? })
    }

    /// (n, hidden) -> (n, k)
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, (weight_t, bias)) in self.layers.iter().enumerate() {
            x = matmul(&x, weight_t)?.broadcast_add(bias)?;
            if i + 1 < self.layers.len() {
                x = x.relu()?;
            }
        }
        let gating = candle_nn::ops::softmax_last_dim(&(x / self.temperature)?)?;
        Ok(gating.broadcast_mul(&self.logit_scale)?)
    }
}

pub struct ArmoHead {
    /// (hidden, k)
    regression_t: Tensor,
    /// (k, k), applied as `rewards @ T`
    transform: Tensor,
    /// T^T, contiguous: `gating @ T^T` are the coefficients.
    transform_t: Tensor,
    gating: GatingNetwork,
    objectives: Vec<String>,
}

/// Per-conversation head outputs, each `(n, k)` or `(n,)`, still on the device.
pub struct ArmoOutputs {
    pub score: Tensor,
    pub rewards: Tensor,
    pub gating: Tensor,
    pub coefficients: Tensor,
}

impl ArmoHead {
    pub fn objectives(&self) -> &[String] {
        &self.objectives
    }

    /// T (k, k): `rewards @ T` are the debiased rewards.
    pub fn transform(&self) -> Result<Vec<Vec<f32>>> {
        Ok(self.transform.to_vec2::<f32>()?)
    }

    /// `last` and `gate` are the final-norm hidden states (n, hidden) at each conversation's last token
    /// and gate position.
    pub fn forward(&self, last: &Tensor, gate: &Tensor) -> Result<ArmoOutputs> {
        let rewards = matmul(last, &self.regression_t)?; // (n, k)
        let gating = self.gating.forward(gate)?; // (n, k)
        let coefficients = matmul(&gating, &self.transform_t)?; // gating @ T^T
        let score = (&rewards * &coefficients)?.sum(D::Minus1)?;
        Ok(ArmoOutputs { score, rewards, gating, coefficients })
    }
}

pub enum Head {
    Armo(ArmoHead),
    Classifier(Classifier),
}

/// A sequence-classification head over the last token: `score` as one linear layer (`score.weight`
/// (labels, hidden), as transformers' `*ForSequenceClassification` and Bradley-Terry reward models
/// have it), or INF-ORM's Linear, ReLU, Linear (`score.0.*`, `score.2.*`). Every label's logit is
/// an output; the first is the score.
pub struct Classifier {
    /// (weight transposed (in, out), bias (out)), ReLU between layers.
    layers: Vec<(Tensor, Option<Tensor>)>,
    labels: usize,
}

impl Classifier {
    fn load(w: &Weights, hidden: usize, labels: Option<usize>) -> Result<Option<Self>> {
        let rows = |name: &str| w.shape(name).and_then(|s| s.first().copied());
        let layer = |name: &str, input: usize, bias: bool| -> Result<(Tensor, Option<Tensor>, usize)> {
            let out = rows(&format!("{name}.weight")).unwrap_or(0);
            let weight = w.get(&format!("{name}.weight"), &[out, input], DType::F32)?.t()?.contiguous()?;
            let bias = bias.then(|| w.get(&format!("{name}.bias"), &[out], DType::F32)).transpose()?;
            Ok((weight, bias, out))
        };
        let layers = if w.contains("score.weight") {
            let (weight, bias, out) = layer("score", hidden, w.contains("score.bias"))?;
            vec![(weight, bias, out)]
        } else if w.contains("score.0.weight") && w.contains("score.2.weight") {
            let (w0, b0, inner) = layer("score.0", hidden, true)?;
            let (w2, b2, out) = layer("score.2", inner, true)?;
            vec![(w0, b0, inner), (w2, b2, out)]
        } else {
            return Ok(None);
        };
        let out = layers.last().map_or(0, |l| l.2);
        if out == 0 || labels.is_some_and(|n| n != out) {
            return Err(ModelError::Checkpoint(format!(
                "the score head has {out} outputs but config.json says num_labels {}",
                labels.map_or("(absent)".into(), |n| n.to_string())
            )));
        }
        Ok(Some(Self { layers: layers.into_iter().map(|(w, b, _)| (w, b)).collect(), labels: out }))
    }

    pub fn labels(&self) -> usize {
        self.labels
    }

    /// (n, hidden) -> (n, labels)
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, (weight_t, bias)) in self.layers.iter().enumerate() {
            x = matmul(&x, weight_t)?;
            if let Some(b) = bias {
                x = x.broadcast_add(b)?;
            }
            if i + 1 < self.layers.len() {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

impl Head {
    /// The head kind is read from the tensors present, not from `architectures`, which converted
    /// checkpoints often get wrong.
    pub fn load(w: &Weights, cfg: &ModelConfig) -> Result<Self> {
        let hidden = cfg.backbone.hidden_size;
        if w.contains("regression_layer.weight") {
            let g = cfg.gating.as_ref().ok_or_else(|| {
                ModelError::Checkpoint("regression_layer.weight present but config.json has no num_objectives".into())
            })?;
            let k = g.num_objectives;
            let transform = w.get("reward_transform_matrix", &[k, k], DType::F32)?;
            return Ok(Self::Armo(ArmoHead {
                regression_t: w.get("regression_layer.weight", &[k, hidden], DType::F32)?.t()?.contiguous()?,
                transform_t: transform.t()?.contiguous()?,
                transform,
                gating: GatingNetwork::load(w, hidden, g)?,
                objectives: g.objective_names()?,
            }));
        }
        if let Some(classifier) = Classifier::load(w, hidden, cfg.num_labels)? {
            return Ok(Self::Classifier(classifier));
        }
        Err(ModelError::Checkpoint(
            "no reward head: expected regression_layer.weight (ArmoRM), score.weight (sequence classification) \
             or score.0/score.2 (an MLP score head)"
                .into(),
        ))
    }

    pub fn kind(&self) -> HeadKind {
        match self {
            Self::Armo(_) => HeadKind::Armo,
            Self::Classifier(_) => HeadKind::BradleyTerry,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// Multi-objective regression with a gating network (ArmoRM).
    Armo,
    /// A sequence-classification score (Bradley-Terry): the first logit, all of them when there
    /// are several.
    BradleyTerry,
}
