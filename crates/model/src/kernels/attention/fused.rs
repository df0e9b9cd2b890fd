//! Causal attention over a packed batch as one CPU kernel: rotary embedding, grouped-query
//! attention and the per-segment causal and prefix structure, with flash attention's online softmax
//! over key tiles. Nothing of size (sequence x sequence) is ever allocated, no mask is built, and
//! the masked half of each causal block is skipped rather than exponentiated.

use std::mem::MaybeUninit;

use multiversion::multiversion;
use rayon::prelude::*;

use super::scaffold::{self, rotate, softmax_step, FusedAttention, KEY_TILE, STAGE_TOKENS};
use super::{Heads, Scoring};
use crate::kernels::matmul::{product, Out, View};
use crate::kernels::simd::{filled, Disjoint, Element};

impl FusedAttention<'_> {
    pub(super) fn run<T: Element>(&self, qkv: &[T], tokens: usize) -> Vec<T> {
        let Heads { heads, head_dim: hd, .. } = self.heads;
        let (q, kv) = self.prepare(qkv, tokens);
        // SAFETY: the items cover every (token, group) pair, and each writes all its heads' values.
        unsafe { filled(tokens * heads * hd, |out| self.attend_items(&q, &kv, tokens, out)) }
    }

    /// Every item's attention output, rounded to the dtype, into `out` (tokens, heads * head_dim).
    fn attend_items<T: Element>(&self, q: &[f32], kv: &KeyValues, tokens: usize, out: &mut [MaybeUninit<T>]) {
        let Heads { heads, kv_heads, head_dim: hd } = self.heads;
        let rep = heads / kv_heads;
        // Every (token, group) pair belongs to exactly one item.
        let dst = Disjoint(out.as_mut_ptr());
        self.items().par_iter().for_each(|item| {
            let (keys, first) = self.keys(item);
            let span = Keys {
                keys,
                first,
                first_tile: self.first_tile(first),
                at: &|tile| {
                    let (s, row) = self.key_home(item.segment, tile, KEY_TILE);
                    let (k, v, _) = kv.region(s, item.group, hd);
                    (&k[row * hd..], &v[row * hd..])
                },
            };
            let rows = self.query_rows(q, item, tokens);
            let (mut acc, mut sum) = (vec![0.0f32; rows.len()], vec![0.0f32; rows.len() / hd]);
            attend(rows, rep, hd, &span, self.scoring, &mut acc, &mut sum);
            // SAFETY: `dst` is the whole output, and these rows are this item's alone.
            unsafe { self.store(item, &acc, &sum, &dst) };
        });
    }

    /// Scaled queries (see `stage_queries`), and every segment's rotated keys and plain values from
    /// `first_staged` to the end of its sequence (see `key_token`). All f32.
    fn prepare<T: Element>(&self, qkv: &[T], tokens: usize) -> (Vec<f32>, KeyValues) {
        let Heads { heads, kv_heads, head_dim: hd } = self.heads;
        let width = (heads + 2 * kv_heads) * hd;
        let q = self.stage_queries(qkv, tokens, self.scoring.scale);
        // Whole key tiles of a prefix are read where the prefix staged them.
        let (regions, total) = self.key_regions(KEY_TILE, |len| len);
        // Tasks of up to STAGE_TOKENS rows of one (segment, kv head), each writing its own rows.
        let tasks: Vec<(usize, usize, usize)> = regions
            .iter()
            .enumerate()
            .flat_map(|(s, &(len, _))| {
                (0..kv_heads).flat_map(move |g| (0..len).step_by(STAGE_TOKENS).map(move |j| (s, g, j)))
            })
            .collect();
        let stage = |k: &mut [MaybeUninit<f32>], v: &mut [MaybeUninit<f32>]| {
            let (kd, vd) = (Disjoint(k.as_mut_ptr()), Disjoint(v.as_mut_ptr()));
            tasks.par_iter().for_each(|&(s, g, j0)| {
                let (kd, vd) = (&kd, &vd);
                let (len, start) = regions[s];
                let n = STAGE_TOKENS.min(len - j0);
                let base = start + (g * len + j0) * hd;
                // SAFETY: rows j0..j0 + n of region (s, g) are this task's alone, inside both buffers.
                let (k, v) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(kd.0.add(base), n * hd),
                        std::slice::from_raw_parts_mut(vd.0.add(base), n * hd),
                    )
                };
                let first = self.first_staged(s, KEY_TILE);
                for (i, (k, v)) in k.chunks_exact_mut(hd).zip(v.chunks_exact_mut(hd)).enumerate() {
                    let t = self.key_token(s, first + j0 + i);
                    let row = &qkv[t * width..][..width];
                    let (cos, sin) = self.rope.at(self.batch.positions[t] as usize);
                    rotate(&row[(heads + g) * hd..][..hd], cos, sin, 1.0, k);
                    for (o, x) in v.iter_mut().zip(&row[(heads + kv_heads + g) * hd..][..hd]) {
                        o.write(x.to_f32());
                    }
                }
            });
        };
        let (mut k, mut v) = (Vec::with_capacity(total), Vec::with_capacity(total));
        stage(&mut k.spare_capacity_mut()[..total], &mut v.spare_capacity_mut()[..total]);
        // SAFETY: the tasks wrote every row of every region of both buffers.
        unsafe {
            k.set_len(total);
            v.set_len(total);
        }
        (q, KeyValues { regions, k, v })
    }
}

/// The staged keys and values, each (segment, kv head) region (keys it stages, head_dim).
type KeyValues = scaffold::KeyValues<f32>;

/// The keys and values a block of queries attends to: its sequence's first `keys`, query token t of
/// the block (which starts at position `first`) seeing keys [0, first + t] (within its window),
/// none before the key tile `first_tile`.
struct Keys<'a> {
    keys: usize,
    first: usize,
    first_tile: usize,
    /// Key tile `tile`'s keys and values, (keys, head_dim) each from the tile's first key on.
    at: &'a dyn Fn(usize) -> (&'a [f32], &'a [f32]),
}

/// Unnormalised softmax(q k^T) v for `q` = (tokens * rep, head_dim) rows, token-major, over the
/// keys' tiles in turn, with flash attention's running max and sum: `out` (same shape as `q`,
/// zeroed) accumulates, `sum` (one per row, zeroed) receives each row's softmax denominator.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn attend(q: &[f32], rep: usize, hd: usize, span: &Keys, scoring: Scoring, out: &mut [f32], sum: &mut [f32]) {
    let rows = q.len() / hd;
    let mut max = vec![f32::NEG_INFINITY; rows];
    let mut scores = vec![0.0f32; rows * KEY_TILE];
    let len = span.keys;
    for tile in (span.first_tile..len).step_by(KEY_TILE) {
        let n = KEY_TILE.min(len - tile);
        let (k, v) = (span.at)(tile);
        let (k, v) = (&k[..n * hd], &v[..n * hd]);
        let s = &mut scores[..rows * n];
        // s (rows, n) = q (rows, hd) k^T, k being (n, hd).
        let (q_rows, keys) = (View::row_major(q, rows, hd), View::row_major(k, n, hd).t());
        product(Out::Replace(s), q_rows, keys, 1);
        for (row, s) in s.chunks_exact_mut(n).enumerate() {
            let (lo, hi) = scoring.seen(span.first + row / rep, tile, n);
            let (before, rest) = s.split_at_mut(lo);
            let (seen, after) = rest.split_at_mut(hi - lo);
            before.fill(0.0);
            after.fill(0.0);
            scoring.cap(seen);
            softmax_step(seen, &mut max[row], &mut sum[row], &mut out[row * hd..][..hd]);
        }
        // out (rows, hd) += s (rows, n) v (n, hd).
        product(Out::Accumulate(out), View::row_major(s, rows, n), View::row_major(v, n, hd), 1);
    }
}
