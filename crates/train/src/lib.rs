//! Training an ArmoRM (arXiv 2406.12845) on a frozen backbone, as `armorm train` runs it:
//!
//! 1. [`stages::embed`]: the backbone's final-norm hidden states at each conversation's last token
//!    (reward feature) and at its gate position (prompt feature), through the inference code path
//!    ([`extract`]);
//! 2. [`stages::regression`]: one ridge regression per objective ([`ridge`] holds the maths);
//! 3. [`stages::debias`]: the reward-transform matrix that removes each objective's correlation
//!    with verbosity;
//! 4. [`stages::gating`]: the gating network ([`gating`]), trained on preference pairs with
//!    everything else frozen;
//! 5. [`stages::export`]: a checkpoint in the Hugging Face layout that `armorm serve` and
//!    transformers load ([`checkpoint`]).
//!
//! Every stage keeps one contract ([`stage::Stage`]: inputs, a key, a result on disk, compute) over
//! the run's [`context`]; [`pipeline`] only orders them, and skips those whose inputs did not
//! change; each stage is also a command of its own ([`cli`]). The maths are pure functions tested
//! against scikit-learn, scipy and PyTorch numbers; the drivers around them only move files.

pub mod card;
pub mod checkpoint;
pub mod cli;
pub mod context;
pub mod error;
pub mod extract;
pub mod features;
pub mod gating;
pub mod npy;
pub mod pipeline;
pub mod progress;
pub mod publish;
pub mod ratings;
pub mod report;
pub mod rewards;
pub mod ridge;
pub mod split;
pub mod stage;
pub mod stages;
pub mod store;
pub mod tensors;

pub use error::{Result, TrainError};
