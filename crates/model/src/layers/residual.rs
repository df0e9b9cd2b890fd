//! The residual stream between blocks: each block's output is added into it, and RMSNorm reads it.
//! On the CPU each is one vectorised pass and the add happens in place (candle's bf16 add widens
//! eight values per call, and was a third of the bf16 forward); elsewhere candle ops.

use std::mem::MaybeUninit;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, InplaceOp2, Layout, Shape, Tensor};
use half::{bf16, f16};
use multiversion::multiversion;
use rayon::prelude::*;

use crate::error::Result;
use crate::kernels::simd::{self, filled, Element};
use crate::load::weights::Weights;

/// Elements per parallel task of the element-wise passes.
const CHUNK: usize = 1 << 14;

/// `stream + delta`, reusing the stream's storage on the CPU (nothing else holds it).
pub fn add(stream: Tensor, delta: &Tensor) -> Result<Tensor> {
    if let Device::Cpu = stream.device() {
        stream.inplace_op2(delta, &AddInPlace)?;
        return Ok(stream);
    }
    Ok((stream + delta)?)
}

struct AddInPlace;

impl InplaceOp2 for AddInPlace {
    fn name(&self) -> &'static str {
        "residual-add"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let (Some((a0, a1)), Some((b0, b1))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("residual add needs contiguous tensors")
        };
        if l1.shape() != l2.shape() {
            candle_core::bail!("residual add: shapes {:?} and {:?} differ", l1.shape(), l2.shape())
        }
        match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(d)) => add_chunks(&mut x[a0..a1], &d[b0..b1]),
            (CpuStorage::BF16(x), CpuStorage::BF16(d)) => add_chunks(&mut x[a0..a1], &d[b0..b1]),
            (CpuStorage::F16(x), CpuStorage::F16(d)) => add_chunks(&mut x[a0..a1], &d[b0..b1]),
            (x, d) => candle_core::bail!("residual add: unsupported dtypes {:?} and {:?}", x.dtype(), d.dtype()),
        }
        Ok(())
    }
}

fn add_chunks<T: Element>(x: &mut [T], delta: &[T]) {
    x.par_chunks_mut(CHUNK).zip(delta.par_chunks(CHUNK)).for_each(|(x, d)| add_kernel(x, d));
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn add_kernel<T: Element>(x: &mut [T], delta: &[T]) {
    for (x, d) in x.iter_mut().zip(delta) {
        *x = T::from_f32(x.to_f32() + d.to_f32());
    }
}

/// How an RMSNorm applies its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormStyle {
    /// Llama: the normalised input is rounded to the compute dtype, then multiplied by `w`.
    Scaled,
    /// Gemma: `x̂ (1 + w)` in f32, rounded once.
    OnePlus,
}

pub struct RmsNorm {
    /// The factor each normalised row is multiplied by (`1 + w` for [`NormStyle::OnePlus`], in
    /// f32 there), for candle's op off the CPU.
    weight: Tensor,
    /// The same factor as f32 values (`w` rounded through the compute dtype), for the CPU kernel.
    values: Vec<f32>,
    eps: f32,
    style: NormStyle,
}

impl RmsNorm {
    pub fn load(w: &Weights, name: &str, size: usize, eps: f64, dtype: DType, style: NormStyle) -> Result<Self> {
        let weight = w.get(name, &[size], dtype)?;
        let mut values: Vec<f32> = weight.to_dtype(DType::F32)?.to_vec1()?;
        let weight = match style {
            NormStyle::Scaled => weight,
            NormStyle::OnePlus => {
                values.iter_mut().for_each(|v| *v += 1.0);
                Tensor::from_slice(&values, size, weight.device())?
            }
        };
        Ok(Self { weight, values, eps: eps as f32, style })
    }

    /// (rows, hidden) -> (rows, hidden), in x's dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Device::Cpu = x.device() {
            return Ok(x.apply_op1_no_bwd(self)?);
        }
        Ok(match self.style {
            NormStyle::Scaled => candle_nn::ops::rms_norm(x, &self.weight, self.eps)?,
            NormStyle::OnePlus => {
                let f32 = x.to_dtype(DType::F32)?;
                let ones = Tensor::ones_like(&self.weight)?;
                candle_nn::ops::rms_norm(&f32, &ones, self.eps)?.broadcast_mul(&self.weight)?.to_dtype(x.dtype())?
            }
        })
    }

    /// Normalises chunks [from, to) of `row`, each as wide as the norm, in place: the per-head
    /// norms of a fused q/k/v row.
    pub(crate) fn norm_heads<T: Element>(&self, row: &mut [T], from: usize, to: usize) {
        let size = self.values.len();
        for head in row[from * size..to * size].chunks_exact_mut(size) {
            norm_in_place(head, &self.values, self.eps, self.style);
        }
    }
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, hidden) = layout.shape().dims2()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("rms norm needs a contiguous input")
        };
        if hidden != self.values.len() {
            candle_core::bail!("rms norm: width {hidden}, weight {}", self.values.len())
        }
        let out = match storage {
            CpuStorage::F32(x) => CpuStorage::F32(self.run(&x[start..end])),
            CpuStorage::BF16(x) => CpuStorage::BF16(self.run::<bf16>(&x[start..end])),
            CpuStorage::F16(x) => CpuStorage::F16(self.run::<f16>(&x[start..end])),
            other => candle_core::bail!("rms norm: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, Shape::from((rows, hidden))))
    }
}

impl RmsNorm {
    fn run<T: Element>(&self, x: &[T]) -> Vec<T> {
        let hidden = self.values.len();
        let rows_per_task = (CHUNK / hidden).max(1) * hidden;
        // SAFETY: norm_row writes every element of each row.
        unsafe {
            filled(x.len(), |out| {
                out.par_chunks_mut(rows_per_task).zip(x.par_chunks(rows_per_task)).for_each(|(out, x)| {
                    for (out, x) in out.chunks_exact_mut(hidden).zip(x.chunks_exact(hidden)) {
                        norm_row(x, &self.values, self.eps, self.style, out);
                    }
                })
            })
        }
    }
}

/// As transformers' RMSNorms: normalise in f32, then LlamaRMSNorm rounds to the dtype and scales
/// by the weight, Gemma's scales by 1 + w in f32 and rounds once.
#[inline(always)]
fn normed<T: Element>(v: f32, inv: f32, w: f32, style: NormStyle) -> T {
    match style {
        NormStyle::Scaled => T::from_f32(w * T::round(v * inv)),
        NormStyle::OnePlus => T::from_f32(v * inv * w),
    }
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn norm_row<T: Element>(x: &[T], weight: &[f32], eps: f32, style: NormStyle, out: &mut [MaybeUninit<T>]) {
    let inv = 1.0 / (simd::sum_of_squares(x) / x.len() as f32 + eps).sqrt();
    for ((o, v), &w) in out.iter_mut().zip(x).zip(weight) {
        o.write(normed(v.to_f32(), inv, w, style));
    }
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn norm_in_place<T: Element>(x: &mut [T], weight: &[f32], eps: f32, style: NormStyle) {
    let inv = 1.0 / (simd::sum_of_squares(x) / x.len() as f32 + eps).sqrt();
    for (v, &w) in x.iter_mut().zip(weight) {
        *v = normed(v.to_f32(), inv, w, style);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_kernels_match_candle_ops() {
        let x = Tensor::randn(0f32, 2.0, (7, 40), &Device::Cpu).unwrap();
        let d = Tensor::randn(0f32, 2.0, (7, 40), &Device::Cpu).unwrap();
        let weight = Tensor::randn(0f32, 1.0, 40, &Device::Cpu).unwrap();
        let norm =
            RmsNorm { values: weight.to_vec1().unwrap(), weight: weight.clone(), eps: 1e-5, style: NormStyle::Scaled };
        let max_diff = |a: &Tensor, b: &Tensor| -> f32 {
            (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
        };
        let want_sum = (&x + &d).unwrap();
        let want_norm = candle_nn::ops::rms_norm(&want_sum, &weight, 1e-5).unwrap();
        let sum = add(x.copy().unwrap(), &d).unwrap();
        assert!(max_diff(&sum, &want_sum) == 0.0);
        assert!(max_diff(&norm.forward(&sum).unwrap(), &want_norm) < 1e-5);
    }
}
