//! The public entry point: a loaded reward model that turns encoded conversations into scores with
//! their per-objective explanation.

use std::collections::HashMap;
use std::str::FromStr;

use candle_core::{DType, Device};

use crate::anchor::GatingPattern;
use crate::checkpoint::{ModelSource, Weights};
use crate::config::ModelConfig;
use crate::conversation::Conversation;
use crate::error::Result;
use crate::heads::{Head, HeadKind};
use crate::llama::Backbone;
use crate::packed::{PackedBatch, PackedBatchBuilder};
use crate::template::ChatTemplate;
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
    fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => Ok(Device::new_cuda(ordinal)?),
        }
    }

    /// bf16 on GPUs (what the checkpoint stores), f32 on CPUs (exact parity; bf16 is faster on CPUs
    /// with AMX, at the GPU's bf16 tolerance, when asked for).
    pub fn default_dtype(self) -> ComputeDType {
        match self {
            Self::Cpu => ComputeDType::F32,
            Self::Cuda(_) => ComputeDType::Bf16,
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
    fn candle(self) -> DType {
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
    /// `None`: the device's default.
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
    backbone: Backbone,
    head: Head,
    encoder: Encoder,
    device: Device,
    dtype: ComputeDType,
    share_prefixes: bool,
}

/// A packed batch plus, per conversation, the packed rows its heads read.
struct Layout {
    packed: PackedBatch,
    last_rows: Vec<u32>,
    gate_rows: Vec<u32>,
}

impl RewardModel {
    pub fn load(source: &ModelSource, options: &LoadOptions) -> Result<Self> {
        let files = source.resolve()?;
        let cfg = ModelConfig::from_file(&files.config)?;
        let device = options.device.open()?;
        let dtype = options.dtype.unwrap_or(options.device.default_dtype());
        let weights = Weights::open(&files.weights, &device)?;
        let backbone = Backbone::load(&weights, &cfg.llama, dtype.candle(), &device)?;
        let head = Head::load(&weights, &cfg)?;
        let tokenizer = Encoder::load_tokenizer(&files.tokenizer)?;
        let template = ChatTemplate::from_files(&files.tokenizer_config, files.chat_template.as_deref())?;
        let pattern = match (&head, &options.gating_pattern) {
            (Head::BradleyTerry(_), _) => None,
            (Head::Armo(_), Some(ids)) => Some(GatingPattern::new(ids.clone())?),
            (Head::Armo(_), None) => Some(GatingPattern::derive(&template, &tokenizer)?),
        };
        let encoder = Encoder::new(tokenizer, template, pattern, cfg.llama.vocab_size);
        tracing::info!(
            model = %source.id(),
            head = ?head.kind(),
            ?dtype,
            layers = cfg.llama.num_hidden_layers,
            hidden = cfg.llama.hidden_size,
            gating_pattern = ?encoder.pattern().map(|p| p.ids()),
            "model loaded"
        );
        Ok(Self {
            source: source.clone(),
            backbone,
            head,
            encoder,
            device,
            dtype,
            share_prefixes: options.share_prefixes,
        })
    }

    pub fn source(&self) -> &ModelSource {
        &self.source
    }

    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    pub fn head_kind(&self) -> HeadKind {
        self.head.kind()
    }

    pub fn dtype(&self) -> ComputeDType {
        self.dtype
    }

    pub fn device_name(&self) -> String {
        match &self.device {
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
        self.backbone.max_positions()
    }

    /// Scores a batch in one forward pass. Either every conversation gets its output, in order, or the
    /// whole batch fails (a compute error is not any one conversation's fault).
    pub fn forward(&self, batch: &[&Encoded]) -> Result<Vec<RewardOutput>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let Layout { packed, last_rows, gate_rows } = self.layout(batch)?;
        let n = batch.len();
        match &self.head {
            Head::BradleyTerry(score_t) => {
                let hidden = self.backbone.forward(&packed, &last_rows)?;
                let scores = hidden.matmul(score_t)?.flatten_all()?.to_vec1::<f32>()?;
                Ok(batch
                    .iter()
                    .zip(scores)
                    .map(|(e, score)| RewardOutput { score, num_tokens: e.len(), objectives: None })
                    .collect())
            }
            Head::Armo(head) => {
                let rows: Vec<u32> = last_rows.iter().chain(&gate_rows).copied().collect();
                let hidden = self.backbone.forward(&packed, &rows)?; // (2n, hidden)
                let out = head.forward(&hidden.narrow(0, 0, n)?, &hidden.narrow(0, n, n)?)?;
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

    /// Where a conversation's prompt ends (through the assistant header that the gating pattern
    /// opens), when it may be shared: conversations with the same ids up to here differ only in
    /// their responses.
    fn prompt_end(&self, e: &Encoded) -> Option<usize> {
        let end = e.gate_pos() + self.encoder.pattern()?.ids().len();
        (self.share_prefixes && end < e.len()).then_some(end)
    }

    /// Packs the batch, computing each prompt that two or more conversations share only once: the
    /// prompt becomes one segment and every response a continuation of it. Exact, because causal
    /// attention never lets a prompt token see what follows it.
    fn layout(&self, batch: &[&Encoded]) -> Result<Layout> {
        let mut counts: HashMap<&[u32], usize> = HashMap::new();
        for e in batch {
            if let Some(end) = self.prompt_end(e) {
                *counts.entry(&e.ids()[..end]).or_default() += 1;
            }
        }
        let mut builder = PackedBatchBuilder::default();
        let mut prompts: HashMap<&[u32], usize> = HashMap::new();
        let (mut last_rows, mut gate_rows) = (Vec::with_capacity(batch.len()), Vec::with_capacity(batch.len()));
        for e in batch {
            let shared = self.prompt_end(e).filter(|&end| counts[&e.ids()[..end]] > 1);
            let (last, gate) = match shared {
                Some(end) => {
                    let prompt = &e.ids()[..end];
                    let p = *prompts.entry(prompt).or_insert_with(|| builder.push(prompt, None));
                    let response = builder.push(&e.ids()[end..], Some(p));
                    (builder.segment(response).start + e.len() - end - 1, builder.segment(p).start + e.gate_pos())
                }
                None => {
                    let whole = builder.push(e.ids(), None);
                    let start = builder.segment(whole).start;
                    (start + e.last_pos(), start + e.gate_pos())
                }
            };
            last_rows.push(last as u32);
            gate_rows.push(gate as u32);
        }
        Ok(Layout { packed: builder.build(&self.device)?, last_rows, gate_rows })
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
        let encoded = self.encoder.encode(conversation)?;
        let max = self.max_positions();
        if encoded.len() > max {
            return Err(crate::error::ConversationError::TooLong { len: encoded.len(), max }.into());
        }
        Ok(encoded)
    }
}
