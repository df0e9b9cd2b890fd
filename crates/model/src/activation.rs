//! The MLP's SwiGLU activation, silu(gate) * up, read from the fused gate/up projection output.
//! On the CPU it is one pass over the input (candle would make four); elsewhere candle ops.

use std::mem::MaybeUninit;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor, D};
use half::{bf16, f16};
use multiversion::multiversion;
use rayon::prelude::*;

use crate::error::Result;
use crate::simd::{self, filled, Element};

/// (tokens, 2 * intermediate) with gate first -> (tokens, intermediate), in the input's dtype.
pub fn swiglu(gate_up: &Tensor) -> Result<Tensor> {
    if let Device::Cpu = gate_up.device() {
        return Ok(gate_up.apply_op1_no_bwd(&SwiGlu)?);
    }
    let i = gate_up.dim(D::Minus1)? / 2;
    Ok((candle_nn::ops::silu(&gate_up.narrow(D::Minus1, 0, i)?)? * gate_up.narrow(D::Minus1, i, i)?)?)
}

struct SwiGlu;

impl CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (tokens, width) = layout.shape().dims2()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("swiglu needs a contiguous input")
        };
        let out = match storage {
            CpuStorage::F32(x) => CpuStorage::F32(run(&x[start..end], width)),
            CpuStorage::BF16(x) => CpuStorage::BF16(run::<bf16>(&x[start..end], width)),
            CpuStorage::F16(x) => CpuStorage::F16(run::<f16>(&x[start..end], width)),
            other => candle_core::bail!("swiglu: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, Shape::from((tokens, width / 2))))
    }
}

fn run<T: Element>(x: &[T], width: usize) -> Vec<T> {
    let half = width / 2;
    // SAFETY: row_kernel writes every element of each output row.
    unsafe {
        filled(x.len() / 2, |out| {
            out.par_chunks_mut(half).zip(x.par_chunks(width)).for_each(|(out, row)| {
                let (gate, up) = row.split_at(half);
                row_kernel(gate, up, out);
            })
        })
    }
}

/// The activation is rounded before the product, as the reference's separate ops round it.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn row_kernel<T: Element>(gate: &[T], up: &[T], out: &mut [MaybeUninit<T>]) {
    for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
        o.write(T::from_f32(T::round(simd::silu(g.to_f32())) * u.to_f32()));
    }
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::*;

    #[test]
    fn matches_silu_times_up() {
        let x = Tensor::randn(0f32, 4.0, (37, 2 * 70), &Device::Cpu).unwrap();
        let got = swiglu(&x).unwrap();
        let want =
            (candle_nn::ops::silu(&x.narrow(1, 0, 70).unwrap()).unwrap() * x.narrow(1, 70, 70).unwrap()).unwrap();
        let max_abs =
            |t: &Tensor| -> f32 { t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap() };
        // Products reach a few hundred: a few f32 ulps of the largest value.
        let (diff, scale) = (max_abs(&(got - &want).unwrap()), max_abs(&want));
        assert!(diff <= 1e-6 * scale, "max abs diff {diff}, largest value {scale}");
        assert_eq!(swiglu(&x.to_dtype(DType::BF16).unwrap()).unwrap().dtype(), DType::BF16);
    }
}
