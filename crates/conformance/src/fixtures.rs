//! tests/fixtures: the tiny checkpoints, the conversation suite and the references' outputs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use armorm_model::{Conversation, RawMessage};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Fixtures {
    root: PathBuf,
}

impl Fixtures {
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The repository's tests/fixtures, as this crate was built from it.
    pub fn repo() -> Self {
        Self::at(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn model(&self, name: &str) -> PathBuf {
        self.root.join("models").join(name)
    }

    /// expected/<name>.json
    pub fn expected(&self, name: &str) -> anyhow::Result<Value> {
        let path = self.root.join("expected").join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// conversations.jsonl, each a conversation or the code it is refused with.
    pub fn conversations(&self) -> anyhow::Result<Vec<Result<Conversation, String>>> {
        let path = self.root.join("conversations.jsonl");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        text.lines()
            .enumerate()
            .map(|(i, line)| {
                let v: Value = serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
                Ok(match v.get("messages") {
                    Some(m) => {
                        let raw: Vec<RawMessage> = serde_json::from_value(m.clone())?;
                        Conversation::new(raw).map_err(|e| e.code().to_string())
                    }
                    None => Ok(Conversation::from_prompt_response(
                        v["prompt"].as_str().context("prompt")?.into(),
                        v["response"].as_str().context("response")?.into(),
                    )),
                })
            })
            .collect()
    }

    /// Every checkpoint with scored references (expected/<name>.json holding `f32` cases), by name.
    pub fn scored(&self) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.root.join("models"))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let expected = self.root.join("expected").join(format!("{name}.json"));
            if expected.is_file() && self.expected(&name)?.get("f32").is_some() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

/// A JSON array of numbers.
pub fn floats(v: &Value) -> anyhow::Result<Vec<f32>> {
    v.as_array().context("an array")?.iter().map(|x| Ok(x.as_f64().context("a number")? as f32)).collect()
}

/// A JSON array of token ids.
pub fn ids(v: &Value) -> anyhow::Result<Vec<u32>> {
    v.as_array().context("an array")?.iter().map(|x| Ok(x.as_u64().context("an id")? as u32)).collect()
}
