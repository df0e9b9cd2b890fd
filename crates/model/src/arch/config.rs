//! `config.json`: the backbone's family and shape, RoPE settings, and the reward head's hyper-parameters.
//!
//! Accepts both the layout transformers 4.x wrote (`rope_theta` + `rope_scaling`, as in the published
//! ArmoRM checkpoint) and the one 5.x writes (`rope_parameters`).

use std::path::Path;

use serde::Deserialize;

use crate::arch::{Architecture, Block, ConfigKeys, Family};
use crate::error::{ModelError, Result};
use crate::kernels::rope::{RopeConfig, RopeScaling};
use crate::load::dtype::{self, ComputeDType};

/// The 19 objectives of `RLHFlow/ArmoRM-Llama3-8B-v0.1`, in the order of its regression layer's rows.
pub const ARMORM_OBJECTIVES: [&str; 19] = [
    "helpsteer-helpfulness",
    "helpsteer-correctness",
    "helpsteer-coherence",
    "helpsteer-complexity",
    "helpsteer-verbosity",
    "ultrafeedback-overall_score",
    "ultrafeedback-instruction_following",
    "ultrafeedback-truthfulness",
    "ultrafeedback-honesty",
    "ultrafeedback-helpfulness",
    "beavertails-is_safe",
    "prometheus-score",
    "argilla-overall_quality",
    "argilla-judge_lm",
    "code-complexity",
    "code-style",
    "code-explanation",
    "code-instruction-following",
    "code-readability",
];

/// Everything the forward pass needs to know about the backbone.
#[derive(Debug, Clone)]
pub struct BackboneConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope: RopeConfig,
    /// What the family's layers do beyond the Llama block.
    pub block: Block,
}

/// Hyper-parameters of the ArmoRM gating network; absent keys take the published defaults.
#[derive(Debug, Clone)]
pub struct GatingConfig {
    pub num_objectives: usize,
    pub temperature: f64,
    pub hidden_dim: usize,
    pub n_hidden: usize,
    pub objective_names: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub backbone: BackboneConfig,
    /// Present when the config describes a gating reward model (it has `num_objectives`).
    pub gating: Option<GatingConfig>,
    /// The dtype the checkpoint says it is stored in (`torch_dtype`, or `dtype`), when it names one.
    pub stored_dtype: Option<ComputeDType>,
    /// The id a sequence-classification head skips at the end of a sequence (transformers reads
    /// the last token that is not this one).
    pub pad_token_id: Option<u32>,
    /// The classification head's outputs: `id2label`'s size, else `num_labels`, when given.
    pub num_labels: Option<usize>,
    /// armorm's marker for a pairwise preference model (`"pairwise_preference": true`): a causal
    /// LM that reads two responses and answers "A" or "B" (`--pairwise` says the same).
    pub pairwise_preference: bool,
    /// The language-model head is the embedding table (`tie_word_embeddings`; transformers'
    /// default for the family when absent).
    pub tie_word_embeddings: bool,
}

#[derive(Deserialize)]
struct RawConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    rope_parameters: Option<serde_json::Value>,
    max_position_embeddings: Option<usize>,
    num_objectives: Option<usize>,
    gating_temperature: Option<f64>,
    gating_hidden_dim: Option<usize>,
    gating_n_hidden: Option<usize>,
    objective_names: Option<Vec<String>>,
    torch_dtype: Option<serde_json::Value>,
    dtype: Option<serde_json::Value>,
}

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json(&text).map_err(|e| match e {
            ModelError::Json { source, .. } => ModelError::Json { path: path.display().to_string(), source },
            other => other,
        })
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let json = |source| ModelError::Json { path: "config.json".into(), source };
        let raw: RawConfig = serde_json::from_str(text).map_err(json)?;
        let keys = ConfigKeys::parse(text).map_err(json)?;
        let architecture = Architecture::detect(&keys)?;
        let family = architecture.family;
        refuse_unimplemented(&keys)?;
        let heads = raw.num_attention_heads;
        let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(ModelError::UnsupportedConfig(format!(
                "num_attention_heads ({heads}) must be a positive multiple of num_key_value_heads ({kv_heads})"
            )));
        }
        let head_dim = family.head_dim(&keys, raw.hidden_size, heads)?;
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(ModelError::UnsupportedConfig(format!("head_dim {head_dim} must be even for RoPE")));
        }
        let rope_params = raw.rope_parameters.as_ref();
        let theta = raw
            .rope_theta
            .or_else(|| rope_params.and_then(|p| p.get("rope_theta")).and_then(|v| v.as_f64()))
            .unwrap_or(10_000.0);
        let rope = RopeConfig {
            head_dim,
            theta,
            scaling: parse_rope_scaling(raw.rope_scaling.as_ref().or(rope_params))?,
            max_positions: raw.max_position_embeddings.unwrap_or(8192),
        };
        let backbone = BackboneConfig {
            family,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope,
            block: family.block(&keys, raw.num_hidden_layers, head_dim)?,
        };
        let gating = raw.num_objectives.map(|num_objectives| GatingConfig {
            num_objectives,
            temperature: raw.gating_temperature.unwrap_or(10.0),
            hidden_dim: raw.gating_hidden_dim.unwrap_or(1024),
            n_hidden: raw.gating_n_hidden.unwrap_or(3),
            objective_names: raw.objective_names,
        });
        let stored_dtype =
            raw.dtype.iter().chain(&raw.torch_dtype).filter_map(|v| v.as_str()).find_map(dtype::from_config_name);
        let pad_token_id = keys.usize("pad_token_id")?.and_then(|id| u32::try_from(id).ok());
        let num_labels = match keys.get("id2label").and_then(|v| v.as_object()) {
            Some(labels) => Some(labels.len()),
            None => keys.usize("num_labels")?,
        };
        let pairwise_preference = keys.bool("pairwise_preference")?.unwrap_or(false);
        let tie_word_embeddings = keys.bool("tie_word_embeddings")?.unwrap_or(family.ties_word_embeddings());
        Ok(Self {
            architecture,
            backbone,
            gating,
            stored_dtype,
            pad_token_id,
            num_labels,
            pairwise_preference,
            tie_word_embeddings,
        })
    }
}

/// Keys of any family that change the math in ways no family here implements.
fn refuse_unimplemented(keys: &ConfigKeys) -> Result<()> {
    keys.refuse_if("quantization_config", |_| true, "quantized checkpoints are not implemented")?;
    keys.refuse_if(
        "partial_rotary_factor",
        |v| v.as_f64() != Some(1.0),
        "a rotary embedding over part of each head is not implemented",
    )?;
    Ok(())
}

impl GatingConfig {
    /// The config's own names, else the published ArmoRM names for a 19-objective head, else
    /// `objective_0..k-1`.
    pub fn objective_names(&self) -> Result<Vec<String>> {
        let k = self.num_objectives;
        match &self.objective_names {
            Some(names) if names.len() == k => Ok(names.clone()),
            Some(names) => Err(ModelError::UnsupportedConfig(format!(
                "objective_names has {} entries but num_objectives is {k}",
                names.len()
            ))),
            None if k == ARMORM_OBJECTIVES.len() => Ok(ARMORM_OBJECTIVES.iter().map(|s| s.to_string()).collect()),
            None => Ok((0..k).map(|i| format!("objective_{i}")).collect()),
        }
    }
}

fn parse_rope_scaling(value: Option<&serde_json::Value>) -> Result<RopeScaling> {
    let Some(obj) = value.filter(|v| !v.is_null()) else { return Ok(RopeScaling::None) };
    let kind = obj.get("rope_type").or_else(|| obj.get("type")).and_then(|v| v.as_str()).unwrap_or("default");
    let num = |key: &str| -> Result<f64> {
        obj.get(key)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| ModelError::UnsupportedConfig(format!("rope scaling {kind:?} needs a numeric {key:?}")))
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear { factor: num("factor")? }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        }),
        other => Err(ModelError::UnsupportedConfig(format!(
            "rope scaling type {other:?} is not implemented (implemented: default, linear, llama3)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-5"#;

    #[test]
    fn legacy_and_v5_rope_layouts_agree() {
        let legacy = ModelConfig::from_json(&format!(
            r#"{{{BASE}, "rope_theta": 500000.0, "rope_scaling": {{"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}}}"#
        ))
        .unwrap();
        let v5 = ModelConfig::from_json(&format!(
            r#"{{{BASE}, "rope_parameters": {{"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}}}"#
        ))
        .unwrap();
        assert_eq!(legacy.backbone.rope.theta, 500000.0);
        assert_eq!(v5.backbone.rope.theta, 500000.0);
        assert_eq!(legacy.backbone.rope.scaling, v5.backbone.rope.scaling);
        assert!(matches!(v5.backbone.rope.scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
    }

    #[test]
    fn gating_defaults_follow_the_published_model() {
        let cfg = ModelConfig::from_json(&format!(r#"{{{BASE}, "num_objectives": 19}}"#)).unwrap();
        let g = cfg.gating.unwrap();
        assert_eq!((g.temperature, g.hidden_dim, g.n_hidden), (10.0, 1024, 3));
        assert_eq!(g.objective_names().unwrap()[10], "beavertails-is_safe");
        assert_eq!(cfg.backbone.head_dim, 4);
    }

    #[test]
    fn objective_names_come_from_config_or_are_numbered() {
        let named =
            ModelConfig::from_json(&format!(r#"{{{BASE}, "num_objectives": 2, "objective_names": ["a", "b"]}}"#))
                .unwrap();
        assert_eq!(named.gating.unwrap().objective_names().unwrap(), ["a", "b"]);
        let numbered = ModelConfig::from_json(&format!(r#"{{{BASE}, "num_objectives": 3}}"#)).unwrap();
        assert_eq!(numbered.gating.unwrap().objective_names().unwrap(), ["objective_0", "objective_1", "objective_2"]);
        let wrong =
            ModelConfig::from_json(&format!(r#"{{{BASE}, "num_objectives": 3, "objective_names": ["a"]}}"#)).unwrap();
        assert!(wrong.gating.unwrap().objective_names().is_err());
    }

    #[test]
    fn unknown_rope_type_and_bad_head_counts_are_rejected() {
        let yarn = format!(r#"{{{BASE}, "rope_scaling": {{"rope_type": "yarn", "factor": 4.0}}}}"#);
        assert!(matches!(ModelConfig::from_json(&yarn), Err(ModelError::UnsupportedConfig(_))));
        let bad = r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 3, "num_key_value_heads": 2, "rms_norm_eps": 1e-5}"#;
        assert!(matches!(ModelConfig::from_json(bad), Err(ModelError::UnsupportedConfig(_))));
    }
}
