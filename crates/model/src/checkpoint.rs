//! Where a checkpoint's files come from (a local directory or the Hugging Face Hub) and how its
//! safetensors shards are opened: memory-mapped, each tensor converted to its compute dtype once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::{safetensors::MmapedSafetensors, DType, Device, Tensor};

use crate::error::{ModelError, Result};

const CONFIG: &str = "config.json";
const TOKENIZER: &str = "tokenizer.json";
const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
/// transformers >= 4.43 may store the template beside tokenizer_config.json instead of inside it.
const CHAT_TEMPLATE: &str = "chat_template.jinja";
const SINGLE_WEIGHTS: &str = "model.safetensors";
const SHARD_INDEX: &str = "model.safetensors.index.json";

/// A model given as a directory or as a Hub repository id (`owner/name`, optionally at a revision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Local(PathBuf),
    Hub { repo: String, revision: String },
}

impl ModelSource {
    /// An existing directory is local; anything else is read as a Hub repo id.
    pub fn parse(model: &str, revision: Option<&str>) -> Self {
        let path = Path::new(model);
        if path.is_dir() {
            Self::Local(path.to_path_buf())
        } else {
            Self::Hub { repo: model.to_string(), revision: revision.unwrap_or("main").to_string() }
        }
    }

    /// A short human-readable id for `/info` and logs.
    pub fn id(&self) -> String {
        match self {
            Self::Local(p) => p.display().to_string(),
            Self::Hub { repo, .. } => repo.clone(),
        }
    }

    pub fn revision(&self) -> Option<&str> {
        match self {
            Self::Local(_) => None,
            Self::Hub { revision, .. } => Some(revision),
        }
    }

    pub fn resolve(&self) -> Result<CheckpointFiles> {
        match self {
            Self::Local(dir) => CheckpointFiles::in_dir(dir),
            Self::Hub { repo, revision } => hub::fetch(repo, revision),
        }
    }
}

/// The files of one checkpoint, all present on local disk.
#[derive(Debug, Clone)]
pub struct CheckpointFiles {
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub tokenizer_config: PathBuf,
    pub chat_template: Option<PathBuf>,
    pub weights: Vec<PathBuf>,
}

impl CheckpointFiles {
    fn in_dir(dir: &Path) -> Result<Self> {
        let required = |name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(ModelError::Checkpoint(format!("{} has no {name}", dir.display())))
            }
        };
        let weights = if dir.join(SHARD_INDEX).is_file() {
            shard_names(&dir.join(SHARD_INDEX))?.iter().map(|n| required(n)).collect::<Result<_>>()?
        } else {
            vec![required(SINGLE_WEIGHTS)?]
        };
        Ok(Self {
            config: required(CONFIG)?,
            tokenizer: required(TOKENIZER)?,
            tokenizer_config: required(TOKENIZER_CONFIG)?,
            chat_template: Some(dir.join(CHAT_TEMPLATE)).filter(|p| p.is_file()),
            weights,
        })
    }
}

/// The distinct shard file names listed in a `model.safetensors.index.json`.
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| ModelError::io(index, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ModelError::Json { path: index.display().to_string(), source })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::Checkpoint(format!("{} has no weight_map", index.display())))?;
    let names: BTreeSet<String> = map.values().filter_map(|v| v.as_str().map(str::to_string)).collect();
    Ok(names.into_iter().collect())
}

/// The memory-mapped tensors of a checkpoint.
pub struct Weights {
    tensors: MmapedSafetensors,
    device: Device,
}

impl Weights {
    pub fn open(files: &[PathBuf], device: &Device) -> Result<Self> {
        // SAFETY: the mapping is read-only and the files are not modified while the server runs;
        // a checkpoint rewritten underneath a running process is outside what any loader can guard.
        let tensors = unsafe { MmapedSafetensors::multi(files)? };
        Ok(Self { tensors, device: device.clone() })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.get(name).is_ok()
    }

    /// Loads `name`, checks its shape, and converts it to `dtype` on the target device.
    pub fn get(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        if !self.contains(name) {
            return Err(ModelError::Checkpoint(format!("missing tensor {name}")));
        }
        let tensor = self.tensors.load(name, &self.device)?;
        if tensor.dims() != shape {
            return Err(ModelError::Checkpoint(format!(
                "tensor {name} has shape {:?}, the config implies {shape:?}",
                tensor.dims()
            )));
        }
        Ok(tensor.to_dtype(dtype)?)
    }
}

mod hub {
    //! Hub downloads with the standard cache layout, so files fetched by Python tools are reused.

    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Cache, Repo, RepoType};

    use super::*;

    fn offline() -> bool {
        std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"))
    }

    fn token() -> Option<String> {
        ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|t| !t.is_empty()))
            .or_else(|| Cache::from_env().token())
    }

    pub(super) fn fetch(repo_id: &str, revision: &str) -> Result<CheckpointFiles> {
        let repo = Repo::with_revision(repo_id.to_string(), RepoType::Model, revision.to_string());
        let cached = Cache::from_env().repo(repo.clone());
        let api = if offline() {
            None
        } else {
            let api = ApiBuilder::from_env()
                .with_token(token())
                .with_progress(true)
                .build()
                .map_err(|e| ModelError::Hub(e.to_string()))?;
            Some(api.repo(repo))
        };
        // Cached files are used as they are; the network is asked only for what the cache lacks.
        let get = |name: &str| -> Result<PathBuf> {
            if let Some(path) = cached.get(name) {
                return Ok(path);
            }
            match &api {
                Some(api) => api.get(name).map_err(|e| ModelError::Hub(format!("{repo_id}@{revision}/{name}: {e}"))),
                None => Err(ModelError::Hub(format!(
                    "{repo_id}@{revision}/{name} is not in the local cache and HF_HUB_OFFLINE is set"
                ))),
            }
        };
        let weights = match get(SHARD_INDEX) {
            Ok(index) => shard_names(&index)?.iter().map(|n| get(n)).collect::<Result<_>>()?,
            Err(_) => vec![get(SINGLE_WEIGHTS)?],
        };
        Ok(CheckpointFiles {
            config: get(CONFIG)?,
            tokenizer: get(TOKENIZER)?,
            tokenizer_config: get(TOKENIZER_CONFIG)?,
            chat_template: get(CHAT_TEMPLATE).ok(),
            weights,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_directory_is_local_anything_else_is_a_hub_id() {
        let dir = std::env::temp_dir();
        assert_eq!(ModelSource::parse(dir.to_str().unwrap(), None), ModelSource::Local(dir));
        assert_eq!(
            ModelSource::parse("RLHFlow/ArmoRM-Llama3-8B-v0.1", None),
            ModelSource::Hub { repo: "RLHFlow/ArmoRM-Llama3-8B-v0.1".into(), revision: "main".into() }
        );
    }

    #[test]
    fn offline_hub_miss_is_a_clear_error() {
        std::env::set_var("HF_HUB_OFFLINE", "1");
        std::env::set_var("HF_HOME", std::env::temp_dir().join("armorm-empty-hf-home"));
        let err = ModelSource::parse("nobody/nothing", Some("v1")).resolve().unwrap_err();
        assert!(err.to_string().contains("not in the local cache"), "{err}");
    }
}
