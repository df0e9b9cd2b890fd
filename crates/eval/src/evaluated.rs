//! What either way of evaluating a model ([`crate::scored`]: a score per conversation;
//! [`crate::compared`]: a pairwise model's comparisons) hands back for reward-bench's rules and
//! the reports.

use serde_json::{json, Value};

use crate::audit::Audit;
use crate::examples::{Example, Format};
use crate::leaderboard_files::Outcome;
use crate::result::SectionGating;
use crate::rewardbench::TiesPrompt;

pub struct Evaluated {
    /// Per example, in order: what its subset's score is made of.
    pub credits: Vec<Credited>,
    pub distinct_conversations: usize,
    pub audit: Audit,
    pub gating_by_section: Option<Vec<SectionGating>>,
    /// One JSON line per example (`--per-example`).
    pub per_example: Vec<Value>,
    /// The v1 examples' outcomes, as reward-bench's results files hold them.
    pub outcomes: Vec<Outcome>,
    /// (answer length in tokens, score) of every distinct completion, for the report's scatter;
    /// empty when the model gives no score to one answer.
    pub points: Vec<(f64, f64)>,
}

/// One example's contribution to its subset.
pub struct Credited {
    pub format: Format,
    pub subset: String,
    pub credit: Credit,
}

pub enum Credit {
    /// v1: 1 or 0; v2: the tie-shared credit or, for a pairwise model, 1 when every comparison won.
    Plain(f64),
    /// A prompt of RewardBench 2's Ties subset, which is scored as a whole.
    Ties(TiesPrompt),
}

/// One `--per-example` line: the example's identity (id, subset, sub-subset, format, file:line)
/// and `outcome`'s fields.
pub fn example_line(example: &Example, outcome: Value) -> Value {
    let mut line = json!({
        "id": example.id,
        "subset": example.subset,
        "subsubset": example.subsubset,
        "format": example.format,
        "at": example.at,
    });
    if let (Some(line), Value::Object(rest)) = (line.as_object_mut(), outcome) {
        line.extend(rest);
    }
    line
}

impl Credited {
    pub fn new(example: &Example, credit: Credit) -> Self {
        Self { format: example.format, subset: example.subset.clone(), credit }
    }
}
