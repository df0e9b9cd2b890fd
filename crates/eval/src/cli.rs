//! `armorm eval`.

use std::path::PathBuf;

use armorm_data::DataSource;
use armorm_model::cli::{EnvBool, ModelArgs};
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// RewardBench v1 or v2 rows, JSON Lines or Parquet: a file, a folder, a glob, or a Hub dataset
    /// id (`allenai/reward-bench:filtered`, `owner/name:split@revision`); repeat for several.
    #[arg(long, env = "ARMORM_EVAL_DATA", required = true)]
    pub data: Vec<DataSource>,
    /// Write every number (scores, sections, audit, model, data hashes) as JSON here.
    #[arg(long, env = "ARMORM_EVAL_JSON")]
    pub json: Option<PathBuf>,
    /// Write one JSON line per example (id, subset, scores, correct) here.
    #[arg(long, env = "ARMORM_EVAL_PER_EXAMPLE")]
    pub per_example: Option<PathBuf>,
    /// Write a self-contained HTML report here (inline SVG charts; opens from disk, no network).
    #[arg(long, env = "ARMORM_EVAL_REPORT")]
    pub report: Option<PathBuf>,
    /// Write reward-bench's own results files under this directory (eval-set/, pref-sets/ and
    /// their -scores/ siblings, `{model}.json` each), as its scripts and leaderboard read them.
    #[arg(long, env = "ARMORM_EVAL_REWARDBENCH_RESULTS", value_name = "DIR")]
    pub rewardbench_results: Option<PathBuf>,
    /// Cut each conversation's tokens from the left to this many, as reward-bench's pipelines do
    /// (`truncation_side="left"`, `max_length`, 2048 in its scripts) [default: no cut; a
    /// conversation longer than the model's positions is an error].
    #[arg(long, env = "ARMORM_EVAL_MAX_LENGTH", value_name = "N")]
    pub max_length: Option<usize>,
    /// Conversations per forward pass.
    #[arg(long, env = "ARMORM_EVAL_BATCH_SIZE", default_value_t = 16)]
    pub batch_size: usize,
    /// Count and skip rows that cannot be evaluated instead of stopping at the first.
    #[arg(long, env = "ARMORM_EVAL_SKIP_BAD_ROWS", value_parser = EnvBool)]
    pub skip_bad_rows: bool,
    /// Keep every score computed in this directory as the run goes (a file per model): an
    /// interrupted run resumes where it stopped, and later runs reuse what is there.
    #[arg(long, env = "ARMORM_EVAL_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
}
