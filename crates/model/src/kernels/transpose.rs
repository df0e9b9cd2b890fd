//! Blocked, parallel transposes, converting each element on the way: how weights stored (out, in)
//! become the (in, out) layout the CPU matmul streams, in one pass over one output buffer.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Columns per parallel task, and the side of the square tiles each task moves through a local
/// buffer: reads and writes both run along rows, 32 elements (64 or 128 bytes) at a time. Writing
/// element by element down the output's columns instead made this a third of a bf16 load's time.
const BLOCK: usize = 32;

/// Writes `src` (rows x cols, row-major), converted by `f`, transposed into columns
/// `[first_col, first_col + rows)` of `out` (cols x out_cols, row-major): out[c][first_col + r] =
/// f(src[r][c]). Several sources stacked by rows become side-by-side column ranges of one output.
/// The output may be uninitialised: this writes every element of those columns and reads none.
pub fn transpose_into<S: Copy + Sync, T: Copy + Send>(
    src: &[S],
    rows: usize,
    cols: usize,
    out: &mut [MaybeUninit<T>],
    out_cols: usize,
    first_col: usize,
    f: impl Fn(S) -> T + Sync,
) {
    assert!(src.len() == rows * cols && out.len() == cols * out_cols && first_col + rows <= out_cols);
    out.par_chunks_mut(BLOCK * out_cols).enumerate().for_each(|(b, chunk)| {
        let c0 = b * BLOCK;
        let width = chunk.len() / out_cols;
        // tile[c][r] = f(src[r0 + r][c0 + c]): converted and turned in L1.
        let mut tile: Vec<MaybeUninit<T>> = vec![MaybeUninit::uninit(); BLOCK * BLOCK];
        for r0 in (0..rows).step_by(BLOCK) {
            let height = BLOCK.min(rows - r0);
            for r in 0..height {
                for (c, &x) in src[(r0 + r) * cols + c0..][..width].iter().enumerate() {
                    tile[c * BLOCK + r].write(f(x));
                }
            }
            for c in 0..width {
                chunk[c * out_cols + first_col + r0..][..height].copy_from_slice(&tile[c * BLOCK..][..height]);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacked_sources_land_transposed_side_by_side() {
        // Two sources (3 x 70 and 2 x 70) into one 70 x 5 output, converted to f64.
        let a: Vec<f32> = (0..210).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..140).map(|i| -(i as f32)).collect();
        let mut out = vec![MaybeUninit::new(f64::NAN); 70 * 5];
        transpose_into(&a, 3, 70, &mut out, 5, 0, f64::from);
        transpose_into(&b, 2, 70, &mut out, 5, 3, f64::from);
        // SAFETY: initialised from the start (NaN), then overwritten.
        let out: Vec<f64> = out.into_iter().map(|x| unsafe { x.assume_init() }).collect();
        for c in 0..70 {
            for r in 0..3 {
                assert_eq!(out[c * 5 + r], a[r * 70 + c] as f64);
            }
            for r in 0..2 {
                assert_eq!(out[c * 5 + 3 + r], b[r * 70 + c] as f64);
            }
        }
    }
}
