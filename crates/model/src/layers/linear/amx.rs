//! bf16 projections on AMX tiles ([`crate::kernels::tiles`]). candle multiplies bf16 by widening both
//! operands to f32 on every call; PyTorch reaches the tiles through oneDNN, and so must we to match
//! it. Weights are packed into the tile layout once, at load; accumulation is f32 throughout, and
//! each result is rounded to bf16 once, as oneDNN does.

use std::mem::MaybeUninit;

use half::bf16;
use multiversion::multiversion;
use rayon::prelude::*;

use crate::kernels::simd::{filled, Disjoint, Element};
use crate::kernels::tiles::{self, available, BLOCK, TILE};
use crate::layers::activation::Activation;

/// C rows per parallel task: the task's A rows (ROWS x k bf16) stay in L2 while it walks the weight.
const ROWS: usize = 128;

/// What the micro-kernel's 32 x 32 blocks of x W^T become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// Rounded to bf16 as they are: (m, n).
    Plain,
    /// W is [gate; up] (n = 2 x intermediate), packed so that each block pairs 16 gate columns with
    /// the same 16 up columns; the block becomes act(gate) * up, (m, n / 2), rounded where the
    /// separate ops would round. The (m, n) product never reaches memory.
    Gated(Activation),
}

/// A weight (n, k) packed for `tdpbf16ps`, computing x W^T and then its epilogue.
pub struct PackedWeight {
    n: usize,
    k: usize,
    epilogue: Epilogue,
    /// Tile (column block j, k block b) at ((j * k / 32) + b) * TILE: row r holds, for each of the
    /// 16 columns c of W's row block `source(j)`, W[16 source(j) + c][32 b + 2 r] and the next.
    tiles: Vec<bf16>,
}

impl PackedWeight {
    /// Packs W (n, k) row-major; `None` when AMX is unavailable or the shape does not tile
    /// (n and k must be multiples of 32, which every Llama projection is).
    pub fn pack(w: &[bf16], n: usize, k: usize, epilogue: Epilogue) -> Option<Self> {
        if !available() || !n.is_multiple_of(BLOCK) || !k.is_multiple_of(BLOCK) || w.len() != n * k {
            return None;
        }
        let k_blocks = k / 32;
        // SwiGLU interleaves gate row blocks (first half of W) with the matching up row blocks.
        let source = |j: usize| match epilogue {
            Epilogue::Plain => j,
            Epilogue::Gated(_) if j.is_multiple_of(2) => j / 2,
            Epilogue::Gated(_) => n / 32 + j / 2,
        };
        let mut tiles = vec![bf16::ZERO; n * k];
        tiles.par_chunks_mut(k_blocks * TILE).enumerate().for_each(|(j, column_block)| {
            for (b, tile) in column_block.chunks_exact_mut(TILE).enumerate() {
                for r in 0..16 {
                    for c in 0..16 {
                        let from = (16 * source(j) + c) * k + 32 * b + 2 * r;
                        tile[r * 32 + c * 2..][..2].copy_from_slice(&w[from..from + 2]);
                    }
                }
            }
        });
        Some(Self { n, k, epilogue, tiles })
    }

    pub fn in_features(&self) -> usize {
        self.k
    }

    pub fn out_features(&self) -> usize {
        match self.epilogue {
            Epilogue::Plain => self.n,
            Epilogue::Gated(_) => self.n / 2,
        }
    }

    /// x (m, k) row-major -> the epilogue of x W^T, (m, out_features), in bf16.
    pub fn matmul(&self, x: &[bf16], m: usize) -> Vec<bf16> {
        assert_eq!(x.len(), m * self.k, "input is not (m, k)");
        // SAFETY: the tasks cover every row and every 32-column block, and write each in full.
        unsafe { filled(m * self.out_features(), |out| self.matmul_into(x, m, out)) }
    }

    fn matmul_into(&self, x: &[bf16], m: usize, out: &mut [MaybeUninit<bf16>]) {
        let (n, k, width) = (self.n, self.k, self.out_features());
        let dst = Disjoint(out.as_mut_ptr());
        let row_tasks = m.div_ceil(ROWS);
        let pairs = n / BLOCK;
        // Enough tasks for every thread even when m is small; a task owns whole 32-column blocks.
        let column_tasks = (4 * rayon::current_num_threads()).div_ceil(row_tasks).clamp(1, pairs);
        (0..row_tasks * column_tasks).into_par_iter().for_each(|task| {
            let dst = &dst;
            let rows = (task / column_tasks) * ROWS..((task / column_tasks + 1) * ROWS).min(m);
            let c = task % column_tasks;
            let blocks = c * pairs / column_tasks..(c + 1) * pairs / column_tasks;
            // The tiles always read 32 rows: a last, partial block is padded with zeros, once.
            let tail = rows.len() % BLOCK;
            let mut padded = Vec::new();
            if tail > 0 {
                padded.extend_from_slice(&x[(rows.end - tail) * k..][..tail * k]);
                padded.resize(BLOCK * k, bf16::ZERO);
            }
            let mut acc = [0.0f32; BLOCK * BLOCK];
            tiles::with_tiles(|| {
                for block in blocks {
                    let b = &self.tiles[2 * block * (k / 32) * TILE..][..2 * (k / 32) * TILE];
                    for r0 in rows.clone().step_by(BLOCK) {
                        let valid = BLOCK.min(rows.end - r0);
                        let a = if valid == BLOCK { &x[r0 * k..][..BLOCK * k] } else { &padded[..] };
                        // SAFETY: in `with_tiles`; `a` is 32 rows of k, `b` the two column blocks'
                        // k / 32 tiles each.
                        unsafe { tiles::block(a.as_ptr(), k, k, b.as_ptr(), b[b.len() / 2..].as_ptr(), &mut acc) };
                        // SAFETY: rows [r0, r0 + valid) < m and this block's output columns (32, or
                        // 16 for SwiGLU) belong to this task alone.
                        unsafe {
                            match self.epilogue {
                                Epilogue::Plain => store(&acc, valid, dst.0.add(r0 * width + block * BLOCK), width),
                                Epilogue::Gated(act) => {
                                    store_gated(&acc, valid, act, dst.0.add(r0 * width + block * BLOCK / 2), width)
                                }
                            }
                        };
                    }
                }
            });
        });
    }
}

/// Rounds the first `rows` rows of a C block to bf16 into the output at `dst` (row stride `stride`).
/// One call per block, not per row: the SIMD dispatch costs more than a 32-value row.
///
/// # Safety
/// `dst` must be valid for `rows` rows of 32 values at that stride, written by no one else.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
unsafe fn store(acc: &[f32; BLOCK * BLOCK], rows: usize, dst: *mut MaybeUninit<bf16>, stride: usize) {
    for (i, row) in acc.chunks_exact(BLOCK).take(rows).enumerate() {
        // SAFETY: the caller's contract.
        let out = unsafe { std::slice::from_raw_parts_mut(dst.add(i * stride), BLOCK) };
        for (o, &v) in out.iter_mut().zip(row) {
            o.write(<bf16 as Element>::from_f32(v));
        }
    }
}

/// As `store`, for `Epilogue::Gated`: each row's 16 gate values then 16 up values become 16
/// outputs, rounded as transformers' separate bf16 ops round them.
///
/// # Safety
/// `dst` must be valid for `rows` rows of 16 values at that stride, written by no one else.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
unsafe fn store_gated(
    acc: &[f32; BLOCK * BLOCK],
    rows: usize,
    activation: Activation,
    dst: *mut MaybeUninit<bf16>,
    stride: usize,
) {
    type B = bf16;
    const HALF: usize = BLOCK / 2;
    // The activation runs over all gate values at once: one row's 16 are a single vector, and its
    // exp and reciprocal are long dependent chains, so rows must be in flight together.
    let mut act = [0.0f32; BLOCK * HALF];
    for (a, row) in act.chunks_exact_mut(HALF).zip(acc.chunks_exact(BLOCK)) {
        a.copy_from_slice(&row[..HALF]);
    }
    for a in &mut act[..rows * HALF] {
        *a = B::round(activation.apply(B::round(*a)));
    }
    for (i, (a, row)) in act.chunks_exact(HALF).zip(acc.chunks_exact(BLOCK)).take(rows).enumerate() {
        // SAFETY: the caller's contract.
        let out = unsafe { std::slice::from_raw_parts_mut(dst.add(i * stride), HALF) };
        for ((o, &a), &u) in out.iter_mut().zip(a).zip(&row[HALF..]) {
            o.write(<B as Element>::from_f32(a * B::round(u)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact in f32: bf16 products are exact there, and these small integers sum exactly too, so
    /// any layout or edge mistake shows as a wrong value, not a rounding difference.
    #[test]
    fn matches_a_plain_product_on_every_edge() {
        if !available() {
            eprintln!("no AMX on this CPU: skipped");
            return;
        }
        for (m, n, k) in [(1, 32, 32), (33, 64, 96), (130, 96, 64), (257, 320, 160)] {
            let x: Vec<bf16> = (0..m * k).map(|i| bf16::from_f32(((i * 7 % 11) as f32 - 5.0) / 4.0)).collect();
            let w: Vec<bf16> = (0..n * k).map(|i| bf16::from_f32(((i * 5 % 13) as f32 - 6.0) / 8.0)).collect();
            let exact =
                |i: usize, j: usize| -> f32 { (0..k).map(|t| x[i * k + t].to_f32() * w[j * k + t].to_f32()).sum() };
            let got = PackedWeight::pack(&w, n, k, Epilogue::Plain).expect("tileable shape").matmul(&x, m);
            for i in 0..m {
                for j in 0..n {
                    assert_eq!(got[i * n + j], bf16::from_f32(exact(i, j)), "({m}x{n}x{k}) at ({i}, {j})");
                }
            }
            let gated =
                PackedWeight::pack(&w, n, k, Epilogue::Gated(Activation::Silu)).expect("tileable shape").matmul(&x, m);
            let half = n / 2;
            for i in 0..m {
                for j in 0..half {
                    let (g, u) = (bf16::from_f32(exact(i, j)).to_f32(), bf16::from_f32(exact(i, half + j)).to_f32());
                    let act = bf16::from_f32(g / (1.0 + (-g).exp())).to_f32();
                    let want = bf16::from_f32(act * u);
                    let diff = (gated[i * half + j].to_f32() - want.to_f32()).abs();
                    // silu's exp and reciprocal may differ from libm's in the last f32 bit, which
                    // can flip a bf16 rounding: one bf16 ulp at most.
                    assert!(diff <= want.to_f32().abs() / 128.0 + 1e-30, "swiglu ({m}x{n}x{k}) at ({i}, {j})");
                }
            }
        }
        assert!(PackedWeight::pack(&[bf16::ZERO; 16 * 32], 16, 32, Epilogue::Plain).is_none(), "n = 16 does not tile");
    }
}
