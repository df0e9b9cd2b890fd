//! The decoder every family shares (no lm_head), over packed variable-length batches, reading
//! what sets a family apart from its [`super::Block`].
//!
//! All sequences of a batch are concatenated into one (tokens, hidden) matrix, so the linear layers
//! run as one matmul over every real token and no compute is spent on padding. Attention is the only
//! per-sequence step (see [`crate::kernels::attention`]).

use candle_core::{DType, Device, Tensor};

use crate::arch::config::BackboneConfig;
use crate::error::{ModelError, Result};
use crate::kernels::attention::{Heads, Plan, Scoring};
use crate::kernels::packed::PackedBatch;
use crate::kernels::plan::KernelPlan;
use crate::kernels::rope::Rope;
use crate::layers::linear::{Linear, Parts};
use crate::layers::qk_norm::QkNorm;
use crate::layers::residual::{self, RmsNorm};
use crate::layers::token_embedding::TokenEmbedding;
use crate::load::weights::Weights;

struct Layer {
    input_norm: RmsNorm,
    qkv: Linear,
    qk_norm: Option<QkNorm>,
    scoring: Scoring,
    o: Linear,
    /// Llama: the norm before the MLP. Gemma-2: the norm of the attention output.
    post_attention_norm: RmsNorm,
    /// Gemma-2's norms before and after the MLP.
    feedforward_norms: Option<(RmsNorm, RmsNorm)>,
    gate_up: Linear,
    down: Linear,
}

pub struct Backbone {
    cfg: BackboneConfig,
    embed: TokenEmbedding,
    /// sqrt(hidden) rounded to the compute dtype, for families that scale their embeddings.
    embed_scale: Option<f64>,
    device: Device,
    layers: Vec<Layer>,
    norm: RmsNorm,
    rope: Rope,
    dtype: DType,
    plan: KernelPlan,
}

impl Layer {
    /// Layer `l`, whose tensors are named `{p}.*`.
    fn load(w: &Weights, cfg: &BackboneConfig, l: usize, p: &str, dtype: DType, plan: KernelPlan) -> Result<Self> {
        let (h, i, block) = (cfg.hidden_size, cfg.intermediate_size, &cfg.block);
        let heads = heads(cfg);
        let (q_out, kv_out) = (heads.heads * heads.head_dim, heads.kv_heads * heads.head_dim);
        let norm = |name: &str| RmsNorm::load(w, &format!("{p}.{name}.weight"), h, cfg.rms_norm_eps, dtype, block.norm);
        let qkv =
            Names::new(p, "self_attn", &[("q_proj", q_out), ("k_proj", kv_out), ("v_proj", kv_out)], block.qkv_bias);
        let o = Names::new(p, "self_attn", &[("o_proj", h)], block.o_bias);
        let gate_up = Names::new(p, "mlp", &[("gate_proj", i), ("up_proj", i)], block.mlp_bias);
        let down = Names::new(p, "mlp", &[("down_proj", h)], block.mlp_bias);
        Ok(Self {
            input_norm: norm("input_layernorm")?,
            qkv: Linear::load_fused(w, qkv.parts(), h, dtype, plan)?,
            qk_norm: block
                .qk_norm
                .then(|| QkNorm::load(w, &format!("{p}.self_attn"), heads, cfg.rms_norm_eps, dtype))
                .transpose()?,
            scoring: Scoring {
                scale: block.query_scale as f32,
                softcap: block.softcap.map(|c| c as f32),
                window: block.windows.get(l).copied().flatten(),
            },
            o: Linear::load_fused(w, o.parts(), q_out, dtype, plan)?,
            post_attention_norm: norm("post_attention_layernorm")?,
            feedforward_norms: block
                .sandwich_norms
                .then(|| Ok::<_, ModelError>((norm("pre_feedforward_layernorm")?, norm("post_feedforward_layernorm")?)))
                .transpose()?,
            gate_up: Linear::load_gated(w, gate_up.parts(), h, dtype, plan, block.activation)?,
            down: Linear::load_fused(w, down.parts(), i, dtype, plan)?,
        })
    }
}

impl Backbone {
    /// The tensors under `prefix` (`model.`), in `dtype` on `device`, with the kernels `plan` chose
    /// for them.
    pub fn load(
        w: &Weights,
        cfg: &BackboneConfig,
        prefix: &str,
        dtype: DType,
        plan: KernelPlan,
        device: &Device,
    ) -> Result<Self> {
        let h = cfg.hidden_size;
        let layers = (0..cfg.num_hidden_layers)
            .map(|l| Layer::load(w, cfg, l, &format!("{prefix}layers.{l}"), dtype, plan))
            .collect::<Result<Vec<_>>>()?;
        // As transformers: sqrt(hidden) as a tensor of the compute dtype, so rounded to it.
        let embed_scale = cfg.block.embed_scale.then(|| {
            let s = (h as f64).sqrt();
            match dtype {
                DType::BF16 => half::bf16::from_f64(s).to_f64(),
                DType::F16 => half::f16::from_f64(s).to_f64(),
                _ => s as f32 as f64,
            }
        });
        Ok(Self {
            embed: TokenEmbedding::load(w, &format!("{prefix}embed_tokens.weight"), cfg.vocab_size, h, dtype)?,
            embed_scale,
            device: device.clone(),
            layers,
            norm: RmsNorm::load(w, &format!("{prefix}norm.weight"), h, cfg.rms_norm_eps, dtype, cfg.block.norm)?,
            rope: Rope::new(&cfg.rope, dtype, device)?,
            cfg: cfg.clone(),
            dtype,
            plan,
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The kernels its layers were built for.
    pub fn kernels(&self) -> KernelPlan {
        self.plan
    }

    pub fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn max_positions(&self) -> usize {
        self.rope.max_positions()
    }

    /// Final-norm hidden states, in f32, at the packed token indices `rows` only: (rows, hidden).
    pub fn forward(&self, batch: &PackedBatch, rows: &[u32]) -> Result<Tensor> {
        if batch.segments.iter().any(|s| batch.sequence_len(s) > self.max_positions()) {
            return Err(ModelError::UnsupportedConfig(format!(
                "a sequence is longer than max_position_embeddings ({})",
                self.max_positions()
            )));
        }
        let heads = heads(&self.cfg);
        let scorings: Vec<Scoring> = self.layers.iter().map(|l| l.scoring).collect();
        let attention = Plan::new(batch, heads, &scorings, self.plan, self.dtype, &self.device)?;
        let rows = Tensor::from_slice(rows, rows.len(), &self.device)?;
        let mut x = self.embed.lookup(&batch.ids)?; // (tokens, hidden)
        if let Some(scale) = self.embed_scale {
            x = x.affine(scale, 0.0)?;
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let mut qkv = layer.qkv.forward(&layer.input_norm.forward(&x)?)?; // (tokens, (nh + 2 nkv) hd)
            if let Some(qk_norm) = &layer.qk_norm {
                qkv = qk_norm.forward(qkv)?;
            }
            let mut attn = attention.attend(&qkv, batch, heads, &self.rope, layer.scoring)?;
            if i + 1 == self.layers.len() {
                // Only `rows` are read after the last attention: the rest of the layer (the output
                // projection and the MLP, most of its work) runs on those rows alone.
                (x, attn) = (x.index_select(&rows, 0)?, attn.index_select(&rows, 0)?);
            }
            let mut out = layer.o.forward(&attn)?;
            let mlp_in = match &layer.feedforward_norms {
                Some((pre, _)) => {
                    out = layer.post_attention_norm.forward(&out)?;
                    x = residual::add(x, &out)?;
                    pre.forward(&x)?
                }
                None => {
                    x = residual::add(x, &out)?;
                    layer.post_attention_norm.forward(&x)?
                }
            };
            let mut mlp = layer.down.forward(&layer.gate_up.forward(&mlp_in)?)?; // act(gate) * up, down
            if let Some((_, post)) = &layer.feedforward_norms {
                mlp = post.forward(&mlp)?;
            }
            x = residual::add(x, &mlp)?;
        }
        if self.layers.is_empty() {
            x = x.index_select(&rows, 0)?;
        }
        Ok(self.norm.forward(&x)?.to_dtype(DType::F32)?)
    }
}

/// One projection's tensor names in layer `p`'s `module`: each part's weight (with its output
/// rows) and, when the block has them, its bias.
struct Names {
    weights: Vec<(String, usize)>,
    biases: Option<Vec<String>>,
}

impl Names {
    fn new(p: &str, module: &str, parts: &[(&str, usize)], bias: bool) -> Self {
        Self {
            weights: parts.iter().map(|(name, out)| (format!("{p}.{module}.{name}.weight"), *out)).collect(),
            biases: bias.then(|| parts.iter().map(|(name, _)| format!("{p}.{module}.{name}.bias")).collect()),
        }
    }

    fn parts(&self) -> Parts<'_> {
        Parts { weights: &self.weights, biases: self.biases.as_deref() }
    }
}

fn heads(c: &BackboneConfig) -> Heads {
    Heads { heads: c.num_attention_heads, kv_heads: c.num_key_value_heads, head_dim: c.head_dim }
}
