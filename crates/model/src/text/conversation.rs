//! The conversation types (armorm-chat's), where the model crate's text pipeline reads them.

pub use armorm_chat::{Conversation, Message, Prompt, RawMessage, Role};
