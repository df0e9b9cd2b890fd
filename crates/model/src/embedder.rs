//! The backbone behind its chat template and tokenizer: encoded conversations in, final-norm hidden
//! states at the two positions the heads read out. [`crate::RewardModel`] puts its head on top;
//! training reads these states directly to fit new heads on a frozen backbone.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::arch::config::ModelConfig;
use crate::arch::decoder::Backbone;
use crate::arch::layout::TensorLayout;
use crate::error::{ModelError, Result};
use crate::kernels::packed::PackedBatchBuilder;
use crate::kernels::plan::KernelPlan;
use crate::load::checkpoint::ModelSource;
use crate::load::dtype::{self, ComputeDType, DTypeChoice, Hardware, Inputs};
use crate::load::memory;
use crate::load::options::LoadOptions;
use crate::load::weights::Weights;
use crate::text::anchor::{GatingPattern, TurnAnchor};
use crate::text::conversation::Conversation;
use crate::text::pairwise::ComparisonFormat;
use crate::text::template::ChatTemplate;
use crate::text::tokenize::{EncodeLimits, Encoded, Encoder};

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
    dtype: DTypeChoice,
    share_prefixes: bool,
    /// Each conversation of a batch computed alone (`batch_invariant` in the load options).
    alone: bool,
}

/// A checkpoint opened for loading: its config, its tensors and the device they go to.
pub(crate) struct OpenCheckpoint {
    pub cfg: ModelConfig,
    pub weights: Weights,
    pub files: crate::load::checkpoint::CheckpointFiles,
    device: Device,
    dtype: DTypeChoice,
    /// Decided here, once, from the device and the compute dtype; every layer takes it.
    kernels: KernelPlan,
    pub layout: TensorLayout,
}

impl OpenCheckpoint {
    pub fn open(source: &ModelSource, options: &LoadOptions) -> Result<Self> {
        let files = source.resolve()?;
        let cfg = ModelConfig::from_file(&files.config)?;
        let device = options.device.open()?;
        let weights = Weights::open(&files.weights, &device)?;
        let layout = TensorLayout::detect(&weights, cfg.architecture.family)?;
        let dtype = choose_dtype(&cfg, &weights, options, &device);
        let kernels = KernelPlan::choose(&device, dtype.dtype.candle());
        let (name, reason, kernels_name) = (dtype.dtype.name(), &dtype.reason, kernels.name());
        if dtype.narrowed {
            tracing::warn!(dtype = name, reason, kernels = kernels_name, "compute dtype");
        } else {
            tracing::info!(dtype = name, reason, kernels = kernels_name, "compute dtype");
        }
        if matches!(device, Device::Cpu) {
            check_memory(&weights, dtype.dtype)?;
        }
        Ok(Self { cfg, weights, files, device, dtype, kernels, layout })
    }

    /// Refuses a checkpoint with tensors the load did not read, unless `may_ignore` them: tensors
    /// nobody reads mean the checkpoint is not the architecture its config names (a Qwen3 labelled
    /// Llama carries q_norm/k_norm), and scoring it would be silently wrong.
    pub fn refuse_unread(&self, may_ignore: impl Fn(&str) -> bool) -> Result<()> {
        let unread: Vec<&str> = self.weights.unread().into_iter().filter(|n| !may_ignore(n)).collect();
        if unread.is_empty() {
            return Ok(());
        }
        const SHOWN: usize = 6;
        let more = unread.len().saturating_sub(SHOWN);
        let shown = unread[..unread.len().min(SHOWN)].join(", ");
        Err(ModelError::Checkpoint(format!(
            "{} tensor(s) that a {} checkpoint does not have: {shown}{}; the checkpoint is not the \
             architecture its config.json names, and armorm will not score it",
            unread.len(),
            self.cfg.architecture.class,
            if more > 0 { format!(" and {more} more") } else { String::new() }
        )))
    }

    /// Logs what loading cost against the checkpoint's size (call once the model is built).
    pub fn log_memory(&self) {
        let stored = self.weights.stored_bytes();
        if let Some(r) = memory::resident() {
            tracing::info!(
                checkpoint_gib = memory::gib(stored),
                f32_weights_gib = memory::gib(4 * self.weights.parameters() as u64),
                // Counted in resident: the page cache's own pages, shared and reclaimable.
                mapped_gib = memory::gib(self.weights.mapped_bytes()),
                peak_gib = memory::gib(r.peak),
                resident_gib = memory::gib(r.now),
                peak_over_checkpoint = r.peak as f64 / stored.max(1) as f64,
                "load memory"
            );
        }
    }
}

/// The compute dtype for this checkpoint on this device ([`dtype::choose`]).
fn choose_dtype(cfg: &ModelConfig, weights: &Weights, options: &LoadOptions, device: &Device) -> DTypeChoice {
    let hardware = match device {
        Device::Cpu if KernelPlan::cpu_computes_bf16() => Hardware::CpuWithBf16,
        Device::Cpu => Hardware::CpuF32Only,
        _ => Hardware::Gpu,
    };
    dtype::choose(Inputs {
        requested: options.dtype,
        stored: cfg.stored_dtype.or_else(|| weights.stored_dtype()).unwrap_or(ComputeDType::F32),
        hardware,
        parameters: weights.parameters() as u64,
        available: matches!(device, Device::Cpu).then(memory::available).flatten(),
    })
}

/// The dtype a load of `source` with `options` computes in, and why, without loading it (reads
/// config.json and the safetensors headers): what training keys its cached features on.
pub fn resolve_dtype(source: &ModelSource, options: &LoadOptions) -> Result<DTypeChoice> {
    let files = source.resolve()?;
    let cfg = ModelConfig::from_file(&files.config)?;
    let device = options.device.open()?;
    Ok(choose_dtype(&cfg, &Weights::open(&files.weights, &device)?, options, &device))
}

/// Refuses a load that cannot fit before it starts, rather than being killed halfway through it.
/// Needed: the weights in the compute dtype, plus a tenth for the load's one-tensor transients,
/// the tokenizer and the first batches.
fn check_memory(weights: &Weights, dtype: ComputeDType) -> Result<()> {
    memory::available().map_or(Ok(()), |available| fits(weights, dtype, available))
}

fn fits(weights: &Weights, dtype: ComputeDType, available: u64) -> Result<()> {
    let needed = |d| dtype::needed_bytes(weights.parameters() as u64, d);
    if needed(dtype) <= available {
        return Ok(());
    }
    let smaller = [ComputeDType::Bf16, ComputeDType::F16]
        .into_iter()
        .find(|&d| d != dtype && needed(d) <= available)
        .map(|d| format!("; --dtype {} would need {:.1} GiB", d.name(), memory::gib(needed(d))))
        .unwrap_or_default();
    Err(ModelError::OutOfMemory(format!(
        "{} parameters as {} need about {:.1} GiB, and {:.1} GiB is available{smaller}",
        weights.parameters(),
        dtype.name(),
        memory::gib(needed(dtype)),
        memory::gib(available),
    )))
}

/// What an embedder's encoder prepares for the backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputKind {
    /// Conversations whose gating network reads at the assistant-turn pattern (ArmoRM; features).
    Gated,
    /// Conversations a head reads at one token (a classification head).
    Conversations,
    /// Comparison requests (a pairwise preference model), read at their last token.
    Comparisons,
}

/// A packed batch (not yet on the device) plus, per conversation, the packed rows the heads read.
struct Layout {
    packed: PackedBatchBuilder,
    last_rows: Vec<u32>,
    gate_rows: Vec<u32>,
}

impl Embedder {
    /// Loads a backbone for feature extraction, whatever head its checkpoint carries (ArmoRM,
    /// Bradley-Terry or none). The gating pattern is always resolved, so every encoding has a gate.
    pub fn load(source: &ModelSource, options: &LoadOptions) -> Result<Self> {
        let ckpt = OpenCheckpoint::open(source, options)?;
        let embedder = Self::from_checkpoint(&ckpt, options, InputKind::Gated)?;
        // The head's tensors are not this load's to read; every backbone tensor is.
        let (family, backbone) = (ckpt.cfg.architecture.family, ckpt.layout.backbone_prefix());
        ckpt.refuse_unread(|name| family.may_ignore(name) || !name.starts_with(backbone))?;
        ckpt.log_memory();
        Ok(embedder)
    }

    /// `inputs`: what the encoder prepares. A gating network reads at the pattern that opens the
    /// final assistant turn (derived from the template unless the options give it); without gating
    /// the pattern only marks where prompts may be shared, so a template it cannot be derived from
    /// shares none; comparisons share what their two orders have in common.
    pub(crate) fn from_checkpoint(ckpt: &OpenCheckpoint, options: &LoadOptions, inputs: InputKind) -> Result<Self> {
        let backbone = Backbone::load(
            &ckpt.weights,
            &ckpt.cfg.backbone,
            ckpt.layout.backbone_prefix(),
            ckpt.dtype.dtype.candle(),
            ckpt.kernels,
            &ckpt.device,
        )?;
        let tokenizer = crate::text::load_tokenizer(&ckpt.files.tokenizer)?;
        let template = ChatTemplate::from_files(&ckpt.files.tokenizer_config, ckpt.files.chat_template.as_deref())?;
        let vocab = ckpt.cfg.backbone.vocab_size;
        let encoder = if inputs == InputKind::Comparisons {
            Encoder::new(tokenizer, template, TurnAnchor::None, vocab)?.comparing(ComparisonFormat::slic()?)
        } else {
            let gated = inputs == InputKind::Gated;
            let pattern = GatingPattern::resolve(options.gating_pattern.as_deref(), &template, &tokenizer);
            let anchor = match pattern {
                Ok(p) if gated => TurnAnchor::Gate(p),
                Err(e) if gated => return Err(e),
                Ok(p) => TurnAnchor::PromptEnd(p),
                Err(e) => {
                    tracing::info!(reason = %e, "no assistant-turn header: conversations will not share prompts");
                    TurnAnchor::None
                }
            };
            Encoder::new(tokenizer, template, anchor, vocab)?.reading(ckpt.layout.readout(&ckpt.cfg))
        };
        Ok(Self {
            backbone,
            encoder,
            device: ckpt.device.clone(),
            dtype: ckpt.dtype.clone(),
            share_prefixes: options.share_prefixes,
            alone: options.batch_invariant,
        })
    }

    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The compute dtype and why it was chosen.
    pub fn dtype(&self) -> &DTypeChoice {
        &self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The kernels this load computes with.
    pub fn kernels(&self) -> KernelPlan {
        self.backbone.kernels()
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

    /// Whether each conversation of a batch is computed alone (see [`LoadOptions::batch_invariant`]).
    pub fn computes_alone(&self) -> bool {
        self.alone
    }

    /// One forward pass over the batch (packed, prompts shared), keeping only the rows the heads
    /// read; one pass per conversation when it [computes alone](Self::computes_alone).
    pub fn hidden_states(&self, batch: &[&Encoded], with_gate: bool) -> Result<HiddenStates> {
        if self.alone && batch.len() > 1 {
            let each: Vec<HiddenStates> =
                batch.iter().map(|e| self.hidden_states(&[e], with_gate)).collect::<Result<_>>()?;
            let last = Tensor::cat(&each.iter().map(|h| &h.last).collect::<Vec<_>>(), 0)?;
            let gate = each.iter().map(|h| h.gate.as_ref()).collect::<Option<Vec<_>>>();
            return Ok(HiddenStates { last, gate: gate.map(|g| Tensor::cat(&g, 0)).transpose()? });
        }
        let Layout { packed, last_rows, gate_rows } = self.layout(batch);
        let packed = packed.build(&self.device)?;
        let n = batch.len();
        if !with_gate {
            return Ok(HiddenStates { last: self.backbone.forward(&packed, &last_rows)?, gate: None });
        }
        let rows: Vec<u32> = last_rows.iter().chain(&gate_rows).copied().collect();
        let hidden = self.backbone.forward(&packed, &rows)?; // (2n, hidden)
        Ok(HiddenStates { last: hidden.narrow(0, 0, n)?, gate: Some(hidden.narrow(0, n, n)?) })
    }

    /// The token rows one forward pass over `batch` computes: its tokens, less every shared
    /// prompt's repeats.
    pub fn computed_tokens(&self, batch: &[&Encoded]) -> usize {
        let tokens: usize = batch.iter().map(|e| e.len()).sum();
        if self.alone {
            return tokens;
        }
        // What `layout` saves, without building it: each prompt that n > 1 conversations share
        // once instead of n times.
        let saved: usize = self.prompt_counts(batch).iter().map(|(p, &n)| p.len() * n.saturating_sub(1)).sum();
        tokens - saved
    }

    /// How many conversations of the batch begin with each shareable prompt.
    fn prompt_counts<'a>(&self, batch: &[&'a Encoded]) -> HashMap<&'a [u32], usize> {
        let mut counts: HashMap<&[u32], usize> = HashMap::new();
        for e in batch {
            if let Some(end) = self.prompt_end(e) {
                *counts.entry(&e.ids()[..end]).or_default() += 1;
            }
        }
        counts
    }

    /// Where a conversation's prompt ends, when it may be shared: conversations with the same ids
    /// up to here differ only in their responses.
    fn prompt_end(&self, e: &Encoded) -> Option<usize> {
        e.prompt_end().filter(|_| self.share_prefixes)
    }

    /// Packs the batch, computing each prompt that two or more conversations share only once: the
    /// prompt becomes one segment and every response a continuation of it. Exact, because causal
    /// attention never lets a prompt token see what follows it.
    fn layout(&self, batch: &[&Encoded]) -> Layout {
        let counts = self.prompt_counts(batch);
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
                    let last = match e.last_pos().checked_sub(end) {
                        Some(in_response) => builder.segment(response).start + in_response,
                        None => builder.segment(p).start + e.last_pos(),
                    };
                    (last, builder.segment(p).start + e.gate_pos())
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
        Layout { packed: builder, last_rows, gate_rows }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count without the layout is the layout's count, for batches that share prompts two and
    /// three ways, not at all, or with an empty response.
    #[test]
    fn computed_tokens_are_the_packed_rows() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/tiny-f32");
        let embedder = Embedder::load(&ModelSource::Local(dir), &LoadOptions::default()).unwrap();
        let pattern = embedder.encoder().pattern().unwrap().ids().to_vec();
        let conv = |prompt: &[u32], response: &[u32]| {
            let ids = prompt.iter().chain(&pattern).chain(response).copied().collect();
            embedder.encoder().encode_ids(ids).unwrap()
        };
        let (a, b) = ([5u32, 6, 7, 8].as_slice(), [9u32, 10].as_slice());
        let batch = [
            conv(a, &[11, 12]),
            conv(a, &[13]),
            conv(b, &[14]),
            conv(a, &[]),
            conv(b, &[15, 16, 17]),
            conv(&[18], &[19]),
        ];
        for n in 1..=batch.len() {
            let refs: Vec<&Encoded> = batch[..n].iter().collect();
            assert_eq!(embedder.computed_tokens(&refs), embedder.layout(&refs).packed.tokens(), "first {n}");
        }
        let refs: Vec<&Encoded> = batch.iter().collect();
        assert!(embedder.computed_tokens(&refs) < refs.iter().map(|e| e.len()).sum::<usize>());
    }

    #[test]
    fn loads_that_cannot_fit_are_refused_naming_a_dtype_that_would() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let t = Tensor::zeros((1000, 1000), candle_core::DType::BF16, &Device::Cpu).unwrap();
        candle_core::safetensors::save(&[("w".to_string(), t)].into_iter().collect(), &path).unwrap();
        let weights = Weights::open(&[path], &Device::Cpu).unwrap();
        // 1e6 parameters: 4.4 MB as f32 with the margin, 2.2 MB as bf16.
        assert!(fits(&weights, ComputeDType::F32, 5_000_000).is_ok());
        let err = fits(&weights, ComputeDType::F32, 3_000_000).unwrap_err().to_string();
        assert!(err.contains("as f32 need about") && err.contains("--dtype bf16 would need"), "{err}");
        let err = fits(&weights, ComputeDType::Bf16, 1_000_000).unwrap_err().to_string();
        assert!(!err.contains("would need"), "nothing smaller fits: {err}");
    }
}
