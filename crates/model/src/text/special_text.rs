//! Special-token text (`<|eot_id|>`, `<|start_header_id|>`, ...) inside message content.
//!
//! transformers renders the chat template and tokenizes the result, so such text in a message
//! becomes the special token itself: a response can forge turn structure and move the gating
//! anchor into itself. [`ContentSpecialTokens::Literal`] tokenizes content as plain text instead.
//! It renders the template with each special-token occurrence in content swapped for a private-use
//! placeholder character (which no template transform such as `trim` touches), splits the rendered
//! text at the special tokens that remain (the template's own), and tokenizes each piece between
//! them, placeholders swapped back, with special-token matching off. That is what the tokenizer does
//! anyway (it splits at special tokens first and encodes the pieces independently), minus the
//! splits content asked for.

use std::collections::{HashMap, HashSet};

use aho_corasick::{AhoCorasick, MatchKind};
use tokenizers::Tokenizer;

use crate::error::{ConversationError, ModelError, Result};

/// What message content may contain of the tokenizer's special tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ContentSpecialTokens {
    /// Special-token text in content becomes the special token, as in transformers (parity).
    #[default]
    Parse,
    /// Content is always plain text, so it can never forge template structure.
    Literal,
    /// Conversations whose content contains special-token text are refused.
    Reject,
}

impl ContentSpecialTokens {
    pub const ALL: [Self; 3] = [Self::Parse, Self::Literal, Self::Reject];

    /// The name `--content-special-tokens`, `/info` and the metrics give it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Parse => "parse",
            Self::Literal => "literal",
            Self::Reject => "reject",
        }
    }
}

struct Special {
    id: u32,
    /// The tokenizer strips whitespace on that side of the token.
    lstrip: bool,
    rstrip: bool,
}

pub(crate) struct SpecialTokens {
    /// Leftmost-longest, as the tokenizer's own added-token matcher; `None` without special tokens.
    matcher: Option<AhoCorasick>,
    texts: Vec<String>,
    tokens: Vec<Special>,
}

/// Placeholders come from the supplementary private-use planes, skipping any the content uses.
const PLACEHOLDERS: std::ops::RangeInclusive<u32> = 0xF0000..=0x10FFFD;

impl SpecialTokens {
    pub fn new(tokenizer: &Tokenizer) -> Result<Self> {
        let mut added: Vec<(u32, String, bool, bool)> = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special && !t.content.is_empty())
            .map(|(id, t)| (id, t.content, t.lstrip, t.rstrip))
            .collect();
        added.sort_by_key(|t| t.0);
        let texts: Vec<String> = added.iter().map(|t| t.1.clone()).collect();
        let matcher = if texts.is_empty() {
            None
        } else {
            let built = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&texts);
            Some(built.map_err(|e| ModelError::Tokenizer(format!("special-token matcher: {e}")))?)
        };
        let tokens = added.into_iter().map(|(id, _, lstrip, rstrip)| Special { id, lstrip, rstrip }).collect();
        Ok(Self { matcher, texts, tokens })
    }

    /// The first special-token text in `content`, if any.
    pub fn first_in(&self, content: &str) -> Option<&str> {
        let m = self.matcher.as_ref()?.find(content)?;
        Some(&self.texts[m.pattern().as_usize()])
    }

    /// `contents` with every special-token occurrence replaced by a placeholder character, and the
    /// map back from placeholders to the text they stand for.
    pub fn mask(&self, contents: &[&str]) -> Result<(Vec<String>, Placeholders)> {
        let Some(matcher) = &self.matcher else {
            return Ok((contents.iter().map(|c| c.to_string()).collect(), Placeholders::default()));
        };
        let taken: HashSet<char> =
            contents.iter().flat_map(|c| c.chars()).filter(|c| PLACEHOLDERS.contains(&u32::from(*c))).collect();
        let mut free = PLACEHOLDERS.filter_map(char::from_u32).filter(|c| !taken.contains(c));
        let mut by_pattern: HashMap<usize, char> = HashMap::new();
        let mut masked = Vec::with_capacity(contents.len());
        for content in contents {
            let mut out = String::with_capacity(content.len());
            let mut last = 0;
            for m in matcher.find_iter(*content) {
                out.push_str(&content[last..m.start()]);
                let pattern = m.pattern().as_usize();
                let placeholder = match by_pattern.get(&pattern) {
                    Some(&c) => c,
                    None => {
                        let c = free.next().ok_or(ConversationError::NoPlaceholderLeft)?;
                        by_pattern.insert(pattern, c);
                        c
                    }
                };
                out.push(placeholder);
                last = m.end();
            }
            out.push_str(&content[last..]);
            masked.push(out);
        }
        let back = by_pattern.into_iter().map(|(p, c)| (c, self.texts[p].clone())).collect();
        Ok((masked, Placeholders(back)))
    }

    /// Token ids of rendered `text`: the template's special tokens as themselves, everything between
    /// them (placeholders restored) through `plain`, which does not match special tokens.
    pub fn encode_split(&self, text: &str, placeholders: &Placeholders, plain: &Tokenizer) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        let encode_piece = |piece: &str, ids: &mut Vec<u32>| -> Result<()> {
            if piece.is_empty() {
                return Ok(());
            }
            let restored = placeholders.restore(piece);
            let encoding = plain.encode(restored.as_str(), false).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
            ids.extend_from_slice(encoding.get_ids());
            Ok(())
        };
        let Some(matcher) = &self.matcher else {
            encode_piece(text, &mut ids)?;
            return Ok(ids);
        };
        let (mut last, mut strip_start) = (0, false);
        for m in matcher.find_iter(text) {
            let special = &self.tokens[m.pattern().as_usize()];
            let mut piece = &text[last..m.start()];
            if strip_start {
                piece = piece.trim_start();
            }
            if special.lstrip {
                piece = piece.trim_end();
            }
            encode_piece(piece, &mut ids)?;
            ids.push(special.id);
            (last, strip_start) = (m.end(), special.rstrip);
        }
        let rest = &text[last..];
        encode_piece(if strip_start { rest.trim_start() } else { rest }, &mut ids)?;
        Ok(ids)
    }
}

/// Placeholder character -> the special-token text it replaced.
#[derive(Default)]
pub(crate) struct Placeholders(HashMap<char, String>);

impl Placeholders {
    fn restore(&self, piece: &str) -> String {
        if self.0.is_empty() {
            return piece.to_string();
        }
        let mut out = String::with_capacity(piece.len());
        for c in piece.chars() {
            match self.0.get(&c) {
                Some(text) => out.push_str(text),
                None => out.push(c),
            }
        }
        out
    }
}
