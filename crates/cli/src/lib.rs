//! The `armorm` binary over the server, trainer and evaluator crates: argument parsing ([`args`]),
//! offline scoring ([`score`]) and the container health check ([`healthcheck`]). `serve` is
//! `armorm_server`'s; `train` and `eval` are their crates' and can be left out of a build
//! (`--no-default-features`: a serve-only binary without their dependencies).

pub mod args;
pub mod healthcheck;
pub mod score;
