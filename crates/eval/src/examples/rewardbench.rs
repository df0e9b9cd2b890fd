//! RewardBench v1 (`allenai/reward-bench`, split `filtered`): `prompt`, `chosen` and `rejected`
//! strings (the conversation is `[user: prompt, assistant: answer]`), or `chosen` / `rejected`
//! message lists (multi-turn); `subset` and `id` beside them.

use armorm_data::{Pair, Row};

use super::{id, own_subset, Example, Format, Layout};
use crate::error::Result;

pub struct RewardBench;

impl Layout for RewardBench {
    fn describe(&self) -> &'static str {
        "RewardBench v1 ({\"prompt\": str, \"chosen\": str, \"rejected\": str}, or chosen/rejected message lists)"
    }

    fn read(&self, row: &Row, _split: Option<&str>) -> Option<Result<Example>> {
        let pair = Pair::from_row(row).ok()?;
        Some(Ok(Example {
            id: id(row),
            subset: own_subset(row).unwrap_or_else(|| "default".to_string()),
            subsubset: None,
            format: Format::V1,
            chosen: vec![pair.chosen],
            rejected: vec![pair.rejected],
            at: row.at.to_string(),
        }))
    }
}
