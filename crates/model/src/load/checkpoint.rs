//! Where a checkpoint's files come from: a local directory or the Hugging Face Hub (`weights`
//! reads the tensors).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};
use armorm_hub::{HubEnv, HubRepo};

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
    /// An existing directory, or anything that reads as a path (`./`, `../`, `/` or `~` in front,
    /// or a parent directory that exists), is local; anything else is a Hub repo id. So a typo in a
    /// local path is reported as a missing directory instead of being sent to the Hub.
    pub fn parse(model: &str, revision: Option<&str>) -> Self {
        let expanded = match model.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME").map_or_else(|| PathBuf::from(model), |h| Path::new(&h).join(rest)),
            None => PathBuf::from(model),
        };
        let path_like = ["./", "../", "/", "~"].iter().any(|p| model.starts_with(p))
            || expanded.parent().is_some_and(|p| !p.as_os_str().is_empty() && p.is_dir());
        if expanded.is_dir() || path_like {
            Self::Local(expanded)
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
            Self::Hub { repo, revision } => from_hub(&HubEnv::from_env(), repo, revision),
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
        if !dir.is_dir() {
            return Err(ModelError::Checkpoint(format!(
                "{}: no such directory (a local path; Hub repo ids look like `owner/name`)",
                dir.display()
            )));
        }
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

/// The checkpoint's files from the Hub (`repo_id` at `revision`), cached files as they are.
fn from_hub(env: &HubEnv, repo_id: &str, revision: &str) -> Result<CheckpointFiles> {
    let repo = HubRepo::model(env, repo_id, revision)?;
    let weights = match repo.get(SHARD_INDEX) {
        Ok(index) => shard_names(&index)?.iter().map(|n| repo.get(n)).collect::<Result<_, _>>()?,
        Err(_) => vec![repo.get(SINGLE_WEIGHTS)?],
    };
    Ok(CheckpointFiles {
        config: repo.get(CONFIG)?,
        tokenizer: repo.get(TOKENIZER)?,
        tokenizer_config: repo.get(TOKENIZER_CONFIG)?,
        chat_template: repo.get(CHAT_TEMPLATE).ok(),
        weights,
    })
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
    fn path_like_arguments_are_local_even_when_missing() {
        let missing = std::env::temp_dir().join("armorm-no-such-model");
        for arg in [missing.to_str().unwrap(), "./tiny-f32-typo", "../models/x", "~/models/x"] {
            let source = ModelSource::parse(arg, None);
            assert!(matches!(source, ModelSource::Local(_)), "{arg}: {source:?}");
            let err = source.resolve().unwrap_err().to_string();
            assert!(err.contains("no such directory"), "{arg}: {err}");
        }
        // Tests run in the crate's directory, where `src` exists: `src/typo` is a local path.
        assert!(matches!(ModelSource::parse("src/typo", None), ModelSource::Local(_)));
    }

    #[test]
    fn a_hub_that_never_answers_fails_within_the_timeout() {
        // Accepts connections and never answers: without a timeout the load would hang.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let env = HubEnv {
            offline: false,
            endpoint: format!("http://{}", silent.local_addr().unwrap()),
            timeout: std::time::Duration::from_millis(500),
            cache: hf_hub::Cache::new(std::env::temp_dir().join("armorm-empty-hf-cache-probe")),
        };
        let err = from_hub(&env, "nobody/nothing", "main").unwrap_err();
        assert!(err.to_string().contains("cannot reach the Hub"), "{err}");
    }

    #[test]
    fn offline_hub_miss_is_a_clear_error() {
        let env = HubEnv {
            offline: true,
            endpoint: "http://127.0.0.1:9".into(),
            timeout: std::time::Duration::from_millis(500),
            cache: hf_hub::Cache::new(std::env::temp_dir().join("armorm-empty-hf-cache")),
        };
        let err = from_hub(&env, "nobody/nothing", "v1").unwrap_err();
        assert!(err.to_string().contains("not in the local cache"), "{err}");
    }
}
