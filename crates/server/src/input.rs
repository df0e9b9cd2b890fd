//! Conversation request shapes shared by the HTTP routes and the offline `score` command, and the
//! one internal input every protocol adapter converts its body into.

use armorm_model::{Conversation, RawMessage};
use serde::{Deserialize, Deserializer};

use crate::chat_text;
use crate::error::ApiError;

/// What gets scored: a validated conversation, or token ids a client already produced.
#[derive(Debug, Clone)]
pub enum ScoreInput {
    Conversation(Conversation),
    Ids(Vec<u32>),
}

impl ScoreInput {
    /// Text already rendered with some chat template (a policy's, usually), re-read as messages.
    pub fn from_chat_text(text: &str) -> Result<Self, ApiError> {
        Ok(Self::Conversation(Conversation::new(chat_text::parse(text)?)?))
    }
}

/// The prompt forms OpenAI/vLLM/SGLang clients send: text or token ids, one or many.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<Whole<u32>>),
    IdsBatch(Vec<Vec<Whole<u32>>>),
}

/// An integer as JSON Schema's `integer` reads one: `7` or `7.0` (some JSON encoders write every
/// number as a float), but not `7.5` and nothing out of `T`'s range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whole<T>(pub T);

impl<'de, T: TryFrom<u64>> Deserialize<'de> for Whole<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let n = serde_json::Number::deserialize(d)?;
        let whole = match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Some(u),
            // 2^64 as f64 is the first float past u64::MAX.
            (None, Some(f)) if f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&f) => Some(f as u64),
            _ => None,
        };
        let whole = whole.ok_or_else(|| D::Error::custom(format!("expected a non-negative integer, got {n}")))?;
        T::try_from(whole).map(Whole).map_err(|_| D::Error::custom(format!("{n} is out of range")))
    }
}

fn ids(ids: Vec<Whole<u32>>) -> Vec<u32> {
    ids.into_iter().map(|Whole(id)| id).collect()
}

impl PromptInput {
    /// `field` names the request's key in error messages.
    pub fn into_inputs(self, field: &'static str) -> Result<Vec<ScoreInput>, ApiError> {
        let empty_ids = || ApiError::InvalidRequest(format!("{field}: the token id list is empty"));
        match self {
            Self::Text(t) => Ok(vec![ScoreInput::from_chat_text(&t)?]),
            Self::Texts(ts) => ApiError::per_item(field, &ts, |t| ScoreInput::from_chat_text(t)),
            Self::Ids(list) if list.is_empty() => Err(empty_ids()),
            Self::Ids(list) => Ok(vec![ScoreInput::Ids(ids(list))]),
            Self::IdsBatch(batch) => ApiError::per_item(field, batch, |list| {
                if list.is_empty() {
                    Err(ApiError::InvalidRequest("the token id list is empty".into()))
                } else {
                    Ok(ScoreInput::Ids(ids(list)))
                }
            }),
        }
    }
}

/// `{"messages": [...]}` or the `{"prompt": ..., "response": ...}` shorthand.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConversationInput {
    Messages { messages: Vec<RawMessage> },
    PromptResponse { prompt: String, response: String },
}

impl ConversationInput {
    pub fn into_conversation(self) -> Result<Conversation, ApiError> {
        match self {
            Self::Messages { messages } => Ok(Conversation::new(messages)?),
            Self::PromptResponse { prompt, response } => Ok(Conversation::from_prompt_response(prompt, response)),
        }
    }
}

/// For optional request fields: absent is `None`, but an explicit `null` is refused like any other
/// wrong type, so the server is exactly as strict as openapi.yaml (which allows no nulls).
/// Use with `#[serde(default, deserialize_with = "crate::input::present")]`.
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::Whole;

    #[test]
    fn whole_numbers_accept_integral_floats_only() {
        let parse = |s: &str| serde_json::from_str::<Whole<u32>>(s).map(|w| w.0).ok();
        assert_eq!(parse("7"), Some(7));
        assert_eq!(parse("7.0"), Some(7));
        assert_eq!(parse("4294967295.0"), Some(u32::MAX));
        for bad in ["7.5", "-1", "4294967296", "1e30", "\"7\""] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
