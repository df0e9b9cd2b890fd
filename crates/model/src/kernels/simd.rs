//! Element-wise f32 building blocks for the CPU kernels, written as fixed-width lane loops so that
//! LLVM turns them into SIMD code inside the kernels' AVX-512 / AVX2 clones (`multiversion`).
//!
//! `exp` is the Cephes single-precision algorithm (range reduction by ln 2, degree-6 polynomial,
//! within 2 ulp of libm): as exact as the reference's own vectorised exp, at a fraction of the cost
//! of a scalar `expf` call per element.

use std::mem::MaybeUninit;

use half::{bf16, f16};

const LANES: usize = 16;

/// A vector of `len` elements that `fill` writes, so the allocation is not zeroed first: for the
/// kernels' outputs that would be a whole extra pass over every activation.
///
/// # Safety
/// `fill` must initialise every one of the `len` elements.
pub unsafe fn filled<T>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the capacity is `len`, and the caller's contract says `fill` initialised all of it.
    unsafe { v.set_len(len) };
    v
}

/// An output buffer that parallel tasks write to, each to its own disjoint part (which every use
/// states at its `unsafe` block).
pub struct Disjoint<T>(pub *mut T);
// SAFETY: the tasks never write the same element, and the buffer outlives them.
unsafe impl<T> Send for Disjoint<T> {}
// SAFETY: as for Send: shared use only ever writes disjoint elements.
unsafe impl<T> Sync for Disjoint<T> {}

/// A compute dtype the CPU kernels read and write. Arithmetic runs in f32; `round` is what storing
/// an f32 keeps, so a kernel can round exactly where the reference's separate bf16 ops would.
pub trait Element: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;
    fn from_f32(x: f32) -> Self;

    #[inline(always)]
    fn round(x: f32) -> f32 {
        Self::from_f32(x).to_f32()
    }
}

impl Element for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }

    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl Element for bf16 {
    /// Exact: bf16 is the top half of an f32. (half's version branches on NaN, which stops
    /// vectorisation; a NaN stays a NaN here too.)
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }

    /// Round to nearest even, as `bf16::from_f32`, but branch-free so that it vectorises.
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        let bits = x.to_bits();
        let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
        let nan = (bits & 0x7fff_ffff) > 0x7f80_0000;
        bf16::from_bits(if nan { ((bits >> 16) | 0x40) as u16 } else { rounded })
    }
}

impl Element for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
}

/// e^x for every finite x; 0 below the smallest normal result, as libm flushes.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n * LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LOW: f32 = -87.336_54;
    const HIGH: f32 = 88.376_26;
    let clamped = x.clamp(LOW, HIGH);
    let t = clamped * LOG2E + ROUND;
    let n = t - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let exponent = (t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23;
    let e = y * f32::from_bits(exponent as u32);
    if x < LOW {
        0.0
    } else {
        e
    }
}

/// x / (1 + e^-x)
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    // Beyond 2^100 the quotient is below 1e-28 either way; capping keeps `recip` in range.
    x * recip((1.0 + exp(-x)).min(1.0e30))
}

/// GELU's tanh approximation, 0.5 x (1 + tanh(u)) with u = sqrt(2 / pi) (x + 0.044715 x^3),
/// written as x sigmoid(2u) so that it shares silu's exp and reciprocal.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    x * recip((1.0 + exp(-2.0 * u)).min(1.0e30))
}

/// 1 / d for d in [1, 1e30], within 2 ulp: a bit-pattern estimate refined by three Newton steps
/// (4, 8, 16, then 32 bits). Six FMAs vectorise to far less than a division, which was half the
/// cost of the SwiGLU pass.
#[inline(always)]
fn recip(d: f32) -> f32 {
    let mut r = f32::from_bits(0x7ef3_11c7 - d.to_bits());
    for _ in 0..3 {
        r = r * (2.0 - d * r);
    }
    r
}

/// The largest element (-inf for an empty slice).
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            *m = if x > *m { x } else { *m };
        }
    }
    chunks.remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// The sum of x^2, accumulated in f32.
#[inline(always)]
pub fn sum_of_squares<T: Element>(xs: &[T]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (s, x) in lanes.iter_mut().zip(chunk) {
            let x = x.to_f32();
            *s += x * x;
        }
    }
    chunks.remainder().iter().map(|x| x.to_f32() * x.to_f32()).sum::<f32>() + lanes.iter().sum::<f32>()
}

/// Replaces each x by e^(x - shift) and returns their sum.
#[inline(always)]
pub fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (s, x) in lanes.iter_mut().zip(chunk) {
            *x = exp(*x - shift);
            *s += *x;
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp(*x - shift);
        sum += *x;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x), x.exp());
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
            assert!(ulp <= 2, "exp({x}) = {got}, libm {want}: {ulp} ulp");
            x += 0.0137;
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert!(exp(100.0).is_finite());
    }

    #[test]
    fn reductions_cover_the_remainder() {
        let xs: Vec<f32> = (0..37).map(|i| ((i * 7) % 37) as f32 / 10.0).collect();
        assert_eq!(max(&xs), 3.6);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
        let mut ys = xs.clone();
        let sum = exp_shifted_sum(&mut ys, 1.0);
        let want: f64 = xs.iter().map(|&x| ((x - 1.0) as f64).exp()).sum();
        assert!((sum as f64 - want).abs() < 1e-5 * want, "{sum} vs {want}");
        assert!((ys[36] - (xs[36] - 1.0).exp()).abs() < 1e-6);
    }

    #[test]
    fn bf16_rounding_matches_half() {
        let specials = [0.0f32, -0.0, 1.0, f32::MAX, f32::MIN_POSITIVE, 1e-40, f32::INFINITY, f32::NAN];
        let mut x = 1.0e-3f32;
        let sweep = std::iter::from_fn(|| {
            x *= -1.000_173;
            (x.abs() < 1e6).then_some(x)
        });
        for v in specials.into_iter().chain(sweep).chain((0..1 << 16).map(|i| f32::from_bits(0x3f80_0000 | i))) {
            assert_eq!(<bf16 as Element>::from_f32(v).to_bits(), bf16::from_f32(v).to_bits(), "{v:e}");
        }
    }

    #[test]
    fn recip_is_within_two_ulp() {
        let mut d = 1.0f32;
        while d < 1.0e30 {
            let (got, want) = (recip(d), 1.0 / d);
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
            assert!(ulp <= 2, "1/{d} = {got}, want {want}: {ulp} ulp");
            d *= 1.000_37;
        }
    }

    #[test]
    fn gelu_tanh_matches_its_definition() {
        for i in -400..=400 {
            let x = i as f32 * 0.05;
            let u = (2.0f64 / std::f64::consts::PI).sqrt() * (x as f64 + 0.044715 * (x as f64).powi(3));
            let want = 0.5 * x as f64 * (1.0 + u.tanh());
            assert!(
                (gelu_tanh(x) as f64 - want).abs() <= 2e-6 * want.abs() + 1e-7,
                "gelu_tanh({x}) = {}",
                gelu_tanh(x)
            );
        }
    }

    #[test]
    fn silu_matches_its_definition() {
        for x in [-100.0f32, -5.0, -0.5, 0.0, 0.5, 5.0, 100.0] {
            let want = x / (1.0 + (-x).exp());
            // Far below zero, anything under 1e-27 is as good as the exact 1e-42.
            assert!((silu(x) - want).abs() <= 1e-6 * want.abs() + 1e-27, "silu({x}) = {}", silu(x));
        }
    }
}
