//! y = x W^T for the backbone's projections, with W stored (out, in) as in the checkpoint, and the
//! MLP's gate/up projection fused with its SwiGLU activation. bf16 on a CPU with AMX runs on the
//! tiles ([`amx`]); everything else is a candle matmul.

pub mod amx;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Shape, Tensor};
use half::bf16;

use crate::activation::swiglu;
use crate::error::Result;
use crate::matmul::{product, Out, View};
use crate::simd::filled;
use crate::weights::Weights;
use amx::{Epilogue, PackedWeight};

pub enum Linear {
    /// Transposed and contiguous, so the matmul streams the weight row-major.
    Matmul {
        weight_t: Tensor,
        epilogue: Epilogue,
    },
    Amx(PackedWeight),
}

impl Linear {
    /// Concatenates several projections that read the same input (q/k/v, gate/up) into one matmul.
    pub fn load_fused(w: &Weights, names: &[(String, usize)], input: usize, dtype: DType) -> Result<Self> {
        let parts = names.iter().map(|(n, out)| w.get(n, &[*out, input], dtype)).collect::<Result<Vec<_>>>()?;
        Self::new(&Tensor::cat(&parts, 0)?, Epilogue::Plain)
    }

    /// The MLP's gate and up projections, whose output is silu(gate) * up.
    pub fn load_gated(w: &Weights, gate: &str, up: &str, out: usize, input: usize, dtype: DType) -> Result<Self> {
        let parts = [w.get(gate, &[out, input], dtype)?, w.get(up, &[out, input], dtype)?];
        Self::new(&Tensor::cat(&parts, 0)?, Epilogue::SwiGlu)
    }

    /// From a weight (out, in) in the compute dtype, on its device.
    pub fn new(weight: &Tensor, epilogue: Epilogue) -> Result<Self> {
        let (out, input) = weight.dims2()?;
        if weight.dtype() == DType::BF16 && matches!(weight.device(), Device::Cpu) {
            let values = weight.flatten_all()?.to_vec1::<bf16>()?;
            if let Some(packed) = PackedWeight::pack(&values, out, input, epilogue) {
                return Ok(Self::Amx(packed));
            }
        }
        Ok(Self::Matmul { weight_t: weight.t()?.contiguous()?, epilogue })
    }

    pub fn load(w: &Weights, name: &str, out: usize, input: usize, dtype: DType) -> Result<Self> {
        Self::load_fused(w, &[(name.to_string(), out)], input, dtype)
    }

    /// (tokens, in) -> (tokens, out), or (tokens, out / 2) after SwiGLU
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Matmul { weight_t, epilogue } => {
                let product = match (x.device(), x.dtype()) {
                    (Device::Cpu, DType::F32) => x.apply_op2_no_bwd(weight_t, &CpuGemm)?,
                    _ => x.matmul(weight_t)?,
                };
                match epilogue {
                    Epilogue::Plain => product,
                    Epilogue::SwiGlu => swiglu(&product)?,
                }
            }
            Self::Amx(packed) => x.apply_op1_no_bwd(&AmxMatmul(packed))?,
        })
    }
}

/// An f32 product on the CPU through the gemm crate, as candle's matmul does, but into an output
/// that is not zero-filled first (that fill, and faulting its pages in, was 5-8% of the f32
/// forward).
struct CpuGemm;

impl CustomOp2 for CpuGemm {
    fn name(&self) -> &'static str {
        "cpu-f32-gemm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let ((m, k), (k2, n)) = (xl.shape().dims2()?, wl.shape().dims2()?);
        let (CpuStorage::F32(x), CpuStorage::F32(w), Some((x0, _)), Some((w0, _))) =
            (x, w, xl.contiguous_offsets(), wl.contiguous_offsets())
        else {
            candle_core::bail!("cpu gemm needs contiguous f32 operands")
        };
        if k != k2 {
            candle_core::bail!("cpu gemm: ({m}, {k}) x ({k2}, {n})")
        }
        let (x, w) = (&x[x0..][..m * k], &w[w0..][..k * n]);
        let (lhs, rhs) = (View::row_major(x, m, k), View::row_major(w, k, n));
        let threads = rayon::current_num_threads();
        // SAFETY: `product` writes every element of the (m, n) output.
        let out = unsafe { filled(m * n, |out| product(Out::Overwrite(out), lhs, rhs, threads)) };
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

struct AmxMatmul<'a>(&'a PackedWeight);

impl CustomOp1 for AmxMatmul<'_> {
    fn name(&self) -> &'static str {
        "amx-bf16-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, _) = layout.shape().dims2()?;
        let (CpuStorage::BF16(x), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("AMX matmul needs a contiguous bf16 input, got {:?}", storage.dtype())
        };
        Ok((CpuStorage::BF16(self.0.matmul(&x[start..end], m)), Shape::from((m, self.0.out_features()))))
    }
}
