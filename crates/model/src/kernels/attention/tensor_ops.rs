//! Attention as candle tensor ops, for devices without the fused kernel (CUDA): per segment, query
//! blocks against the keys before their end, with an explicit causal mask.

use candle_core::{DType, Device, Tensor};

use super::{Heads, Scoring};
use crate::error::Result;
use crate::kernels::packed::{PackedBatch, Segment};
use crate::kernels::rope::Rope;

/// Upper bound on one attention score block (query rows x keys x heads, in elements), so a long
/// sequence is processed in query chunks instead of materialising (len^2 x heads) at once.
const ATTENTION_BLOCK_ELEMENTS: usize = 16 << 20;

/// Query rows per attention block. Block b only computes scores against keys [0, end of b), so
/// smaller blocks skip more of the masked upper triangle (half of it as blocks shrink) at the cost
/// of more, smaller matmuls.
const QUERY_BLOCK: usize = 128;

/// What every layer shares: the positions on the device, and for each window the layers use
/// (`None`: plain causal), each segment's query blocks and masks.
pub struct Blocks {
    positions: Tensor,
    per_window: Vec<(Option<usize>, Vec<Vec<QueryBlock>>)>,
}

/// Query rows [q_start, q_start + rows) of a segment and their (rows, keys) causal mask.
struct QueryBlock {
    q_start: usize,
    rows: usize,
    mask: Tensor,
}

impl Blocks {
    pub fn new(batch: &PackedBatch, heads: Heads, layers: &[Scoring], device: &Device) -> Result<Self> {
        let mut windows: Vec<Option<usize>> = layers.iter().map(|s| s.window).collect();
        windows.sort_unstable();
        windows.dedup();
        let per_window = windows
            .into_iter()
            .map(|window| Ok((window, Self::segments(batch, heads, window, device)?)))
            .collect::<Result<_>>()?;
        let positions = Tensor::from_slice(&batch.positions, batch.positions.len(), device)?;
        Ok(Self { positions, per_window })
    }

    fn segments(
        batch: &PackedBatch,
        heads: Heads,
        window: Option<usize>,
        device: &Device,
    ) -> Result<Vec<Vec<QueryBlock>>> {
        batch
            .segments
            .iter()
            .map(|seg| {
                let offset = batch.sequence_len(seg) - seg.len;
                let chunk = (ATTENTION_BLOCK_ELEMENTS / (heads.heads * (offset + seg.len)).max(1))
                    .min(QUERY_BLOCK)
                    .clamp(1, seg.len.max(1));
                (0..seg.len)
                    .step_by(chunk)
                    .map(|q_start| {
                        let rows = chunk.min(seg.len - q_start);
                        let first = offset + q_start;
                        let mask = causal_mask(first, rows, first + rows, window, device)?;
                        Ok(QueryBlock { q_start, rows, mask })
                    })
                    .collect()
            })
            .collect()
    }

    /// (tokens, (heads + 2 kv_heads) head_dim) -> (tokens, heads head_dim), in qkv's dtype.
    pub fn attend(&self, qkv: &Tensor, batch: &PackedBatch, h: Heads, rope: &Rope, scoring: Scoring) -> Result<Tensor> {
        let Heads { heads: nh, kv_heads: nkv, head_dim: hd } = h;
        let tokens = qkv.dim(0)?;
        let heads = |offset: usize, n: usize| -> Result<Tensor> {
            // (1, n, tokens, hd)
            Ok(qkv.narrow(1, offset * hd, n * hd)?.reshape((tokens, n, hd))?.transpose(0, 1)?.unsqueeze(0)?)
        };
        // Scores and the weighted sum run in f32 whatever the compute dtype: rounding attention
        // logits to bf16 before the softmax costs whole percents, and fused attention kernels
        // (PyTorch's included) accumulate in f32 too.
        let f32 = |t: Tensor| -> Result<Tensor> { Ok(t.squeeze(0)?.to_dtype(DType::F32)?.contiguous()?) };
        let q = f32(rope.apply(&heads(0, nh)?, &self.positions)?)?;
        let k = f32(rope.apply(&heads(nh, nkv)?, &self.positions)?)?;
        let v = f32(heads(nh + nkv, nkv)?)?;
        let per_segment = self
            .per_window
            .iter()
            .find(|(w, _)| *w == scoring.window)
            .map(|(_, blocks)| blocks)
            .ok_or_else(|| candle_core::Error::Msg("attention: a layer's window was not prepared".into()))?;
        let mut outputs = Vec::with_capacity(batch.segments.len());
        for (seg, blocks) in batch.segments.iter().zip(per_segment) {
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
            for b in blocks {
                let q = q.narrow(1, b.q_start, b.rows)?;
                outputs.push(attend_block(h, &q, &k, &v, offset + b.q_start, &b.mask, scoring)?);
            }
        }
        // Each output block is (rows, nh * hd) in packed order.
        Ok(Tensor::cat(&outputs, 0)?.to_dtype(qkv.dtype())?)
    }
}

/// Query rows at absolute positions [q_start, q_start + rows) of one sequence against its keys
/// [0, q_start + rows).
fn attend_block(
    h: Heads,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q_start: usize,
    mask: &Tensor,
    scoring: Scoring,
) -> Result<Tensor> {
    let Heads { heads: nh, kv_heads: nkv, head_dim: hd } = h;
    let rep = nh / nkv;
    let rows = q.dim(1)?;
    let keys = q_start + rows;
    let k = k.narrow(1, 0, keys)?;
    let v = v.narrow(1, 0, keys)?;
    // Query heads h = g * rep + r share kv head g: fold r into the rows -> (nkv, rep * rows, hd).
    // Scaling q (rows x head_dim) instead of the scores (rows x keys) is one pass over far fewer
    // elements.
    let q = (q.contiguous()?.reshape((nkv, rep * rows, hd))? * scoring.scale as f64)?;
    let mut scores = q.matmul(&k.t()?)?; // (nkv, rep * rows, keys)
    if let Some(cap) = scoring.softcap {
        scores = ((scores / cap as f64)?.tanh()? * cap as f64)?;
    }
    let scores = scores.reshape((nkv, rep, rows, keys))?.broadcast_add(mask)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    let out = probs.reshape((nkv, rep * rows, keys))?.matmul(&v.contiguous()?)?; // (nkv, rep * rows, hd)
    Ok(out.reshape((nh, rows, hd))?.transpose(0, 1)?.reshape((rows, nh * hd))?)
}

/// (rows, keys) additive mask: query row i (absolute position p = q_start + i) sees keys 0..=p,
/// or with a window w only those after p - w.
fn causal_mask(q_start: usize, rows: usize, keys: usize, window: Option<usize>, device: &Device) -> Result<Tensor> {
    let sees = move |p: usize, j: usize| j <= p && window.is_none_or(|w| j + w > p);
    let mask: Vec<f32> = (0..rows)
        .flat_map(|i| (0..keys).map(move |j| if sees(q_start + i, j) { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(mask, (rows, keys), device)?)
}
