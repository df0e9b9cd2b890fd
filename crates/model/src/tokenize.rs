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

    /// Like [`Encoder::encode`], but when the result exceeds `max_tokens`, cuts tokens from the left of
    /// the earliest turn's content (then the next turn's, ...), so the template's structure, the gating
    /// pattern and the end of the assistant's answer survive. Returns whether anything was cut.
    pub fn encode_truncated(&self, conversation: &Conversation, max_tokens: usize) -> Result<(Encoded, bool)> {
        let mut conversation = conversation.clone();
        let mut encoded = self.encode(&conversation)?;
        let mut truncated = false;
        for index in 0..conversation.messages().len() {
            while encoded.len() > max_tokens {
                let content = &conversation.messages()[index].content;
                let offsets = self.content_token_starts(content)?;
                if offsets.is_empty() {
                    break;
                }
                // Re-rendering can merge or split a token at the new edge, so re-measure each round;
                // every round cuts at least one token, so the loop ends.
                let drop = (encoded.len() - max_tokens).min(offsets.len());
                let cut = offsets.get(drop).copied().unwrap_or(content.len());
                let kept = content[cut..].to_string();
                conversation = conversation.with_content(index, kept);
                encoded = self.encode(&conversation)?;
                truncated = true;
            }
        }
        if encoded.len() > max_tokens {
            return Err(ConversationError::TooLong { len: encoded.len(), max: max_tokens }.into());
        }
        Ok((encoded, truncated))
    }

    /// How many tokens `text` is on its own (no template, no special tokens): a response's length.
    pub fn token_count(&self, text: &str) -> Result<usize> {
        Ok(self.content_token_starts(text)?.len())
    }

    /// Byte offsets where each token of `content` (tokenized alone) starts.
    fn content_token_starts(&self, content: &str) -> Result<Vec<usize>> {
        let encoding = self.tokenizer.encode(content, false).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_offsets().iter().map(|&(start, _)| start).collect())
    }

    /// A well-formed sequence of `len` tokens (the gating pattern, then padding ids), for warm-up.
    pub fn synthetic(&self, len: usize) -> Result<Encoded> {
        let mut ids = self.pattern.as_ref().map(|p| p.ids().to_vec()).unwrap_or_default();
        ids.resize(len.max(ids.len()).max(1), 0);
        self.encode_ids(ids)
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
