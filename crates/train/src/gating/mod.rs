//! Stage 2: the gating network that reads the prompt's hidden state and mixes the (debiased)
//! objectives into one score, trained on preference pairs with the backbone, the regression layer
//! and T frozen:
//!
//! `gating = softmax(MLP(prompt) / temperature) * logit_scale` over the objectives (not over the
//! chosen/rejected axis, the authors' issue #54), `score = Σ gating · (rewards @ T)` (T is applied,
//! unlike the authors' script, their issue #37), loss `softplus(−(s_chosen − s_rejected))`.

pub mod adamw;
pub mod backprop;
pub mod net;
pub mod train;

pub use net::{GatingNet, GatingShape};
pub use train::{GatingReport, GatingSettings, PairData};
