//! Training an ArmoRM (arXiv 2406.12845) on a frozen backbone, as `armorm train` runs it:
//!
//! 1. [`embed`]: the backbone's final-norm hidden states at each conversation's last token (reward
//!    feature) and at its gate position (prompt feature), through the inference code path;
//! 2. [`regression`]: one ridge regression per objective ([`ridge`] holds the maths);
//! 3. [`debias`]: the reward-transform matrix that removes each objective's correlation with
//!    verbosity;
//! 4. [`gating`]: the gating network, trained on preference pairs with everything else frozen;
//! 5. [`export`]: a checkpoint in the Hugging Face layout that `armorm serve` and transformers load.
//!
//! [`pipeline`] runs the stages over a work directory and skips those whose inputs did not change;
//! each stage is also a command of its own ([`cli`]). The maths are pure functions tested against
//! scikit-learn, scipy and PyTorch numbers; the drivers around them only move files.

pub mod card;
pub mod cli;
pub mod debias;
pub mod embed;
pub mod error;
pub mod export;
pub mod features;
pub mod gating;
pub mod npy;
pub mod pipeline;
pub mod progress;
pub mod publish;
pub mod ratings;
pub mod regression;
pub mod report;
pub mod rewards;
pub mod ridge;
pub mod split;
pub mod stage;
pub mod tensors;

pub use error::{Result, TrainError};
