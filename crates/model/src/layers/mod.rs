//! The backbone's building blocks, loaded from a checkpoint: projections (with their bf16 kernels
//! and fused epilogues), gated activations, RMSNorm and the residual stream, per-head q/k norms and
//! the token embedding.

pub mod activation;
pub mod linear;
pub mod qk_norm;
pub mod residual;
pub mod token_embedding;
