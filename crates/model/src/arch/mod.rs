//! The decoder families armorm implements, decided from `config.json` alone and refused by name
//! when they are anything else.
//!
//! Every family is one file holding what sets it apart: the config keys that change its math,
//! read into a [`Block`] (or refused), and the checkpoint tensors it may leave unread. The decoder
//! itself ([`decoder`]) is shared and reads only the [`Block`].

pub mod config;
pub mod decoder;
mod gemma2;
mod keys;
pub mod layout;
mod llama;
mod qwen2;
mod qwen3;

pub use keys::ConfigKeys;

pub use crate::layers::activation::Activation;
pub use crate::layers::residual::NormStyle;

use crate::error::{ModelError, Result};

/// A decoder family, as transformers' `model_type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Llama,
    Qwen2,
    Qwen3,
    Gemma2,
}

impl Family {
    pub const ALL: [Self; 4] = [Self::Llama, Self::Qwen2, Self::Qwen3, Self::Gemma2];

    /// transformers' `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Gemma2 => "gemma2",
        }
    }

    /// The prefix of transformers' class names (`Qwen3ForSequenceClassification`).
    fn class_prefix(self) -> &'static str {
        match self {
            Self::Llama => "Llama",
            Self::Qwen2 => "Qwen2",
            Self::Qwen3 => "Qwen3",
            Self::Gemma2 => "Gemma2",
        }
    }

    /// The class an ArmoRM-style export of this backbone declares.
    pub fn gating_class(self) -> String {
        format!("{}{}", self.class_prefix(), Task::GATING_SUFFIX)
    }

    fn from_model_type(model_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.model_type() == model_type)
    }

    /// `head_dim`, or the default the family's config class fills in when config.json leaves it
    /// out.
    pub(crate) fn head_dim(self, keys: &ConfigKeys, hidden: usize, heads: usize) -> Result<usize> {
        Ok(keys.usize("head_dim")?.unwrap_or(match self {
            Self::Gemma2 => 256,
            _ => hidden / heads.max(1),
        }))
    }

    /// The config's math-changing keys, read or refused by name.
    pub(crate) fn block(self, keys: &ConfigKeys, layers: usize, head_dim: usize) -> Result<Block> {
        match self {
            Self::Llama => llama::block(keys, layers, head_dim),
            Self::Qwen2 => qwen2::block(keys, layers, head_dim),
            Self::Qwen3 => qwen3::block(keys, layers, head_dim),
            Self::Gemma2 => gemma2::block(keys, layers, head_dim),
        }
    }

    /// transformers' default `tie_word_embeddings` for the family's config class.
    pub(crate) fn ties_word_embeddings(self) -> bool {
        matches!(self, Self::Gemma2)
    }

    /// Checkpoint tensors the family's scorer may leave unread (a language-model head, rotary
    /// caches): anything else unread means the checkpoint is not what its config says.
    pub fn may_ignore(self, tensor: &str) -> bool {
        tensor == "lm_head.weight"
            || match self {
                Self::Llama => llama::may_ignore(tensor),
                Self::Qwen2 | Self::Qwen3 | Self::Gemma2 => false,
            }
    }
}

/// What a checkpoint's class is for; every task of a family shares the backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// `*ForSequenceClassification`: a `score` head over the last non-pad token.
    SequenceClassification,
    /// `*ForRewardModelWithGating`: ArmoRM's regression, gating and transform heads.
    Gating,
    /// `*ForCausalLM` or `*Model`: a backbone to train heads on.
    Backbone,
}

impl Task {
    const GATING_SUFFIX: &'static str = "ForRewardModelWithGating";
    const SUFFIXES: [(&'static str, Self); 4] = [
        ("ForSequenceClassification", Self::SequenceClassification),
        (Self::GATING_SUFFIX, Self::Gating),
        ("ForCausalLM", Self::Backbone),
        ("Model", Self::Backbone),
    ];
}

/// The checkpoint's family and the class its config names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Architecture {
    pub family: Family,
    pub task: Task,
    /// `architectures[0]`, or the family's `Model` class when the config names none.
    pub class: String,
}

/// Classes named for their authors rather than their family: INF-ORM's Llama-3.1 with an MLP score
/// head (`score.0`, `score.2`; the head is read from the tensors).
const NAMED_CLASSES: [(&str, Family, Task); 1] =
    [("INFORMForSequenceClassification", Family::Llama, Task::SequenceClassification)];

/// Every class armorm implements, for error messages and the docs.
pub fn supported_classes() -> Vec<String> {
    Family::ALL
        .iter()
        .flat_map(|f| Task::SUFFIXES.iter().map(move |(suffix, _)| format!("{}{suffix}", f.class_prefix())))
        .chain(NAMED_CLASSES.iter().map(|(class, ..)| class.to_string()))
        .collect()
}

impl Architecture {
    /// From `architectures` and `model_type`: both must name one family armorm implements, and
    /// agree when both are given.
    pub fn detect(keys: &ConfigKeys) -> Result<Self> {
        let model_type = keys.str("model_type")?;
        let classes = keys.string_list("architectures")?;
        if classes.len() > 1 {
            return Err(unsupported(format!("architectures lists several classes ({})", classes.join(", "))));
        }
        let by_class = match classes.first() {
            Some(class) => Some(Self::from_class(class).ok_or_else(|| {
                unsupported(format!(
                    "architecture {class:?} is not one armorm implements; supported: {}",
                    supported_classes().join(", ")
                ))
            })?),
            None => None,
        };
        let by_type = match model_type {
            Some(t) => Some(Family::from_model_type(t).ok_or_else(|| {
                let known: Vec<&str> = Family::ALL.iter().map(|f| f.model_type()).collect();
                unsupported(format!("model_type {t:?} is not one armorm implements; supported: {}", known.join(", ")))
            })?),
            None => None,
        };
        match (by_class, by_type) {
            (Some(arch), Some(family)) if arch.family != family => Err(unsupported(format!(
                "architectures says {} but model_type says {:?}; the checkpoint is mislabelled",
                arch.class,
                family.model_type()
            ))),
            (Some(arch), _) => Ok(arch),
            (None, Some(family)) => {
                Ok(Self { family, task: Task::Backbone, class: format!("{}Model", family.class_prefix()) })
            }
            (None, None) => Err(unsupported(
                "config.json names neither architectures nor model_type, so the decoder cannot be known".into(),
            )),
        }
    }

    fn from_class(class: &str) -> Option<Self> {
        if let Some(&(_, family, task)) = NAMED_CLASSES.iter().find(|(name, ..)| *name == class) {
            return Some(Self { family, task, class: class.to_string() });
        }
        Family::ALL.into_iter().find_map(|family| {
            let rest = class.strip_prefix(family.class_prefix())?;
            let &(_, task) = Task::SUFFIXES.iter().find(|(suffix, _)| rest == *suffix)?;
            Some(Self { family, task, class: class.to_string() })
        })
    }
}

fn unsupported(why: String) -> ModelError {
    ModelError::UnsupportedConfig(why)
}

/// transformers' `ACT2FN` names this implements.
fn activation(key: &str, name: &str) -> Result<Activation> {
    match name {
        "silu" | "swish" => Ok(Activation::Silu),
        "gelu_pytorch_tanh" | "gelu_new" => Ok(Activation::GeluTanh),
        other => Err(unsupported(format!("{key} {other:?} (implemented: silu, gelu_pytorch_tanh)"))),
    }
}

/// Everything a decoder layer does beyond the Llama block, as the config decides it.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Biases on the q, k and v projections.
    pub qkv_bias: bool,
    /// A bias on the output projection.
    pub o_bias: bool,
    /// Biases on gate, up and down.
    pub mlp_bias: bool,
    /// Per-head RMSNorm of queries and keys before the rotary embedding (Qwen3).
    pub qk_norm: bool,
    pub norm: NormStyle,
    pub activation: Activation,
    /// Norms after attention and after the MLP as well as before each (Gemma-2).
    pub sandwich_norms: bool,
    /// Embeddings multiplied by sqrt(hidden), rounded to the compute dtype (Gemma).
    pub embed_scale: bool,
    /// Attention scores are q k^T times this.
    pub query_scale: f64,
    /// Scores become `cap tanh(score / cap)` before the softmax.
    pub softcap: Option<f64>,
    /// Per layer: `Some(w)` where a query sees only the `w` keys up to itself.
    pub windows: Vec<Option<usize>>,
}

impl Block {
    /// The Llama block with `head_dim`'s standard scale and full attention in every layer; its
    /// MLP is SwiGLU, so `hidden_act` must be silu.
    fn llama(keys: &ConfigKeys, layers: usize, head_dim: usize) -> Result<Self> {
        let name = keys.str("hidden_act")?.unwrap_or("silu");
        if activation("hidden_act", name)? != Activation::Silu {
            return Err(unsupported(format!("hidden_act {name:?}: this family's MLP is SwiGLU (silu)")));
        }
        Ok(Self {
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            qk_norm: false,
            norm: NormStyle::Scaled,
            activation: Activation::Silu,
            sandwich_norms: false,
            embed_scale: false,
            query_scale: 1.0 / (head_dim as f64).sqrt(),
            softcap: None,
            windows: vec![None; layers],
        })
    }
}

/// Per layer, its sliding window or none: from `layer_types` when the config lists them, else
/// from `default` (whether layer i slides) and `window`.
fn layer_windows(
    keys: &ConfigKeys,
    layers: usize,
    window: Option<usize>,
    default: impl Fn(usize) -> bool,
) -> Result<Vec<Option<usize>>> {
    let needs_window = || unsupported("layer_types has sliding_attention layers but sliding_window is null".into());
    let types = keys.string_list("layer_types")?;
    if types.is_empty() {
        return (0..layers)
            .map(|i| if default(i) { window.map(Some).ok_or_else(needs_window) } else { Ok(None) })
            .collect();
    }
    if types.len() != layers {
        return Err(unsupported(format!("layer_types has {} entries for {layers} layers", types.len())));
    }
    types
        .iter()
        .map(|t| match t.as_str() {
            "full_attention" => Ok(None),
            "sliding_attention" => window.map(Some).ok_or_else(needs_window),
            other => Err(unsupported(format!(
                "layer_types entry {other:?} (implemented: full_attention, sliding_attention)"
            ))),
        })
        .collect()
}

/// The sliding-window rule of Qwen2 and Qwen3: windows only with `use_sliding_window`, and then in
/// layers from `max_window_layers` on.
fn qwen_windows(keys: &ConfigKeys, layers: usize) -> Result<Vec<Option<usize>>> {
    let window = if keys.bool("use_sliding_window")?.unwrap_or(false) {
        Some(keys.usize("sliding_window")?.unwrap_or(4096))
    } else {
        None
    };
    let from = keys.usize("max_window_layers")?.unwrap_or(28);
    layer_windows(keys, layers, window, |i| window.is_some() && i >= from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(json: &str) -> Result<Architecture> {
        Architecture::detect(&ConfigKeys::parse(json).unwrap())
    }

    #[test]
    fn architecture_comes_from_the_class_and_the_model_type() {
        let a = detect(r#"{"architectures": ["Qwen3ForSequenceClassification"], "model_type": "qwen3"}"#).unwrap();
        assert_eq!((a.family, a.task), (Family::Qwen3, Task::SequenceClassification));
        let a = detect(r#"{"architectures": ["LlamaForRewardModelWithGating"]}"#).unwrap();
        assert_eq!((a.family, a.task), (Family::Llama, Task::Gating));
        let a = detect(r#"{"architectures": ["INFORMForSequenceClassification"], "model_type": "llama"}"#).unwrap();
        assert_eq!((a.family, a.task), (Family::Llama, Task::SequenceClassification));
        let a = detect(r#"{"model_type": "gemma2"}"#).unwrap();
        assert_eq!((a.family, a.task, a.class.as_str()), (Family::Gemma2, Task::Backbone, "Gemma2Model"));
    }

    #[test]
    fn unknown_or_contradictory_architectures_are_refused_by_name() {
        let err = detect(r#"{"architectures": ["MistralForSequenceClassification"], "model_type": "mistral"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MistralForSequenceClassification") && err.contains("Qwen3ForSequenceClassification"),
            "{err}"
        );
        let err = detect(r#"{"model_type": "gemma3"}"#).unwrap_err().to_string();
        assert!(err.contains("gemma3") && err.contains("qwen2"), "{err}");
        let err = detect(r#"{"architectures": ["LlamaForSequenceClassification"], "model_type": "qwen3"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("mislabelled"), "{err}");
        assert!(detect("{}").is_err());
    }

    #[test]
    fn layer_types_decide_the_windows() {
        let keys =
            ConfigKeys::parse(r#"{"layer_types": ["sliding_attention", "full_attention"], "sliding_window": 8}"#)
                .unwrap();
        assert_eq!(layer_windows(&keys, 2, Some(8), |_| false).unwrap(), [Some(8), None]);
        assert!(layer_windows(&keys, 3, Some(8), |_| false).is_err());
        let odd = ConfigKeys::parse(r#"{"layer_types": ["chunked_attention"]}"#).unwrap();
        assert!(layer_windows(&odd, 1, None, |_| false).unwrap_err().to_string().contains("chunked_attention"));
    }
}
