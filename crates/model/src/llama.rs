//! The Llama decoder (no lm_head) over packed variable-length batches.
//!
//! All sequences of a batch are concatenated into one (tokens, hidden) matrix, so the linear layers
//! run as one matmul over every real token and no compute is spent on padding. Attention is the only
//! per-sequence step: causal within each sequence, never across. Grouped-query attention folds the
//! query heads that share a kv head into the row dimension, so K and V are never repeated.

use candle_core::{DType, Device, Tensor, D};

use crate::checkpoint::Weights;
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::rope::Rope;

/// Upper bound on one attention score block (query rows x keys x heads, in elements), so a long
/// sequence is processed in query chunks instead of materialising (len^2 x heads) at once.
const ATTENTION_BLOCK_ELEMENTS: usize = 16 << 20;

/// Query rows per attention block. Block b only computes scores against keys [0, end of b), so
/// smaller blocks skip more of the masked upper triangle (half of it as blocks shrink) at the cost
/// of more, smaller matmuls.
const QUERY_BLOCK: usize = 128;

/// Sequences laid end to end: token ids, their positions, and the segments they form. A segment may
/// continue another (its `prefix`): it then attends to the prefix's keys as if the prefix's tokens
/// were its own first tokens, which lets several responses share one computed prompt.
pub struct PackedBatch {
    ids: Tensor,
    positions: Tensor,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, Copy)]
pub struct Segment {
    /// Offset in the packed token axis.
    pub start: usize,
    pub len: usize,
    /// Index of the segment whose tokens precede this one's (never itself a continuation).
    pub prefix: Option<usize>,
}

/// Collects segments; [`PackedBatchBuilder::build`] turns them into tensors.
#[derive(Default)]
pub struct PackedBatchBuilder {
    ids: Vec<u32>,
    positions: Vec<u32>,
    segments: Vec<Segment>,
}

impl PackedBatchBuilder {
    /// Adds a segment and returns its index. With a `prefix`, positions continue after it.
    pub fn push(&mut self, ids: &[u32], prefix: Option<usize>) -> usize {
        let prefix = prefix.filter(|&p| p < self.segments.len() && self.segments[p].prefix.is_none());
        let first = prefix.map_or(0, |p| self.segments[p].len) as u32;
        self.segments.push(Segment { start: self.ids.len(), len: ids.len(), prefix });
        self.ids.extend_from_slice(ids);
        self.positions.extend((0..ids.len() as u32).map(|i| first + i));
        self.segments.len() - 1
    }

    pub fn segment(&self, index: usize) -> Segment {
        self.segments[index]
    }

    pub fn build(self, device: &Device) -> Result<PackedBatch> {
        let n = self.ids.len();
        Ok(PackedBatch {
            ids: Tensor::from_vec(self.ids, n, device)?,
            positions: Tensor::from_vec(self.positions, n, device)?,
            segments: self.segments,
        })
    }
}

impl PackedBatch {
    /// Length of the sequence a segment ends: its prefix's tokens plus its own.
    fn sequence_len(&self, s: &Segment) -> usize {
        s.prefix.map_or(0, |p| self.segments[p].len) + s.len
    }
}

struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(w: &Weights, name: &str, size: usize, eps: f64, dtype: DType) -> Result<Self> {
        Ok(Self { weight: w.get(name, &[size], dtype)?, eps: eps as f32 })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(x, &self.weight, self.eps)?)
    }
}

/// y = x W^T, with W stored (out, in) as in the checkpoint.
struct Linear {
    weight_t: Tensor,
}

impl Linear {
    /// Concatenates several projections that read the same input (q/k/v, gate/up) into one matmul.
    fn load_fused(w: &Weights, names: &[(String, usize)], input: usize, dtype: DType) -> Result<Self> {
        let parts = names.iter().map(|(n, out)| w.get(n, &[*out, input], dtype)).collect::<Result<Vec<_>>>()?;
        // Stored transposed and contiguous so the matmul streams the weight row-major.
        Ok(Self { weight_t: Tensor::cat(&parts, 0)?.t()?.contiguous()? })
    }

    fn load(w: &Weights, name: &str, out: usize, input: usize, dtype: DType) -> Result<Self> {
        Self::load_fused(w, &[(name.to_string(), out)], input, dtype)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight_t)?)
    }
}

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
    embed: Tensor,
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
                    gate_up: Linear::load_fused(
                        w,
                        &[(format!("{p}.mlp.gate_proj.weight"), i), (format!("{p}.mlp.up_proj.weight"), i)],
                        h,
                        dtype,
                    )?,
                    down: Linear::load(w, &format!("{p}.mlp.down_proj.weight"), h, i, dtype)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed: w.get("model.embed_tokens.weight", &[cfg.vocab_size, h], dtype)?,
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
        // The block layout and its causal masks are the same in every layer: build them once.
        let blocks = self.attention_blocks(batch)?;
        let mut x = self.embed.index_select(&batch.ids, 0)?; // (tokens, hidden)
        for layer in &self.layers {
            let attn = self.attention(layer, &layer.input_norm.forward(&x)?, batch, &blocks)?;
            x = (x + layer.o.forward(&attn)?)?;
            let mlp = self.mlp(layer, &layer.post_attention_norm.forward(&x)?)?;
            x = (x + mlp)?;
        }
        let rows = Tensor::from_slice(rows, rows.len(), x.device())?;
        let picked = x.index_select(&rows, 0)?;
        Ok(self.norm.forward(&picked)?.to_dtype(DType::F32)?)
    }

    fn mlp(&self, layer: &Layer, x: &Tensor) -> Result<Tensor> {
        let i = self.cfg.intermediate_size;
        let gate_up = layer.gate_up.forward(x)?; // (tokens, 2 * intermediate)
        let act = (candle_nn::ops::silu(&gate_up.narrow(D::Minus1, 0, i)?)? * gate_up.narrow(D::Minus1, i, i)?)?;
        layer.down.forward(&act)
    }

    /// Each segment's query blocks, with their causal masks, in packed order.
    fn attention_blocks(&self, batch: &PackedBatch) -> Result<Vec<Vec<QueryBlock>>> {
        let nh = self.cfg.num_attention_heads;
        batch
            .segments
            .iter()
            .map(|seg| {
                let offset = batch.sequence_len(seg) - seg.len;
                let chunk = (ATTENTION_BLOCK_ELEMENTS / (nh * (offset + seg.len)).max(1))
                    .min(QUERY_BLOCK)
                    .clamp(1, seg.len.max(1));
                (0..seg.len)
                    .step_by(chunk)
                    .map(|q_start| {
                        let rows = chunk.min(seg.len - q_start);
                        let first = offset + q_start;
                        Ok(QueryBlock {
                            q_start,
                            rows,
                            mask: causal_mask(first, rows, first + rows, batch.ids.device())?,
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// Causal self-attention within each packed sequence; returns (tokens, heads * head_dim).
    fn attention(&self, layer: &Layer, x: &Tensor, batch: &PackedBatch, blocks: &[Vec<QueryBlock>]) -> Result<Tensor> {
        let c = &self.cfg;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let tokens = x.dim(0)?;
        let qkv = layer.qkv.forward(x)?; // (tokens, (nh + 2 nkv) hd)
        let heads = |offset: usize, n: usize| -> Result<Tensor> {
            // (1, n, tokens, hd)
            Ok(qkv.narrow(1, offset * hd, n * hd)?.reshape((tokens, n, hd))?.transpose(0, 1)?.unsqueeze(0)?)
        };
        // Scores and the weighted sum run in f32 whatever the compute dtype: rounding attention
        // logits to bf16 before the softmax costs whole percents, and fused attention kernels
        // (PyTorch's included) accumulate in f32 too.
        let f32 = |t: Tensor| -> Result<Tensor> { Ok(t.squeeze(0)?.to_dtype(DType::F32)?.contiguous()?) };
        let q = f32(self.rope.apply(&heads(0, nh)?, &batch.positions)?)?;
        let k = f32(self.rope.apply(&heads(nh, nkv)?, &batch.positions)?)?;
        let v = f32(heads(nh + nkv, nkv)?)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut outputs = Vec::with_capacity(batch.segments.len());
        for (seg, seg_blocks) in batch.segments.iter().zip(blocks) {
            let own = |t: &Tensor, s: &Segment| t.narrow(1, s.start, s.len);
            // A continuation sees its prefix's keys first, exactly as if they were its own tokens.
            let (k, v, offset) = match seg.prefix.map(|p| batch.segments[p]) {
                None => (own(&k, seg)?, own(&v, seg)?, 0),
                Some(p) => (
                    Tensor::cat(&[own(&k, &p)?, own(&k, seg)?], 1)?,
                    Tensor::cat(&[own(&v, &p)?, own(&v, seg)?], 1)?,
                    p.len,
                ),
            };
            let q = own(&q, seg)?; // (nh, len, hd)
            for b in seg_blocks {
                let q = q.narrow(1, b.q_start, b.rows)?;
                outputs.push(self.attend_block(&q, &k, &v, offset + b.q_start, &b.mask, scale)?);
            }
        }
        // Each output block is (rows, nh * hd) in packed order.
        Ok(Tensor::cat(&outputs, 0)?.to_dtype(self.dtype)?)
    }

    /// Query rows at absolute positions [q_start, q_start + rows) of one sequence against its keys
    /// [0, q_start + rows).
    fn attend_block(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        q_start: usize,
        mask: &Tensor,
        scale: f64,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let rep = nh / nkv;
        let rows = q.dim(1)?;
        let keys = q_start + rows;
        let k = k.narrow(1, 0, keys)?;
        let v = v.narrow(1, 0, keys)?;
        // Query heads h = g * rep + r share kv head g: fold r into the rows -> (nkv, rep * rows, hd).
        // Scaling q (rows x head_dim) instead of the scores (rows x keys) is one pass over far fewer
        // elements.
        let q = (q.contiguous()?.reshape((nkv, rep * rows, hd))? * scale)?;
        let scores = q.matmul(&k.t()?)?; // (nkv, rep * rows, keys)
        let scores = scores.reshape((nkv, rep, rows, keys))?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.reshape((nkv, rep * rows, keys))?.matmul(&v.contiguous()?)?; // (nkv, rep * rows, hd)
        Ok(out.reshape((nh, rows, hd))?.transpose(0, 1)?.reshape((rows, nh * hd))?)
    }
}

/// Query rows [q_start, q_start + rows) of a segment and their (rows, keys) causal mask.
struct QueryBlock {
    q_start: usize,
    rows: usize,
    mask: Tensor,
}

/// (rows, keys) additive mask: query row i (absolute position q_start + i) sees keys 0..=q_start + i.
fn causal_mask(q_start: usize, rows: usize, keys: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..rows)
        .flat_map(|i| (0..keys).map(move |j| if j <= q_start + i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(mask, (rows, keys), device)?)
}
