//! RewardBench 2 (`allenai/reward-bench-2`, split `test`): a `prompt` string and `chosen` /
//! `rejected` lists of answer strings, any counts (the other columns, `num_correct`, `models`, ...,
//! are not needed to score).

use armorm_data::messages::prompt_response;
use armorm_data::Row;
use serde_json::Value;

use super::{id, own_subset, Example, Format, Layout};
use crate::error::Result;

pub struct RewardBench2;

impl Layout for RewardBench2 {
    fn describe(&self) -> &'static str {
        "RewardBench 2 ({\"prompt\": str, \"chosen\": [str], \"rejected\": [str]})"
    }

    fn read(&self, row: &Row, _split: Option<&str>) -> Option<Result<Example>> {
        let strings = |key: &str| -> Option<Vec<&str>> {
            match row.get(key) {
                Some(Value::Array(items)) if items.first().is_some_and(Value::is_string) => {
                    items.iter().map(Value::as_str).collect()
                }
                _ => None,
            }
        };
        let (chosen, rejected) = (strings("chosen")?, strings("rejected")?);
        Some(row.str_field("prompt").map_err(Into::into).map(|prompt| {
            let convs = |answers: Vec<&str>| answers.into_iter().map(|a| prompt_response(prompt, a)).collect();
            Example {
                id: id(row),
                subset: own_subset(row).unwrap_or_else(|| "default".to_string()),
                subsubset: None,
                format: Format::V2,
                chosen: convs(chosen),
                rejected: convs(rejected),
                at: row.at.to_string(),
            }
        }))
    }
}
