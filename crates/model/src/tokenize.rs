//! Conversation -> token ids -> [`Encoded`], the unit the batcher queues and the backbone consumes.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::anchor::GatingPattern;
use crate::conversation::Conversation;
use crate::error::{ConversationError, ModelError, Result};
use crate::template::ChatTemplate;

/// Token ids plus the two positions the heads read. Only an [`Encoder`] makes one, so the gate
/// position is always inside the sequence and, for gating models, really is the pattern's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    ids: Vec<u32>,
    gate_pos: usize,
}

impl Encoded {
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Where the gating network reads; the last token for heads without gating.
    pub fn gate_pos(&self) -> usize {
        self.gate_pos
    }

    /// Where the reward head reads: the last token.
    pub fn last_pos(&self) -> usize {
        self.ids.len() - 1
    }
}

pub struct Encoder {
    tokenizer: Tokenizer,
    template: ChatTemplate,
    /// `None` for heads that need no gate position (Bradley-Terry).
    pattern: Option<GatingPattern>,
    vocab_size: usize,
}

impl Encoder {
    pub fn new(
        tokenizer: Tokenizer,
        template: ChatTemplate,
        pattern: Option<GatingPattern>,
        vocab_size: usize,
    ) -> Self {
        Self { tokenizer, template, pattern, vocab_size }
    }

    pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
        Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    pub fn pattern(&self) -> Option<&GatingPattern> {
        self.pattern.as_ref()
    }

    pub fn render(&self, conversation: &Conversation) -> Result<String> {
        self.template.render(conversation.messages())
    }

    /// Renders with the model's template, then tokenizes without adding special tokens: the template
    /// already wrote them, and adding them again doubles `<|begin_of_text|>`.
    pub fn encode(&self, conversation: &Conversation) -> Result<Encoded> {
        let text = self.render(conversation)?;
        self.encode_text(&text)
    }

    /// Text already in the model's chat format (special-token strings included).
    pub fn encode_text(&self, text: &str) -> Result<Encoded> {
        let encoding = self.tokenizer.encode(text, false).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        self.encode_ids(encoding.get_ids().to_vec())
    }

    /// Pre-tokenized input: the ids are checked against the embedding table and anchored.
    pub fn encode_ids(&self, ids: Vec<u32>) -> Result<Encoded> {
        if ids.is_empty() {
            return Err(ConversationError::Empty.into());
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(ConversationError::TokenOutOfRange { id, vocab: self.vocab_size }.into());
        }
        let gate_pos = match &self.pattern {
            None => ids.len() - 1,
            Some(p) => p
                .find_last(&ids)
                .ok_or_else(|| ConversationError::GatingPatternNotFound { pattern: p.ids().to_vec() })?,
        };
        Ok(Encoded { ids, gate_pos })
    }
}
