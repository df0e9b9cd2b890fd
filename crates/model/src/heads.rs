//! The reward heads on top of the backbone, always in f32: ArmoRM's regression layer, gating network
//! and reward-transform matrix, a sequence-classification `score` head (Bradley-Terry), or a
//! pairwise preference model's two language-model rows ("A" and "B").

use candle_core::{DType, Tensor, D};

use crate::arch::config::{GatingConfig, ModelConfig};
use crate::arch::layout::TensorLayout;
use crate::error::{ModelError, Result};
use crate::layers::linear::matmul;
use crate::load::weights::Weights;

/// Linear layers in f32 with ReLU between them: the gating network's trunk and the MLP score heads.
struct Mlp {
    /// (weight transposed (in, out), bias (out) if the layer has one)
    layers: Vec<(Tensor, Option<Tensor>)>,
}

impl Mlp {
    /// `{name}.weight` (out, input) for each (name, input, has a bias) in order, with `{name}.bias`.
    fn load(w: &Weights, layers: &[(String, usize, bool)]) -> Result<Self> {
        let layers = layers
            .iter()
            .map(|(name, input, bias)| {
                let weight = format!("{name}.weight");
                let out = match w.shape(&weight) {
                    Some(&[out, _]) => out,
                    _ => return Err(ModelError::Checkpoint(format!("{weight} is missing or not a matrix"))),
                };
                let bias = bias.then(|| w.get(&format!("{name}.bias"), &[out], DType::F32)).transpose()?;
                Ok((w.get(&weight, &[out, *input], DType::F32)?.t()?.contiguous()?, bias))
            })
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    fn out_features(&self) -> usize {
        self.layers.last().and_then(|(w_t, _)| w_t.dims().last().copied()).unwrap_or(0)
    }

    /// (n, in) -> (n, out)
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
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

/// Linear(hidden -> gh), ReLU, (Linear(gh -> gh), ReLU) x (n_hidden - 1), Linear(gh -> k); then
/// softmax(logits / temperature) * logit_scale.
struct GatingNetwork {
    mlp: Mlp,
    temperature: f64,
    logit_scale: Tensor,
}

impl GatingNetwork {
    fn load(w: &Weights, hidden: usize, g: &GatingConfig) -> Result<Self> {
        let inputs = std::iter::once(hidden).chain(std::iter::repeat_n(g.hidden_dim, g.n_hidden));
        let layers: Vec<(String, usize, bool)> =
            inputs.enumerate().map(|(i, input)| (format!("gating.layers.{i}"), input, true)).collect();
        let mlp = Mlp::load(w, &layers)?;
        if mlp.out_features() != g.num_objectives {
            return Err(ModelError::Checkpoint(format!(
                "the gating network has {} outputs but config.json says num_objectives {}",
                mlp.out_features(),
                g.num_objectives
            )));
        }
        Ok(Self { mlp, temperature: g.temperature, logit_scale: w.get("gating.logit_scale", &[1], DType::F32)? })
    }

    /// (n, hidden) -> (n, k)
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gating = candle_nn::ops::softmax_last_dim(&(self.mlp.forward(x)? / self.temperature)?)?;
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
    Pairwise(PairwiseHead),
}

/// A pairwise preference model's head (RLHFlow/pair-preference-model-LLaMA3-8B, SLiC-HF): the
/// language-model head's rows for the tokens "A" and "B", read at the last position, whose logits
/// say which of the two responses in the input the model prefers. Only those two rows are loaded.
pub struct PairwiseHead {
    /// (hidden, 2): the rows of "A" and "B", transposed.
    rows_t: Tensor,
}

impl PairwiseHead {
    /// `tokens`: the ids of "A" and "B". The rows come from `lm_head.weight`, or from the embedding
    /// table when the config ties them.
    pub fn load(w: &Weights, cfg: &ModelConfig, layout: TensorLayout, tokens: [u32; 2]) -> Result<Self> {
        let (vocab, hidden) = (cfg.backbone.vocab_size, cfg.backbone.hidden_size);
        let name = if w.contains("lm_head.weight") {
            "lm_head.weight".to_string()
        } else if cfg.tie_word_embeddings {
            format!("{}embed_tokens.weight", layout.backbone_prefix())
        } else {
            return Err(ModelError::Checkpoint(
                "a pairwise preference model needs its language-model head: no lm_head.weight, and the config \
                 does not tie it to the embeddings"
                    .into(),
            ));
        };
        let rows = w.get_rows(&name, &[vocab, hidden], &tokens.map(|t| t as usize))?;
        Ok(Self { rows_t: rows.t()?.contiguous()? })
    }

    /// (n, hidden) -> (n, 2): the logits of "A" and "B".
    pub fn forward(&self, last: &Tensor) -> Result<Tensor> {
        matmul(last, &self.rows_t)
    }
}

/// A sequence-classification head over the token its layout reads: `score` as one linear layer
/// (`score.weight` (labels, hidden), as transformers' `*ForSequenceClassification` and
/// Bradley-Terry reward models have it; Starling-RM's `v_head`), or INF-ORM's Linear, ReLU, Linear (`score.0.*`, `score.2.*`). Every label's logit is
/// an output; the first is the score.
pub struct Classifier(Mlp);

impl Classifier {
    fn load(w: &Weights, hidden: usize, labels: Option<usize>, layout: TensorLayout) -> Result<Option<Self>> {
        let name = layout.classifier();
        let layers = if w.contains(&format!("{name}.weight")) {
            vec![(name.to_string(), hidden, w.contains(&format!("{name}.bias")))]
        } else if w.contains("score.0.weight") && w.contains("score.2.weight") {
            let inner = w.shape("score.0.weight").and_then(|s| s.first().copied()).unwrap_or(0);
            vec![("score.0".to_string(), hidden, true), ("score.2".to_string(), inner, true)]
        } else {
            return Ok(None);
        };
        let mlp = Mlp::load(w, &layers)?;
        let out = mlp.out_features();
        if out == 0 || labels.is_some_and(|n| n != out) {
            return Err(ModelError::Checkpoint(format!(
                "the score head has {out} outputs but config.json says num_labels {}",
                labels.map_or("(absent)".into(), |n| n.to_string())
            )));
        }
        Ok(Some(Self(mlp)))
    }

    pub fn labels(&self) -> usize {
        self.0.out_features()
    }

    /// (n, hidden) -> (n, labels)
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.0.forward(x)
    }
}

impl Head {
    /// The head kind is read from the tensors present, not from `architectures`, which converted
    /// checkpoints often get wrong.
    pub fn load(w: &Weights, cfg: &ModelConfig, layout: TensorLayout) -> Result<Self> {
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
        if let Some(classifier) = Classifier::load(w, hidden, cfg.num_labels, layout)? {
            return Ok(Self::Classifier(classifier));
        }
        Err(ModelError::Checkpoint(
            "no reward head: expected regression_layer.weight (ArmoRM), score.weight (sequence classification), \
             score.0/score.2 (an MLP score head) or transformer.* with v_head.weight (Starling-RM); a pairwise \
             preference model (a causal LM that answers \"A\" or \"B\") loads with --pairwise"
                .into(),
        ))
    }

    pub fn kind(&self) -> HeadKind {
        match self {
            Self::Armo(_) => HeadKind::Armo,
            Self::Classifier(_) => HeadKind::BradleyTerry,
            Self::Pairwise(_) => HeadKind::Pairwise,
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
    /// A pairwise preference model: it judges two responses against each other (`/compare`,
    /// `/rank`), and gives no score to one alone.
    Pairwise,
}

impl HeadKind {
    /// The name `/info` and the eval results give it (its serde name).
    pub fn name(self) -> &'static str {
        match self {
            Self::Armo => "armo",
            Self::BradleyTerry => "bradley_terry",
            Self::Pairwise => "pairwise",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HeadKind;

    #[test]
    fn head_names_are_their_serde_names() {
        for kind in [HeadKind::Armo, HeadKind::BradleyTerry, HeadKind::Pairwise] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
    }
}
