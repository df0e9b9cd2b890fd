//! Strided f32 matrix products on the gemm crate, behind one safe, bounds-checked function: every
//! caller states its operands as [`View`]s (a slice plus shape and strides), and the one `unsafe`
//! call below relies only on what [`product`] checks.

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

    #[test]
    #[should_panic(expected = "runs past its slice")]
    fn views_past_their_slice_are_refused() {
        let a = [0.0f32; 5];
        product(Out::Accumulate(&mut [0.0; 4]), View::row_major(&a, 2, 3), View::row_major(&[0.0; 6], 3, 2), 1);
    }
}
