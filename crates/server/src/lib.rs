//! The `armorm` HTTP service and command-line tool: request and response types, validation, the
//! error-to-status mapping, routes and metrics. The model runs behind `armorm-batcher`.

pub mod cli;
pub mod error;
pub mod input;
pub mod score_cmd;
