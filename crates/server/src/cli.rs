//! Command-line interface: every flag is also an `ARMORM_*` environment variable.

use armorm_model::{ComputeDType, DeviceChoice, LoadOptions, ModelSource};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "armorm", version, about = "Inference server and CLI for ArmoRM-style interpretable reward models")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score conversations from JSON Lines (stdin or --input), one JSON result per line, in order.
    Score(ScoreArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Local checkpoint directory or Hugging Face Hub repo id.
    #[arg(long, env = "ARMORM_MODEL")]
    pub model: String,
    /// Hub revision (branch, tag or commit).
    #[arg(long, env = "ARMORM_REVISION")]
    pub revision: Option<String>,
    /// Backbone compute dtype: f32, bf16 or f16 [default: f32 on cpu, bf16 on cuda].
    #[arg(long, env = "ARMORM_DTYPE")]
    pub dtype: Option<ComputeDType>,
    /// cpu, cuda or cuda:N [default: cuda:0 in CUDA builds, else cpu].
    #[arg(long, env = "ARMORM_DEVICE")]
    pub device: Option<DeviceChoice>,
    /// Token ids that open the final assistant turn, comma-separated; derived from the chat
    /// template when absent.
    #[arg(long, env = "ARMORM_GATING_PATTERN", value_delimiter = ',')]
    pub gating_pattern: Option<Vec<u32>>,
}

impl ModelArgs {
    pub fn source(&self) -> ModelSource {
        ModelSource::parse(&self.model, self.revision.as_deref())
    }

    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            device: self.device.unwrap_or_default(),
            dtype: self.dtype,
            gating_pattern: self.gating_pattern.clone(),
        }
    }
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
