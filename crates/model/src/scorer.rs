//! The public entry point: a loaded reward model that turns encoded conversations into scores with
//! their per-objective explanation.

use std::str::FromStr;

use candle_core::{DType, Device};

use crate::checkpoint::ModelSource;
use crate::conversation::Conversation;
use crate::embedder::{Embedder, OpenCheckpoint};
use crate::error::Result;
use crate::heads::{Head, HeadKind};
use crate::linear::cpu_computes_bf16;
use crate::tokenize::{Encoded, Encoder};

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

    /// The compute dtype `--dtype auto` picks, and why. GPUs: bf16, what the checkpoint stores.
    /// CPUs: bf16 where the CPU computes it natively (AMX tiles or AVX512-BF16, about twice f32's
    /// speed there) or where f32 weights of `parameters` would take more than half of `available`
    /// memory; else f32, the exact reference.
    pub fn auto_dtype(self, parameters: usize, available: Option<u64>) -> (ComputeDType, String) {
        if let Self::Cuda(_) = self {
            return (ComputeDType::Bf16, "GPU".into());
        }
        if cpu_computes_bf16() {
            return (ComputeDType::Bf16, "the CPU computes bf16 natively (AMX or AVX512-BF16)".into());
        }
        let f32_bytes = parameters as u64 * 4;
        match available {
            Some(a) if f32_bytes > a / 2 => (
                ComputeDType::Bf16,
                format!(
                    "f32 weights ({:.1} GiB) would take more than half the {:.1} GiB available",
                    crate::memory::gib(f32_bytes),
                    crate::memory::gib(a)
                ),
            ),
            _ => (ComputeDType::F32, "the CPU has no native bf16 and f32 fits".into()),
        }
    }
}

/// The dtype the backbone computes in; the heads always compute in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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

    pub(crate) fn candle(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: DeviceChoice,
    /// `None`: chosen for the device and the model (`DeviceChoice::auto_dtype`).
    pub dtype: Option<ComputeDType>,
    /// Overrides the gating pattern derived from the chat template.
    pub gating_pattern: Option<Vec<u32>>,
    /// Compute a prompt shared by several conversations of a batch once (exact; on by default).
    pub share_prefixes: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { device: DeviceChoice::default(), dtype: None, gating_pattern: None, share_prefixes: true }
    }
}

/// Per-objective explanation of an ArmoRM score, each in objective order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ObjectiveScores {
    pub rewards: Vec<f32>,
    pub gating: Vec<f32>,
    pub coefficients: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RewardOutput {
    pub score: f32,
    pub num_tokens: usize,
    /// `None` for heads without objectives (Bradley-Terry).
    #[serde(flatten)]
    pub objectives: Option<ObjectiveScores>,
}

pub struct RewardModel {
    source: ModelSource,
    embedder: Embedder,
    head: Head,
}

impl RewardModel {
    pub fn load(source: &ModelSource, options: &LoadOptions) -> Result<Self> {
        let ckpt = OpenCheckpoint::open(source, options)?;
        let head = Head::load(&ckpt.weights, &ckpt.cfg)?;
        let embedder = Embedder::from_checkpoint(&ckpt, options, head.kind() == HeadKind::Armo)?;
        tracing::info!(
            model = %source.id(),
            head = ?head.kind(),
            dtype = ?embedder.dtype(),
            layers = embedder.num_layers(),
            hidden = embedder.hidden_size(),
            gating_pattern = ?embedder.encoder().pattern().map(|p| p.ids()),
            "model loaded"
        );
        ckpt.log_memory();
        Ok(Self { source: source.clone(), embedder, head })
    }

    pub fn source(&self) -> &ModelSource {
        &self.source
    }

    pub fn encoder(&self) -> &Encoder {
        self.embedder.encoder()
    }

    pub fn head_kind(&self) -> HeadKind {
        self.head.kind()
    }

    pub fn dtype(&self) -> ComputeDType {
        self.embedder.dtype()
    }

    pub fn device_name(&self) -> String {
        match self.embedder.device() {
            Device::Cpu => "cpu".into(),
            other => format!("{other:?}").to_lowercase(),
        }
    }

    /// Objective names in output order; empty for heads without objectives.
    pub fn objectives(&self) -> &[String] {
        match &self.head {
            Head::Armo(h) => h.objectives(),
            Head::BradleyTerry(_) => &[],
        }
    }

    /// The longest sequence the position table covers.
    pub fn max_positions(&self) -> usize {
        self.embedder.max_positions()
    }

    /// The reward-transform matrix T (k, k), for heads that have one: `rewards @ T` are the rewards
    /// with verbosity removed.
    pub fn reward_transform(&self) -> Result<Option<Vec<Vec<f32>>>> {
        match &self.head {
            Head::Armo(h) => Ok(Some(h.transform()?)),
            Head::BradleyTerry(_) => Ok(None),
        }
    }

    /// Scores a batch in one forward pass. Either every conversation gets its output, in order, or the
    /// whole batch fails (a compute error is not any one conversation's fault).
    pub fn forward(&self, batch: &[&Encoded]) -> Result<Vec<RewardOutput>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        match &self.head {
            Head::BradleyTerry(score_t) => {
                let hidden = self.embedder.hidden_states(batch, false)?.last;
                let scores = hidden.matmul(score_t)?.flatten_all()?.to_vec1::<f32>()?;
                Ok(batch
                    .iter()
                    .zip(scores)
                    .map(|(e, score)| RewardOutput { score, num_tokens: e.len(), objectives: None })
                    .collect())
            }
            Head::Armo(head) => {
                let hidden = self.embedder.hidden_states(batch, true)?;
                let gate = hidden.gate.as_ref().expect("asked for gate rows");
                let out = head.forward(&hidden.last, gate)?;
                let scores = out.score.to_vec1::<f32>()?;
                let rewards = out.rewards.to_vec2::<f32>()?;
                let gating = out.gating.to_vec2::<f32>()?;
                let coefficients = out.coefficients.to_vec2::<f32>()?;
                Ok(batch
                    .iter()
                    .zip(scores)
                    .zip(rewards.into_iter().zip(gating).zip(coefficients))
                    .map(|((e, score), ((rewards, gating), coefficients))| RewardOutput {
                        score,
                        num_tokens: e.len(),
                        objectives: Some(ObjectiveScores { rewards, gating, coefficients }),
                    })
                    .collect())
            }
        }
    }

    /// Encodes and scores conversations in one batch. Each conversation gets its own encoding result,
    /// so one bad conversation does not fail the others; the outer error is a failed forward pass.
    pub fn score(&self, conversations: &[Conversation]) -> Result<Vec<Result<RewardOutput>>> {
        let encoded: Vec<Result<Encoded>> = conversations.iter().map(|c| self.encode(c)).collect();
        let valid: Vec<&Encoded> = encoded.iter().filter_map(|e| e.as_ref().ok()).collect();
        let mut outputs = self.forward(&valid)?.into_iter();
        Ok(encoded
            .into_iter()
            .map(|e| e.map(|_| outputs.next().expect("forward returns one output per input")))
            .collect())
    }

    /// Encodes one conversation and checks it fits the position table.
    pub fn encode(&self, conversation: &Conversation) -> Result<Encoded> {
        self.embedder.encode(conversation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_dtype_follows_the_device_the_cpu_and_the_memory() {
        let params = 1_000_000_000; // 4 GB as f32
        assert_eq!(DeviceChoice::Cuda(0).auto_dtype(params, None).0, ComputeDType::Bf16);
        let (tight, why) = DeviceChoice::Cpu.auto_dtype(params, Some(6 << 30));
        assert_eq!(tight, ComputeDType::Bf16, "f32 would take over half of 6 GiB");
        assert!(why.contains("native") || why.contains("more than half"), "{why}");
        let roomy = DeviceChoice::Cpu.auto_dtype(params, Some(64 << 30)).0;
        let native = if cpu_computes_bf16() { ComputeDType::Bf16 } else { ComputeDType::F32 };
        assert_eq!(roomy, native);
    }
}
