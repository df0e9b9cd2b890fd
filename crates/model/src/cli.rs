//! The command-line flags that pick and load a model, shared by every `armorm` command that loads one.

use clap::Args;

use crate::checkpoint::ModelSource;
use crate::dtype::ComputeDType;
use crate::scorer::{DeviceChoice, LoadOptions};

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Local checkpoint directory or Hugging Face Hub repo id.
    #[arg(long, env = "ARMORM_MODEL")]
    pub model: String,
    /// Hub revision (branch, tag or commit).
    #[arg(long, env = "ARMORM_REVISION")]
    pub revision: Option<String>,
    /// Backbone compute dtype: auto, f32, bf16 or f16. auto: the checkpoint's own dtype where the
    /// device computes it (GPUs; bf16 on CPUs with AMX or AVX512-BF16), else f32; a smaller one only
    /// when the weights would not fit the memory (with a warning).
    #[arg(long, env = "ARMORM_DTYPE", default_value = "auto")]
    pub dtype: DTypeChoice,
    /// cpu, cuda or cuda:N [default: cuda:0 in CUDA builds, else cpu].
    #[arg(long, env = "ARMORM_DEVICE")]
    pub device: Option<DeviceChoice>,
    /// Token ids that open the final assistant turn, comma-separated; derived from the chat
    /// template when absent.
    #[arg(long, env = "ARMORM_GATING_PATTERN", value_delimiter = ',')]
    pub gating_pattern: Option<Vec<u32>>,
    /// Compute every conversation's prompt separately, even when several in a batch share it
    /// (sharing is exact; this exists for measurement).
    #[arg(long, env = "ARMORM_NO_PREFIX_SHARING")]
    pub no_prefix_sharing: bool,
}

/// `--dtype`: a compute dtype, or `auto` to let the device and the model decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DTypeChoice {
    Auto,
    Fixed(ComputeDType),
}

impl std::str::FromStr for DTypeChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            other => other.parse().map(Self::Fixed).map_err(|e| format!("{e} (or auto)")),
        }
    }
}

impl ModelArgs {
    pub fn source(&self) -> ModelSource {
        ModelSource::parse(&self.model, self.revision.as_deref())
    }

    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            device: self.device.unwrap_or_default(),
            dtype: match self.dtype {
                DTypeChoice::Auto => None,
                DTypeChoice::Fixed(dtype) => Some(dtype),
            },
            gating_pattern: self.gating_pattern.clone(),
            share_prefixes: !self.no_prefix_sharing,
        }
    }
}
