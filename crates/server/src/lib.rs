//! The `armorm` HTTP service and command-line tool: request and response types, validation, the
//! error-to-status mapping, routes and metrics. The model runs behind `armorm-batcher`; no handler
//! touches the model's forward pass directly.

pub mod allocator;
pub mod chat_text;
pub mod cli;
pub mod connections;
pub mod error;
pub mod healthcheck;
pub mod http;
pub mod input;
pub mod metrics;
pub mod model_scorer;
pub mod ops;
pub mod protocols;
pub mod routes;
pub mod score_cmd;
pub mod serve;
pub mod state;
pub mod telemetry;
pub mod types;
pub mod ui;
