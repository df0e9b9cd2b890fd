//! Evaluation rows, recognised per row:
//!
//! - RewardBench v1: `prompt`, `chosen` and `rejected` strings (the conversation is
//!   `[user: prompt, assistant: answer]`), or `chosen` / `rejected` message lists (multi-turn);
//! - RewardBench 2: `prompt` and `chosen` / `rejected` lists of answer strings, any counts.
//!
//! Both carry `subset` and `id`; a row without `subset` belongs to "default", without `id` gets its
//! row number.

use armorm_data::messages::prompt_response;
use armorm_data::{Pair, Row};
use armorm_model::Conversation;
use serde_json::Value;

use crate::error::Result;

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
    pub format: Format,
    pub chosen: Vec<Conversation>,
    pub rejected: Vec<Conversation>,
    /// `file:line` of the row.
    pub at: String,
}

impl Example {
    pub fn from_row(row: &Row) -> Result<Self> {
        let id = match row.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => (row.at.index + 1).to_string(),
        };
        let subset = match row.get("subset") {
            Some(Value::String(s)) => s.clone(),
            _ => "default".to_string(),
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
            return Ok(Self { id, subset, format: Format::V2, chosen: convs(chosen), rejected: convs(rejected), at });
        }
        let pair = Pair::from_row(row).map_err(|_| {
            row.error(
                "not an evaluation row: expected RewardBench v1 ({\"prompt\": str, \"chosen\": str, \"rejected\": str} \
                 or chosen/rejected message lists) or RewardBench 2 ({\"prompt\": str, \"chosen\": [str], \"rejected\": [str]})",
            )
        })?;
        Ok(Self { id, subset, format: Format::V1, chosen: vec![pair.chosen], rejected: vec![pair.rejected], at })
    }

    /// Every conversation: the chosen ones first, in order, then the rejected ones.
    pub fn conversations(&self) -> impl Iterator<Item = &Conversation> {
        self.chosen.iter().chain(&self.rejected)
    }
}
