//! The public entry point: a loaded reward model that turns encoded conversations into scores with
//! their per-objective explanation.

use candle_core::{Device, Tensor};

use crate::arch::layout::TensorLayout;
use crate::arch::{Architecture, Task};
use crate::embedder::{Embedder, InputKind, OpenCheckpoint};
use crate::error::{ModelError, Result};
use crate::heads::{Head, HeadKind, PairwiseHead};
use crate::kernels::plan::KernelPlan;
use crate::load::checkpoint::{CheckpointFiles, ModelSource};
use crate::load::dtype::{ComputeDType, DTypeChoice};
use crate::load::options::LoadOptions;
use crate::text::conversation::Conversation;
use crate::text::pairwise::VERDICTS;
use crate::text::tokenize::{Encoded, Encoder};

/// Per-objective explanation of an ArmoRM score, each in objective order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// Every label's logit, for a classification head with more than one (`score` is the first);
    /// for a pairwise preference model, the logits of "A" and "B" (`score` is their difference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<Vec<f32>>,
}

pub struct RewardModel {
    source: ModelSource,
    /// The files `source` resolved to when the model loaded.
    files: CheckpointFiles,
    architecture: Architecture,
    layout: TensorLayout,
    embedder: Embedder,
    head: Head,
}

impl RewardModel {
    pub fn load(source: &ModelSource, options: &LoadOptions) -> Result<Self> {
        let ckpt = OpenCheckpoint::open(source, options)?;
        let (head, embedder) = if options.pairwise || ckpt.cfg.pairwise_preference {
            let class = &ckpt.cfg.architecture.class;
            if ckpt.cfg.architecture.task != Task::Backbone {
                return Err(ModelError::Checkpoint(format!(
                    "a pairwise preference model is a causal LM (*ForCausalLM); this checkpoint is a {class}"
                )));
            }
            let embedder = Embedder::from_checkpoint(&ckpt, options, InputKind::Comparisons)?;
            let [a, b] = VERDICTS.map(|t| embedder.encoder().single_token(t));
            let head = PairwiseHead::load(&ckpt.weights, &ckpt.cfg, ckpt.layout, [a?, b?])?;
            (Head::Pairwise(head), embedder)
        } else {
            let head = Head::load(&ckpt.weights, &ckpt.cfg, ckpt.layout)?;
            let inputs = if head.kind() == HeadKind::Armo { InputKind::Gated } else { InputKind::Conversations };
            let embedder = Embedder::from_checkpoint(&ckpt, options, inputs)?;
            (head, embedder)
        };
        let family = ckpt.cfg.architecture.family;
        ckpt.refuse_unread(|name| family.may_ignore(name))?;
        tracing::info!(
            model = %source.id(),
            architecture = %ckpt.cfg.architecture.class,
            layout = ckpt.layout.name(),
            head = ?head.kind(),
            dtype = embedder.dtype().dtype.name(),
            kernels = embedder.kernels().name(),
            layers = embedder.num_layers(),
            hidden = embedder.hidden_size(),
            gating_pattern = ?embedder.encoder().pattern().map(|p| p.ids()),
            "model loaded"
        );
        ckpt.log_memory();
        Ok(Self {
            source: source.clone(),
            files: ckpt.files.clone(),
            architecture: ckpt.cfg.architecture.clone(),
            layout: ckpt.layout,
            embedder,
            head,
        })
    }

    pub fn source(&self) -> &ModelSource {
        &self.source
    }

    /// The checkpoint's files as they were loaded (a Hub id's, in the local cache).
    pub fn files(&self) -> &CheckpointFiles {
        &self.files
    }

    pub fn encoder(&self) -> &Encoder {
        self.embedder.encoder()
    }

    /// The checkpoint's family and class, as its config.json names them.
    pub fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    /// Where the checkpoint keeps its tensors, and so which token its head reads.
    pub fn layout(&self) -> TensorLayout {
        self.layout
    }

    pub fn head_kind(&self) -> HeadKind {
        self.head.kind()
    }

    pub fn dtype(&self) -> ComputeDType {
        self.embedder.dtype().dtype
    }

    /// The compute dtype and why it was chosen.
    pub fn dtype_choice(&self) -> &DTypeChoice {
        self.embedder.dtype()
    }

    /// The kernels this load computes with.
    pub fn kernels(&self) -> KernelPlan {
        self.embedder.kernels()
    }

    pub fn device_name(&self) -> String {
        match self.embedder.device() {
            Device::Cpu => "cpu".into(),
            other => format!("{other:?}").to_lowercase(),
        }
    }

    /// Whether a conversation's outputs are bit-identical whatever it is batched with: true on the
    /// CPU, whose kernels fix every reduction's order per row (README, "Batch invariance"); on CUDA,
    /// where cuBLAS picks its algorithm by the batch's shape, only when each conversation is
    /// computed alone (`batch_invariant` in the load options).
    pub fn batch_invariant(&self) -> bool {
        self.embedder.computes_alone() || matches!(self.embedder.device(), Device::Cpu)
    }

    /// Objective names in output order; empty for heads without objectives.
    pub fn objectives(&self) -> &[String] {
        match &self.head {
            Head::Armo(h) => h.objectives(),
            Head::Classifier(_) | Head::Pairwise(_) => &[],
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
            Head::Classifier(_) | Head::Pairwise(_) => Ok(None),
        }
    }

    /// The token rows a forward pass over `batch` computes (shared prompts once).
    pub fn computed_tokens(&self, batch: &[&Encoded]) -> usize {
        self.embedder.computed_tokens(batch)
    }

    /// Scores a batch in one forward pass. Either every conversation gets its output, in order, or the
    /// whole batch fails (a compute error is not any one conversation's fault).
    ///
    /// When the embedder [computes alone](Embedder::computes_alone), so do the heads: each
    /// conversation's outputs are those of a batch of one.
    pub fn forward(&self, batch: &[&Encoded]) -> Result<Vec<RewardOutput>> {
        if self.embedder.computes_alone() && batch.len() > 1 {
            return batch.iter().map(|e| Ok(self.forward_packed(&[e])?.remove(0))).collect();
        }
        self.forward_packed(batch)
    }

    /// One forward pass over the whole batch, packed.
    fn forward_packed(&self, batch: &[&Encoded]) -> Result<Vec<RewardOutput>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        match &self.head {
            Head::Classifier(classifier) => {
                let several = classifier.labels() > 1;
                self.read_last(batch, |h| classifier.forward(h), |logits| (logits[0], several.then_some(logits)))
            }
            Head::Pairwise(head) => {
                self.read_last(batch, |h| head.forward(h), |logits| (logits[0] - logits[1], Some(logits)))
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
                        logits: None,
                    })
                    .collect())
            }
        }
    }

    /// The outputs of a head that reads each sequence's last token: `forward` turns those hidden
    /// rows into logits, `read` one row's logits into its score and the logits it returns.
    fn read_last(
        &self,
        batch: &[&Encoded],
        forward: impl FnOnce(&Tensor) -> Result<Tensor>,
        read: impl Fn(Vec<f32>) -> (f32, Option<Vec<f32>>),
    ) -> Result<Vec<RewardOutput>> {
        let hidden = self.embedder.hidden_states(batch, false)?.last;
        let logits = forward(&hidden)?.to_vec2::<f32>()?;
        Ok(batch
            .iter()
            .zip(logits)
            .map(|(e, logits)| {
                let (score, logits) = read(logits);
                RewardOutput { score, num_tokens: e.len(), objectives: None, logits }
            })
            .collect())
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

    /// Encodes one conversation and checks it fits the position table; a pairwise preference
    /// model scores no conversation alone.
    pub fn encode(&self, conversation: &Conversation) -> Result<Encoded> {
        if self.head_kind() == HeadKind::Pairwise {
            return Err(ModelError::PairwiseModel);
        }
        self.embedder.encode(conversation)
    }
}
