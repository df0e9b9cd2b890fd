//! What a load is asked for: the device, the compute dtype, the gating pattern, prompt sharing.

use std::str::FromStr;

use candle_core::Device;

use crate::error::Result;
use crate::load::dtype::ComputeDType;

/// Where the backbone runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
}

impl Default for DeviceChoice {
    /// The GPU when the binary was built for one, else the CPU.
    fn default() -> Self {
        if cfg!(feature = "cuda") {
            Self::Cuda(0)
        } else {
            Self::Cpu
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("unknown device {s:?}; expected cpu, cuda or cuda:N")),
        }
    }
}

impl DeviceChoice {
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => Ok(Device::new_cuda(ordinal)?),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: DeviceChoice,
    /// `None`: the checkpoint's own, where the device computes it ([`crate::load::dtype::choose`]).
    pub dtype: Option<ComputeDType>,
    /// Overrides the gating pattern derived from the chat template.
    pub gating_pattern: Option<Vec<u32>>,
    /// Compute a prompt shared by several conversations of a batch once (exact; on by default).
    pub share_prefixes: bool,
    /// Load a causal LM as a pairwise preference model (as its config's `pairwise_preference`
    /// says too).
    pub pairwise: bool,
    /// Bit-identical outputs whatever the batch on a device whose kernels do not promise it (CUDA:
    /// cuBLAS picks its algorithm, and its reduction order, by the batch's shape), by computing each
    /// conversation of a batch alone. The CPU's kernels promise it without this, which there only
    /// costs throughput.
    pub batch_invariant: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: DeviceChoice::default(),
            dtype: None,
            gating_pattern: None,
            share_prefixes: true,
            pairwise: false,
            batch_invariant: false,
        }
    }
}
