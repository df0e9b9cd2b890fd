//! The `armorm` HTTP service: its configuration ([`config`], started by [`serve::start`]), request
//! and response types, validation, the error-to-status mapping, routes and metrics. The model runs
//! behind `armorm-batcher`; no handler touches the model's forward pass directly. The `armorm`
//! binary is the `armorm-cli` crate's.

pub mod allocator;
pub mod chat_text;
pub mod config;
pub mod connections;
pub mod error;
pub mod http;
pub mod input;
pub mod metrics;
pub mod model_scorer;
pub mod ops;
pub mod protocols;
pub mod routes;
pub mod serve;
pub mod state;
pub mod telemetry;
pub mod types;
pub mod ui;
