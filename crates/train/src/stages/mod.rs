//! The stages of `armorm train`, one module each, in the order [`crate::pipeline`] runs them; each
//! keeps the [`crate::stage::Stage`] contract.

pub mod debias;
pub mod embed;
pub mod export;
pub mod gating;
pub mod regression;
