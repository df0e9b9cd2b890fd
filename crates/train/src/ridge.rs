//! Ridge regression without intercept, for many objectives and many regularisation strengths at
//! once, from sufficient statistics that are accumulated while rows stream past.
//!
//! For rows X (n, d) and targets Y (n, m), everything needed is G = XᵀX, B = XᵀY and the targets'
//! sums of squares. Each alpha's solution W(α) = (G + αI)⁻¹B, which is what scikit-learn's
//! `Ridge(fit_intercept=False)` solves, then costs one Cholesky factorisation of the d x d matrix
//! instead of a new O(n d² + d³) fit ([`fit`]). Validation MSE comes from the
//! validation rows' statistics the same way: (wᵀG_v w − 2 wᵀb_v + yᵀy) / n_v. All in f64.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, Par, Side};

/// The regularisation strengths tried for every objective.
pub const ALPHAS: [f64; 9] = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4];

/// Rows buffered before they are folded into XᵀX with one matrix product.
const CHUNK: usize = 256;

/// XᵀX, XᵀY and ΣY² over the rows added so far.
pub struct Moments {
    d: usize,
    m: usize,
    xtx: Mat<f64>,
    xty: Mat<f64>,
    yty: Vec<f64>,
    n: usize,
    pending_x: Vec<f64>,
    pending_y: Vec<f64>,
}

impl Moments {
    pub fn new(d: usize, m: usize) -> Self {
        Self {
            d,
            m,
            xtx: Mat::zeros(d, d),
            xty: Mat::zeros(d, m),
            yty: vec![0.0; m],
            n: 0,
            pending_x: Vec::with_capacity(CHUNK * d),
            pending_y: Vec::with_capacity(CHUNK * m),
        }
    }

    /// Adds one row: features `x` (d) and targets `y` (m).
    pub fn push(&mut self, x: &[f32], y: &[f64]) {
        debug_assert_eq!((x.len(), y.len()), (self.d, self.m));
        self.pending_x.extend(x.iter().map(|&v| f64::from(v)));
        self.pending_y.extend_from_slice(y);
        if self.pending_y.len() == CHUNK * self.m {
            self.fold();
        }
    }

    fn fold(&mut self) {
        let r = self.pending_y.len() / self.m.max(1);
        if r == 0 {
            return;
        }
        let x = Mat::from_fn(r, self.d, |i, j| self.pending_x[i * self.d + j]);
        let y = Mat::from_fn(r, self.m, |i, j| self.pending_y[i * self.m + j]);
        // XᵀX is symmetric: accumulate its lower half only (half the work), mirrored in `finish`.
        triangular::matmul(
            &mut self.xtx,
            BlockStructure::TriangularLower,
            Accum::Add,
            x.transpose(),
            BlockStructure::Rectangular,
            &x,
            BlockStructure::Rectangular,
            1.0,
            Par::rayon(0),
        );
        matmul(&mut self.xty, Accum::Add, x.transpose(), &y, 1.0, Par::rayon(0));
        for (j, s) in self.yty.iter_mut().enumerate() {
            *s += (0..r).map(|i| y[(i, j)] * y[(i, j)]).sum::<f64>();
        }
        self.n += r;
        self.pending_x.clear();
        self.pending_y.clear();
    }

    /// Rows added.
    pub fn rows(&self) -> usize {
        self.n + self.pending_y.len() / self.m.max(1)
    }

    fn finish(&mut self) {
        self.fold();
        for j in 0..self.d {
            for i in 0..j {
                self.xtx[(i, j)] = self.xtx[(j, i)];
            }
        }
    }
}

/// One objective's result.
#[derive(Debug, Clone)]
pub struct RidgeFit {
    /// The alpha with the lowest validation MSE (the smallest such alpha on a tie).
    pub alpha: f64,
    pub val_mse: f64,
    /// Validation MSE for each of the alphas tried, in order.
    pub mse_by_alpha: Vec<f64>,
    /// The weights fitted on the training rows with `alpha`, length d.
    pub weights: Vec<f64>,
}

/// Fits every objective of `train` for every alpha and picks each objective's alpha on `val`.
///
/// Each alpha's system (G + αI) W = B is solved through a Cholesky factorisation, as
/// scikit-learn's default solver does: nine factorisations at d³/3 each cost about a third of one
/// symmetric eigendecomposition with its vectors, the step that dominated stage 1. Should one fail
/// (G + αI not positive definite in f64, which takes extreme feature scales), every alpha is solved
/// from the eigendecomposition G = U diag(s) Uᵀ instead: W(α) = U diag(1 / (s + α)) UᵀB.
pub fn fit(mut train: Moments, mut val: Moments, alphas: &[f64]) -> Result<Vec<RidgeFit>, faer::linalg::evd::EvdError> {
    train.finish();
    val.finish();
    let solutions = match cholesky_solve(&train, alphas) {
        Some(w) => w,
        None => eigen_solve(&train, alphas)?,
    };
    Ok(select(&val, alphas, solutions))
}

/// Each alpha's W = (G + αI)⁻¹ B by Cholesky, factorised in place in one reused d x d buffer
/// (`Mat::llt` allocates and copies two matrices per call, a third of the time at d = 4096);
/// `None` when some G + αI is not numerically positive definite.
fn cholesky_solve(train: &Moments, alphas: &[f64]) -> Option<Vec<Mat<f64>>> {
    let (d, par) = (train.d, Par::rayon(0));
    let scratch = llt::factor::cholesky_in_place_scratch::<f64>(d, par, Default::default())
        .or(llt::solve::solve_in_place_scratch::<f64>(d, train.m, par));
    let mut buffer = MemBuffer::new(scratch);
    let mut a = Mat::<f64>::zeros(d, d);
    alphas
        .iter()
        .map(|&alpha| {
            a.copy_from(&train.xtx);
            for i in 0..d {
                a[(i, i)] += alpha;
            }
            llt::factor::cholesky_in_place(
                a.as_mut(),
                Default::default(),
                par,
                MemStack::new(&mut buffer),
                Default::default(),
            )
            .ok()?;
            let mut w = train.xty.clone();
            llt::solve::solve_in_place(a.as_ref(), w.as_mut(), par, MemStack::new(&mut buffer));
            let finite = (0..w.ncols()).all(|j| (0..w.nrows()).all(|i| w[(i, j)].is_finite()));
            finite.then_some(w)
        })
        .collect()
}

/// Every alpha's W from one eigendecomposition of G.
fn eigen_solve(train: &Moments, alphas: &[f64]) -> Result<Vec<Mat<f64>>, faer::linalg::evd::EvdError> {
    let (d, m) = (train.d, train.m);
    let eig = train.xtx.self_adjoint_eigen(Side::Lower)?;
    let (u, s) = (eig.U(), eig.S().column_vector());
    let mut ub = Mat::zeros(d, m); // Uᵀ B
    matmul(&mut ub, Accum::Replace, u.transpose(), &train.xty, 1.0, Par::rayon(0));
    Ok(alphas
        .iter()
        .map(|&alpha| {
            let scaled = Mat::from_fn(d, m, |i, j| ub[(i, j)] / (s[i] + alpha));
            let mut w = Mat::zeros(d, m);
            matmul(&mut w, Accum::Replace, u, &scaled, 1.0, Par::rayon(0));
            w
        })
        .collect())
}

/// Each objective's alpha by validation MSE, (wᵀG_v w − 2 wᵀb_v + yᵀy) / n_v, the smallest alpha on
/// a tie; `solutions[a]` is alpha a's W (d, m).
fn select(val: &Moments, alphas: &[f64], solutions: Vec<Mat<f64>>) -> Vec<RidgeFit> {
    let (d, m) = (val.d, val.m);
    let mut best: Vec<Option<(f64, Mat<f64>)>> = vec![None; m];
    let mut mse = vec![Vec::with_capacity(alphas.len()); m];
    for w in solutions {
        let mut gw = Mat::zeros(d, m); // G_val W
        matmul(&mut gw, Accum::Replace, &val.xtx, &w, 1.0, Par::rayon(0));
        for j in 0..m {
            let (mut wgw, mut wb) = (0.0, 0.0);
            for i in 0..d {
                wgw += w[(i, j)] * gw[(i, j)];
                wb += w[(i, j)] * val.xty[(i, j)];
            }
            let e = (wgw - 2.0 * wb + val.yty[j]) / val.n as f64;
            mse[j].push(e);
            if best[j].as_ref().is_none_or(|(b, _)| e < *b) {
                best[j] = Some((e, Mat::from_fn(d, 1, |i, _| w[(i, j)])));
            }
        }
    }
    best.into_iter()
        .zip(mse)
        .map(|(b, mse_by_alpha)| {
            let (val_mse, w) = b.expect("at least one alpha");
            let at = mse_by_alpha.iter().position(|&e| e == val_mse).expect("best is one of them");
            RidgeFit { alpha: alphas[at], val_mse, mse_by_alpha, weights: (0..d).map(|i| w[(i, 0)]).collect() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Solves (XᵀX + αI) w = Xᵀy by Gaussian elimination: the textbook normal equations.
    fn normal_equations(x: &[Vec<f64>], y: &[f64], alpha: f64) -> Vec<f64> {
        let d = x[0].len();
        let mut a = vec![vec![0.0; d + 1]; d];
        for (row, &t) in x.iter().zip(y) {
            for i in 0..d {
                for j in 0..d {
                    a[i][j] += row[i] * row[j];
                }
                a[i][d] += row[i] * t;
            }
        }
        for (i, r) in a.iter_mut().enumerate() {
            r[i] += alpha;
        }
        for c in 0..d {
            let p = (c..d).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())).unwrap();
            a.swap(c, p);
            let pivot = a[c].clone();
            for (_, row) in a.iter_mut().enumerate().filter(|(r, _)| *r != c) {
                let f = row[c] / pivot[c];
                for (x, p) in row[c..].iter_mut().zip(&pivot[c..]) {
                    *x -= f * p;
                }
            }
        }
        (0..d).map(|i| a[i][d] / a[i][i]).collect()
    }

    /// Seeded draws, uniform in [-0.5, 0.5).
    fn uniform(mut state: u64) -> impl FnMut() -> f64 {
        move || {
            state = crate::split::splitmix64(state);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        }
    }

    #[test]
    fn the_eigen_fallback_gives_the_cholesky_solutions() {
        let (d, m) = (9, 3);
        let mut rnd = uniform(7);
        let mut g = Moments::new(d, m);
        // Fewer rows than features: G is singular, as for a small objective at d = 4096.
        for _ in 0..6 {
            let x: Vec<f32> = (0..d).map(|_| rnd() as f32).collect();
            let y: Vec<f64> = (0..m).map(|_| rnd()).collect();
            g.push(&x, &y);
        }
        g.finish();
        let eigen = eigen_solve(&g, &ALPHAS).unwrap();
        let cholesky = cholesky_solve(&g, &ALPHAS).expect("G + αI is positive definite");
        for ((&alpha, e), c) in ALPHAS.iter().zip(&eigen).zip(&cholesky) {
            for j in 0..m {
                for i in 0..d {
                    let (a, b) = (c[(i, j)], e[(i, j)]);
                    assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "alpha {alpha}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn fit_equals_the_normal_equations_and_mse_equals_direct_residuals() {
        let (n, d) = (300, 7);
        let mut rnd = uniform(1);
        let x: Vec<Vec<f64>> = (0..n).map(|_| (0..d).map(|_| rnd() as f32 as f64).collect()).collect();
        let y: Vec<[f64; 2]> =
            x.iter().map(|r| [r.iter().sum::<f64>() + 0.1 * rnd(), r[0] - 2.0 * r[3] + 0.3 * rnd()]).collect();
        let (mut tr, mut va) = (Moments::new(d, 2), Moments::new(d, 2));
        for (i, (r, t)) in x.iter().zip(&y).enumerate() {
            let r32: Vec<f32> = r.iter().map(|&v| v as f32).collect();
            if i % 5 == 0 {
                va.push(&r32, t)
            } else {
                tr.push(&r32, t)
            }
        }
        let fits = fit(tr, va, &ALPHAS).unwrap();
        let train_idx: Vec<usize> = (0..n).filter(|i| i % 5 != 0).collect();
        for (j, f) in fits.iter().enumerate() {
            let xs: Vec<Vec<f64>> = train_idx.iter().map(|&i| x[i].clone()).collect();
            let ys: Vec<f64> = train_idx.iter().map(|&i| y[i][j]).collect();
            for (a, &alpha) in ALPHAS.iter().enumerate() {
                let w = normal_equations(&xs, &ys, alpha);
                let direct: f64 = (0..n)
                    .filter(|i| i % 5 == 0)
                    .map(|i| (x[i].iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() - y[i][j]).powi(2))
                    .sum::<f64>()
                    / 60.0;
                assert!((f.mse_by_alpha[a] - direct).abs() <= 1e-9 * direct.max(1.0), "objective {j} alpha {alpha}");
                if alpha == f.alpha {
                    for (g, e) in f.weights.iter().zip(&w) {
                        assert!((g - e).abs() < 1e-9, "{g} vs {e}");
                    }
                }
            }
            let min = f.mse_by_alpha.iter().cloned().fold(f64::INFINITY, f64::min);
            assert_eq!(f.val_mse, min);
        }
    }
}
