//! Where the gating network reads the hidden state: the start of the last occurrence of the token
//! pattern that opens the final assistant turn (for Llama-3:
//! `<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`).

use tokenizers::Tokenizer;

use crate::error::{ConversationError, ModelError, Result};
use crate::load::checkpoint::CheckpointFiles;
use crate::text::conversation::{Message, Role};
use crate::text::template::ChatTemplate;

const PROBE_USER: &str = "ArmormProbeUserContent";
const PROBE_ASSISTANT: &str = "ArmormProbeAssistantContent";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatingPattern(Vec<u32>);

/// What an encoder does with the pattern that opens the final assistant turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnAnchor {
    /// The gating network reads at the pattern: an encoding without it is refused.
    Gate(GatingPattern),
    /// The pattern only marks where a prompt that conversations may share ends (a head without
    /// gating): an encoding without it is scored whole, unshared.
    PromptEnd(GatingPattern),
    /// No pattern (none could be derived for a head without gating): nothing is shared.
    None,
}

impl TurnAnchor {
    /// The pattern the gating network reads at, for gating heads only.
    pub fn gate(&self) -> Option<&GatingPattern> {
        match self {
            Self::Gate(p) => Some(p),
            Self::PromptEnd(_) | Self::None => None,
        }
    }

    fn pattern(&self) -> Option<&GatingPattern> {
        match self {
            Self::Gate(p) | Self::PromptEnd(p) => Some(p),
            Self::None => None,
        }
    }

    /// (where the gating network reads, where the shareable prompt ends) in `ids`; refused only
    /// when a gating head's pattern is missing. The prompt ends after the pattern's last occurrence,
    /// and only if a response follows it.
    pub(crate) fn locate(&self, ids: &[u32]) -> std::result::Result<(usize, Option<usize>), ConversationError> {
        let last = ids.len() - 1;
        let found = self.pattern().and_then(|p| p.find_last(ids).map(|at| (at, at + p.ids().len())));
        let prompt_end = found.map(|(_, end)| end).filter(|&end| end < ids.len());
        match (self, found) {
            (Self::Gate(p), None) => Err(ConversationError::GatingPatternNotFound { pattern: p.ids().to_vec() }),
            (Self::Gate(_), Some((at, _))) => Ok((at, prompt_end)),
            _ => Ok((last, prompt_end)),
        }
    }
}

impl GatingPattern {
    pub fn new(ids: Vec<u32>) -> Result<Self> {
        if ids.is_empty() {
            return Err(ModelError::Template("the gating pattern must not be empty".into()));
        }
        Ok(Self(ids))
    }

    /// Renders a probe conversation and takes the tokens strictly between the end of the user's
    /// content and the start of the assistant's, as the template and tokenizer actually produce them.
    pub fn derive(template: &ChatTemplate, tokenizer: &Tokenizer) -> Result<Self> {
        let probe = [
            Message { role: Role::User, content: PROBE_USER.into() },
            Message { role: Role::Assistant, content: PROBE_ASSISTANT.into() },
        ];
        let text = template.render(&probe)?;
        let not_derivable = |why: &str| {
            ModelError::Template(format!(
                "cannot derive the gating pattern from the chat template ({why}); pass it explicitly"
            ))
        };
        let user_end =
            text.find(PROBE_USER).ok_or_else(|| not_derivable("user content not rendered"))? + PROBE_USER.len();
        let assistant_start =
            text.rfind(PROBE_ASSISTANT).ok_or_else(|| not_derivable("assistant content not rendered"))?;
        if assistant_start <= user_end {
            return Err(not_derivable("assistant content does not follow user content"));
        }
        let encoding = tokenizer.encode(text.as_str(), false).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let mut ids = Vec::new();
        for (&id, &(start, end)) in encoding.get_ids().iter().zip(encoding.get_offsets()) {
            let inside = start >= user_end && end <= assistant_start;
            let straddles = start < assistant_start && end > user_end && !inside;
            if straddles {
                return Err(not_derivable("a token spans the boundary of the turn header"));
            }
            if inside {
                ids.push(id);
            }
        }
        Self::new(ids)
    }

    /// The pattern a checkpoint's encodings use: `explicit` when given, else derived from its
    /// template and tokenizer (without loading any weights).
    pub fn for_checkpoint(files: &CheckpointFiles, explicit: Option<&[u32]>) -> Result<Self> {
        if let Some(ids) = explicit {
            return Self::new(ids.to_vec());
        }
        let tokenizer = super::load_tokenizer(&files.tokenizer)?;
        let template = ChatTemplate::from_files(&files.tokenizer_config, files.chat_template.as_deref())?;
        Self::derive(&template, &tokenizer)
    }

    /// `explicit` when given (the `--gating-pattern` override), else derived from the template.
    pub fn resolve(explicit: Option<&[u32]>, template: &ChatTemplate, tokenizer: &Tokenizer) -> Result<Self> {
        match explicit {
            Some(ids) => Self::new(ids.to_vec()),
            None => Self::derive(template, tokenizer),
        }
    }

    pub fn ids(&self) -> &[u32] {
        &self.0
    }

    /// Start index of the last occurrence in `ids`.
    pub fn find_last(&self, ids: &[u32]) -> Option<usize> {
        ids.windows(self.0.len()).rposition(|w| w == self.0.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_occurrence() {
        let p = GatingPattern::new(vec![7, 8]).unwrap();
        assert_eq!(p.find_last(&[1, 7, 8, 2, 7, 8, 3]), Some(4));
        assert_eq!(p.find_last(&[7, 8]), Some(0));
        assert_eq!(p.find_last(&[8, 7]), None);
        assert_eq!(p.find_last(&[7]), None);
        assert!(GatingPattern::new(vec![]).is_err());
    }

    #[test]
    fn only_a_gate_is_required_and_a_prompt_ends_before_a_response() {
        let p = || GatingPattern::new(vec![7, 8]).unwrap();
        let (gate, prompt) = (TurnAnchor::Gate(p()), TurnAnchor::PromptEnd(p()));
        assert_eq!(gate.locate(&[1, 7, 8, 2, 3]).unwrap(), (1, Some(3)));
        assert_eq!(prompt.locate(&[1, 7, 8, 2, 3]).unwrap(), (4, Some(3)), "no gate: the last token");
        assert_eq!(gate.locate(&[1, 7, 8]).unwrap(), (1, None), "no response: nothing to share");
        assert!(gate.locate(&[1, 2]).is_err());
        assert_eq!(prompt.locate(&[1, 2]).unwrap(), (1, None), "scored whole");
        assert_eq!(TurnAnchor::None.locate(&[1, 7, 8, 2]).unwrap(), (3, None));
    }
}
