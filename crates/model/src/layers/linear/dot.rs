//! bf16 projections on CPUs with AVX512-BF16 but no AMX (AMD Zen 4/5, Intel Cooper Lake), on
//! `vdpbf16ps` (32 bf16 products summed pairwise into 16 f32 lanes per instruction, twice the f32
//! FMA rate).
//!
//! W stays in the checkpoint's own (n, k) layout, unpacked, so a bf16 checkpoint's weights are
//! used straight from the memory-mapped file ([`crate::load::weights::Bf16Rows`]): no load-time copy, no
//! resident duplicate. candle instead widens both operands to f32 on every call, which left bf16 no
//! faster than f32 here, at half PyTorch's (oneDNN's) bf16 speed. Accumulation is f32 throughout and
//! each result is rounded to bf16 once, as oneDNN does.
//!
//! Strips of 32 rows of x run as outer products: x's strip is packed once per call so that one
//! vector holds the same k-pair of 16 rows, and each W k-pair is broadcast against it; no
//! horizontal sums, 24 accumulators. Every output is one `vdpbf16ps` chain over k in order, in its
//! own lane, so a row's result never depends on the other rows: the last strip is padded with zero
//! rows rather than handed to a kernel that sums in another order (batch invariance). A dot-product
//! kernel for the leftover rows ran 1B shapes' last layer faster, but gave those rows other bits.

use std::mem::MaybeUninit;
use std::ops::Range;

use half::bf16;
use rayon::prelude::*;

use crate::kernels::simd::{filled, Disjoint};
use crate::load::weights::Bf16Rows;

/// Bytes of x one task keeps in L2 while it walks its W rows.
const X_BLOCK_BYTES: usize = 256 << 10;
/// Strip kernel: rows of x per strip (two vectors of 16 lanes), and rows of W per micro-tile: 2 x 12
/// accumulators, two x vectors and a broadcast. 14 W rows (28 accumulators) spilled and ran 10%
/// slower.
const STRIP: usize = 32;
const WR: usize = 12;
/// W rows per parallel task of the strip kernel: a multiple of WR.
const STRIP_NC: usize = 4 * WR;

/// Whether this CPU runs `vdpbf16ps` (and `ARMORM_CPU_KERNELS` allows it): the kernel's safety
/// precondition, checked again where it is built.
pub use crate::kernels::plan::avx512_bf16 as available;

/// W as the row blocks it was stored in (q, k, v or gate, up), each (rows_i, k), stacked by rows:
/// x W^T is (m, sum of rows_i).
pub struct DotWeight {
    parts: Vec<Bf16Rows>,
    k: usize,
}

impl DotWeight {
    /// `None` when the parts do not share one row length, or this CPU lacks AVX512-BF16.
    pub fn new(parts: Vec<Bf16Rows>) -> Option<Self> {
        let k = parts.first()?.cols();
        (available() && k > 0 && parts.iter().all(|p| p.cols() == k)).then_some(Self { parts, k })
    }

    pub fn out_features(&self) -> usize {
        self.parts.iter().map(Bf16Rows::rows).sum()
    }

    pub fn in_features(&self) -> usize {
        self.k
    }

    /// x (m, k) row-major -> x W^T, (m, out_features), rounded to bf16.
    pub fn matmul(&self, x: &[bf16], m: usize) -> Vec<bf16> {
        let (k, n) = (self.k, self.out_features());
        assert_eq!(x.len(), m * k, "input is not (m, k)");
        let strips = m.div_ceil(STRIP);
        let packed = pack_strips(x, k, strips);
        let strip_block = (X_BLOCK_BYTES / (STRIP * 2 * k)).clamp(1, strips.max(1));
        // Tasks (part, its first output column, its W rows, x's strips); together they cover every
        // output element once.
        let mut tasks: Vec<(usize, usize, Range<usize>, Range<usize>)> = Vec::new();
        let mut first_col = 0;
        for (p, part) in self.parts.iter().enumerate() {
            for cols in blocks(0..part.rows(), STRIP_NC) {
                tasks.extend(blocks(0..strips, strip_block).map(|s| (p, first_col, cols.clone(), s)));
            }
            first_col += part.rows();
        }
        let fill = |out: &mut [MaybeUninit<bf16>]| {
            let dst = Disjoint(out.as_mut_ptr());
            let dst = &dst;
            tasks.par_iter().for_each(|(p, first_col, cols, strips)| {
                let w = self.parts[*p].as_slice();
                let tile = Tile { strips: strips.clone(), rows: m, cols: cols.clone() };
                // SAFETY: this task alone writes the rows of `strips` (below m) x columns
                // first_col + `cols` of the (m, n) output; the ranges lie inside the packed x, W
                // and the output.
                unsafe { strip_block_of(&packed, w, k, tile, dst.0.add(*first_col), n) };
            });
        };
        // SAFETY: the tasks tile the output's m rows and n columns, and the kernel writes every
        // element of its tiles.
        unsafe { filled(m * n, fill) }
    }
}

/// `range` cut into consecutive blocks of `step` (the last one shorter).
fn blocks(range: Range<usize>, step: usize) -> impl Iterator<Item = Range<usize>> {
    let end = range.end;
    range.step_by(step).map(move |start| start..(start + step).min(end))
}

/// x's rows as `strips` strips of 32, each as (k-pair, row) of u32: the pair (x[r][2p],
/// x[r][2p + 1]) in the low and high halves, as `vdpbf16ps` reads them, a zero high half past an
/// odd k, and zero rows past x's last.
fn pack_strips(x: &[bf16], k: usize, strips: usize) -> Vec<u32> {
    let pairs = k.div_ceil(2);
    let fill = |packed: &mut [MaybeUninit<u32>]| {
        packed.par_chunks_mut(pairs * STRIP).enumerate().for_each(|(s, strip)| {
            let rows = x.chunks_exact(k).skip(s * STRIP).take(STRIP);
            let written = rows.len();
            for (lane, row) in rows.enumerate() {
                for (p, pair) in row.chunks(2).enumerate() {
                    let hi = pair.get(1).map_or(0, |v| u32::from(v.to_bits()));
                    strip[p * STRIP + lane].write(u32::from(pair[0].to_bits()) | hi << 16);
                }
            }
            // Only the last strip has lanes past x's rows: zeros, written once.
            for p in 0..pairs {
                strip[p * STRIP + written..][..STRIP - written].iter_mut().for_each(|z| {
                    z.write(0);
                });
            }
        });
    };
    // SAFETY: every (pair, lane) of every strip is written: x's rows, then zeros.
    unsafe { filled(strips * STRIP * pairs, fill) }
}

/// Which outputs one call of [`strip_block_of`] computes: the rows of `strips` below `rows`, and
/// the W rows `cols`.
struct Tile {
    strips: Range<usize>,
    rows: usize,
    cols: Range<usize>,
}

/// out[32 s + i][j] = x[32 s + i] . w[j] for s in `tile.strips`, i < 32 with 32 s + i below
/// `tile.rows`, j in `tile.cols`, from the packed strips, into `out` (row stride `stride`, column 0
/// being W's row 0).
///
/// # Safety
/// `packed` holds the strips (pack_strips of k-long rows), w the columns (k each), and `out` is
/// valid and this caller's alone for those rows and columns; `available()` is true.
unsafe fn strip_block_of(packed: &[u32], w: &[bf16], k: usize, tile: Tile, out: *mut MaybeUninit<bf16>, stride: usize) {
    let Tile { strips, rows, cols } = tile;
    let strip_len = k.div_ceil(2) * STRIP;
    assert!(strips.end * strip_len <= packed.len() && cols.end * k <= w.len(), "tile outside its operands");
    let mut j = cols.start;
    while j < cols.end {
        let nr = WR.min(cols.end - j);
        let wp = w[j * k..].as_ptr();
        for s in strips.clone() {
            let xp = packed[s * strip_len..].as_ptr();
            let mut acc = [[bf16::ZERO; STRIP]; WR];
            // SAFETY: the strip is whole and w has nr rows from j (the assert above); the caller
            // checked the CPU.
            unsafe {
                match nr {
                    WR => imp::strip_tile::<WR>(xp, wp, k, &mut acc),
                    11 => imp::strip_tile::<11>(xp, wp, k, &mut acc),
                    10 => imp::strip_tile::<10>(xp, wp, k, &mut acc),
                    9 => imp::strip_tile::<9>(xp, wp, k, &mut acc),
                    8 => imp::strip_tile::<8>(xp, wp, k, &mut acc),
                    7 => imp::strip_tile::<7>(xp, wp, k, &mut acc),
                    6 => imp::strip_tile::<6>(xp, wp, k, &mut acc),
                    5 => imp::strip_tile::<5>(xp, wp, k, &mut acc),
                    4 => imp::strip_tile::<4>(xp, wp, k, &mut acc),
                    3 => imp::strip_tile::<3>(xp, wp, k, &mut acc),
                    2 => imp::strip_tile::<2>(xp, wp, k, &mut acc),
                    _ => imp::strip_tile::<1>(xp, wp, k, &mut acc),
                }
            }
            for i in 0..STRIP.min(rows - s * STRIP) {
                for (c, values) in acc.iter().enumerate().take(nr) {
                    // SAFETY: (32 s + i, j + c) is in the caller's rows and columns.
                    unsafe { (*out.add((s * STRIP + i) * stride + j + c)).write(values[i]) };
                }
            }
        }
        j += nr;
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::{
        __m512, __m512bh, __m512i, _mm512_cvtne2ps_pbh, _mm512_dpbf16_ps, _mm512_loadu_si512, _mm512_set1_epi32,
        _mm512_setzero_ps, _mm512_storeu_si512,
    };

    use half::bf16;

    /// 32 bf16 values as a 512-bit integer vector (the same bits).
    #[inline(always)]
    fn as_i512(v: __m512bh) -> __m512i {
        // SAFETY: both are 64 plain bytes.
        unsafe { std::mem::transmute::<__m512bh, __m512i>(v) }
    }

    /// A 512-bit integer vector read as 32 bf16 values (the same bits).
    #[inline(always)]
    fn as_bf16(v: __m512i) -> __m512bh {
        // SAFETY: both are 64 plain bytes; every bit pattern is a valid bf16 vector.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
    }

    /// acc[c][i] (for c < C, i < 32) = the dot product of row i of the packed strip x with w's row c,
    /// rounded to bf16 to nearest even by `vcvtne2ps2bf16`. A result below f32's normal range is
    /// zero here, as in oneDNN: `vdpbf16ps` flushes it in the accumulator already.
    ///
    /// # Safety
    /// x must be one whole packed strip of k-long rows and w must hold C rows of k bf16 at row
    /// stride k; the CPU must have AVX512-F/BW/BF16 (`detect`).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn strip_tile<const C: usize>(
        x: *const u32,
        w: *const bf16,
        k: usize,
        acc: &mut [[bf16; super::STRIP]; super::WR],
    ) {
        let mut sums: [[__m512; 2]; C] = [[_mm512_setzero_ps(); 2]; C];
        // One k-pair: the pair of 32 rows in two vectors, each W row's pair broadcast against them.
        // (A macro, not a closure: through a closure LLVM spilled the accumulators, at half speed.)
        macro_rules! step {
            ($p:expr, $w_pair:expr) => {{
                // SAFETY: p < ceil(k / 2), so both halves of pair p lie inside the packed strip.
                let (a0, a1) = unsafe {
                    let at = x.add($p * super::STRIP);
                    (as_bf16(_mm512_loadu_si512(at.cast())), as_bf16(_mm512_loadu_si512(at.add(16).cast())))
                };
                #[allow(clippy::needless_range_loop)]
                for c in 0..C {
                    let b = as_bf16(_mm512_set1_epi32($w_pair(c)));
                    sums[c][0] = _mm512_dpbf16_ps(sums[c][0], a0, b);
                    sums[c][1] = _mm512_dpbf16_ps(sums[c][1], a1, b);
                }
            }};
        }
        for p in 0..k / 2 {
            // SAFETY: 2p + 1 < k, inside w's row c; bf16 pairs need not be 4-byte aligned.
            step!(p, |c: usize| unsafe { w.add(c * k + 2 * p).cast::<i32>().read_unaligned() });
        }
        if k % 2 == 1 {
            // The last value alone, against the zero the packing put beside x's.
            // SAFETY: k - 1 is the row's last index.
            step!(k / 2, |c: usize| unsafe { i32::from((*w.add(c * k + k - 1)).to_bits()) });
        }
        for (c, pair) in sums.iter().enumerate() {
            // SAFETY: acc[c] is 32 bf16, 64 bytes, long.
            unsafe { _mm512_storeu_si512(acc[c].as_mut_ptr().cast(), as_i512(_mm512_cvtne2ps_pbh(pair[1], pair[0]))) };
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use half::bf16;

    /// Never called: `available` is false.
    pub unsafe fn strip_tile<const C: usize>(
        _: *const u32,
        _: *const bf16,
        _: usize,
        _: &mut [[bf16; super::STRIP]; super::WR],
    ) {
        unreachable!("AVX512-BF16 is x86-only")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact in f32 (small integers over powers of two), so any layout or edge mistake shows as a
    /// wrong value, not a rounding difference; the shapes hit every tail of the tiling (m % 32, W
    /// rows % 12, odd k, inputs under one strip) and several parts.
    #[test]
    fn matches_a_plain_product_on_every_edge() {
        if !available() {
            eprintln!("no AVX512-BF16 on this CPU: skipped");
            return;
        }
        let shapes = [
            (1, vec![1], 1),
            (5, vec![7, 13], 33),
            (9, vec![96, 5], 64),
            (32, vec![25], 1),
            (64, vec![12, 7], 33),
            (130, vec![100, 31, 31], 2050),
        ];
        for (m, ns, k) in shapes {
            let x: Vec<bf16> = (0..m * k).map(|i| bf16::from_f32(((i * 7 % 11) as f32 - 5.0) / 4.0)).collect();
            let ws: Vec<Vec<bf16>> = ns
                .iter()
                .enumerate()
                .map(|(p, &n)| (0..n * k).map(|i| bf16::from_f32(((i * 5 + p) % 13) as f32 / 8.0 - 0.75)).collect())
                .collect();
            let parts = ns.iter().zip(&ws).map(|(&n, w)| Bf16Rows::owned(w.clone(), n, k)).collect();
            let got = DotWeight::new(parts).expect("one row length").matmul(&x, m);
            let n: usize = ns.iter().sum();
            let rows: Vec<&[bf16]> = ws.iter().flat_map(|w| w.chunks_exact(k)).collect();
            for i in 0..m {
                for (j, row) in rows.iter().enumerate() {
                    let exact: f32 = (0..k).map(|t| x[i * k + t].to_f32() * row[t].to_f32()).sum();
                    assert_eq!(got[i * n + j], bf16::from_f32(exact), "({m}x{ns:?}x{k}) at ({i}, {j})");
                }
            }
        }
    }
}
