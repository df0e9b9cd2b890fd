//! bf16 attention on AMX tiles: the same work items, key spans and online softmax as the f32 kernel
//! (`fused.rs`), with q k^T and p v as tile products. As PyTorch's CPU flash attention does for
//! bf16, scores and softmax run in f32 and the probabilities are rounded to bf16 for p v.

use std::mem::MaybeUninit;

use half::bf16;
use multiversion::multiversion;
use rayon::prelude::*;

use super::scaffold::{self, rotate, softmax_step, FusedAttention, KEY_TILE};
use super::{Heads, Scoring};
use crate::kernels::simd::{filled, Disjoint};
use crate::kernels::tiles::{self, BLOCK, TILE};

/// Whether the tiles can run attention with these heads.
pub fn supports(heads: Heads) -> bool {
    heads.head_dim.is_multiple_of(BLOCK) && tiles::available()
}

/// The staged keys and values as B tiles, each (segment, kv head) region padded to whole 32-key
/// blocks with zeros. K, for q k^T: blocks of 16 keys, each head_dim / 32 tiles. V, for p v: blocks
/// of 16 dims, each padded / 32 tiles of 32 keys.
type KeyValues = scaffold::KeyValues<bf16>;

impl FusedAttention<'_> {
    pub(super) fn run_tiles(&self, qkv: &[bf16], tokens: usize) -> Vec<bf16> {
        let Heads { heads, head_dim: hd, .. } = self.heads;
        // Unscaled: the scores are scaled in f32.
        let q = self.stage_queries::<bf16, bf16>(qkv, tokens, 1.0);
        let kv = self.stage_keys_values(qkv);
        // SAFETY: the items cover every (token, group) pair, and each writes all its heads' values.
        unsafe { filled(tokens * heads * hd, |out| self.attend_tiles(&q, &kv, tokens, out)) }
    }

    fn stage_keys_values(&self, qkv: &[bf16]) -> KeyValues {
        let Heads { kv_heads, head_dim: hd, .. } = self.heads;
        // Whole 32-key blocks of a prefix are read where the prefix staged them.
        let (regions, total) = self.key_regions(BLOCK, |len| len.next_multiple_of(BLOCK));
        let (mut k, mut v) = (vec![bf16::ZERO; total], vec![bf16::ZERO; total]);
        let (kd, vd) = (Disjoint(k.as_mut_ptr()), Disjoint(v.as_mut_ptr()));
        // Each (segment, head) region belongs to one task.
        let tasks: Vec<(usize, usize)> = (0..regions.len()).flat_map(|s| (0..kv_heads).map(move |g| (s, g))).collect();
        tasks.par_iter().for_each(|&(s, g)| {
            let (kd, vd) = (&kd, &vd);
            let (len, start) = regions[s];
            let base = start + g * len * hd;
            // SAFETY: [base, base + len * hd) is this task's region, inside both buffers.
            let (kr, vr) = unsafe {
                (
                    std::slice::from_raw_parts_mut(kd.0.add(base), len * hd),
                    std::slice::from_raw_parts_mut(vd.0.add(base), len * hd),
                )
            };
            self.stage_tiles(qkv, (s, g), len, (kr, vr));
        });
        KeyValues { regions, k, v }
    }

    /// The keys segment `s` stages (from `first_staged` to the end of its sequence) for kv head
    /// `g`, rotated, into its region's K and V tiles (`len` keys per head, padded).
    fn stage_tiles(&self, qkv: &[bf16], (s, g): (usize, usize), len: usize, (kr, vr): (&mut [bf16], &mut [bf16])) {
        let Heads { heads, kv_heads, head_dim: hd } = self.heads;
        let width = (heads + 2 * kv_heads) * hd;
        let first = self.first_staged(s, BLOCK);
        let keys = self.prefix_len(s) + self.batch.segments[s].len - first;
        let mut rotated = vec![MaybeUninit::<bf16>::uninit(); hd];
        for j in 0..keys {
            let t = self.key_token(s, first + j);
            let row = &qkv[t * width..][..width];
            let (cos, sin) = self.rope.at(self.batch.positions[t] as usize);
            rotate(&row[(heads + g) * hd..][..hd], cos, sin, 1.0, &mut rotated);
            // Key j is column j % 16 of key block j / 16; dim d is half of row (d % 32) / 2 of that
            // block's tile d / 32.
            for (d, x) in rotated.iter().enumerate() {
                // SAFETY: rotate wrote every element.
                let x = unsafe { x.assume_init() };
                kr[((j / 16) * (hd / 32) + d / 32) * TILE + (d % 32) / 2 * 32 + (j % 16) * 2 + d % 2] = x;
            }
            // Dim d is column d % 16 of dim block d / 16; key j is half of row (j % 32) / 2 of that
            // block's tile j / 32.
            for (d, &x) in row[(heads + kv_heads + g) * hd..][..hd].iter().enumerate() {
                vr[((d / 16) * (len / 32) + j / 32) * TILE + (j % 32) / 2 * 32 + (d % 16) * 2 + j % 2] = x;
            }
        }
    }

    fn attend_tiles(&self, q: &[bf16], kv: &KeyValues, tokens: usize, out: &mut [MaybeUninit<bf16>]) {
        let Heads { heads, kv_heads, head_dim: hd } = self.heads;
        let rep = heads / kv_heads;
        // Every (token, group) pair belongs to exactly one item.
        let dst = Disjoint(out.as_mut_ptr());
        self.items().par_iter().for_each(|item| {
            let dst = &dst;
            let rows = item.len * rep;
            let padded_rows = rows.next_multiple_of(BLOCK);
            let mut queries = vec![bf16::ZERO; padded_rows * hd];
            queries[..rows * hd].copy_from_slice(self.query_rows(q, item, tokens));

            let (mut max, mut sum) = (vec![f32::NEG_INFINITY; rows], vec![0.0f32; rows]);
            let mut acc = vec![0.0f32; rows * hd];
            let mut scores = vec![0.0f32; rows * KEY_TILE];
            // Rows past `rows` stay zero: the tiles read whole 32-row blocks.
            let mut probs = vec![bf16::ZERO; padded_rows * KEY_TILE];
            let mut c = [0.0f32; BLOCK * BLOCK];
            // A key tile's V tiles, gathered when the tile starts in the prefix's region and ends in
            // this segment's (p v reads each dim block's tiles of a key tile in one run).
            let mut gathered = Vec::new();
            tiles::with_tiles(|| {
                let (keys, first) = self.keys(item);
                let block_of = |key: usize| {
                    let (home, row) = self.key_home(item.segment, key, BLOCK);
                    let (k, v, padded) = kv.region(home, item.group, hd);
                    (k, v, padded, row)
                };
                for tile in (self.first_tile(first)..keys).step_by(KEY_TILE) {
                    let n = KEY_TILE.min(keys - tile);
                    let n_padded = n.next_multiple_of(BLOCK);
                    for r0 in (0..padded_rows).step_by(BLOCK) {
                        for j0 in (0..n_padded).step_by(BLOCK) {
                            let (k, _, _, row) = block_of(tile + j0);
                            let b0 = k[row / 16 * (hd / 32) * TILE..].as_ptr();
                            // SAFETY: in with_tiles; 32 query rows of hd, two 16-key blocks of
                            // hd / 32 tiles each, inside the padded region.
                            unsafe {
                                tiles::block(queries[r0 * hd..].as_ptr(), hd, hd, b0, b0.add(hd / 32 * TILE), &mut c)
                            };
                            for (i, block_row) in c.chunks_exact(BLOCK).enumerate().take(rows.saturating_sub(r0)) {
                                scores[(r0 + i) * KEY_TILE + j0..][..BLOCK].copy_from_slice(block_row);
                            }
                        }
                    }
                    let tile_keys = TileKeys { first, rep, tile, n, n_padded };
                    softmax_tile(&mut scores, &mut probs, tile_keys, self.scoring, &mut max, &mut sum, &mut acc);
                    // Dim block d's n_padded / 32 tiles: in place, or gathered, `stride` tiles apart.
                    let (start, end) = (block_of(tile), block_of(tile + n_padded - BLOCK));
                    let (v, stride, first_tile) = if std::ptr::eq(start.1, end.1) {
                        (start.1, start.2 / 32, start.3 / 32)
                    } else {
                        let tiles_per_block = n_padded / 32;
                        gathered.resize(hd / 16 * tiles_per_block * TILE, bf16::ZERO);
                        for d in 0..hd / 16 {
                            for t in 0..tiles_per_block {
                                let (_, v, padded, row) = block_of(tile + t * BLOCK);
                                let from = &v[((d * (padded / 32)) + row / 32) * TILE..][..TILE];
                                gathered[(d * tiles_per_block + t) * TILE..][..TILE].copy_from_slice(from);
                            }
                        }
                        (&gathered[..], tiles_per_block, 0)
                    };
                    for r0 in (0..padded_rows).step_by(BLOCK) {
                        for d0 in (0..hd).step_by(BLOCK) {
                            let b0 = v[((d0 / 16) * stride + first_tile) * TILE..].as_ptr();
                            let b1 = v[((d0 / 16 + 1) * stride + first_tile) * TILE..].as_ptr();
                            // SAFETY: in with_tiles; 32 probability rows of n_padded (stride
                            // KEY_TILE), and n_padded / 32 tiles of each of two dim blocks.
                            unsafe {
                                tiles::block(probs[r0 * KEY_TILE..].as_ptr(), KEY_TILE, n_padded, b0, b1, &mut c)
                            };
                            accumulate(&c, &mut acc[(r0 * hd).min(rows * hd)..], hd, d0);
                        }
                    }
                }
            });
            // SAFETY: `dst` is the whole output, and these rows are this item's alone.
            unsafe { self.store(item, &acc, &sum, dst) };
        });
    }
}

/// Which keys of a tile [tile, tile + n) the rows of an item see (see [`Scoring::seen`]); the tile's
/// probabilities are n_padded wide.
#[derive(Clone, Copy)]
struct TileKeys {
    first: usize,
    rep: usize,
    tile: usize,
    n: usize,
    n_padded: usize,
}

/// The online-softmax step of every row of an item for one key tile (scores scaled in f32), and
/// the tile's probabilities rounded to bf16 for p v, zero past what each row sees. Row stride
/// KEY_TILE in `scores` and `probs`, head_dim in `acc`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn softmax_tile(
    scores: &mut [f32],
    probs: &mut [bf16],
    keys: TileKeys,
    scoring: Scoring,
    max: &mut [f32],
    sum: &mut [f32],
    acc: &mut [f32],
) {
    let hd = acc.len() / max.len();
    for (row, (max, sum)) in max.iter_mut().zip(sum.iter_mut()).enumerate() {
        let (lo, hi) = scoring.seen(keys.first + row / keys.rep, keys.tile, keys.n);
        let seen = &mut scores[row * KEY_TILE..][lo..hi];
        seen.iter_mut().for_each(|s| *s *= scoring.scale);
        scoring.cap(seen);
        softmax_step(seen, max, sum, &mut acc[row * hd..][..hd]);
        let p = &mut probs[row * KEY_TILE..][..keys.n_padded];
        p.fill(bf16::ZERO);
        for (p, &x) in p[lo..].iter_mut().zip(seen.iter()) {
            *p = bf16::from_f32(x);
        }
    }
}

/// acc[row][d0..d0 + 32] += c[row] for the rows of `acc` (row stride head_dim) that the block covers.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn accumulate(c: &[f32; BLOCK * BLOCK], acc: &mut [f32], hd: usize, d0: usize) {
    for (a, block_row) in acc.chunks_exact_mut(hd).zip(c.chunks_exact(BLOCK)) {
        a[d0..d0 + BLOCK].iter_mut().zip(block_row).for_each(|(a, x)| *a += x);
    }
}
