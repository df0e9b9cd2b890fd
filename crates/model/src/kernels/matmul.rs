//! Strided f32 matrix products on the gemm crate, behind one safe, bounds-checked function: every
//! caller states its operands as [`View`]s (a slice plus shape and strides), and the one `unsafe`
//! call below relies only on what [`product`] checks.
//!
//! Row invariance: gemm's main path computes every output as one FMA chain over k, in k blocks
//! whose size follows from k and the CPU's caches alone, so a row's result does not depend on the
//! other rows of the product, and extra zero terms at the end of k leave it unchanged. gemm's
//! shortcuts break that: one row or one column goes to a gemv, k <= 2 to a "gevv", a product of at
//! most 256 outputs to "horizontal" kernels that sum lanes, and m, n <= 64 to other k blocks.
//! [`product`] pads the operands with zeros so that gemm never takes them, which makes each row of
//! every product here the same bits whether it is computed alone or among any others, and an
//! attention row's the same however many masked keys its tile has (what batch invariance rests
//! on).

use std::mem::MaybeUninit;

/// A `rows x cols` matrix inside `data`: element (r, c) is `data[r * row_stride + c * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// `data` read as a row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The transpose, without moving anything.
    pub fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    /// Every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1).checked_mul(self.row_stride).zip((self.cols - 1).checked_mul(self.col_stride));
        last.and_then(|(r, c)| r.checked_add(c)).is_some_and(|i| i < self.data.len())
    }
}

/// Where a product goes: a row-major `m x n` output.
pub enum Out<'a> {
    /// Written, never read (it may be uninitialised).
    Overwrite(&'a mut [MaybeUninit<f32>]),
    /// Written, never read: `out = product`.
    Replace(&'a mut [f32]),
    /// `out += product`.
    Accumulate(&'a mut [f32]),
}

/// `out (m x n) [+]= lhs (m x k) * rhs (k x n)`, parallel over `threads` when more than one.
///
/// # Panics
/// When the shapes disagree or a view or the output is smaller than its shape: these are bugs in
/// the caller, never data-dependent.
pub fn product(out: Out<'_>, lhs: View<'_>, rhs: View<'_>, threads: usize) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "inner dimensions differ: ({m} x {k}) * ({} x {n})", rhs.rows);
    assert!(lhs.in_bounds() && rhs.in_bounds(), "a matrix view runs past its slice");
    let shape = main_path_shape(m, n, k);
    if m > 0 && n > 0 && shape != (m, n, k) {
        return padded_product(out, lhs, rhs, shape, threads);
    }
    let (dst, read_dst, alpha) = match out {
        Out::Overwrite(o) => {
            assert!(o.len() >= m * n, "output holds {} of {m} x {n}", o.len());
            (o.as_mut_ptr().cast::<f32>(), false, 0.0)
        }
        Out::Replace(o) => {
            assert!(o.len() >= m * n, "output holds {} of {m} x {n}", o.len());
            (o.as_mut_ptr(), false, 0.0)
        }
        Out::Accumulate(o) => {
            assert!(o.len() >= m * n, "output holds {} of {m} x {n}", o.len());
            (o.as_mut_ptr(), true, 1.0)
        }
    };
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the asserts above put every element gemm reads of lhs and rhs inside their slices and
    // every element it writes inside the exclusively borrowed output (row-major m x n, so strides
    // 1 and n). With read_dst false gemm never reads the output, so uninitialised memory is fine;
    // with it true the output is initialised f32s. The operands are shared borrows that cannot
    // alias the exclusive output borrow.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            read_dst,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            alpha,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// The smallest (m, n, k) at least the product's own for which gemm takes its main path (see the
/// module's doc; gemm-common 0.19's `gemm_basic_generic`).
fn main_path_shape(m: usize, n: usize, k: usize) -> (usize, usize, usize) {
    let (n, k) = (n.max(2), k.max(3));
    let mut m = m.max(2).max(256 / n + 1);
    if n <= 64 && k > 512 {
        m = m.max(65);
    }
    (m, n, k)
}

/// `product` with `lhs` and `rhs` extended by zeros to `shape`, through a scratch output: the extra
/// rows and columns are never read back, and the extra depth adds exact zeros.
fn padded_product(out: Out<'_>, lhs: View<'_>, rhs: View<'_>, shape: (usize, usize, usize), threads: usize) {
    let (m, n) = (lhs.rows, rhs.cols);
    let (rows, cols, depth) = shape;
    let pad = |v: View<'_>, r: usize, c: usize| {
        let mut p = vec![0.0f32; r * c];
        for (i, row) in p.chunks_exact_mut(c).take(v.rows).enumerate() {
            row[..v.cols].iter_mut().enumerate().for_each(|(j, x)| *x = v.data[i * v.row_stride + j * v.col_stride]);
        }
        p
    };
    let (a, b) = (pad(lhs, rows, depth), pad(rhs, depth, cols));
    let (a, b) = (View::row_major(&a, rows, depth), View::row_major(&b, depth, cols));
    let mut c = vec![0.0f32; rows * cols];
    let accumulate = matches!(out, Out::Accumulate(_));
    if let Out::Accumulate(o) = &out {
        for (c, o) in c.chunks_exact_mut(cols).zip(o.chunks_exact(n)).take(m) {
            c[..n].copy_from_slice(o);
        }
    }
    product(if accumulate { Out::Accumulate(&mut c) } else { Out::Replace(&mut c) }, a, b, threads);
    let got = c.chunks_exact(cols).take(m).flat_map(|row| &row[..n]);
    match out {
        Out::Overwrite(o) => o[..m * n].iter_mut().zip(got).for_each(|(o, &x)| {
            o.write(x);
        }),
        Out::Replace(o) | Out::Accumulate(o) => o[..m * n].iter_mut().zip(got).for_each(|(o, &x)| *o = x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_the_definition_for_every_layout() {
        let a: Vec<f32> = (0..6).map(|i| i as f32).collect(); // 2 x 3
        let b: Vec<f32> = (0..12).map(|i| (i as f32) * 0.5 - 2.0).collect(); // 3 x 4, or its transpose 4 x 3
        let naive = |a: View, b: View| -> Vec<f32> {
            let at = |v: &View, r: usize, c: usize| v.data[r * v.row_stride + c * v.col_stride];
            (0..a.rows)
                .flat_map(|r| (0..b.cols).map(move |c| (r, c)))
                .map(|(r, c)| (0..a.cols).map(|i| at(&a, r, i) * at(&b, i, c)).sum())
                .collect()
        };
        let (lhs, rhs) = (View::row_major(&a, 2, 3), View::row_major(&b, 3, 4));
        let mut out = vec![MaybeUninit::new(f32::NAN); 8];
        product(Out::Overwrite(&mut out), lhs, rhs, 1);
        // SAFETY: an overwriting product writes every element.
        let out: Vec<f32> = out.into_iter().map(|x| unsafe { x.assume_init() }).collect();
        assert_eq!(out, naive(lhs, rhs));
        let rhs_t = View::row_major(&b, 4, 3).t();
        let mut acc = vec![1.0f32; 8];
        product(Out::Accumulate(&mut acc), lhs, rhs_t, 2);
        let want: Vec<f32> = naive(lhs, rhs_t).iter().map(|x| x + 1.0).collect();
        assert_eq!(acc, want);
        product(Out::Replace(&mut acc), lhs, rhs_t, 1);
        assert_eq!(acc, naive(lhs, rhs_t));
    }

    /// Each row of a product is the same bits alone, among a few rows or among many, for the
    /// shapes that take gemm's shortcuts unpadded (one row, tiny products, m, n <= 64 with k > 512).
    #[test]
    fn a_row_is_the_same_bits_whatever_the_other_rows() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for (n, k) in [(19, 4096), (1024, 576), (7, 64), (300, 3), (64, 700), (256, 64), (1, 4096), (1, 64), (5, 2)] {
            let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
            let a: Vec<f32> = (0..130 * k).map(|_| next()).collect();
            let rhs = View::row_major(&b, k, n);
            let mut all = vec![0.0f32; 130 * n];
            product(Out::Replace(&mut all), View::row_major(&a, 130, k), rhs, 2);
            for m in [1, 2, 3, 13, 64, 65] {
                for first in [0, 130 - m] {
                    let mut part = vec![0.0f32; m * n];
                    product(Out::Replace(&mut part), View::row_major(&a[first * k..], m, k), rhs, 1);
                    let want = &all[first * n..][..m * n];
                    assert!(
                        part.iter().zip(want).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "rows {first}..{} of ({n}, {k}) differ from the same rows among 130",
                        first + m
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "runs past its slice")]
    fn views_past_their_slice_are_refused() {
        let a = [0.0f32; 5];
        product(Out::Accumulate(&mut [0.0; 4]), View::row_major(&a, 2, 3), View::row_major(&[0.0; 6], 3, 2), 1);
    }
}
