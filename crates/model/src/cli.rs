//! The command-line flags that pick and load a model, shared by every `armorm` command that loads one.

use clap::Args;

use crate::load::checkpoint::ModelSource;
use crate::load::dtype::ComputeDType;
use crate::load::options::{DeviceChoice, LoadOptions};

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
    #[arg(long, env = "ARMORM_NO_PREFIX_SHARING", value_parser = EnvBool)]
    pub no_prefix_sharing: bool,
    /// The checkpoint is a pairwise preference model: a causal LM that reads two responses and
    /// answers "A" or "B" (RLHFlow/pair-preference-model-LLaMA3-8B); a config with
    /// `"pairwise_preference": true` says so itself.
    #[arg(long, env = "ARMORM_PAIRWISE", value_parser = EnvBool)]
    pub pairwise: bool,
    /// Compute each conversation of a batch alone, so that its outputs are bit-identical whatever it
    /// is batched with on a GPU too (at a throughput cost); the CPU is batch-invariant without it.
    #[arg(long, env = "ARMORM_BATCH_INVARIANT", value_parser = EnvBool)]
    pub batch_invariant: bool,
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
            pairwise: self.pairwise,
            batch_invariant: self.batch_invariant,
        }
    }
}

/// An on/off flag's environment variable: 1/0, yes/no, on/off, true/false in any case. A wrong value
/// is reported against the variable (the flag itself takes no value, so only the variable can carry
/// one). Use as `#[arg(long, env = "ARMORM_X", value_parser = EnvBool)]`.
#[derive(Debug, Clone, Copy)]
pub struct EnvBool;

impl clap::builder::TypedValueParser for EnvBool {
    type Value = bool;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<bool, clap::Error> {
        let text = value.to_string_lossy().to_ascii_lowercase();
        match text.as_str() {
            "1" | "yes" | "on" | "true" => Ok(true),
            "0" | "no" | "off" | "false" => Ok(false),
            _ => {
                let source = arg
                    .and_then(clap::Arg::get_env)
                    .map(|env| env.to_string_lossy().into_owned())
                    .or_else(|| arg.map(|a| format!("--{}", a.get_long().unwrap_or_default())))
                    .unwrap_or_else(|| "the flag".into());
                let message = format!(
                    "{source}={}: expected 1/0, yes/no, on/off or true/false (any case)\n",
                    value.to_string_lossy()
                );
                Err(clap::Error::raw(clap::error::ErrorKind::InvalidValue, message).with_cmd(cmd))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::builder::TypedValueParser;

    use super::*;

    #[test]
    fn env_booleans_take_every_usual_spelling_and_name_the_variable_when_wrong() {
        let cmd = clap::Command::new("armorm");
        let arg = clap::Arg::new("no_ui").long("no-ui").env("ARMORM_NO_UI");
        for (text, want) in [("1", true), ("YES", true), ("On", true), ("true", true), ("0", false), ("no", false)] {
            assert_eq!(EnvBool.parse_ref(&cmd, Some(&arg), text.as_ref()).unwrap(), want, "{text}");
        }
        for text in ["off", "FALSE"] {
            assert!(!EnvBool.parse_ref(&cmd, Some(&arg), text.as_ref()).unwrap());
        }
        let err = EnvBool.parse_ref(&cmd, Some(&arg), "maybe".as_ref()).unwrap_err().to_string();
        assert!(err.contains("ARMORM_NO_UI=maybe") && !err.contains("--no-ui"), "{err}");
    }
}
