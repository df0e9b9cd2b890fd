//! Conversations as armorm's users send them: messages with checked roles ([`Conversation`], a
//! prompt and its response; [`Prompt`], the turns a pairwise model compares responses after) and
//! why one is refused ([`ConversationError`]). A crate of its own so that the data crate reads
//! conversations without the model.

mod conversation;
mod error;

pub use conversation::{Conversation, Message, Prompt, RawMessage, Role};
pub use error::ConversationError;
