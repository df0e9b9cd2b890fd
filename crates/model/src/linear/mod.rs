//! y = x W^T for the backbone's projections, with W stored (out, in) as in the checkpoint, and the
//! MLP's gate/up projection fused with its SwiGLU activation. bf16 on a CPU with AMX runs on the
//! tiles ([`amx`]); everything else is a candle matmul.

pub mod amx;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use half::bf16;

use crate::activation::swiglu;
use crate::checkpoint::Weights;
use crate::error::Result;
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
            Self::Matmul { weight_t, epilogue: Epilogue::Plain } => x.matmul(weight_t)?,
            Self::Matmul { weight_t, epilogue: Epilogue::SwiGlu } => swiglu(&x.matmul(weight_t)?)?,
            Self::Amx(packed) => x.apply_op1_no_bwd(&AmxMatmul(packed))?,
        })
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
