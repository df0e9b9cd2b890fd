//! From a conversation to token ids: the message types, the checkpoint's chat template (Jinja with
//! Python's string methods), special-token text in content, the tokenizer, and the gating
//! pattern's position.

pub mod anchor;
pub mod conversation;
pub mod pairwise;
pub mod pystr;
pub mod special_text;
pub mod template;
pub mod tokenize;

use std::path::Path;

use tokenizers::Tokenizer;

use crate::error::{ModelError, Result};

/// A checkpoint's `tokenizer.json`.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))
}
