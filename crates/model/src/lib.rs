//! Loading and forward pass of ArmoRM-style interpretable reward models.
//!
//! A checkpoint in the Hugging Face layout (local or on the Hub) becomes a [`RewardModel`]: a decoder
//! of one of the families in [`arch`] (Llama, Qwen2, Qwen3, Gemma-2) over packed variable-length
//! batches, plus a reward head (ArmoRM's 19-objective regression with gating, or a
//! sequence-classification score). Conversations go through the model's own chat template and
//! tokenizer into [`Encoded`] sequences that know where the gating network reads.
//!
//! Layers, each using only those before it: [`kernels`] (compute, no checkpoint), [`load`] (files,
//! tensors, dtype), [`text`] (template and tokenizer), [`layers`] (building blocks loaded from
//! tensors), [`arch`] (config and the decoder), then [`heads`], [`embedder`] and [`scorer`].
//!
//! This crate knows nothing of HTTP, queues or async runtimes; the batcher and server build on it.

pub mod arch;
#[cfg(feature = "clap")]
pub mod cli;
pub mod embedder;
pub mod error;
pub mod heads;
pub mod kernels;
pub mod layers;
pub mod load;
pub mod preference;
pub mod scorer;
pub mod text;

pub use embedder::{resolve_dtype, Embedder, HiddenStates};
pub use error::{ConversationError, ModelError};
pub use heads::HeadKind;
pub use load::checkpoint::{CheckpointFiles, ModelSource};
pub use load::dtype::{ComputeDType, DTypeChoice};
pub use load::options::{DeviceChoice, LoadOptions};
pub use scorer::{ObjectiveScores, RewardModel, RewardOutput};
pub use text::anchor::{GatingPattern, TurnAnchor};
pub use text::conversation::{Conversation, Message, Prompt, RawMessage, Role};
pub use text::special_text::ContentSpecialTokens;
pub use text::tokenize::{EncodeLimits, Encoded, EncodedConversation, Encoder};
