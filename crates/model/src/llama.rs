//! The Llama decoder (no lm_head) over packed variable-length batches.
//!
//! All sequences of a batch are concatenated into one (tokens, hidden) matrix, so the linear layers
//! run as one matmul over every real token and no compute is spent on padding. Attention is the only
//! per-sequence step (see [`crate::attention`]).

use candle_core::{DType, Device, Tensor};

use crate::attention::{Heads, Plan};
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::linear::Linear;
use crate::packed::PackedBatch;
use crate::residual::{self, RmsNorm};
use crate::rope::Rope;
use crate::token_embedding::TokenEmbedding;
use crate::weights::Weights;

struct Layer {
    input_norm: RmsNorm,
    qkv: Linear,
    o: Linear,
    post_attention_norm: RmsNorm,
    gate_up: Linear,
    down: Linear,
}

pub struct Backbone {
    cfg: LlamaConfig,
    embed: TokenEmbedding,
    device: Device,
    layers: Vec<Layer>,
    norm: RmsNorm,
    rope: Rope,
    dtype: DType,
}

impl Backbone {
    pub fn load(w: &Weights, cfg: &LlamaConfig, dtype: DType, device: &Device) -> Result<Self> {
        let h = cfg.hidden_size;
        let (q_out, kv_out) = (cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim);
        let i = cfg.intermediate_size;
        let layers = (0..cfg.num_hidden_layers)
            .map(|l| {
                let p = format!("model.layers.{l}");
                Ok(Layer {
                    input_norm: RmsNorm::load(w, &format!("{p}.input_layernorm.weight"), h, cfg.rms_norm_eps, dtype)?,
                    qkv: Linear::load_fused(
                        w,
                        &[
                            (format!("{p}.self_attn.q_proj.weight"), q_out),
                            (format!("{p}.self_attn.k_proj.weight"), kv_out),
                            (format!("{p}.self_attn.v_proj.weight"), kv_out),
                        ],
                        h,
                        dtype,
                    )?,
                    o: Linear::load(w, &format!("{p}.self_attn.o_proj.weight"), h, q_out, dtype)?,
                    post_attention_norm: RmsNorm::load(
                        w,
                        &format!("{p}.post_attention_layernorm.weight"),
                        h,
                        cfg.rms_norm_eps,
                        dtype,
                    )?,
                    gate_up: Linear::load_gated(
                        w,
                        &format!("{p}.mlp.gate_proj.weight"),
                        &format!("{p}.mlp.up_proj.weight"),
                        i,
                        h,
                        dtype,
                    )?,
                    down: Linear::load(w, &format!("{p}.mlp.down_proj.weight"), h, i, dtype)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed: TokenEmbedding::load(w, "model.embed_tokens.weight", cfg.vocab_size, h, dtype)?,
            device: device.clone(),
            layers,
            norm: RmsNorm::load(w, "model.norm.weight", h, cfg.rms_norm_eps, dtype)?,
            rope: Rope::new(cfg, dtype, device)?,
            cfg: cfg.clone(),
            dtype,
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
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
        let plan = Plan::new(batch, self.heads(), self.dtype, &self.device)?;
        let rows = Tensor::from_slice(rows, rows.len(), &self.device)?;
        let mut x = self.embed.lookup(&batch.ids)?; // (tokens, hidden)
        for (i, layer) in self.layers.iter().enumerate() {
            let qkv = layer.qkv.forward(&layer.input_norm.forward(&x)?)?; // (tokens, (nh + 2 nkv) hd)
            let mut attn = plan.attend(&qkv, batch, self.heads(), &self.rope)?;
            if i + 1 == self.layers.len() {
                // Only `rows` are read after the last attention: the rest of the layer (the output
                // projection and the MLP, most of its work) runs on those rows alone.
                (x, attn) = (x.index_select(&rows, 0)?, attn.index_select(&rows, 0)?);
            }
            x = residual::add(x, &layer.o.forward(&attn)?)?;
            let act = layer.gate_up.forward(&layer.post_attention_norm.forward(&x)?)?; // silu(gate) * up
            x = residual::add(x, &layer.down.forward(&act)?)?;
        }
        if self.layers.is_empty() {
            x = x.index_select(&rows, 0)?;
        }
        Ok(self.norm.forward(&x)?.to_dtype(DType::F32)?)
    }

    fn heads(&self) -> Heads {
        let c = &self.cfg;
        Heads { heads: c.num_attention_heads, kv_heads: c.num_key_value_heads, head_dim: c.head_dim }
    }
}
