//! The scores an evaluation has computed, kept on disk as it goes (`--cache DIR`), so that an
//! interrupted run resumes where it stopped and a later run over other data reuses what is there:
//! one JSON line per distinct conversation, keyed by the hash of its token ids, in a file named for
//! the model (its config and weight files, dtype, kernels and gating pattern), since a score
//! depends on nothing else. On the CPU scores are batch-invariant, so a resumed run's numbers are
//! the bits an uninterrupted one gives.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use armorm_data::digest::sha256_str;
use armorm_model::ObjectiveScores;
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

pub struct ScoreCache {
    path: PathBuf,
    known: HashMap<String, Entry>,
    file: std::fs::File,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// sha256 of the conversation's token ids.
    ids: String,
    pub score: f32,
    pub objectives: Option<ObjectiveScores>,
}

impl ScoreCache {
    /// Opens (creating it if needed) `dir`'s file for the model `model_key` names. A line that does
    /// not parse (the torn end of a killed run) is dropped.
    pub fn open(dir: &Path, model_key: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
        let path = dir.join(format!("scores-{model_key}.jsonl"));
        let mut known = HashMap::new();
        if let Ok(file) = std::fs::File::open(&path) {
            for line in std::io::BufReader::new(file).lines() {
                let line = line.map_err(|e| EvalError::io(&path, e))?;
                if let Ok(entry) = serde_json::from_str::<Entry>(&line) {
                    known.insert(entry.ids.clone(), entry);
                }
            }
        }
        // A torn last line has no newline: start on a fresh one so the next entry parses.
        let torn = std::fs::read(&path).ok().is_some_and(|b| b.last().is_some_and(|&c| c != b'\n'));
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| EvalError::io(&path, e))?;
        if torn {
            file.write_all(b"\n").map_err(|e| EvalError::io(&path, e))?;
        }
        Ok(Self { path, known, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, ids: &[u32]) -> Option<&Entry> {
        self.known.get(&key(ids))
    }

    /// Records a batch's results and flushes them to disk.
    pub fn put(&mut self, results: impl IntoIterator<Item = (Vec<u32>, f32, Option<ObjectiveScores>)>) -> Result<()> {
        let mut text = String::new();
        for (ids, score, objectives) in results {
            let entry = Entry { ids: key(&ids), score, objectives };
            text.push_str(&serde_json::to_string(&entry).unwrap_or_default());
            text.push('\n');
            self.known.insert(entry.ids.clone(), entry);
        }
        self.file.write_all(text.as_bytes()).and_then(|()| self.file.flush()).map_err(|e| EvalError::io(&self.path, e))
    }
}

fn key(ids: &[u32]) -> String {
    sha256_str(&ids.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_reopen_and_a_torn_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = ScoreCache::open(dir.path(), "m").unwrap();
        cache.put([(vec![1, 2, 3], 0.5, None), (vec![4], -1.25, None)]).unwrap();
        let path = cache.path().to_path_buf();
        drop(cache);
        // A killed run: half a line at the end.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"ids\": \"ab").unwrap();
        let mut cache = ScoreCache::open(dir.path(), "m").unwrap();
        assert_eq!(cache.get(&[1, 2, 3]).map(|e| e.score), Some(0.5));
        assert_eq!(cache.get(&[4]).map(|e| e.score), Some(-1.25));
        assert!(cache.get(&[1, 2]).is_none());
        cache.put([(vec![9], 2.0, None)]).unwrap();
        drop(cache);
        let cache = ScoreCache::open(dir.path(), "m").unwrap();
        assert_eq!(cache.get(&[9]).map(|e| e.score), Some(2.0), "the entry after the torn line parses");
        assert!(ScoreCache::open(dir.path(), "other").unwrap().get(&[4]).is_none(), "another model's file");
    }
}
