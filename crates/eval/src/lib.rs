//! `armorm eval`: a reward model over RewardBench-style files, scored with reward-bench's own rules
//! ([`rewardbench`]), plus the verbosity-bias audit ([`audit`]) that no other evaluator reports, as
//! a terminal table, JSON, per-example JSON Lines and a self-contained HTML page ([`report`]).
//!
//! [`examples`] reads the rows (one module per benchmark layout), [`scoring`] runs the model once
//! per distinct conversation, [`run`] ties them together into a [`result::EvalResult`]. Works for ArmoRM and Bradley-Terry checkpoints alike.

pub mod audit;
pub mod cache;
pub mod cli;
pub mod compared;
pub mod error;
pub mod evaluated;
pub mod examples;
pub mod leaderboard_files;
pub mod report;
pub mod result;
pub mod rewardbench;
pub mod run;
pub mod scored;
pub mod scoring;

pub use error::{EvalError, Result};
