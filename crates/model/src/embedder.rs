//! The backbone behind its chat template and tokenizer: encoded conversations in, final-norm hidden
//! states at the two positions the heads read out. [`crate::RewardModel`] puts its head on top;
//! training reads these states directly to fit new heads on a frozen backbone.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::anchor::GatingPattern;
use crate::checkpoint::{ModelSource, Weights};
use crate::config::ModelConfig;
use crate::conversation::Conversation;
use crate::error::Result;
use crate::llama::Backbone;
use crate::packed::{PackedBatch, PackedBatchBuilder};
use crate::scorer::{ComputeDType, LoadOptions};
use crate::template::ChatTemplate;
use crate::tokenize::{EncodeLimits, Encoded, Encoder};

/// Final-norm hidden states (f32) of a batch, one row per conversation, in batch order.
pub struct HiddenStates {
    /// (n, hidden) at each conversation's last token: what the reward head reads.
    pub last: Tensor,
    /// (n, hidden) at each gate position: what the gating network reads. `None` unless asked for.
    pub gate: Option<Tensor>,
}

pub struct Embedder {
    backbone: Backbone,
    encoder: Encoder,
    device: Device,
    dtype: ComputeDType,
    share_prefixes: bool,
}

/// A checkpoint opened for loading: its config, its tensors and the device they go to.
pub(crate) struct OpenCheckpoint {
    pub cfg: ModelConfig,
    pub weights: Weights,
    files: crate::checkpoint::CheckpointFiles,
    device: Device,
    dtype: ComputeDType,
}

impl OpenCheckpoint {
    pub fn open(source: &ModelSource, options: &LoadOptions) -> Result<Self> {
        let files = source.resolve()?;
        let cfg = ModelConfig::from_file(&files.config)?;
        let device = options.device.open()?;
        let dtype = options.dtype.unwrap_or(options.device.default_dtype());
        let weights = Weights::open(&files.weights, &device)?;
        Ok(Self { cfg, weights, files, device, dtype })
    }
}

/// A packed batch plus, per conversation, the packed rows the heads read.
struct Layout {
    packed: PackedBatch,
    last_rows: Vec<u32>,
    gate_rows: Vec<u32>,
}

impl Embedder {
    /// Loads a backbone for feature extraction, whatever head its checkpoint carries (ArmoRM,
    /// Bradley-Terry or none). The gating pattern is always resolved, so every encoding has a gate.
    pub fn load(source: &ModelSource, options: &LoadOptions) -> Result<Self> {
        let ckpt = OpenCheckpoint::open(source, options)?;
        Self::from_checkpoint(&ckpt, options, true)
    }

    /// `gated`: whether encodings must locate the gating pattern (derived from the template unless
    /// the options give it).
    pub(crate) fn from_checkpoint(ckpt: &OpenCheckpoint, options: &LoadOptions, gated: bool) -> Result<Self> {
        let backbone = Backbone::load(&ckpt.weights, &ckpt.cfg.llama, ckpt.dtype.candle(), &ckpt.device)?;
        let tokenizer = Encoder::load_tokenizer(&ckpt.files.tokenizer)?;
        let template = ChatTemplate::from_files(&ckpt.files.tokenizer_config, ckpt.files.chat_template.as_deref())?;
        let pattern = gated
            .then(|| GatingPattern::resolve(options.gating_pattern.as_deref(), &template, &tokenizer))
            .transpose()?;
        let encoder = Encoder::new(tokenizer, template, pattern, ckpt.cfg.llama.vocab_size)?;
        Ok(Self {
            backbone,
            encoder,
            device: ckpt.device.clone(),
            dtype: ckpt.dtype,
            share_prefixes: options.share_prefixes,
        })
    }

    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    pub fn dtype(&self) -> ComputeDType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn hidden_size(&self) -> usize {
        self.backbone.hidden_size()
    }

    pub fn num_layers(&self) -> usize {
        self.backbone.num_layers()
    }

    /// The longest sequence the position table covers.
    pub fn max_positions(&self) -> usize {
        self.backbone.max_positions()
    }

    /// Encodes one conversation and checks it fits the position table.
    pub fn encode(&self, conversation: &Conversation) -> Result<Encoded> {
        Ok(self.encoder.encode_within(conversation, &EncodeLimits::exact(self.max_positions()))?.encoded)
    }

    /// One forward pass over the batch (packed, prompts shared), keeping only the rows the heads read.
    pub fn hidden_states(&self, batch: &[&Encoded], with_gate: bool) -> Result<HiddenStates> {
        let Layout { packed, last_rows, gate_rows } = self.layout(batch)?;
        let n = batch.len();
        if !with_gate {
            return Ok(HiddenStates { last: self.backbone.forward(&packed, &last_rows)?, gate: None });
        }
        let rows: Vec<u32> = last_rows.iter().chain(&gate_rows).copied().collect();
        let hidden = self.backbone.forward(&packed, &rows)?; // (2n, hidden)
        Ok(HiddenStates { last: hidden.narrow(0, 0, n)?, gate: Some(hidden.narrow(0, n, n)?) })
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
}
