//! The `armorm` command line: its subcommands and their flags; every flag is also an `ARMORM_*`
//! environment variable.

pub use armorm_model::cli::ModelArgs;
use armorm_server::config::{ApiKeyArgs, ServeConfig};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "armorm", version, about = "Inference server and CLI for ArmoRM-style interpretable reward models")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP scoring service.
    Serve(Box<ServeConfig>),
    /// Exit 0 when a server's /health answers 200 (for container health checks; no curl needed).
    Healthcheck(HealthcheckArgs),
    /// Score conversations from JSON Lines (stdin or --input), one JSON result per line, in order.
    Score(ScoreArgs),
    /// Train an ArmoRM on a base model: features, stage-1 regression, verbosity debiasing, stage-2
    /// gating, export; `armorm train STAGE` runs one stage.
    #[cfg(feature = "train")]
    Train(Box<armorm_train::cli::TrainArgs>),
    /// Evaluate a reward model on RewardBench v1/v2 files: reward-bench's scores, the verbosity-bias
    /// audit, JSON, per-example lines and an HTML report.
    #[cfg(feature = "eval")]
    Eval(Box<armorm_eval::cli::EvalArgs>),
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSON Lines input ({"messages": [...]} or {"prompt", "response"} per line); stdin when absent.
    #[arg(long, env = "ARMORM_INPUT")]
    pub input: Option<std::path::PathBuf>,
    /// Conversations per forward pass.
    #[arg(long, env = "ARMORM_BATCH_SIZE", default_value_t = 16)]
    pub batch_size: usize,
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Where the server listens, as host:port (a name such as localhost, or an IP address).
    #[arg(long, env = "ARMORM_HEALTHCHECK_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Seconds to wait for an answer.
    #[arg(long, env = "ARMORM_HEALTHCHECK_TIMEOUT_S", default_value_t = 5)]
    pub timeout_s: u64,
    /// Sent as a bearer token, for servers started with --auth-health-and-metrics (the same
    /// variables as the server's, so a container's health check finds the key the server has).
    #[command(flatten)]
    pub key: ApiKeyArgs,
}
