//! Evaluation rows, one module per benchmark layout, each behind [`Layout`]; a row is read by the
//! first layout that recognises it ([`LAYOUTS`], most specific first):
//!
//! - [`pref_test_sets`]: rows of one of `allenai/pref-test-sets`' Hub splits;
//! - [`rewardbench2`]: RewardBench 2, answer lists;
//! - [`rewardbench`]: RewardBench v1, one chosen and one rejected conversation.
//!
//! Rows carry `subset` and `id`; a row without `subset` belongs to "default", without `id` gets its
//! row number.

pub mod pref_test_sets;
pub mod rewardbench;
pub mod rewardbench2;

use armorm_data::Row;
use armorm_model::Conversation;
use serde_json::Value;

use crate::error::Result;

/// The scoring rule an example follows (reward-bench's v1 or v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    V1,
    V2,
}

#[derive(Debug, Clone)]
pub struct Example {
    pub id: String,
    pub subset: String,
    /// The row's own `subset` when its split names the subset instead.
    pub subsubset: Option<String>,
    pub format: Format,
    pub chosen: Vec<Conversation>,
    pub rejected: Vec<Conversation>,
    /// `file:line` of the row.
    pub at: String,
}

/// One benchmark's row layout.
pub trait Layout: Sync {
    /// What its rows look like, for the error a row in no layout gets.
    fn describe(&self) -> &'static str;

    /// The row as an example, `None` when it is not in this layout. `split`: the Hub split the row
    /// came from, if any.
    fn read(&self, row: &Row, split: Option<&str>) -> Option<Result<Example>>;
}

/// Every layout, in the order rows are tried.
pub const LAYOUTS: [&dyn Layout; 3] =
    [&pref_test_sets::PrefTestSets, &rewardbench2::RewardBench2, &rewardbench::RewardBench];

impl Example {
    /// The row read by the first layout that recognises it; `split`: the Hub split it came from.
    pub fn from_row(row: &Row, split: Option<&str>) -> Result<Self> {
        LAYOUTS.iter().find_map(|layout| layout.read(row, split)).unwrap_or_else(|| {
            let layouts: Vec<&str> = LAYOUTS.iter().map(|l| l.describe()).collect();
            Err(row.error(format!("not an evaluation row: expected {}", layouts.join(", or "))).into())
        })
    }

    /// Every conversation: the chosen ones first, in order, then the rejected ones.
    pub fn conversations(&self) -> impl Iterator<Item = &Conversation> {
        self.chosen.iter().chain(&self.rejected)
    }
}

/// The row's `id` (a string or number), else its 1-based row number.
fn id(row: &Row) -> String {
    match row.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => (row.at.index + 1).to_string(),
    }
}

/// The row's own `subset` column, if it has one.
fn own_subset(row: &Row) -> Option<String> {
    match row.get("subset") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}
