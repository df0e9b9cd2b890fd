//! Preference pairs in the layouts public data uses: two full conversations
//! (`{"chosen": [messages], "rejected": [messages]}`), one prompt with two answers
//! (`{"prompt": str, "chosen": str, "rejected": str}`, the binarized-preference and RewardBench
//! layout), or the turns before two answers (`{"prompt": [messages], "chosen": str, "rejected":
//! str}`, the preference test sets' layout).

use armorm_chat::Conversation;
use serde_json::Value;

use crate::error::Result;
use crate::messages::{conversation_value, prompt_response, prompt_turns_answered};
use crate::rows::Row;

/// A chosen and a rejected conversation; they normally share everything but the final answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub chosen: Conversation,
    pub rejected: Conversation,
}

pub const LAYOUTS: &str =
    "expected {\"chosen\": [messages], \"rejected\": [messages]}, {\"prompt\": string, \"chosen\": \
     string, \"rejected\": string} or {\"prompt\": [messages], \"chosen\": string, \"rejected\": string}";

impl Pair {
    pub fn from_row(row: &Row) -> Result<Self> {
        match (row.get("prompt"), row.get("chosen"), row.get("rejected")) {
            (Some(Value::String(p)), Some(Value::String(c)), Some(Value::String(r))) => {
                Ok(Self { chosen: prompt_response(p, c), rejected: prompt_response(p, r) })
            }
            (Some(p @ Value::Array(_)), Some(Value::String(c)), Some(Value::String(r))) => Ok(Self {
                chosen: prompt_turns_answered(row, "prompt", p, c)?,
                rejected: prompt_turns_answered(row, "prompt", p, r)?,
            }),
            (_, Some(c @ Value::Array(_)), Some(r @ Value::Array(_))) => Ok(Self {
                chosen: conversation_value(row, "chosen", c)?,
                rejected: conversation_value(row, "rejected", r)?,
            }),
            _ => Err(row.error(format!("not a preference pair: {LAYOUTS}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::rows::RowRef;

    fn row(json: &str) -> Row {
        let at = RowRef { file: Arc::new(PathBuf::from("pairs.jsonl")), index: 6, row: 6, line: Some(7) };
        Row { at, fields: serde_json::from_str(json).unwrap() }
    }

    #[test]
    fn every_layout_gives_the_same_pair() {
        let flat = Pair::from_row(&row(r#"{"prompt": "q", "chosen": "a", "rejected": "b"}"#)).unwrap();
        let full = Pair::from_row(&row(
            r#"{"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]}"#,
        ))
        .unwrap();
        let turns =
            Pair::from_row(&row(r#"{"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}"#))
                .unwrap();
        assert_eq!(flat, full);
        assert_eq!(turns, full);
    }

    #[test]
    fn a_row_with_neither_layout_names_file_line_and_layouts() {
        let err = Pair::from_row(&row(r#"{"question": "q", "chosen": "a"}"#)).unwrap_err().to_string();
        assert!(err.starts_with("pairs.jsonl:7: not a preference pair: expected"), "{err}");
        let err = Pair::from_row(&row(r#"{"chosen": [{"role": "user"}], "rejected": []}"#)).unwrap_err().to_string();
        assert!(err.contains("pairs.jsonl:7: chosen[0] must be"), "{err}");
        let err = Pair::from_row(&row(r#"{"chosen": [{"role": "user", "content": "q"}], "rejected": []}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("chosen: the last message must be the assistant's"), "{err}");
    }
}
