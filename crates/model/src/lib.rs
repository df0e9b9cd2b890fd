//! Loading and forward pass of ArmoRM-style interpretable reward models.
//!
//! A checkpoint in the Hugging Face layout (local or on the Hub) becomes a [`RewardModel`]: a Llama
//! backbone over packed variable-length batches, plus a reward head (ArmoRM's 19-objective regression
//! with gating, or a plain Bradley-Terry score). Conversations go through the model's own chat
//! template and tokenizer into [`Encoded`] sequences that know where the gating network reads.
//!
//! This crate knows nothing of HTTP, queues or async runtimes; the batcher and server build on it.

pub mod activation;
pub mod anchor;
pub mod arch;
pub mod attention;
pub mod checkpoint;
#[cfg(feature = "clap")]
pub mod cli;
pub mod config;
pub mod conversation;
pub mod cpu_kernels;
pub mod dtype;
pub mod embedder;
pub mod error;
pub mod heads;
pub mod linear;
pub mod matmul;
pub mod memory;
pub mod packed;
pub mod pystr;
pub mod qk_norm;
pub mod residual;
pub mod rope;
pub mod scorer;
mod simd;
pub mod special_text;
pub mod template;
pub mod tiles;
pub mod token_embedding;
pub mod tokenize;
pub mod transpose;
pub mod weights;

pub use anchor::GatingPattern;
pub use checkpoint::ModelSource;
pub use conversation::{Conversation, Message, RawMessage, Role};
pub use dtype::{ComputeDType, DTypeChoice};
pub use embedder::{resolve_dtype, Embedder, HiddenStates};
pub use error::{ConversationError, ModelError};
pub use heads::HeadKind;
pub use scorer::{DeviceChoice, LoadOptions, ObjectiveScores, RewardModel, RewardOutput};
pub use special_text::ContentSpecialTokens;
pub use tokenize::{EncodeLimits, Encoded, EncodedConversation, Encoder};
