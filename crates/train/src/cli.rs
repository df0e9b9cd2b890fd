//! `armorm train [STAGE]`. A single stage takes the same flags as the whole run (each uses the ones
//! it needs), so a stage re-run names its inputs exactly as the full run did.

use std::path::PathBuf;

use armorm_data::DataSource;
use armorm_model::cli::{EnvBool, ModelArgs};
use clap::{Args, ValueEnum};

use crate::features::Shard;
use crate::ratings::Scale;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Run one stage only, reading and writing --work [default: every stage that is not up to date].
    #[arg(value_enum)]
    pub stage: Option<StageName>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// One stage of the run on its own, as `armorm train STAGE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StageName {
    /// Extract features of --ratings, --pairs (and --reference); with --shard I/N only that shard,
    /// so N machines can share the work over one --work directory.
    Embed,
    /// Stage 1: ridge regression per objective on the ratings features.
    Regression,
    /// Verbosity debiasing: the reward-transform matrix, from the reference set's rewards.
    Debias,
    /// Stage 2: the gating network, on the pairs features.
    Gating,
    /// Write the checkpoint (and train_report.json) to --out from the stages' results.
    Export,
}

impl StageName {
    /// The name as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embed => "embed",
            Self::Regression => "regression",
            Self::Debias => "debias",
            Self::Gating => "gating",
            Self::Export => "export",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Multi-objective ratings, JSON Lines or Parquet: {"messages": [...], "<objective>": number | bool | null, ...}.
    /// A file, a folder, a glob, or a Hub dataset id (`owner/name[:split][@revision]`); repeat to
    /// read several in order as one set.
    #[arg(long, env = "ARMORM_TRAIN_RATINGS")]
    pub ratings: Vec<DataSource>,
    /// Preference pairs, JSON Lines or Parquet: {"chosen": [messages], "rejected": [messages]} or
    /// {"prompt": str, "chosen": str, "rejected": str}. A file, a folder, a glob or a Hub dataset id;
    /// repeat to read several as one set.
    #[arg(long, env = "ARMORM_TRAIN_PAIRS")]
    pub pairs: Vec<DataSource>,
    /// The checkpoint directory to write; replaced only when the whole run succeeds.
    #[arg(long, env = "ARMORM_TRAIN_OUT")]
    pub out: Option<PathBuf>,
    /// Pairs the verbosity correlation is measured on [default: --pairs]; the paper used
    /// RLHFlow/UltraFeedback-preference-standard.
    #[arg(long, env = "ARMORM_TRAIN_REFERENCE")]
    pub reference: Vec<DataSource>,
    /// Objective columns to use, in this order [default: every column but messages, in file order].
    #[arg(long, env = "ARMORM_TRAIN_OBJECTIVES", value_delimiter = ',')]
    pub objectives: Option<Vec<String>>,
    /// The objective that measures length [default: helpsteer-verbosity].
    #[arg(long, env = "ARMORM_TRAIN_VERBOSITY_OBJECTIVE")]
    pub verbosity_objective: Option<String>,
    /// Map an objective's ratings linearly from [LO, HI] to [0, 1], e.g. helpsteer-helpfulness=0:4.
    #[arg(long = "scale", value_name = "NAME=LO:HI", env = "ARMORM_TRAIN_SCALE")]
    pub scales: Vec<Scale>,
    /// Stage-2 optimisation steps.
    #[arg(long, env = "ARMORM_TRAIN_STEPS", default_value_t = 2000)]
    pub steps: usize,
    /// Pairs per stage-2 step (drawn with replacement).
    #[arg(long, env = "ARMORM_TRAIN_BATCH_SIZE", default_value_t = 1024)]
    pub batch_size: usize,
    /// Width of the gating network's hidden layers.
    #[arg(long, env = "ARMORM_TRAIN_HIDDEN_DIM", default_value_t = 1024)]
    pub hidden_dim: usize,
    /// Hidden layers of the gating network.
    #[arg(long, env = "ARMORM_TRAIN_N_HIDDEN", default_value_t = 3)]
    pub n_hidden: usize,
    /// Stage-2 AdamW learning rate (cosine-decayed to 0).
    #[arg(long, env = "ARMORM_TRAIN_LEARNING_RATE", default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// Stage-2 dropout before each hidden layer.
    #[arg(long, env = "ARMORM_TRAIN_DROPOUT", default_value_t = 0.2)]
    pub dropout: f32,
    /// The gating softmax's temperature (stored in the checkpoint's config).
    #[arg(long, env = "ARMORM_TRAIN_TEMPERATURE", default_value_t = 10.0)]
    pub temperature: f64,
    /// Debiasing: an objective's λ is the smallest on the grid that brings its Spearman correlation
    /// with verbosity to this or below.
    #[arg(long, env = "ARMORM_TRAIN_SPEARMAN_THRESHOLD", default_value_t = crate::stages::debias::THRESHOLD)]
    pub spearman_threshold: f64,
    /// Seeds both 80/20 splits, the gating network's initialisation, batches and dropout.
    #[arg(long, env = "ARMORM_TRAIN_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Keep intermediate files (features, stage results) here; a re-run skips stages whose inputs
    /// did not change [default: a temporary directory beside --out, removed on success].
    #[arg(long, env = "ARMORM_TRAIN_WORK")]
    pub work: Option<PathBuf>,
    /// `embed` only: extract shard I of N (records with index I modulo N).
    #[arg(long, env = "ARMORM_TRAIN_SHARD")]
    pub shard: Option<Shard>,
    /// Skip rows that cannot be read (bad JSON, no messages, a rating that is not a number, a
    /// conversation the template refuses) and count them in the report, instead of stopping at the
    /// first.
    #[arg(long, env = "ARMORM_TRAIN_SKIP_BAD_ROWS", value_parser = EnvBool)]
    pub skip_bad_rows: bool,
    /// Rows longer than this many tokens are skipped and counted, never truncated.
    #[arg(long, env = "ARMORM_TRAIN_MAX_INPUT_TOKENS", default_value_t = 8192)]
    pub max_input_tokens: usize,
    /// Token budget of one feature-extraction forward pass.
    #[arg(long, env = "ARMORM_TRAIN_EMBED_BATCH_TOKENS", default_value_t = 16384)]
    pub embed_batch_tokens: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_are_the_command_lines() {
        for stage in StageName::value_variants() {
            assert_eq!(stage.to_possible_value().unwrap().get_name(), stage.as_str());
        }
    }
}
