//! Where a checkpoint keeps its tensors and which token its head reads, decided from the tensors:
//! transformers' classes keep the decoder under `model.` and a classifier's `score` reads the last
//! token that is not the config's pad id; Starling-RM's own class (its model card's code, which
//! its config.json calls `LlamaForSequenceClassification`) keeps a Llama under `transformer.`, a
//! `v_head` on top, and reads the token before the first id 0.

use super::config::ModelConfig;
use super::{Family, Task};
use crate::error::{ModelError, Result};
use crate::load::weights::Weights;
use crate::text::tokenize::Readout;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TensorLayout {
    Transformers,
    Starling,
}

impl TensorLayout {
    pub const ALL: [Self; 2] = [Self::Transformers, Self::Starling];
    /// Starling-RM's `PAD_ID`, fixed in its class whatever the tokenizer's pad is.
    const STARLING_PAD: u32 = 0;

    pub fn detect(weights: &Weights, family: Family) -> Result<Self> {
        let starling = weights.contains("v_head.weight") && weights.contains("transformer.embed_tokens.weight");
        match (starling, family) {
            (false, _) => Ok(Self::Transformers),
            (true, Family::Llama) => Ok(Self::Starling),
            (true, other) => Err(ModelError::UnsupportedConfig(format!(
                "tensors in Starling-RM's layout (transformer.*, v_head) on a {} backbone: armorm knows that \
                 layout for Llama only",
                other.model_type()
            ))),
        }
    }

    /// The backbone's tensor-name prefix, with its dot.
    pub fn backbone_prefix(self) -> &'static str {
        match self {
            Self::Transformers => "model.",
            Self::Starling => "transformer.",
        }
    }

    /// The classifier's tensor name (`{name}.weight`, optionally `{name}.bias`).
    pub fn classifier(self) -> &'static str {
        match self {
            Self::Transformers => "score",
            Self::Starling => "v_head",
        }
    }

    /// Which token the head reads.
    pub fn readout(self, cfg: &ModelConfig) -> Readout {
        match (self, cfg.architecture.task, cfg.pad_token_id) {
            (Self::Starling, ..) => Readout::BeforeFirst(Self::STARLING_PAD),
            (Self::Transformers, Task::SequenceClassification, Some(pad)) => Readout::LastNotPad(pad),
            (Self::Transformers, ..) => Readout::Last,
        }
    }

    /// As `/info` names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Transformers => "transformers",
            Self::Starling => "starling",
        }
    }
}
