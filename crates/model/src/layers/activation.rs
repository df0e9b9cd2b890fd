//! The MLP's gated activation, act(gate) * up (SwiGLU with silu, GeGLU with tanh GELU), read from
//! the fused gate/up projection output. On the CPU it is one pass over the input (candle would
//! make four); elsewhere candle ops.

use std::mem::MaybeUninit;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor, D};
use half::{bf16, f16};
use multiversion::multiversion;
use rayon::prelude::*;

use crate::error::Result;
use crate::kernels::simd::{self, filled, Element};

/// The MLP's gate activation, applied as `act(gate) * up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// x sigmoid(x): SwiGLU.
    Silu,
    /// GELU's tanh approximation (transformers' `gelu_pytorch_tanh`): GeGLU.
    GeluTanh,
}

impl Activation {
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Self::Silu => simd::silu(x),
            Self::GeluTanh => simd::gelu_tanh(x),
        }
    }
}

/// (tokens, 2 * intermediate) with gate first -> (tokens, intermediate), in the input's dtype.
pub fn gated(gate_up: &Tensor, act: Activation) -> Result<Tensor> {
    if let Device::Cpu = gate_up.device() {
        return Ok(gate_up.apply_op1_no_bwd(&Gated(act))?);
    }
    let i = gate_up.dim(D::Minus1)? / 2;
    let gate = gate_up.narrow(D::Minus1, 0, i)?;
    let gate = match act {
        Activation::Silu => candle_nn::ops::silu(&gate)?,
        Activation::GeluTanh => gate.gelu()?,
    };
    Ok((gate * gate_up.narrow(D::Minus1, i, i)?)?)
}

struct Gated(Activation);

impl CustomOp1 for Gated {
    fn name(&self) -> &'static str {
        match self.0 {
            Activation::Silu => "swiglu",
            Activation::GeluTanh => "geglu",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (tokens, width) = layout.shape().dims2()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("{} needs a contiguous input", self.name())
        };
        let act = self.0;
        let out = match storage {
            CpuStorage::F32(x) => CpuStorage::F32(run(&x[start..end], width, act)),
            CpuStorage::BF16(x) => CpuStorage::BF16(run::<bf16>(&x[start..end], width, act)),
            CpuStorage::F16(x) => CpuStorage::F16(run::<f16>(&x[start..end], width, act)),
            other => candle_core::bail!("{}: unsupported dtype {:?}", self.name(), other.dtype()),
        };
        Ok((out, Shape::from((tokens, width / 2))))
    }
}

fn run<T: Element>(x: &[T], width: usize, act: Activation) -> Vec<T> {
    let half = width / 2;
    // SAFETY: row_kernel writes every element of each output row.
    unsafe {
        filled(x.len() / 2, |out| {
            out.par_chunks_mut(half).zip(x.par_chunks(width)).for_each(|(out, row)| {
                let (gate, up) = row.split_at(half);
                row_kernel(gate, up, act, out);
            })
        })
    }
}

/// The activation is rounded before the product, as the reference's separate ops round it.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn row_kernel<T: Element>(gate: &[T], up: &[T], act: Activation, out: &mut [MaybeUninit<T>]) {
    for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
        o.write(T::from_f32(T::round(act.apply(g.to_f32())) * u.to_f32()));
    }
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::*;

    #[test]
    fn matches_the_activation_times_up() {
        let x = Tensor::randn(0f32, 4.0, (37, 2 * 70), &Device::Cpu).unwrap();
        let gate = x.narrow(1, 0, 70).unwrap();
        // candle's gelu is the tanh approximation.
        for (act, want) in
            [(Activation::Silu, candle_nn::ops::silu(&gate).unwrap()), (Activation::GeluTanh, gate.gelu().unwrap())]
        {
            let got = gated(&x, act).unwrap();
            let want = (want * x.narrow(1, 70, 70).unwrap()).unwrap();
            let max_abs =
                |t: &Tensor| -> f32 { t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap() };
            // Products reach a few hundred: a few f32 ulps of the largest value.
            let (diff, scale) = (max_abs(&(got - &want).unwrap()), max_abs(&want));
            assert!(diff <= 2e-6 * scale, "{act:?}: max abs diff {diff}, largest value {scale}");
            assert_eq!(gated(&x.to_dtype(DType::BF16).unwrap(), act).unwrap().dtype(), DType::BF16);
        }
    }
}
