//! Features on disk: per input file and shard, a directory of `.npy` matrices (one row per kept
//! record) plus a manifest that records what they were computed from and how far extraction got.
//!
//! ```text
//! <dir>/shard-00000-of-00004/
//!     manifest.json    kind, key, shard, progress, skipped records
//!     rows.npy         (kept,) u64: each row's record index in the input file
//!     reward.npy       ratings: (kept, hidden) f32, hidden state at the last token
//!     chosen.npy       pairs:   (kept, hidden) f32, last token of the chosen conversation
//!     rejected.npy     pairs:   (kept, hidden) f32, last token of the rejected conversation
//!     prompt.npy       pairs:   (kept, hidden) f32, gate position (end of the prompt)
//! ```
//! Shard I of N owns the records whose index is I modulo N, so N machines can split one file.

use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::npy::NpyMatrix;
use crate::store::{read_json, Keyed};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Ratings,
    Pairs,
}

impl Kind {
    /// The matrices a feature set of this kind holds, besides `rows`.
    pub fn matrices(self) -> &'static [Matrix] {
        match self {
            Self::Ratings => &[Matrix::Reward],
            Self::Pairs => &[Matrix::Chosen, Matrix::Rejected, Matrix::Prompt],
        }
    }
}

/// One feature matrix of a shard, (kept, hidden) f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matrix {
    /// A rated conversation's last token.
    Reward,
    /// A pair's chosen conversation's last token.
    Chosen,
    /// A pair's rejected conversation's last token.
    Rejected,
    /// A pair's gate position (the end of its prompt).
    Prompt,
}

impl Matrix {
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Reward => "reward.npy",
            Self::Chosen => "chosen.npy",
            Self::Rejected => "rejected.npy",
            Self::Prompt => "prompt.npy",
        }
    }
}

/// `--shard I/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn owns(self, record: usize) -> bool {
        record % self.count == self.index
    }

    pub fn dir_name(self) -> String {
        format!("shard-{:05}-of-{:05}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parsed = s.split_once('/').and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(Self { index, count }),
            _ => Err(format!("--shard {s:?}: expected I/N with 0 <= I < N, e.g. 0/4")),
        }
    }
}

/// A record left out because it is longer than the token limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    pub record: usize,
    /// `file:line` or `file: row n`.
    pub at: String,
    pub tokens: usize,
    /// Why a row that was not too long was skipped (`--skip-bad-rows`): what is wrong with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub kind: Kind,
    /// Names the input file's content, the model and the settings the features depend on.
    pub key: String,
    /// The data source, as its flag named it (a path or a Hub dataset id).
    pub input: String,
    pub shard: Shard,
    pub hidden_size: usize,
    /// Every record of this shard before this index has been kept or skipped.
    pub next_record: usize,
    pub kept: usize,
    pub skipped: Vec<Skipped>,
    pub complete: bool,
}

impl Keyed for Manifest {
    fn key(&self) -> &str {
        &self.key
    }
}

pub const MANIFEST: &str = "manifest.json";
pub const ROWS: &str = "rows.npy";

/// One complete shard, memory-mapped.
pub struct FeatureSet {
    pub manifest: Manifest,
    pub rows: NpyMatrix<u64>,
    matrices: Vec<NpyMatrix<f32>>,
}

impl FeatureSet {
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest: Manifest = read_json(&dir.join(MANIFEST))?;
        if !manifest.complete {
            return Err(TrainError::corrupt(dir, "feature extraction has not finished in this shard"));
        }
        let rows = NpyMatrix::open(&dir.join(ROWS))?;
        let matrices = manifest
            .kind
            .matrices()
            .iter()
            .map(|m| NpyMatrix::open(&dir.join(m.file_name())))
            .collect::<Result<Vec<_>>>()?;
        if rows.rows() != manifest.kept
            || matrices.iter().any(|m| m.rows() != manifest.kept || m.cols() != manifest.hidden_size)
        {
            return Err(TrainError::corrupt(dir, "matrix shapes disagree with the manifest"));
        }
        Ok(Self { manifest, rows, matrices })
    }

    /// The matrix `which` (one of the kind's [`Kind::matrices`]).
    pub fn matrix(&self, which: Matrix) -> &NpyMatrix<f32> {
        let i = self.manifest.kind.matrices().iter().position(|m| *m == which).expect("matrix of this kind");
        &self.matrices[i]
    }
}

/// All shards of one input, together covering every record.
pub struct Features {
    pub sets: Vec<FeatureSet>,
}

impl Features {
    /// Opens the complete shard set under `dir` whose manifests carry `key`.
    pub fn open(dir: &Path, key: &str) -> Result<Self> {
        let count = complete_shard_count(dir, key).ok_or_else(|| {
            TrainError::corrupt(
                dir,
                "no complete set of feature shards for these inputs (run `armorm train embed` for every shard)",
            )
        })?;
        let sets = (0..count)
            .map(|index| FeatureSet::open(&dir.join(Shard { index, count }.dir_name())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { sets })
    }

    pub fn hidden_size(&self) -> usize {
        self.sets[0].manifest.hidden_size
    }

    pub fn len(&self) -> usize {
        self.sets.iter().map(|s| s.manifest.kept).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn skipped(&self) -> impl Iterator<Item = &Skipped> {
        self.sets.iter().flat_map(|s| &s.manifest.skipped)
    }

    /// Records skipped for being longer than the token limit.
    pub fn too_long(&self) -> usize {
        self.skipped().filter(|s| s.bad.is_none()).count()
    }

    /// Records skipped as unreadable (`--skip-bad-rows`).
    pub fn bad_records(&self) -> impl Iterator<Item = usize> + '_ {
        self.skipped().filter(|s| s.bad.is_some()).map(|s| s.record)
    }

    /// Every kept row as (record index, shard, row in shard), in shard order.
    pub fn rows(&self) -> impl Iterator<Item = (usize, &FeatureSet, usize)> {
        self.sets.iter().flat_map(|s| s.rows.data().iter().enumerate().map(move |(i, &r)| (r as usize, s, i)))
    }
}

/// The manifests of every shard directory under `dir` that carry `key`.
pub fn manifests(dir: &Path, key: &str) -> Vec<Manifest> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| read_json::<Manifest>(&e.path().join(MANIFEST)).ok())
        .filter(|m| m.key == key)
        .collect()
}

/// Whether any shard under `features` (every input's directory) holds extracted rows.
pub fn any_extracted(features: &Path) -> bool {
    let Ok(inputs) = std::fs::read_dir(features) else { return false };
    inputs
        .flatten()
        .filter_map(|i| std::fs::read_dir(i.path()).ok())
        .flatten()
        .flatten()
        .any(|shard| read_json::<Manifest>(&shard.path().join(MANIFEST)).is_ok_and(|m| m.kept > 0))
}

/// The N of a shard set under `dir` whose N shards are all complete for `key`.
pub fn complete_shard_count(dir: &Path, key: &str) -> Option<usize> {
    let found = manifests(dir, key);
    let mut counts: Vec<usize> = found.iter().map(|m| m.shard.count).collect();
    counts.sort_unstable();
    counts.dedup();
    counts
        .into_iter()
        .find(|&n| (0..n).all(|i| found.iter().any(|m| m.complete && m.shard == Shard { index: i, count: n })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_records_by_index_modulo_count() {
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!((0..9).filter(|&r| s.owns(r)).collect::<Vec<_>>(), [1, 4, 7]);
        assert!("3/3".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().unwrap_err().contains("expected I/N"));
        assert_eq!(s.dir_name(), "shard-00001-of-00003");
    }
}
