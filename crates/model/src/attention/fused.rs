//! Causal attention over a packed batch as one CPU kernel: rotary embedding, grouped-query
//! attention and the per-segment causal and prefix structure, with flash attention's online softmax
//! over key tiles. Nothing of size (sequence x sequence) is ever allocated, no mask is built, and
//! the masked half of each causal block is skipped rather than exponentiated.

use std::mem::MaybeUninit;

use multiversion::multiversion;
use rayon::prelude::*;

use super::scaffold::{rotate, softmax_step, visible, FusedAttention, KEY_TILE, STAGE_TOKENS};
use super::Heads;
use crate::matmul::{product, Out, View};
use crate::simd::{filled, Disjoint, Element};

impl FusedAttention<'_> {
    pub(super) fn run<T: Element>(&self, qkv: &[T], tokens: usize) -> Vec<T> {
        let Heads { heads, head_dim: hd, .. } = self.heads;
        let (q, k, v) = self.prepare(qkv, tokens);
        // SAFETY: the items cover every (token, group) pair, and each writes all its heads' values.
        unsafe { filled(tokens * heads * hd, |out| self.attend_items(&q, &k, &v, tokens, out)) }
    }

    /// Every item's attention output, rounded to the dtype, into `out` (tokens, heads * head_dim).
    fn attend_items<T: Element>(&self, q: &[f32], k: &[f32], v: &[f32], tokens: usize, out: &mut [MaybeUninit<T>]) {
        let Heads { heads, kv_heads, head_dim: hd } = self.heads;
        let rep = heads / kv_heads;
        // Every (token, group) pair belongs to exactly one item.
        let dst = Disjoint(out.as_mut_ptr());
        self.items().par_iter().for_each(|item| {
            let spans: Vec<Keys> = self
                .spans(item)
                .map(|(segment, keys, causal_from)| {
                    let start = item.group * tokens + self.batch.segments[segment].start;
                    let at = start * hd..(start + keys) * hd;
                    Keys { k: &k[at.clone()], v: &v[at], causal_from }
                })
                .collect();
            let rows = self.query_rows(q, item, tokens);
            let (mut acc, mut sum) = (vec![0.0f32; rows.len()], vec![0.0f32; rows.len() / hd]);
            attend(rows, rep, hd, &spans, &mut acc, &mut sum);
            // SAFETY: `dst` is the whole output, and these rows are this item's alone.
            unsafe { self.store(item, &acc, &sum, &dst) };
        });
    }

    /// Scaled queries (see `stage_queries`), rotated keys and plain values as (kv_heads, tokens,
    /// head_dim). All f32.
    fn prepare<T: Element>(&self, qkv: &[T], tokens: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let Heads { heads, kv_heads, head_dim: hd } = self.heads;
        let width = (heads + 2 * kv_heads) * hd;
        let q = self.stage_queries(qkv, tokens, 1.0 / (hd as f32).sqrt());
        let (mut k, mut v) = (Vec::with_capacity(tokens * kv_heads * hd), Vec::with_capacity(tokens * kv_heads * hd));
        let kv_len = tokens * kv_heads * hd;
        k.spare_capacity_mut()[..kv_len]
            .par_chunks_mut(tokens * hd)
            .zip(v.spare_capacity_mut()[..kv_len].par_chunks_mut(tokens * hd))
            .enumerate()
            .for_each(|(g, (k, v))| {
                k.par_chunks_mut(STAGE_TOKENS * hd).zip(v.par_chunks_mut(STAGE_TOKENS * hd)).enumerate().for_each(
                    |(c, (k, v))| {
                        for (i, (k, v)) in k.chunks_exact_mut(hd).zip(v.chunks_exact_mut(hd)).enumerate() {
                            let t = c * STAGE_TOKENS + i;
                            let row = &qkv[t * width..][..width];
                            let (cos, sin) = self.rope.at(self.batch.positions[t] as usize);
                            rotate(&row[(heads + g) * hd..][..hd], cos, sin, 1.0, k);
                            for (o, x) in v.iter_mut().zip(&row[(heads + kv_heads + g) * hd..][..hd]) {
                                o.write(x.to_f32());
                            }
                        }
                    },
                );
            });
        // SAFETY: the loop above wrote every (group, token, dim) of both buffers.
        unsafe {
            k.set_len(kv_len);
            v.set_len(kv_len);
        }
        (q, k, v)
    }
}

/// A run of keys and values, (keys, head_dim) each, that a block of queries attends to.
struct Keys<'a> {
    k: &'a [f32],
    v: &'a [f32],
    /// `Some(first)`: these are the queries' own sequence, and query token t (of the block that
    /// starts at token `first`) sees keys [0, first + t]. `None`: every query sees every key.
    causal_from: Option<usize>,
}

/// Unnormalised softmax(q k^T) v for `q` = (tokens * rep, head_dim) rows, token-major, over every
/// span in turn, with flash attention's running max and sum: `out` (same shape as `q`, zeroed)
/// accumulates, `sum` (one per row, zeroed) receives each row's softmax denominator.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn attend(q: &[f32], rep: usize, hd: usize, spans: &[Keys], out: &mut [f32], sum: &mut [f32]) {
    let rows = q.len() / hd;
    let mut max = vec![f32::NEG_INFINITY; rows];
    let mut scores = vec![0.0f32; rows * KEY_TILE];
    for span in spans {
        let len = span.k.len() / hd;
        for tile in (0..len).step_by(KEY_TILE) {
            let n = KEY_TILE.min(len - tile);
            let (k, v) = (&span.k[tile * hd..][..n * hd], &span.v[tile * hd..][..n * hd]);
            let s = &mut scores[..rows * n];
            // s (rows, n) = q (rows, hd) k^T, k being (n, hd).
            let (q_rows, keys) = (View::row_major(q, rows, hd), View::row_major(k, n, hd).t());
            product(Out::Replace(s), q_rows, keys, 1);
            for (row, s) in s.chunks_exact_mut(n).enumerate() {
                let (seen, hidden) = s.split_at_mut(visible(span.causal_from, row / rep, tile, n));
                hidden.fill(0.0);
                softmax_step(seen, &mut max[row], &mut sum[row], &mut out[row * hd..][..hd]);
            }
            // out (rows, hd) += s (rows, n) v (n, hd).
            product(Out::Accumulate(out), View::row_major(s, rows, n), View::row_major(v, n, hd), 1);
        }
    }
}
