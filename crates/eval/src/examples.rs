//! Evaluation rows, recognised per row:
//!
//! - RewardBench v1: `prompt`, `chosen` and `rejected` strings (the conversation is
//!   `[user: prompt, assistant: answer]`), or `chosen` / `rejected` message lists (multi-turn);
//! - RewardBench 2: `prompt` and `chosen` / `rejected` lists of answer strings, any counts.
//!
//! - the preference test sets (`allenai/pref-test-sets`): `prompt` the turns before two answer
//!   strings `chosen` and `rejected`.
//!
//! Rows carry `subset` and `id`; a row without `subset` belongs to "default", without `id` gets its
//! row number. A row from one of the preference test sets' Hub splits belongs to the split, its own
//! `subset` kept as the sub-subset (as reward-bench reads them).

use armorm_data::messages::prompt_response;
use armorm_data::{Pair, Row};
use armorm_model::Conversation;
use serde_json::Value;

use crate::error::Result;
use crate::rewardbench::PREF_TEST_SETS;

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

impl Example {
    /// `split`: the Hub split the row came from, if any.
    pub fn from_row(row: &Row, split: Option<&str>) -> Result<Self> {
        let id = match row.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => (row.at.index + 1).to_string(),
        };
        let own = match row.get("subset") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let (subset, subsubset) = match split.filter(|s| PREF_TEST_SETS.contains(s)) {
            Some(split) => (split.to_string(), own),
            None => (own.unwrap_or_else(|| "default".to_string()), None),
        };
        let at = row.at.to_string();
        let strings = |key: &str| -> Option<Vec<&str>> {
            match row.get(key) {
                Some(Value::Array(items)) if items.first().is_some_and(Value::is_string) => {
                    items.iter().map(Value::as_str).collect()
                }
                _ => None,
            }
        };
        if let (Some(chosen), Some(rejected)) = (strings("chosen"), strings("rejected")) {
            let prompt = row.str_field("prompt")?;
            let convs = |answers: Vec<&str>| answers.into_iter().map(|a| prompt_response(prompt, a)).collect();
            let (chosen, rejected) = (convs(chosen), convs(rejected));
            return Ok(Self { id, subset, subsubset, format: Format::V2, chosen, rejected, at });
        }
        let pair = Pair::from_row(row).map_err(|_| {
            row.error(
                "not an evaluation row: expected RewardBench v1 ({\"prompt\": str, \"chosen\": str, \"rejected\": str}, \
                 chosen/rejected message lists, or a prompt message list with chosen/rejected strings) or RewardBench 2 \
                 ({\"prompt\": str, \"chosen\": [str], \"rejected\": [str]})",
            )
        })?;
        let (chosen, rejected) = (vec![pair.chosen], vec![pair.rejected]);
        Ok(Self { id, subset, subsubset, format: Format::V1, chosen, rejected, at })
    }

    /// Every conversation: the chosen ones first, in order, then the rejected ones.
    pub fn conversations(&self) -> impl Iterator<Item = &Conversation> {
        self.chosen.iter().chain(&self.rejected)
    }
}
