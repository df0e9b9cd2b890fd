//! What every stage's output shares: a key naming the inputs it was computed from (so a re-run skips
//! a stage whose inputs did not change) and writes that never leave a half-written file behind.

use std::path::{Path, PathBuf};

use armorm_data::digest::sha256_str;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Result, TrainError};

/// A key from the parts a result depends on (file hashes, parameters, upstream keys).
pub fn key(parts: &[&str]) -> String {
    sha256_str(&parts.join("\u{1f}"))
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| TrainError::Invalid(e.to_string()))?;
    write_atomic(path, format!("{text}\n").as_bytes())
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::corrupt(path, format!("invalid JSON: {e}")))
}

/// The stage result at `path`, when it exists and was computed from inputs with this `key`.
pub fn fresh<T: DeserializeOwned + Keyed>(path: &Path, key: &str) -> Option<T> {
    read_json::<T>(path).ok().filter(|r| r.key() == key)
}

/// A stage result that records the key of its inputs.
pub trait Keyed {
    fn key(&self) -> &str;
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}
