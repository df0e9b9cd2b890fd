//! What the CPU attention kernels share: the op's description of the batch, its work items (query
//! blocks per kv-head group), query staging with the rotary embedding, the keys each item sees,
//! the causal cut within a key tile, flash attention's online-softmax step, and the store of an
//! item's normalised rows. The f32 kernel (`fused`) and the AMX kernel (`amx`) each add their own
//! inner loop; neither imports the other.
//!
//! Batch invariance: every query row's numbers are computed from its own sequence alone, in an
//! order fixed by its position in that sequence. Key tiles are cut at multiples of [`KEY_TILE`]
//! from position 0 of the sequence, whether its prompt is shared or not. A continuation reads the
//! whole "granules" of keys inside its prefix (a kernel's unit of key layout: a key tile for the
//! f32 kernel, a 32-key block for the AMX one) from the prefix's staged keys, and stages the rest
//! of its sequence (the prefix's last partial granule, then its own keys) itself; a kernel reads
//! each key from one place or the other, never computes a sum in another order for it. Scores and
//! outputs are per-row products; keys past a row's position enter as exact zeros.

use std::mem::MaybeUninit;

use multiversion::multiversion;
use rayon::prelude::*;

use super::{Heads, Scoring};
use crate::kernels::packed::PackedBatch;
use crate::kernels::rope::RopeTable;
use crate::kernels::simd::{self, filled, Disjoint, Element};

/// Query tokens per work item. An item's rows are these tokens times the query heads of one kv
/// head; it reads keys only up to its last token, so small blocks skip most of the masked triangle,
/// and 32 x 3-4 rows keep the score and output tiles in L2.
const QUERY_BLOCK: usize = 32;
/// Keys per softmax step: bounds the score tile whatever the sequence length.
pub(super) const KEY_TILE: usize = 256;

/// The op candle runs on the fused (tokens, (heads + 2 kv_heads) * head_dim) projection output;
/// it returns (tokens, heads * head_dim) in the same dtype.
pub struct FusedAttention<'a> {
    pub heads: Heads,
    pub batch: &'a PackedBatch,
    pub rope: &'a RopeTable,
    pub scoring: Scoring,
    /// bf16 on the AMX tiles ([`crate::kernels::plan::KernelPlan::attention_on_tiles`]).
    pub tiles: bool,
}

/// Every segment's staged keys and values, in the layout of the kernel that staged them: per
/// segment a (kv_heads, rows, ...) region of `k` and of `v` (see `FusedAttention::key_regions`).
pub(super) struct KeyValues<T> {
    /// Per segment: (its rows per kv head, where its region starts).
    pub regions: Vec<(usize, usize)>,
    pub k: Vec<T>,
    pub v: Vec<T>,
}

impl<T> KeyValues<T> {
    /// Kv head `group`'s part of the segment's region in `k` and `v`, and its rows.
    pub fn region(&self, segment: usize, group: usize, hd: usize) -> (&[T], &[T], usize) {
        let (rows, start) = self.regions[segment];
        let at = start + group * rows * hd..start + (group + 1) * rows * hd;
        (&self.k[at.clone()], &self.v[at], rows)
    }
}

/// One unit of parallel work: a block of one segment's query tokens, for one kv head's group.
pub(super) struct Item {
    pub segment: usize,
    pub group: usize,
    pub first: usize,
    pub len: usize,
}

impl FusedAttention<'_> {
    /// Rotated queries times `scale`, as (kv_heads, tokens, rep, head_dim) so that one item's rows
    /// are contiguous.
    pub(super) fn stage_queries<T: Element, O: Element>(&self, qkv: &[T], tokens: usize, scale: f32) -> Vec<O> {
        let Heads { heads, kv_heads, head_dim: hd } = self.heads;
        let (rep, width) = (heads / kv_heads, (heads + 2 * kv_heads) * hd);
        // SAFETY: every (group, token) gets all its rep heads rotated.
        unsafe {
            filled(tokens * heads * hd, |q| {
                q.par_chunks_mut(tokens * rep * hd).enumerate().for_each(|(g, q)| {
                    q.par_chunks_mut(STAGE_TOKENS * rep * hd).enumerate().for_each(|(c, q)| {
                        for (i, q) in q.chunks_exact_mut(rep * hd).enumerate() {
                            let t = c * STAGE_TOKENS + i;
                            let (cos, sin) = self.rope.at(self.batch.positions[t] as usize);
                            rotate(&qkv[t * width + g * rep * hd..][..rep * hd], cos, sin, scale, q);
                        }
                    })
                })
            })
        }
    }

    /// The keys an item attends to, as (how many, from position 0 of its segment's sequence; the
    /// sequence position of the item's first query token).
    pub(super) fn keys(&self, item: &Item) -> (usize, usize) {
        let first = self.prefix_len(item.segment) + item.first;
        (first + item.len, first)
    }

    /// The first key tile any of an item's queries sees (tiles start at multiples of KEY_TILE
    /// from position 0 whatever the window, so skipping the ones before changes no sum).
    pub(super) fn first_tile(&self, first: usize) -> usize {
        self.scoring.first_key(first) / KEY_TILE * KEY_TILE
    }

    /// Where the granule of segment `s`'s sequence that starts at key `key` (a multiple of
    /// `granule`) is staged: (the segment whose region holds it, its row there).
    pub(super) fn key_home(&self, s: usize, key: usize, granule: usize) -> (usize, usize) {
        let first = self.first_staged(s, granule);
        match self.batch.segments[s].prefix {
            Some(p) if key < first => (p, key),
            _ => (s, key - first),
        }
    }

    /// Tokens of the segment's prefix (0 for a segment that continues none).
    pub(super) fn prefix_len(&self, segment: usize) -> usize {
        let segments = &self.batch.segments;
        segments[segment].prefix.map_or(0, |p| segments[p].len)
    }

    /// The first key of the segment's sequence that its own staged region holds: 0, or for a
    /// continuation the end of its prefix's whole granules, which it reads from the prefix's region.
    pub(super) fn first_staged(&self, segment: usize, granule: usize) -> usize {
        self.prefix_len(segment) / granule * granule
    }

    /// The packed token that is key `j` of the segment's whole sequence (its prefix's, then its own).
    pub(super) fn key_token(&self, segment: usize, j: usize) -> usize {
        let (seg, prefix) = (self.batch.segments[segment], self.prefix_len(segment));
        match seg.prefix {
            Some(p) if j < prefix => self.batch.segments[p].start + j,
            _ => seg.start + j - prefix,
        }
    }

    /// Each segment's staged key region: (its rows per kv head, `rows` of the keys it stages, those
    /// from `first_staged` to the end of its sequence; where the region starts, in elements of a
    /// (kv_heads, rows, head_dim) block per segment), and the elements of all regions.
    pub(super) fn key_regions(&self, granule: usize, rows: impl Fn(usize) -> usize) -> (Vec<(usize, usize)>, usize) {
        let Heads { kv_heads, head_dim: hd, .. } = self.heads;
        let mut at = 0;
        let regions = (0..self.batch.segments.len())
            .map(|s| {
                let n = rows(self.prefix_len(s) + self.batch.segments[s].len - self.first_staged(s, granule));
                at += n * kv_heads * hd;
                (n, at - n * kv_heads * hd)
            })
            .collect();
        (regions, at)
    }

    /// An item's rows of the staged queries (see `stage_queries`).
    pub(super) fn query_rows<'q, E>(&self, q: &'q [E], item: &Item, tokens: usize) -> &'q [E] {
        let Heads { heads, kv_heads, head_dim: hd } = self.heads;
        let (rep, start) = (heads / kv_heads, self.batch.segments[item.segment].start + item.first);
        &q[(item.group * tokens + start) * rep * hd..][..item.len * rep * hd]
    }

    /// Writes an item's output into `dst`, the (tokens, heads * head_dim) output: row (t, r) of
    /// `acc` (token-major, the group's query heads for each token) divided by its softmax sum.
    ///
    /// # Safety
    /// `dst` is the whole output buffer, and no one else writes this item's (token, group) rows.
    pub(super) unsafe fn store<T: Element>(
        &self,
        item: &Item,
        acc: &[f32],
        sum: &[f32],
        dst: &Disjoint<MaybeUninit<T>>,
    ) {
        let Heads { heads, kv_heads, head_dim: hd } = self.heads;
        let rep = heads / kv_heads;
        let token = self.batch.segments[item.segment].start + item.first;
        // SAFETY: the first of the item's rows, in bounds; the caller's contract for the rest.
        unsafe { store_rows(acc, sum, hd, rep, dst.0.add((token * heads + item.group * rep) * hd), heads * hd) }
    }

    /// Longest first, so the stragglers at the end of the parallel loop are short.
    pub(super) fn items(&self) -> Vec<Item> {
        let segments = &self.batch.segments;
        let mut items: Vec<Item> = segments
            .iter()
            .enumerate()
            .flat_map(|(segment, seg)| {
                (0..self.heads.kv_heads).flat_map(move |group| {
                    (0..seg.len).step_by(QUERY_BLOCK).map(move |first| Item {
                        segment,
                        group,
                        first,
                        len: QUERY_BLOCK.min(seg.len - first),
                    })
                })
            })
            .collect();
        items.sort_by_key(|i| std::cmp::Reverse(self.keys(i).0));
        items
    }
}

/// The loop of `FusedAttention::store`: token t's `rep` rows of `acc` go to `dst + t * stride`.
///
/// # Safety
/// `dst` valid for acc.len() / (rep * hd) tokens of rep * hd values at that stride, written by no
/// one else.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
unsafe fn store_rows<T: Element>(
    acc: &[f32],
    sum: &[f32],
    hd: usize,
    rep: usize,
    dst: *mut MaybeUninit<T>,
    stride: usize,
) {
    for (t, (values, sums)) in acc.chunks_exact(rep * hd).zip(sum.chunks_exact(rep)).enumerate() {
        // SAFETY: the caller's contract.
        let out = unsafe { std::slice::from_raw_parts_mut(dst.add(t * stride), rep * hd) };
        for ((o, x), s) in out.chunks_exact_mut(hd).zip(values.chunks_exact(hd)).zip(sums) {
            let inv = 1.0 / s;
            o.iter_mut().zip(x).for_each(|(o, x)| {
                o.write(T::from_f32(x * inv));
            });
        }
    }
}

/// Llama's rotate-half rotary embedding of consecutive heads (2 x cos.len() values each), rounding
/// where the reference's separate dtype ops would (a no-op in f32), then scaled and stored as `O`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn rotate<T: Element, O: Element>(
    x: &[T],
    cos: &[f32],
    sin: &[f32],
    scale: f32,
    out: &mut [MaybeUninit<O>],
) {
    let half = cos.len();
    for (x, out) in x.chunks_exact(2 * half).zip(out.chunks_exact_mut(2 * half)) {
        let (lo, hi) = out.split_at_mut(half);
        for i in 0..half {
            let (a, b) = (x[i].to_f32(), x[i + half].to_f32());
            lo[i].write(O::from_f32(T::round(T::round(a * cos[i]) - T::round(b * sin[i])) * scale));
            hi[i].write(O::from_f32(T::round(T::round(b * cos[i]) + T::round(a * sin[i])) * scale));
        }
    }
}

/// Tokens per parallel task when staging queries, keys and values.
pub(super) const STAGE_TOKENS: usize = 64;

/// Flash attention's recurrence for one query row: folds the scores it sees in this tile into the
/// row's running max and sum, replaces them with e^(score - max), and rescales the row's output
/// accumulator to the new max. Nothing to do when the row sees none of the tile.
#[inline(always)]
pub(super) fn softmax_step(seen: &mut [f32], max: &mut f32, sum: &mut f32, out: &mut [f32]) {
    if seen.is_empty() {
        return;
    }
    let new_max = max.max(simd::max(seen));
    let rescale = simd::exp(*max - new_max);
    *sum = *sum * rescale + simd::exp_shifted_sum(seen, new_max);
    *max = new_max;
    if rescale != 1.0 {
        out.iter_mut().for_each(|o| *o *= rescale);
    }
}
