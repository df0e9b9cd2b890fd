//! The dtype the backbone computes in, and the one rule that picks it when the user does not:
//! the checkpoint's own dtype, as transformers' `dtype="auto"` loads it, so that the default score
//! is the reference's score on every machine. Serve, score, eval and train all go through
//! [`choose`]; nothing else decides a dtype.

use std::str::FromStr;

use candle_core::DType;

use crate::load::memory;

/// The dtype the backbone computes in; the heads always compute in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDType {
    F32,
    Bf16,
    F16,
}

impl FromStr for ComputeDType {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "f16" | "float16" => Ok(Self::F16),
            _ => Err(format!("unknown dtype {s:?}; expected f32, bf16 or f16")),
        }
    }
}

impl ComputeDType {
    /// The name `--dtype` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }

    /// Bytes per weight element.
    pub fn size(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::Bf16 | Self::F16 => 2,
        }
    }

    pub(crate) fn candle(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }
}

/// What the backbone can compute a half dtype with, besides f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hardware {
    /// A GPU: bf16 and f16 natively.
    Gpu,
    /// A CPU with a bf16 kernel of ours (AMX tiles or AVX512-BF16).
    CpuWithBf16,
    /// A CPU without one: candle would widen half types to f32 on every product, no faster than
    /// f32 and further from the reference.
    CpuF32Only,
}

/// A dtype and why it was chosen, for the log and `GET /info`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DTypeChoice {
    pub dtype: ComputeDType,
    pub reason: String,
    /// The checkpoint's dtype would not fit the memory, so a smaller one was taken (logged as a
    /// warning: scores move away from the reference's).
    #[serde(skip)]
    pub narrowed: bool,
}

/// What the choice is made from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    /// `--dtype`, when given.
    pub requested: Option<ComputeDType>,
    /// The checkpoint's own dtype (config.json's `torch_dtype`/`dtype`, else its tensors').
    pub stored: ComputeDType,
    pub hardware: Hardware,
    pub parameters: u64,
    /// Bytes this process may still allocate (CPU only; `None` when unknown or on a GPU).
    pub available: Option<u64>,
}

/// The weights at `dtype` plus a tenth for the load's transients, the tokenizer and the first batches.
pub fn needed_bytes(parameters: u64, dtype: ComputeDType) -> u64 {
    let weights = parameters * dtype.size();
    weights + weights / 10
}

/// The compute dtype: the one asked for; else the checkpoint's own where this hardware computes it
/// (f16 and bf16 on GPUs, bf16 on CPUs with a bf16 kernel) and f32 elsewhere; and only when that
/// would not fit the memory, bf16, with a warning in the reason.
pub fn choose(inputs: Inputs) -> DTypeChoice {
    let Inputs { requested, stored, hardware, parameters, available } = inputs;
    if let Some(dtype) = requested {
        return DTypeChoice { dtype, reason: "--dtype".into(), narrowed: false };
    }
    let (dtype, mut reason) = match (stored, hardware) {
        (ComputeDType::F32, _) => (ComputeDType::F32, "the checkpoint's dtype".to_string()),
        (half, Hardware::Gpu) => (half, "the checkpoint's dtype".into()),
        (ComputeDType::Bf16, Hardware::CpuWithBf16) => {
            (ComputeDType::Bf16, "the checkpoint's dtype, computed by this CPU's bf16 kernels".into())
        }
        (half, _) => (
            ComputeDType::F32,
            format!("the checkpoint is {}, which this CPU has no kernel for: f32 is exact and no slower", half.name()),
        ),
    };
    match available {
        Some(a) if needed_bytes(parameters, dtype) > a && dtype == ComputeDType::F32 => {
            let smaller = ComputeDType::Bf16;
            reason = format!(
                "{} weights need {:.1} GiB and {:.1} GiB is available, so bf16 instead ({reason} is {}); \
                 scores differ from the reference's in the third digit: --dtype f32 to insist",
                dtype.name(),
                memory::gib(needed_bytes(parameters, dtype)),
                memory::gib(a),
                dtype.name(),
            );
            DTypeChoice { dtype: smaller, reason, narrowed: true }
        }
        _ => DTypeChoice { dtype, reason, narrowed: false },
    }
}

/// The dtype a config.json names (`torch_dtype`, or `dtype` as transformers 4.56+ writes it).
pub fn from_config_name(name: &str) -> Option<ComputeDType> {
    match name {
        "float32" => Some(ComputeDType::F32),
        "bfloat16" => Some(ComputeDType::Bf16),
        "float16" => Some(ComputeDType::F16),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(stored: ComputeDType, hardware: Hardware, available: Option<u64>) -> DTypeChoice {
        choose(Inputs { requested: None, stored, hardware, parameters: 1 << 30, available })
    }

    #[test]
    fn the_checkpoint_dtype_where_the_hardware_computes_it_else_f32() {
        use ComputeDType::*;
        use Hardware::*;
        let roomy = Some(64 << 30);
        for hw in [Gpu, CpuWithBf16, CpuF32Only] {
            assert_eq!(pick(F32, hw, roomy).dtype, F32, "an f32 checkpoint computes in f32 on {hw:?}");
        }
        assert_eq!(pick(Bf16, Gpu, None).dtype, Bf16);
        assert_eq!(pick(F16, Gpu, None).dtype, F16);
        assert_eq!(pick(Bf16, CpuWithBf16, roomy).dtype, Bf16);
        assert_eq!(pick(Bf16, CpuF32Only, roomy).dtype, F32);
        assert_eq!(pick(F16, CpuWithBf16, roomy).dtype, F32);
        let asked =
            choose(Inputs { requested: Some(Bf16), stored: F32, hardware: CpuF32Only, parameters: 1, available: None });
        assert_eq!(asked, DTypeChoice { dtype: Bf16, reason: "--dtype".into(), narrowed: false });
    }

    #[test]
    fn only_a_load_that_cannot_fit_goes_smaller_and_says_so() {
        use ComputeDType::*;
        // 1 Gi parameters: 4.4 GiB as f32 with the margin, 2.2 GiB as bf16.
        let tight = pick(F32, Hardware::CpuF32Only, Some(3 << 30));
        assert!(tight.narrowed && tight.dtype == Bf16);
        assert!(tight.reason.contains("--dtype f32") && tight.reason.contains("4.4 GiB"), "{}", tight.reason);
        assert_eq!(pick(F32, Hardware::CpuF32Only, Some(5 << 30)).dtype, F32);
        assert_eq!(pick(Bf16, Hardware::CpuF32Only, Some(3 << 30)).dtype, Bf16, "f32 would not fit: bf16");
    }
}
