//! Conversations inside a row: a `messages`-style list of `{"role", "content"}` objects, or a prompt
//! string answered by a response string.

use armorm_chat::{Conversation, RawMessage};
use serde_json::Value;

use crate::error::Result;
use crate::rows::{kind, Row};

/// The conversation in field `key`, a list of messages. Errors name the row and the field.
pub fn conversation(row: &Row, key: &str) -> Result<Conversation> {
    let value = row.get(key).ok_or_else(|| row.error(format!("missing field {key:?}")))?;
    conversation_value(row, key, value)
}

/// `value` (found at `what` in `row`) read as a list of messages.
pub fn conversation_value(row: &Row, what: &str, value: &Value) -> Result<Conversation> {
    Conversation::new(messages(row, what, value)?).map_err(|e| row.error(format!("{what}: {e}")))
}

/// The turns in `prompt` (a list of messages, at `what` in `row`) answered by `answer`, as the
/// preference test sets lay their rows out.
pub fn prompt_turns_answered(row: &Row, what: &str, prompt: &Value, answer: &str) -> Result<Conversation> {
    let mut raw = messages(row, what, prompt)?;
    raw.push(RawMessage { role: "assistant".into(), content: answer.to_string() });
    Conversation::new(raw).map_err(|e| row.error(format!("{what}: {e}")))
}

fn messages(row: &Row, what: &str, value: &Value) -> Result<Vec<RawMessage>> {
    let Value::Array(items) = value else {
        return Err(row.error(format!("{what} must be a list of messages, found {}", kind(value))));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let field = |name: &str| match m.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(row.error(format!("{what}[{i}] must be {{\"role\": string, \"content\": string}}"))),
            };
            Ok(RawMessage { role: field("role")?, content: field("content")? })
        })
        .collect()
}

/// One user turn answered by one assistant turn.
pub fn prompt_response(prompt: &str, response: &str) -> Conversation {
    Conversation::from_prompt_response(prompt.to_string(), response.to_string())
}
