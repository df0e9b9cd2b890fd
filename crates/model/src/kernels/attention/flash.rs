//! Attention on flash-attn v2's variable-length CUDA kernel (feature `flash-attn`). The packed
//! layout is what the kernel takes: one row per token, cumulative sequence lengths. A continuation's
//! keys are its prefix's followed by its own, gathered by one index per forward pass; with more keys
//! than queries the kernel aligns the causal mask to the end, which is exactly "the prefix's tokens
//! come first".

use candle_core::{Device, Tensor};

use super::Heads;
use crate::error::Result;
use crate::kernels::packed::PackedBatch;
use crate::kernels::rope::Rope;

/// What every layer shares: positions, the key gather and the cumulative lengths.
pub struct Varlen {
    positions: Tensor,
    /// Packed token index of each key row, sequence by sequence.
    keys: Tensor,
    cumulative_q: Tensor,
    cumulative_k: Tensor,
    max_q: usize,
    max_k: usize,
}

impl Varlen {
    pub fn new(batch: &PackedBatch, device: &Device) -> Result<Self> {
        let (mut keys, mut cumulative_q, mut cumulative_k) = (Vec::new(), vec![0u32], vec![0u32]);
        let (mut max_q, mut max_k) = (0, 0);
        for seg in &batch.segments {
            if let Some(p) = seg.prefix.map(|p| batch.segments[p]) {
                keys.extend(p.start as u32..(p.start + p.len) as u32);
            }
            keys.extend(seg.start as u32..(seg.start + seg.len) as u32);
            let len_k = batch.sequence_len(seg);
            cumulative_q.push(cumulative_q[cumulative_q.len() - 1] + seg.len as u32);
            cumulative_k.push(cumulative_k[cumulative_k.len() - 1] + len_k as u32);
            (max_q, max_k) = (max_q.max(seg.len), max_k.max(len_k));
        }
        let vector = |v: Vec<u32>| {
            let n = v.len();
            Tensor::from_vec(v, n, device)
        };
        Ok(Self {
            positions: vector(batch.positions.clone())?,
            keys: vector(keys)?,
            cumulative_q: vector(cumulative_q)?,
            cumulative_k: vector(cumulative_k)?,
            max_q,
            max_k,
        })
    }

    /// (tokens, (heads + 2 kv_heads) head_dim) -> (tokens, heads head_dim); bf16 or f16 only.
    pub fn attend(&self, qkv: &Tensor, h: Heads, rope: &Rope, scale: f32) -> Result<Tensor> {
        let Heads { heads, kv_heads, head_dim: hd } = h;
        let tokens = qkv.dim(0)?;
        // (1, tokens, n, hd), the layout rope_thd and the kernel both read.
        let split = |offset: usize, n: usize| qkv.narrow(1, offset * hd, n * hd)?.reshape((1, tokens, n, hd));
        let q = rope.apply_thd(&split(0, heads)?, &self.positions)?.squeeze(0)?;
        let k = rope.apply_thd(&split(heads, kv_heads)?, &self.positions)?.squeeze(0)?;
        let v = split(heads + kv_heads, kv_heads)?.squeeze(0)?;
        let (k, v) = (k.index_select(&self.keys, 0)?, v.contiguous()?.index_select(&self.keys, 0)?);
        let out = candle_flash_attn::flash_attn_varlen(
            &q.contiguous()?,
            &k,
            &v,
            &self.cumulative_q,
            &self.cumulative_k,
            self.max_q,
            self.max_k,
            scale,
            true,
        )?;
        Ok(out.reshape((tokens, heads * hd))?)
    }
}
