//! bf16 matrix products on Intel AMX tiles (Sapphire Rapids and later). candle multiplies bf16 by
//! widening both operands to f32 on every call; PyTorch reaches these tiles through oneDNN, and so
//! must we to match it. Weights are packed into the tile layout once, at load.
//!
//! A tile holds 16 rows of 64 bytes. `tdpbf16ps` adds A (16 x 32 bf16) times B (32 x 16 bf16, stored
//! as 16 rows of 16 column pairs) into C (16 x 16 f32). The micro-kernel keeps a 32 x 32 block of C
//! in four tiles and streams A and B through the other four; accumulation is f32 throughout, and
//! the result is rounded to bf16 once, as oneDNN does.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

use half::bf16;
use multiversion::multiversion;
use rayon::prelude::*;

use crate::simd::{self, filled, Disjoint, Element};

/// C rows per parallel task: the task's A rows (ROWS x k bf16) stay in L2 while it walks the weight.
const ROWS: usize = 128;
/// The micro-kernel's block of C.
const BLOCK: usize = 32;
/// bf16 elements per packed B tile (16 rows x 16 columns x 2).
const TILE: usize = 512;

/// Whether this process may use AMX bf16 tiles: the CPU has them and Linux granted the permission
/// (asked for once, on first use).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(imp::enable)
}

/// What the micro-kernel's 32 x 32 blocks of x W^T become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// Rounded to bf16 as they are: (m, n).
    Plain,
    /// W is [gate; up] (n = 2 x intermediate), packed so that each block pairs 16 gate columns with
    /// the same 16 up columns; the block becomes silu(gate) * up, (m, n / 2), rounded where the
    /// separate ops would round. The (m, n) product never reaches memory.
    SwiGlu,
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
        if !available() || n % BLOCK != 0 || k % BLOCK != 0 || w.len() != n * k {
            return None;
        }
        let k_blocks = k / 32;
        // SwiGLU interleaves gate row blocks (first half of W) with the matching up row blocks.
        let source = |j: usize| match epilogue {
            Epilogue::Plain => j,
            Epilogue::SwiGlu if j % 2 == 0 => j / 2,
            Epilogue::SwiGlu => n / 32 + j / 2,
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

    pub fn out_features(&self) -> usize {
        match self.epilogue {
            Epilogue::Plain => self.n,
            Epilogue::SwiGlu => self.n / 2,
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
            let mut padded = Vec::new();
            let mut acc = [0.0f32; BLOCK * BLOCK];
            imp::with_tiles(|| {
                for block in blocks {
                    let b = &self.tiles[2 * block * (k / 32) * TILE..][..2 * (k / 32) * TILE];
                    for r0 in rows.clone().step_by(BLOCK) {
                        let valid = BLOCK.min(rows.end - r0);
                        let a = if valid == BLOCK {
                            &x[r0 * k..][..BLOCK * k]
                        } else {
                            // The tiles always read 32 rows: pad the last block with zeros.
                            padded.clear();
                            padded.extend_from_slice(&x[r0 * k..][..valid * k]);
                            padded.resize(BLOCK * k, bf16::ZERO);
                            &padded[..]
                        };
                        // SAFETY: `a` is 32 rows of k, `b` the two column blocks' k / 32 tiles each.
                        unsafe { imp::kernel(a, k, b, &mut acc) };
                        // SAFETY: rows [r0, r0 + valid) < m and this block's output columns (32, or
                        // 16 for SwiGLU) belong to this task alone.
                        unsafe {
                            match self.epilogue {
                                Epilogue::Plain => store(&acc, valid, dst.0.add(r0 * width + block * BLOCK), width),
                                Epilogue::SwiGlu => {
                                    store_swiglu(&acc, valid, dst.0.add(r0 * width + block * BLOCK / 2), width)
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

/// As `store`, for `Epilogue::SwiGlu`: each row's 16 gate values then 16 up values become 16
/// outputs, rounded as transformers' separate bf16 ops round them.
///
/// # Safety
/// `dst` must be valid for `rows` rows of 16 values at that stride, written by no one else.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
unsafe fn store_swiglu(acc: &[f32; BLOCK * BLOCK], rows: usize, dst: *mut MaybeUninit<bf16>, stride: usize) {
    type B = bf16;
    const HALF: usize = BLOCK / 2;
    // The activation runs over all gate values at once: one row's 16 are a single vector, and its
    // exp and reciprocal are long dependent chains, so rows must be in flight together.
    let mut act = [0.0f32; BLOCK * HALF];
    for (a, row) in act.chunks_exact_mut(HALF).zip(acc.chunks_exact(BLOCK)) {
        a.copy_from_slice(&row[..HALF]);
    }
    for a in &mut act[..rows * HALF] {
        *a = B::round(simd::silu(B::round(*a)));
    }
    for (i, (a, row)) in act.chunks_exact(HALF).zip(acc.chunks_exact(BLOCK)).take(rows).enumerate() {
        // SAFETY: the caller's contract.
        let out = unsafe { std::slice::from_raw_parts_mut(dst.add(i * stride), HALF) };
        for ((o, &a), &u) in out.iter_mut().zip(a).zip(&row[HALF..]) {
            o.write(<B as Element>::from_f32(a * B::round(u)));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::asm;
    use std::arch::x86_64::__cpuid_count;

    use half::bf16;

    use super::BLOCK;

    const ARCH_REQ_XCOMP_PERM: libc::c_ulong = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_ulong = 18;

    pub fn enable() -> bool {
        // CPUID.(7, 0): EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
        let edx = __cpuid_count(7, 0).edx;
        if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
            return false;
        }
        // Linux hands out the 8 KiB tile state only to processes that ask (kernel 5.16+).
        // SAFETY: a plain syscall with integer arguments.
        unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
    }

    /// Palette 1, every tile 16 rows of 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    /// Runs `f` with the tiles configured on this thread, and releases them after.
    pub fn with_tiles(f: impl FnOnce()) {
        let mut config = TileConfig([0; 64]);
        config.0[0] = 1;
        for t in 0..8 {
            config.0[16 + 2 * t] = 64;
            config.0[48 + t] = 16;
        }
        // SAFETY: only called once `enable` succeeded; the config is a valid palette-1 layout.
        unsafe { asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly)) };
        f();
        // SAFETY: releasing tiles is always allowed after a config.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }

    /// c (32 x 32 f32, row-major) = a (32 rows of k bf16, row-major) times the two packed column
    /// blocks in `b` (each k / 32 tiles, one after the other).
    ///
    /// # Safety
    /// Tiles configured by `with_tiles` on this thread; `a` holds 32 * k values, `b` 2 * k * 16.
    pub unsafe fn kernel(a: &[bf16], k: usize, b: &[bf16], c: &mut [f32; BLOCK * BLOCK]) {
        debug_assert!(a.len() >= BLOCK * k && b.len() >= 2 * k * 16);
        let k_blocks = k / 32;
        let a0 = a.as_ptr();
        let a1 = a0.add(16 * k);
        let b0 = b.as_ptr();
        let b1 = b0.add(k_blocks * super::TILE);
        let out = c.as_mut_ptr();
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "2:",
            "tileloadd tmm4, [{a0} + {lda}*1]",
            "tileloadd tmm5, [{a1} + {lda}*1]",
            "tileloadd tmm6, [{b0} + {ldb}*1]",
            "tileloadd tmm7, [{b1} + {ldb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {a0}, 64",
            "add {a1}, 64",
            "add {b0}, 1024",
            "add {b1}, 1024",
            "dec {blocks}",
            "jnz 2b",
            "tilestored [{c0} + {ldc}*1], tmm0",
            "tilestored [{c1} + {ldc}*1], tmm1",
            "tilestored [{c2} + {ldc}*1], tmm2",
            "tilestored [{c3} + {ldc}*1], tmm3",
            a0 = inout(reg) a0 => _,
            a1 = inout(reg) a1 => _,
            b0 = inout(reg) b0 => _,
            b1 = inout(reg) b1 => _,
            blocks = inout(reg) k_blocks => _,
            lda = in(reg) 2 * k,
            ldb = in(reg) 64usize,
            ldc = in(reg) 4 * BLOCK,
            c0 = in(reg) out,
            c1 = in(reg) out.add(16),
            c2 = in(reg) out.add(16 * BLOCK),
            c3 = in(reg) out.add(16 * BLOCK + 16),
            options(nostack),
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use half::bf16;

    pub fn enable() -> bool {
        false
    }

    pub fn with_tiles(_: impl FnOnce()) {
        unreachable!("AMX is x86-64 only")
    }

    pub unsafe fn kernel(_: &[bf16], _: usize, _: &[bf16], _: &mut [f32; super::BLOCK * super::BLOCK]) {
        unreachable!("AMX is x86-64 only")
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
            let gated = PackedWeight::pack(&w, n, k, Epilogue::SwiGlu).expect("tileable shape").matmul(&x, m);
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
