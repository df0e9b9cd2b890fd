//! Conversation -> token ids -> [`Encoded`], the unit the batcher queues and the backbone consumes.

use std::sync::OnceLock;

use tokenizers::Tokenizer;

use crate::error::{ConversationError, ModelError, Result};
use crate::text::anchor::{GatingPattern, TurnAnchor};
use crate::text::conversation::{Conversation, Prompt};
use crate::text::pairwise::ComparisonFormat;
use crate::text::special_text::{ContentSpecialTokens, SpecialTokens};
use crate::text::template::ChatTemplate;

/// Token ids plus the two positions the heads read. Only an [`Encoder`] makes one, so the gate
/// position is always inside the sequence and, for gating models, really is the pattern's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    ids: Vec<u32>,
    gate_pos: usize,
    last_pos: usize,
    prompt_end: Option<usize>,
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

    /// Where the reward head reads ([`Readout`]).
    pub fn last_pos(&self) -> usize {
        self.last_pos
    }

    /// Where the prompt ends (through the header that opens the final assistant turn), when a
    /// response follows it: conversations with the same ids up to here may share their computation.
    pub fn prompt_end(&self) -> Option<usize> {
        self.prompt_end
    }
}

/// Which token a reward head reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readout {
    /// The last (ArmoRM; a classifier without a pad id).
    Last,
    /// The last token that is not this pad id, as transformers' `*ForSequenceClassification` read
    /// (the first token when all are pad).
    LastNotPad(u32),
    /// The token before the first occurrence of this id, else the last, as Starling-RM's own class
    /// reads (PAD_ID 0). An id at position 0 reads the last token: Python's index -1.
    BeforeFirst(u32),
}

impl Readout {
    /// The position read in `ids` (not empty).
    fn position(self, ids: &[u32]) -> usize {
        let last = ids.len() - 1;
        match self {
            Self::Last => last,
            Self::LastNotPad(pad) => ids.iter().rposition(|&id| id != pad).unwrap_or(0),
            Self::BeforeFirst(pad) => {
                ids.iter().position(|&id| id == pad).and_then(|at| at.checked_sub(1)).unwrap_or(last)
            }
        }
    }
}

/// How one conversation may be encoded: its token limit, whether to cut it to fit, and what its
/// content may contain of special-token text.
#[derive(Debug, Clone, Copy)]
pub struct EncodeLimits {
    pub max_tokens: usize,
    pub truncate: bool,
    pub content_special_tokens: ContentSpecialTokens,
}

impl EncodeLimits {
    /// No truncation, special tokens parsed as transformers does.
    pub fn exact(max_tokens: usize) -> Self {
        Self { max_tokens, truncate: false, content_special_tokens: ContentSpecialTokens::Parse }
    }
}

/// An encoded conversation and what happened on the way.
#[derive(Debug)]
pub struct EncodedConversation {
    pub encoded: Encoded,
    /// Turns were cut from the left to fit.
    pub truncated: bool,
    /// Some message content contained special-token text.
    pub special_tokens_in_content: bool,
}

/// At most this many re-encodings when truncating: each round cuts what the last one measured too
/// much, and only token merges at the new edges can leave a remainder for the next.
const MAX_TRUNCATION_ROUNDS: usize = 8;

pub struct Encoder {
    tokenizer: Tokenizer,
    /// The same tokenizer with special-token matching off, built on first use (literal content).
    plain: OnceLock<Tokenizer>,
    specials: SpecialTokens,
    template: ChatTemplate,
    anchor: TurnAnchor,
    vocab_size: usize,
    readout: Readout,
    /// A pairwise preference model's input format: everything this encoder renders is a
    /// comparison request, with the BOS text removed.
    comparisons: Option<ComparisonFormat>,
    /// An upper bound on the bytes of text one token stands for: text longer than `max_tokens`
    /// times this cannot fit, and is refused (or cut) before the tokenizer sees it.
    max_token_bytes: usize,
}

impl Encoder {
    pub fn new(tokenizer: Tokenizer, template: ChatTemplate, anchor: TurnAnchor, vocab_size: usize) -> Result<Self> {
        let specials = SpecialTokens::new(&tokenizer)?;
        let max_token_bytes = max_token_bytes(&tokenizer);
        Ok(Self {
            tokenizer,
            plain: OnceLock::new(),
            specials,
            template,
            anchor,
            vocab_size,
            readout: Readout::Last,
            comparisons: None,
            max_token_bytes,
        })
    }

    /// An encoder for a pairwise preference model: it encodes comparisons ([`Self::encode_comparison`]).
    pub fn comparing(mut self, format: ComparisonFormat) -> Self {
        self.comparisons = Some(format);
        self
    }

    /// The id of `text` when it is one token on its own, as a head that reads one token's logit
    /// needs it to be.
    pub fn single_token(&self, text: &str) -> Result<u32> {
        let encoding = self.tokenizer.encode(text, false).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        match encoding.get_ids() {
            &[id] => Ok(id),
            ids => Err(ModelError::Tokenizer(format!("{text:?} is {} tokens, not one", ids.len()))),
        }
    }

    /// Both orders of one comparison, `a` as response A then `b` as response A, each encoded under
    /// `limits` (no truncation: cutting would cut the request's own markers).
    pub fn encode_comparison(
        &self,
        prompt: &Prompt,
        (a, b): (&str, &str),
        limits: &EncodeLimits,
    ) -> Result<[EncodedConversation; 2]> {
        let format = self.comparisons.as_ref().ok_or_else(|| {
            ModelError::Tokenizer("comparisons are encoded only for a pairwise preference model".into())
        })?;
        let limits = EncodeLimits { truncate: false, ..*limits };
        let encode = |first: &str, second: &str| -> Result<EncodedConversation> {
            let request = Conversation::comparison_request(format.request(prompt, first, second)?);
            self.encode_within(&request, &limits)
        };
        Ok([encode(a, b)?, encode(b, a)?])
    }

    /// Where the head reads (the last token unless told).
    pub fn reading(mut self, readout: Readout) -> Self {
        self.readout = readout;
        self
    }

    /// The pattern the gating network reads at; `None` for heads without gating.
    pub fn pattern(&self) -> Option<&GatingPattern> {
        self.anchor.gate()
    }

    /// The most bytes of text one token can stand for (see the field).
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    pub fn render(&self, conversation: &Conversation) -> Result<String> {
        let text = self.template.render(conversation.messages())?;
        let bos = self.template.bos_token();
        Ok(match &self.comparisons {
            Some(_) if !bos.is_empty() => text.replace(bos, ""),
            _ => text,
        })
    }

    /// Renders with the model's template, then tokenizes without adding special tokens: the template
    /// already wrote them, and adding them again doubles `<|begin_of_text|>`. No length limit.
    pub fn encode(&self, conversation: &Conversation) -> Result<Encoded> {
        let text = self.render(conversation)?;
        self.encode_text(&text)
    }

    /// Encodes under `limits`. Over-long text is refused from its byte length before tokenizing, so
    /// memory and time stay bounded by the limit, not by the input. With `truncate`, tokens are cut
    /// from the left of the earliest turn's content (then the next turn's, ...), so the template's
    /// structure, the gating pattern and the end of the assistant's answer survive; the work is
    /// linear in the input (a bounded number of re-encodings, however many turns).
    pub fn encode_within(&self, conversation: &Conversation, limits: &EncodeLimits) -> Result<EncodedConversation> {
        let found = conversation
            .messages()
            .iter()
            .enumerate()
            .find_map(|(index, m)| self.specials.first_in(&m.content).map(|token| (index, token)));
        let mode = match (found, limits.content_special_tokens) {
            (Some((index, token)), ContentSpecialTokens::Reject) => {
                return Err(ConversationError::SpecialTokenInContent { index, token: token.to_string() }.into())
            }
            // Without special-token text in content, literal tokenization is parsing: skip its work.
            (None, _) => ContentSpecialTokens::Parse,
            (Some(_), mode) => mode,
        };
        let mut text_budget = limits.max_tokens.saturating_mul(self.max_token_bytes);
        // Content alone is a lower bound on the rendered text: refuse before copying or rendering.
        let content_bytes: usize = conversation.messages().iter().map(|m| m.content.len()).sum();
        if !limits.truncate && content_bytes > text_budget {
            let (max, max_token_bytes) = (limits.max_tokens, self.max_token_bytes);
            return Err(ConversationError::TextTooLong { bytes: content_bytes, max, max_token_bytes }.into());
        }
        let mut conversation = conversation.clone();
        let mut truncated = false;
        if limits.truncate {
            truncated = cut_content_to_bytes(&mut conversation, text_budget);
            // Content is bounded now; the template's own text around it is the caller's to cut.
            text_budget = usize::MAX;
        }
        let mut encoded = self.encode_mode(&conversation, mode, text_budget)?;
        let mut rounds = 0;
        while encoded.len() > limits.max_tokens && limits.truncate && rounds < MAX_TRUNCATION_ROUNDS {
            let mut excess = encoded.len() - limits.max_tokens;
            for index in 0..conversation.messages().len() {
                if excess == 0 {
                    break;
                }
                let content = &conversation.messages()[index].content;
                let starts = self.content_token_starts(content, mode)?;
                if starts.is_empty() {
                    continue;
                }
                let drop = excess.min(starts.len());
                let kept = content[starts.get(drop).copied().unwrap_or(content.len())..].to_string();
                conversation.set_content(index, kept);
                excess -= drop;
                truncated = true;
            }
            if excess == encoded.len() - limits.max_tokens {
                break; // nothing left to cut: the turns' structure alone is too long
            }
            encoded = self.encode_mode(&conversation, mode, text_budget)?;
            rounds += 1;
        }
        if encoded.len() > limits.max_tokens {
            return Err(ConversationError::TooLong { len: encoded.len(), max: limits.max_tokens }.into());
        }
        Ok(EncodedConversation { encoded, truncated, special_tokens_in_content: found.is_some() })
    }

    fn encode_mode(
        &self,
        conversation: &Conversation,
        mode: ContentSpecialTokens,
        text_budget: usize,
    ) -> Result<Encoded> {
        let check = |text: &str| {
            if text.len() > text_budget {
                let max = text_budget / self.max_token_bytes.max(1);
                Err(ConversationError::TextTooLong { bytes: text.len(), max, max_token_bytes: self.max_token_bytes })
            } else {
                Ok(())
            }
        };
        if mode != ContentSpecialTokens::Literal {
            let text = self.render(conversation)?;
            check(&text)?;
            return self.encode_text(&text);
        }
        let contents: Vec<&str> = conversation.messages().iter().map(|m| m.content.as_str()).collect();
        let (masked, placeholders) = self.specials.mask(&contents)?;
        let mut masked_conversation = conversation.clone();
        for (index, content) in masked.into_iter().enumerate() {
            masked_conversation.set_content(index, content);
        }
        let text = self.render(&masked_conversation)?;
        check(&text)?;
        self.encode_ids(self.specials.encode_split(&text, &placeholders, self.plain())?)
    }

    fn plain(&self) -> &Tokenizer {
        self.plain.get_or_init(|| {
            let mut plain = self.tokenizer.clone();
            plain.set_encode_special_tokens(true);
            plain
        })
    }

    /// How many tokens `text` is on its own (no template, no special tokens): a response's length.
    pub fn token_count(&self, text: &str) -> Result<usize> {
        Ok(self.content_token_starts(text, ContentSpecialTokens::Parse)?.len())
    }

    /// Byte offsets where each token of `content` (tokenized alone) starts.
    fn content_token_starts(&self, content: &str, mode: ContentSpecialTokens) -> Result<Vec<usize>> {
        let tokenizer = if mode == ContentSpecialTokens::Literal { self.plain() } else { &self.tokenizer };
        let encoding = tokenizer.encode(content, false).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_offsets().iter().map(|&(start, _)| start).collect())
    }

    /// A well-formed sequence of `len` tokens (the gating pattern, then padding ids), for warm-up.
    pub fn synthetic(&self, len: usize) -> Result<Encoded> {
        let mut ids = self.pattern().map(|p| p.ids().to_vec()).unwrap_or_default();
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
        let (gate_pos, prompt_end) = self.anchor.locate(&ids)?;
        let last_pos = self.readout.position(&ids);
        Ok(Encoded { ids, gate_pos, last_pos, prompt_end })
    }
}

/// Marks the ids every one of `items` starts with as one prompt the batch computes once (as
/// [`Encoded::prompt_end`] marks a conversation's prompt), leaving each item at least one token of
/// its own; nothing is marked for fewer than two items.
pub fn share_common_prefix(items: &mut [Encoded]) {
    let Some((first, rest)) = items.split_first() else { return };
    if rest.is_empty() {
        return;
    }
    let common = rest.iter().map(|e| first.ids.iter().zip(&e.ids).take_while(|(x, y)| x == y).count()).min();
    let shortest = items.iter().map(Encoded::len).min().unwrap_or(0);
    let end = common.unwrap_or(0).min(shortest.saturating_sub(1));
    for item in items.iter_mut() {
        item.prompt_end = (end > 0).then_some(end);
    }
}

/// Drops content bytes from the left, earliest turn first, until all content fits `budget` bytes.
/// Everything truncation could keep lies within the last `budget` bytes, so this only saves the
/// tokenizer from text that would be cut anyway. Returns whether anything was dropped.
fn cut_content_to_bytes(conversation: &mut Conversation, budget: usize) -> bool {
    let total: usize = conversation.messages().iter().map(|m| m.content.len()).sum();
    let mut excess = total.saturating_sub(budget);
    let cut = excess > 0;
    for index in 0..conversation.messages().len() {
        if excess == 0 {
            break;
        }
        let content = &conversation.messages()[index].content;
        let mut at = excess.min(content.len());
        while !content.is_char_boundary(at) {
            at += 1;
        }
        excess -= at.min(excess);
        let kept = content[at..].to_string();
        conversation.set_content(index, kept);
    }
    cut
}

/// The most bytes of text any one token decodes to (added tokens included), doubled when a
/// normalizer could shrink text before it is matched.
fn max_token_bytes(tokenizer: &Tokenizer) -> usize {
    let vocab = tokenizer.get_vocab_size(true) as u32;
    let longest = (0..vocab)
        .filter_map(|id| tokenizer.decode(&[id], false).ok().map(|s| s.len()))
        .chain(tokenizer.get_added_tokens_decoder().values().map(|t| t.content.len()))
        .max()
        .unwrap_or(1)
        .max(1);
    if tokenizer.get_normalizer().is_some() {
        longest * 2
    } else {
        longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_readout_reads_where_its_reference_does() {
        let ids = [5, 0, 7, 0, 0];
        assert_eq!(Readout::Last.position(&ids), 4);
        assert_eq!(Readout::LastNotPad(0).position(&ids), 2);
        assert_eq!(Readout::LastNotPad(0).position(&[0, 0]), 0, "all pad: the first token");
        assert_eq!(Readout::BeforeFirst(0).position(&ids), 0);
        assert_eq!(Readout::BeforeFirst(0).position(&[5, 6, 7]), 2, "no pad: the last token");
        assert_eq!(Readout::BeforeFirst(0).position(&[0, 6, 7]), 2, "a pad first: index -1, the last");
    }
}
