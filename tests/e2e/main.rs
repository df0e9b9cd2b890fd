//! End-to-end tests: the real server, in-process on a free port, with the fixture checkpoints.
//! Numbers are checked against the PyTorch reference outputs in tests/fixtures/expected.

mod abuse;
mod cli;
mod common;
mod dashboard;
mod docs;
mod errors;
mod eval;
mod hub_data;
mod lifecycle;
mod openapi;
mod pairwise;
mod protocols;
mod score;
mod tracing;
mod train;
mod ui;
