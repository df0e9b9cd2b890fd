//! Stage 3: the trained heads on the base backbone, as a checkpoint in the Hugging Face layout of
//! `RLHFlow/ArmoRM-Llama3-8B-v0.1`: the base's `model.*` tensors copied as they are (a
//! Bradley-Terry `score.weight` or an `lm_head` dropped), `regression_layer.weight`,
//! `reward_transform_matrix`, `gating.layers.{i}.weight/bias` and `gating.logit_scale` in f32,
//! config.json with the head's hyper-parameters and objective names (its class the backbone
//! family's `{Family}ForRewardModelWithGating`), the tokenizer files, and `modeling_custom.py` so
//! transformers can load it with `trust_remote_code=True` (one class per family, over the family's
//! own transformers backbone).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use armorm_model::arch::config::ModelConfig;
use armorm_model::load::checkpoint::CheckpointFiles;
use memmap2::Mmap;
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use serde_json::{json, Value};

use crate::error::{Result, TrainError};
use crate::gating::GatingShape;
use crate::tensors::F32Tensor;

/// Shards are cut at this size, as `save_pretrained` does by default.
pub const MAX_SHARD_BYTES: usize = 5 << 30;
/// The remote code's file name, and its text (one class per family).
pub const MODELING_FILE: &str = "modeling_custom.py";
const MODELING: &str = include_str!("modeling_custom.py");

/// Everything the heads add to the base checkpoint.
pub struct Heads {
    pub objectives: Vec<String>,
    pub gating_shape: GatingShape,
    /// `regression_layer.weight`, `reward_transform_matrix` and the gating tensors.
    pub tensors: BTreeMap<String, F32Tensor>,
    /// The token ids whose last occurrence marks where the gating network reads.
    pub gating_pattern: Vec<u32>,
}

/// Writes the checkpoint into `out` (an empty or new directory); returns the class it names.
pub fn export(base: &CheckpointFiles, heads: &Heads, out: &Path, max_shard_bytes: usize) -> Result<String> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let class = write_config(base, heads, out)?;
    write_weights(base, heads, out, max_shard_bytes)?;
    copy_tokenizer_files(base, out)?;
    let modeling = out.join(MODELING_FILE);
    std::fs::write(&modeling, MODELING).map_err(|e| TrainError::io(&modeling, e))?;
    Ok(class)
}

/// `pad_token_id` as transformers 5 accepts it: inside the vocabulary (its embedding refuses a
/// padding index past the table, which Llama-3 reward models' 128256 of 128256 is), else none.
fn pad_within_vocabulary(cfg: &mut serde_json::Map<String, Value>) {
    let vocab = cfg.get("vocab_size").and_then(Value::as_u64);
    let pad = cfg.get("pad_token_id").and_then(Value::as_u64);
    if let (Some(vocab), Some(pad)) = (vocab, pad) {
        if pad >= vocab {
            cfg.remove("pad_token_id");
        }
    }
}

/// Writes config.json: the base's, with the head's keys, the family's class and its remote code;
/// returns the class.
fn write_config(base: &CheckpointFiles, heads: &Heads, out: &Path) -> Result<String> {
    let text = std::fs::read_to_string(&base.config).map_err(|e| TrainError::io(&base.config, e))?;
    let family = ModelConfig::from_json(&text)?.architecture.family;
    let mut cfg: Value =
        serde_json::from_str(&text).map_err(|e| TrainError::corrupt(&base.config, format!("invalid JSON: {e}")))?;
    let obj = cfg.as_object_mut().ok_or_else(|| TrainError::corrupt(&base.config, "not a JSON object"))?;
    for stale in ["num_labels", "id2label", "label2id"] {
        obj.remove(stale);
    }
    pad_within_vocabulary(obj);
    let class = family.gating_class();
    let remote = format!("{}.{class}", MODELING_FILE.trim_end_matches(".py"));
    obj.insert("auto_map".into(), json!({ "AutoModelForSequenceClassification": remote }));
    let g = &heads.gating_shape;
    let set = [
        ("architectures", json!([class])),
        ("num_objectives", json!(g.objectives)),
        ("gating_temperature", json!(g.temperature)),
        ("gating_hidden_dim", json!(g.hidden)),
        ("gating_n_hidden", json!(g.n_hidden)),
        ("objective_names", json!(heads.objectives)),
        ("gating_pattern", json!(heads.gating_pattern)),
    ];
    for (key, value) in set {
        obj.insert(key.to_string(), value);
    }
    let path = out.join("config.json");
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| TrainError::Invalid(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| TrainError::io(&path, e))?;
    Ok(class)
}

/// Copies the backbone tensor by tensor from the memory-mapped base files (never all in memory),
/// then appends the heads to the last shard.
fn write_weights(base: &CheckpointFiles, heads: &Heads, out: &Path, max_shard_bytes: usize) -> Result<()> {
    let maps = base
        .weights
        .iter()
        .map(|p| {
            let file = std::fs::File::open(p).map_err(|e| TrainError::io(p, e))?;
            // SAFETY: read-only mapping of the base checkpoint, which is not modified while we copy.
            unsafe { Mmap::map(&file) }.map_err(|e| TrainError::io(p, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let files = maps
        .iter()
        .zip(&base.weights)
        .map(|(m, p)| SafeTensors::deserialize(m).map_err(|e| TrainError::corrupt(p, e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let mut backbone: Vec<(String, TensorView<'_>)> =
        files.iter().flat_map(|f| f.tensors()).filter(|(name, _)| name.starts_with("model.")).collect();
    backbone.sort_by(|a, b| a.0.cmp(&b.0));
    if backbone.is_empty() {
        return Err(TrainError::Invalid("the base checkpoint has no model.* tensors".into()));
    }
    let mut shards: Vec<Vec<(String, TensorView<'_>)>> = vec![Vec::new()];
    let mut size = 0;
    for (name, view) in backbone {
        let bytes = view.data().len();
        if size + bytes > max_shard_bytes && !shards.last().is_some_and(Vec::is_empty) {
            shards.push(Vec::new());
            size = 0;
        }
        size += bytes;
        shards.last_mut().expect("one shard at least").push((name, view));
    }
    for (name, t) in &heads.tensors {
        shards.last_mut().expect("one shard at least").push((name.clone(), t.view()?));
    }
    let n = shards.len();
    let file_name = |i: usize| {
        if n == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", i + 1)
        }
    };
    let mut weight_map = BTreeMap::new();
    let mut total = 0usize;
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    for (i, shard) in shards.into_iter().enumerate() {
        for (name, view) in &shard {
            weight_map.insert(name.clone(), file_name(i));
            total += view.data().len();
        }
        let path = out.join(file_name(i));
        safetensors::serialize_to_file(shard, metadata.clone(), &path)?;
    }
    if n > 1 {
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        let path = out.join("model.safetensors.index.json");
        std::fs::write(&path, serde_json::to_string_pretty(&index).unwrap_or_default() + "\n")
            .map_err(|e| TrainError::io(&path, e))?;
    }
    Ok(())
}

fn copy_tokenizer_files(base: &CheckpointFiles, out: &Path) -> Result<()> {
    let mut files = vec![base.tokenizer.clone(), base.tokenizer_config.clone()];
    files.extend(base.chat_template.clone());
    if let Some(dir) = base.tokenizer.parent() {
        files.extend(
            ["special_tokens_map.json", "generation_config.json"].iter().map(|n| dir.join(n)).filter(|p| p.is_file()),
        );
    }
    for src in files {
        let name = src.file_name().unwrap_or_default();
        std::fs::copy(&src, out.join(name)).map_err(|e| TrainError::io(&src, e))?;
    }
    Ok(())
}
