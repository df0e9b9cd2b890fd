//! bf16 projections on CPUs with AVX512-BF16 but no AMX (AMD Zen 4/5, Intel Cooper Lake), on
//! `vdpbf16ps` (32 bf16 products summed pairwise into 16 f32 lanes per instruction, twice the f32
//! FMA rate).
//!
//! W stays in the checkpoint's own (n, k) layout, unpacked, so a bf16 checkpoint's weights are
//! used straight from the memory-mapped file ([`crate::weights::Bf16Rows`]): no load-time copy, no
//! resident duplicate. candle instead widens both operands to f32 on every call, which left bf16 no
//! faster than f32 here, at half PyTorch's (oneDNN's) bf16 speed. Accumulation is f32 throughout and
//! each result is rounded to bf16 once, as oneDNN does.
//!
//! Two kernels share the work. Whole strips of 32 rows of x run as outer products: x's strip is
//! packed once per call so that one vector holds the same k-pair of 16 rows, and each W k-pair is
//! broadcast against it; no horizontal sums, 24 accumulators. Rows left over (m % 32, and all of a
//! batch under 32 rows, such as the last layer's) run as dot products of x's rows with W's rows,
//! which wastes nothing on short inputs but pays a 16-lane reduction per output.

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::OnceLock;

use half::bf16;
use rayon::prelude::*;

use crate::simd::{filled, Disjoint, Element};
use crate::weights::Bf16Rows;

/// Dot kernel: rows of x per micro-tile, and rows of W: 16 accumulators, 4 x vectors and one W
/// vector. Larger tiles (4 x 6, 4 x 5, 5 x 4) should fit the 32 vector registers too, but LLVM
/// spilled their accumulators and they ran at 190-270 GFLOP/s against this tile's 320-360 (1B
/// shapes, 2 Zen 4 cores).
const MR: usize = 4;
const NR: usize = 4;
/// W rows per parallel task: a multiple of NR.
const NC: usize = 16 * NR;
/// Bytes of x one task keeps in L2 while it walks its W rows.
const X_BLOCK_BYTES: usize = 256 << 10;
/// Strip kernel: rows of x per strip (two vectors of 16 lanes), and rows of W per micro-tile: 2 x 12
/// accumulators, two x vectors and a broadcast. 14 W rows (28 accumulators) spilled and ran 10%
/// slower.
const STRIP: usize = 32;
const WR: usize = 12;
/// W rows per parallel task of the strip kernel: a multiple of WR.
const STRIP_NC: usize = 4 * WR;

/// Whether this CPU runs `vdpbf16ps` (checked once).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(imp::detect)
}

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
        let strips = m / STRIP;
        let packed = pack_strips(&x[..strips * STRIP * k], k);
        let strip_block = (X_BLOCK_BYTES / (STRIP * 2 * k)).clamp(1, strips.max(1));
        let row_block = (X_BLOCK_BYTES / (2 * k)).max(MR) / MR * MR;
        // Tasks (part, its first output column, its W rows, x's strips or rows); together they
        // cover every output element once.
        let mut strip_tasks: Vec<(usize, usize, Range<usize>, Range<usize>)> = Vec::new();
        let mut row_tasks = Vec::new();
        let mut first_col = 0;
        for (p, part) in self.parts.iter().enumerate() {
            for cols in blocks(0..part.rows(), STRIP_NC) {
                strip_tasks.extend(blocks(0..strips, strip_block).map(|s| (p, first_col, cols.clone(), s)));
            }
            for cols in blocks(0..part.rows(), NC) {
                row_tasks.extend(blocks(strips * STRIP..m, row_block).map(|r| (p, first_col, cols.clone(), r)));
            }
            first_col += part.rows();
        }
        let fill = |out: &mut [MaybeUninit<bf16>]| {
            let dst = Disjoint(out.as_mut_ptr());
            let dst = &dst;
            strip_tasks.par_iter().for_each(|(p, first_col, cols, strips)| {
                let w = self.parts[*p].as_slice();
                // SAFETY: this task alone writes rows 32 * `strips` x columns first_col + `cols` of
                // the (m, n) output; the ranges lie inside the packed x, W and the output.
                unsafe { strip_block_of(&packed, w, k, strips.clone(), cols.clone(), dst.0.add(*first_col), n) };
            });
            row_tasks.par_iter().for_each(|(p, first_col, cols, rows)| {
                let w = self.parts[*p].as_slice();
                // SAFETY: this task alone writes rows `rows` (past the strips) x columns
                // first_col + `cols`; the ranges lie inside x, W and the output by construction.
                unsafe { block(x, w, k, rows.clone(), cols.clone(), dst.0.add(*first_col), n) };
            });
        };
        // SAFETY: the strip tasks tile the output's first 32 * strips rows, the row tasks the rest,
        // and both kernels write every element of their tiles.
        unsafe { filled(m * n, fill) }
    }
}

/// `range` cut into consecutive blocks of `step` (the last one shorter).
fn blocks(range: Range<usize>, step: usize) -> impl Iterator<Item = Range<usize>> {
    let end = range.end;
    range.step_by(step).map(move |start| start..(start + step).min(end))
}

/// x's whole strips, each as (k-pair, row) of u32: the pair (x[r][2p], x[r][2p + 1]) in the low and
/// high halves, as `vdpbf16ps` reads them, and a zero high half past an odd k.
fn pack_strips(x: &[bf16], k: usize) -> Vec<u32> {
    let pairs = k.div_ceil(2);
    let fill = |packed: &mut [MaybeUninit<u32>]| {
        packed.par_chunks_mut(pairs * STRIP).zip(x.par_chunks(STRIP * k)).for_each(|(strip, rows)| {
            for (lane, row) in rows.chunks_exact(k).enumerate() {
                for (p, pair) in row.chunks(2).enumerate() {
                    let hi = pair.get(1).map_or(0, |v| u32::from(v.to_bits()));
                    strip[p * STRIP + lane].write(u32::from(pair[0].to_bits()) | hi << 16);
                }
            }
        });
    };
    // SAFETY: x is whole strips of 32 rows (the caller's slice), and every (pair, row) of each
    // strip is written.
    unsafe { filled(x.len() / k * pairs, fill) }
}

/// out[32 s + i][j] = x[32 s + i] . w[j] for s in `strips`, i < 32, j in `cols`, from the packed
/// strips, into `out` (row stride `stride`, column 0 being W's row 0).
///
/// # Safety
/// `packed` holds the strips (pack_strips of k-long rows), w the columns (k each), and `out` is
/// valid and this caller's alone for those rows and columns; `available()` is true.
unsafe fn strip_block_of(
    packed: &[u32],
    w: &[bf16],
    k: usize,
    strips: Range<usize>,
    cols: Range<usize>,
    out: *mut MaybeUninit<bf16>,
    stride: usize,
) {
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
            for i in 0..STRIP {
                for (c, values) in acc.iter().enumerate().take(nr) {
                    // SAFETY: (32 s + i, j + c) is in the caller's rows and columns.
                    unsafe { (*out.add((s * STRIP + i) * stride + j + c)).write(values[i]) };
                }
            }
        }
        j += nr;
    }
}

/// out[i][j] = x[i] . w[j] for i in `rows`, j in `cols`, into `out` (row stride `stride`, column 0
/// being W's row 0).
///
/// # Safety
/// x holds the rows (k each), w the columns (k each), and `out` is valid and this caller's alone for
/// those rows and columns; `available()` is true.
unsafe fn block(
    x: &[bf16],
    w: &[bf16],
    k: usize,
    rows: Range<usize>,
    cols: Range<usize>,
    out: *mut MaybeUninit<bf16>,
    stride: usize,
) {
    assert!(rows.end * k <= x.len() && cols.end * k <= w.len(), "tile outside its operands");
    let mut j = cols.start;
    while j < cols.end {
        let nr = NR.min(cols.end - j);
        let mut i = rows.start;
        while i < rows.end {
            let mr = MR.min(rows.end - i);
            let (xp, wp) = (x[i * k..].as_ptr(), w[j * k..].as_ptr());
            let mut acc = [[0.0f32; NR]; MR];
            // SAFETY: x has mr rows from i and w has nr rows from j (the assert above); the caller
            // checked the CPU.
            unsafe {
                match (mr, nr) {
                    (MR, NR) => imp::tile::<MR, NR>(xp, wp, k, &mut acc),
                    (_, NR) => (0..mr).for_each(|r| imp::tile::<1, NR>(xp.add(r * k), wp, k, &mut acc[r..])),
                    _ => (0..mr).for_each(|r| {
                        (0..nr).for_each(|c| {
                            let mut one = [[0.0f32; NR]];
                            imp::tile::<1, 1>(xp.add(r * k), wp.add(c * k), k, &mut one);
                            acc[r][c] = one[0][0];
                        })
                    }),
                }
            }
            for (r, values) in acc.iter().enumerate().take(mr) {
                for (c, &v) in values.iter().enumerate().take(nr) {
                    // SAFETY: (i + r, j + c) is in the caller's rows and columns.
                    unsafe { (*out.add((i + r) * stride + j + c)).write(<bf16 as Element>::from_f32(v)) };
                }
            }
            i += mr;
        }
        j += nr;
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::{
        __m512, __m512bh, __m512i, _mm512_cvtne2ps_pbh, _mm512_dpbf16_ps, _mm512_loadu_si512, _mm512_maskz_loadu_epi16,
        _mm512_reduce_add_ps, _mm512_set1_epi32, _mm512_setzero_ps, _mm512_setzero_si512, _mm512_storeu_si512,
    };

    use half::bf16;

    pub fn detect() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512bf16")
    }

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

    /// acc[r][c] (for r < R, c < C) = the dot product of x's row r with w's row c, over k values.
    ///
    /// # Safety
    /// x must hold R rows and w C rows of k bf16 each, at row stride k; the CPU must have
    /// AVX512-F/BW/BF16 (`detect`).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn tile<const R: usize, const C: usize>(
        x: *const bf16,
        w: *const bf16,
        k: usize,
        acc: &mut [[f32; super::NR]],
    ) {
        // Index loops over the two fixed dimensions: with iterators (or the arrays the other way
        // round) LLVM spilled accumulators to the stack, a quarter of the kernel's speed.
        let mut sums: [[__m512; C]; R] = [[_mm512_setzero_ps(); C]; R];
        let full = k / 32;
        let load = |p: *const bf16, chunk: usize| {
            // SAFETY: chunk < k / 32, so the 32 values lie inside the row (the caller's contract).
            as_bf16(unsafe { _mm512_loadu_si512(p.add(chunk * 32).cast()) })
        };
        for chunk in 0..full {
            let mut xs = [as_bf16(_mm512_setzero_si512()); R];
            for (r, v) in xs.iter_mut().enumerate() {
                *v = load(x.wrapping_add(r * k), chunk);
            }
            #[allow(clippy::needless_range_loop)]
            for c in 0..C {
                let wv = load(w.wrapping_add(c * k), chunk);
                for r in 0..R {
                    sums[r][c] = _mm512_dpbf16_ps(sums[r][c], xs[r], wv);
                }
            }
        }
        let tail = k % 32;
        if tail > 0 {
            let mask = (1u32 << tail) - 1;
            let load = |p: *const bf16| {
                // SAFETY: the mask reads only the row's last `tail` values; masked-off lanes are
                // not accessed.
                as_bf16(unsafe { _mm512_maskz_loadu_epi16(mask, p.add(full * 32).cast()) })
            };
            #[allow(clippy::needless_range_loop)]
            for c in 0..C {
                let wv = load(w.wrapping_add(c * k));
                for r in 0..R {
                    sums[r][c] = _mm512_dpbf16_ps(sums[r][c], load(x.wrapping_add(r * k)), wv);
                }
            }
        }
        for (r, row) in sums.iter().enumerate() {
            for (c, &s) in row.iter().enumerate() {
                acc[r][c] = _mm512_reduce_add_ps(s);
            }
        }
    }

    /// acc[c][i] (for c < C, i < 32) = the dot product of row i of the packed strip x with w's row c,
    /// rounded to bf16 to nearest even by `vcvtne2ps2bf16`. A result below f32's normal range is
    /// zero here, as in oneDNN: `vdpbf16ps` flushes it in the accumulator already (the dot kernel's
    /// final horizontal sum, ordinary adds, can keep one).
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

    pub fn detect() -> bool {
        false
    }

    /// Never called: `detect` is false.
    pub unsafe fn tile<const R: usize, const C: usize>(
        _: *const bf16,
        _: *const bf16,
        _: usize,
        _: &mut [[f32; super::NR]],
    ) {
        unreachable!("AVX512-BF16 is x86-only")
    }

    /// Never called: `detect` is false.
    pub unsafe fn strip_tile<const C: usize>(
        _: *const u32,
        _: *const bf16,
        _: usize,
        _: &mut [[f32; super::STRIP]; super::WR],
    ) {
        unreachable!("AVX512-BF16 is x86-only")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact in f32 (small integers over powers of two), so any layout or edge mistake shows as a
    /// wrong value, not a rounding difference; the shapes hit every tail of both kernels' tilings
    /// (m % 32 and m % 4, W rows % 12 and % 4, odd k and k % 32, inputs under one strip) and several
    /// parts.
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
