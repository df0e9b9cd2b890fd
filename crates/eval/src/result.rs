//! The evaluation's result as types: what `--json` writes (serialised as it is) and what the
//! terminal table and the HTML page ([`crate::report`]) read, so the three cannot disagree.

use std::path::PathBuf;

use armorm_model::{ComputeDType, HeadKind};
use serde::{Serialize, Serializer};

use crate::audit::Audit;

#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    pub armorm_version: &'static str,
    pub model: ModelInfo,
    pub data: Vec<DataInfo>,
    pub examples: usize,
    pub distinct_conversations: usize,
    /// Rows left out with `--skip-bad-rows`, each with what is wrong with it.
    pub skipped_rows: Vec<String>,
    /// RewardBench, when any example has its layout.
    pub v1: Option<V1Result>,
    /// RewardBench 2, when any example has its layout.
    pub v2: Option<V2Result>,
    pub audit: Audit,
    /// ArmoRM only: per section, the mean gating weight of each objective (in the model's order).
    #[serde(serialize_with = "gating_as_map")]
    pub gating_by_section: Option<Vec<SectionGating>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub id: String,
    pub revision: Option<String>,
    pub head: HeadKind,
    pub dtype: ComputeDType,
    pub device: String,
    pub objectives: Vec<String>,
}

/// One `--data` source.
#[derive(Debug, Clone, Serialize)]
pub struct DataInfo {
    /// As the flag named it (a path or a Hub dataset id).
    pub path: String,
    pub files: Vec<PathBuf>,
    pub sha256: String,
    pub rows: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubsetScore {
    pub subset: String,
    pub section: Option<&'static str>,
    pub n: usize,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct V1Result {
    pub subsets: Vec<SubsetScore>,
    /// Each section present, in reward-bench's order: `{"Chat": 0.97, ...}`.
    #[serde(serialize_with = "as_map")]
    pub sections: Vec<(String, f64)>,
    /// The leaderboard's weighted mean of the sections present.
    pub overall: Option<f64>,
    /// Subsets in no section (left out of every section score).
    pub other: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct V2Result {
    pub subsets: Vec<SubsetScore>,
    pub overall: Option<f64>,
}

/// The mean gating weight of each objective over one section's prompts.
#[derive(Debug, Clone)]
pub struct SectionGating {
    pub section: String,
    pub weights: Vec<(String, f64)>,
}

impl EvalResult {
    /// Each benchmark present, with the title the reports give it.
    pub fn benchmarks(&self) -> impl Iterator<Item = (&'static str, Benchmark<'_>)> {
        let v1 = self.v1.as_ref().map(|v| ("RewardBench", Benchmark::V1(v)));
        v1.into_iter().chain(self.v2.as_ref().map(|v| ("RewardBench 2", Benchmark::V2(v))))
    }
}

/// One benchmark's result, as the reports walk them.
#[derive(Debug, Clone, Copy)]
pub enum Benchmark<'a> {
    V1(&'a V1Result),
    V2(&'a V2Result),
}

impl<'a> Benchmark<'a> {
    pub fn subsets(self) -> &'a [SubsetScore] {
        match self {
            Self::V1(v) => &v.subsets,
            Self::V2(v) => &v.subsets,
        }
    }

    pub fn overall(self) -> Option<f64> {
        match self {
            Self::V1(v) => v.overall,
            Self::V2(v) => v.overall,
        }
    }
}

/// `{"section": {"objective": weight, ...}, ...}`: sections and objectives in order.
impl Serialize for SectionGating {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        as_map(&self.weights, s)
    }
}

/// The sections as one object keyed by section name.
fn gating_as_map<S: Serializer>(sections: &Option<Vec<SectionGating>>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    match sections {
        None => s.serialize_none(),
        Some(sections) => {
            let mut map = s.serialize_map(Some(sections.len()))?;
            for g in sections {
                map.serialize_entry(&g.section, g)?;
            }
            map.end()
        }
    }
}

/// Pairs as one JSON object, in their order.
fn as_map<S: Serializer>(pairs: &[(String, f64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}
