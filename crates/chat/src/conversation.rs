//! A conversation that has been checked: non-empty, known roles, ending in the assistant's response.
//! Everything downstream (template, tokenizer, model) takes this type, so none of them re-checks.

use serde::{Deserialize, Serialize};

use crate::ConversationError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }

    fn parse(role: &str) -> Option<Self> {
        match role {
            "system" => Some(Self::System),
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            _ => None,
        }
    }
}

/// A message as clients send it; the role is still free text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    messages: Vec<Message>,
}

/// Each message with its role checked.
fn parse_roles(raw: Vec<RawMessage>) -> Result<Vec<Message>, ConversationError> {
    raw.into_iter()
        .enumerate()
        .map(|(index, m)| match Role::parse(&m.role) {
            Some(role) => Ok(Message { role, content: m.content }),
            None => Err(ConversationError::UnknownRole { index, role: m.role }),
        })
        .collect()
}

impl Conversation {
    pub fn new(raw: Vec<RawMessage>) -> Result<Self, ConversationError> {
        let messages = parse_roles(raw)?;
        match messages.last() {
            None => Err(ConversationError::Empty),
            Some(last) if last.role != Role::Assistant => {
                Err(ConversationError::LastTurnNotAssistant { role: last.role.as_str().to_string() })
            }
            Some(_) => Ok(Self { messages }),
        }
    }

    /// The one user turn a pairwise preference model reads (armorm-model's `text::pairwise`): its
    /// answer is the model's next token, "A" or "B", so no assistant turn follows.
    pub fn comparison_request(content: String) -> Self {
        Self { messages: vec![Message { role: Role::User, content }] }
    }

    /// The `{"prompt", "response"}` shorthand: one user turn answered by one assistant turn.
    pub fn from_prompt_response(prompt: String, response: String) -> Self {
        Self {
            messages: vec![
                Message { role: Role::User, content: prompt },
                Message { role: Role::Assistant, content: response },
            ],
        }
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Replaces message `index`'s content in place (roles, and so validity, unchanged).
    pub fn set_content(&mut self, index: usize, content: String) {
        if let Some(m) = self.messages.get_mut(index) {
            m.content = content;
        }
    }
}

/// The turns before the responses a pairwise model compares: not empty, known roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    messages: Vec<Message>,
}

impl Prompt {
    pub fn new(raw: Vec<RawMessage>) -> Result<Self, ConversationError> {
        let messages = parse_roles(raw)?;
        if messages.is_empty() {
            return Err(ConversationError::Empty);
        }
        Ok(Self { messages })
    }

    /// A conversation's turns before its last (the prompt its response answers).
    pub fn of(conversation: &Conversation) -> Option<Self> {
        let (_, before) = conversation.messages.split_last()?;
        (!before.is_empty()).then(|| Self { messages: before.to_vec() })
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> Vec<RawMessage> {
        pairs.iter().map(|(r, c)| RawMessage { role: r.to_string(), content: c.to_string() }).collect()
    }

    #[test]
    fn validation_names_the_problem() {
        assert_eq!(Conversation::new(vec![]), Err(ConversationError::Empty));
        assert_eq!(
            Conversation::new(raw(&[("user", "hi")])),
            Err(ConversationError::LastTurnNotAssistant { role: "user".into() })
        );
        assert_eq!(
            Conversation::new(raw(&[("user", "hi"), ("bot", "hello")])),
            Err(ConversationError::UnknownRole { index: 1, role: "bot".into() })
        );
        let ok = Conversation::new(raw(&[("system", "s"), ("user", "u"), ("assistant", "a")])).unwrap();
        assert_eq!(ok.messages().len(), 3);
        let mut edited = ok.clone();
        edited.set_content(2, "b".into());
        assert_eq!(edited.messages()[2].content, "b");
    }
}
