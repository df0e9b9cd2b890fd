//! Qwen3's per-head RMSNorm of queries and keys, on the fused q/k/v projection output before the
//! rotary embedding (which attention applies). On the CPU it runs in place, one pass over the q
//! and k columns; elsewhere candle ops.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;

use crate::error::Result;
use crate::kernels::attention::Heads;
use crate::kernels::simd::Element;
use crate::layers::residual::{NormStyle, RmsNorm};
use crate::load::weights::Weights;

pub struct QkNorm {
    q: RmsNorm,
    k: RmsNorm,
    heads: Heads,
}

impl QkNorm {
    /// `{prefix}.q_norm.weight` and `{prefix}.k_norm.weight`, each (head_dim,).
    pub fn load(w: &Weights, prefix: &str, heads: Heads, eps: f64, dtype: DType) -> Result<Self> {
        let norm = |name: &str| {
            RmsNorm::load(w, &format!("{prefix}.{name}.weight"), heads.head_dim, eps, dtype, NormStyle::Scaled)
        };
        Ok(Self { q: norm("q_norm")?, k: norm("k_norm")?, heads })
    }

    /// (tokens, (heads + 2 kv_heads) head_dim), queries and keys normalised per head.
    pub fn forward(&self, qkv: Tensor) -> Result<Tensor> {
        if let Device::Cpu = qkv.device() {
            qkv.inplace_op1(self)?;
            return Ok(qkv);
        }
        let Heads { heads, kv_heads, head_dim: hd } = self.heads;
        let tokens = qkv.dim(0)?;
        let part = |norm: &RmsNorm, offset: usize, n: usize| -> Result<Tensor> {
            let x = qkv.narrow(1, offset * hd, n * hd)?.contiguous()?.reshape((tokens * n, hd))?;
            Ok(norm.forward(&x)?.reshape((tokens, n * hd))?)
        };
        let v = qkv.narrow(1, (heads + kv_heads) * hd, kv_heads * hd)?;
        Ok(Tensor::cat(&[part(&self.q, 0, heads)?, part(&self.k, heads, kv_heads)?, v], 1)?)
    }

    fn run<T: Element>(&self, x: &mut [T]) {
        let Heads { heads, kv_heads, head_dim: hd } = self.heads;
        let width = (heads + 2 * kv_heads) * hd;
        x.par_chunks_mut(width).for_each(|row| {
            self.q.norm_heads(row, 0, heads);
            self.k.norm_heads(row, heads, heads + kv_heads);
        });
    }
}

impl InplaceOp1 for QkNorm {
    fn name(&self) -> &'static str {
        "qk-norm"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let Heads { heads, kv_heads, head_dim: hd } = self.heads;
        let (Some((start, end)), Ok((_, width))) = (layout.contiguous_offsets(), layout.shape().dims2()) else {
            candle_core::bail!("qk norm needs a contiguous matrix")
        };
        if width != (heads + 2 * kv_heads) * hd {
            candle_core::bail!("qk norm: width {width} does not match the heads")
        }
        match storage {
            CpuStorage::F32(x) => self.run(&mut x[start..end]),
            CpuStorage::BF16(x) => self.run::<bf16>(&mut x[start..end]),
            CpuStorage::F16(x) => self.run::<f16>(&mut x[start..end]),
            other => candle_core::bail!("qk norm: unsupported dtype {:?}", other.dtype()),
        }
        Ok(())
    }
}
