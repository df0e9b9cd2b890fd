//! Causal self-attention within each packed sequence, never across, with grouped-query heads, from
//! the fused q/k/v projection output. One computation, several implementations: fused kernels on
//! the CPU (bf16 on AMX tiles where the CPU has them), flash-attn's varlen kernel on CUDA in bf16
//! or f16 with the `flash-attn` feature, and candle tensor ops everywhere else. A test holds the
//! CPU kernels to the tensor ops; the parity tests hold the CPU kernels to PyTorch.

mod amx;
#[cfg(feature = "flash-attn")]
mod flash;
mod fused;
mod scaffold;
mod tensor_ops;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use half::{bf16, f16};

use crate::error::Result;
use crate::kernels::packed::PackedBatch;
use crate::kernels::plan::KernelPlan;
use crate::kernels::rope::Rope;

#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// How one layer turns q k^T into attention weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scoring {
    /// Scores are q k^T times this.
    pub scale: f32,
    /// Scores become `cap tanh(score / cap)` before the softmax.
    pub softcap: Option<f32>,
    /// A query sees only the `window` keys up to and including itself.
    pub window: Option<usize>,
}

impl Scoring {
    /// Plain causal attention scaled by head_dim^-1/2.
    pub fn standard(head_dim: usize) -> Self {
        Self { scale: 1.0 / (head_dim as f32).sqrt(), softcap: None, window: None }
    }

    /// The keys [lo, hi) of the key tile [tile, tile + n) that the query at sequence position
    /// `position` sees: those up to itself, and within its window.
    #[inline(always)]
    pub(crate) fn seen(&self, position: usize, tile: usize, n: usize) -> (usize, usize) {
        let hi = (position + 1).saturating_sub(tile).min(n);
        let lo = self.window.map_or(0, |w| (position + 1).saturating_sub(w).saturating_sub(tile).min(hi));
        (lo, hi)
    }

    /// The first key any query from sequence position `first` on sees.
    pub(crate) fn first_key(&self, first: usize) -> usize {
        self.window.map_or(0, |w| (first + 1).saturating_sub(w))
    }

    /// The soft cap, in place (scores already scaled).
    #[inline(always)]
    pub(crate) fn cap(&self, scores: &mut [f32]) {
        if let Some(cap) = self.softcap {
            scores.iter_mut().for_each(|s| *s = cap * (*s / cap).tanh());
        }
    }
}

/// How one forward pass runs attention: prepared once, used by every layer.
pub enum Plan {
    /// The CPU kernel, on the AMX tiles (bf16) or accumulating in f32.
    Fused {
        tiles: bool,
    },
    #[cfg(feature = "flash-attn")]
    Flash(flash::Varlen),
    TensorOps(tensor_ops::Blocks),
}

impl Plan {
    /// `layers`: every layer's scoring; `kernels`: the load's choice. `dtype` matters only with
    /// the `flash-attn` feature (its kernel takes bf16 and f16, without soft caps or windows).
    #[cfg_attr(not(feature = "flash-attn"), allow(unused_variables))]
    pub fn new(
        batch: &PackedBatch,
        heads: Heads,
        layers: &[Scoring],
        kernels: KernelPlan,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Ok(match device {
            Device::Cpu => Self::Fused { tiles: kernels.attention_on_tiles(heads.head_dim) },
            #[cfg(feature = "flash-attn")]
            Device::Cuda(_)
                if matches!(dtype, DType::BF16 | DType::F16)
                    && layers.iter().all(|s| s.softcap.is_none() && s.window.is_none()) =>
            {
                Self::Flash(flash::Varlen::new(batch, device)?)
            }
            _ => Self::TensorOps(tensor_ops::Blocks::new(batch, heads, layers, device)?),
        })
    }

    /// (tokens, (heads + 2 kv_heads) head_dim) -> (tokens, heads head_dim), in qkv's dtype.
    pub fn attend(
        &self,
        qkv: &Tensor,
        batch: &PackedBatch,
        heads: Heads,
        rope: &Rope,
        scoring: Scoring,
    ) -> Result<Tensor> {
        match self {
            &Self::Fused { tiles } => Ok(qkv.apply_op1_no_bwd(&scaffold::FusedAttention {
                heads,
                batch,
                rope: rope.table(),
                scoring,
                tiles,
            })?),
            #[cfg(feature = "flash-attn")]
            Self::Flash(varlen) => varlen.attend(qkv, heads, rope, scoring.scale),
            Self::TensorOps(blocks) => blocks.attend(qkv, batch, heads, rope, scoring),
        }
    }
}

/// The CPU kernels behind one op: bf16 on AMX tiles where the CPU has them, else the f32-accumulating
/// kernel in the input's dtype.
impl CustomOp1 for scaffold::FusedAttention<'_> {
    fn name(&self) -> &'static str {
        "packed-causal-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let Heads { heads, kv_heads, head_dim } = self.heads;
        let (tokens, width) = layout.shape().dims2()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("packed attention needs a contiguous input")
        };
        if width != (heads + 2 * kv_heads) * head_dim || tokens != self.batch.positions.len() {
            candle_core::bail!("packed attention: input {tokens}x{width} does not match the batch and heads");
        }
        let out = match storage {
            CpuStorage::F32(x) => CpuStorage::F32(self.run(&x[start..end], tokens)),
            // `supports` is the tiles' safety precondition, whatever the plan says.
            CpuStorage::BF16(x) if self.tiles && amx::supports(self.heads) => {
                CpuStorage::BF16(self.run_tiles(&x[start..end], tokens))
            }
            CpuStorage::BF16(x) => CpuStorage::BF16(self.run::<bf16>(&x[start..end], tokens)),
            CpuStorage::F16(x) => CpuStorage::F16(self.run::<f16>(&x[start..end], tokens)),
            other => candle_core::bail!("packed attention: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, Shape::from((tokens, heads * head_dim))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::*;
    use crate::kernels::packed::PackedBatchBuilder;
    use crate::kernels::rope::{RopeConfig, RopeScaling};

    fn max_abs(t: &Tensor) -> f32 {
        t.to_dtype(DType::F32).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    /// Segments that exercise every path of the kernel: several query blocks, more keys than one
    /// key tile, prefix continuations (one of them long), single tokens.
    fn batch() -> PackedBatch {
        let mut b = PackedBatchBuilder::default();
        let ids = |n: usize| vec![0u32; n];
        let prompt = b.push(&ids(300), None);
        b.push(&ids(40), Some(prompt));
        b.push(&ids(1), Some(prompt));
        b.push(&ids(70), None);
        let short = b.push(&ids(5), None);
        b.push(&ids(290), Some(short));
        b.push(&ids(1), None);
        b.build(&Device::Cpu).unwrap()
    }

    /// head_dim 16 runs the f32 kernel in every dtype; 32 runs bf16 on AMX tiles where the CPU
    /// has them.
    #[test]
    fn fused_kernels_match_tensor_ops() {
        for head_dim in [16, 32] {
            fused_kernel_matches_tensor_ops(Heads { heads: 6, kv_heads: 2, head_dim });
        }
    }

    fn fused_kernel_matches_tensor_ops(heads: Heads) {
        let cfg =
            RopeConfig { head_dim: heads.head_dim, theta: 10000.0, scaling: RopeScaling::None, max_positions: 1024 };
        let batch = batch();
        let tokens = batch.positions.len();
        let width = (heads.heads + 2 * heads.kv_heads) * heads.head_dim;
        // Large logits (std 3 per element) make the softmax peaked, as trained models do. Seeded, so
        // a rare draw cannot make the test flaky.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut uniform = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let normal: Vec<f32> = (0..tokens * width)
            .map(|_| (3.0 * (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos()) as f32)
            .collect();
        let qkv = Tensor::from_vec(normal, (tokens, width), &Device::Cpu).unwrap();
        // Plain; Gemma-2's soft cap with a window shorter than a key tile (so whole tiles are
        // skipped); and a window wider than a tile.
        let scorings = [
            Scoring::standard(heads.head_dim),
            Scoring { scale: 0.0625, softcap: Some(5.0), window: Some(37) },
            Scoring { scale: 0.1, softcap: None, window: Some(270) },
        ];
        let blocks = Plan::TensorOps(tensor_ops::Blocks::new(&batch, heads, &scorings, &Device::Cpu).unwrap());
        // Relative to the largest output: f32 to rounding, the half types to two units in the last
        // place (the paths round the rotary products and the probabilities at different points).
        for scoring in scorings {
            for (dtype, tolerance) in [(DType::F32, 1e-6), (DType::BF16, 2.0 / 256.0), (DType::F16, 2.0 / 2048.0)] {
                let rope = Rope::new(&cfg, dtype, &Device::Cpu).unwrap();
                let qkv = qkv.to_dtype(dtype).unwrap();
                let kernels = KernelPlan::choose(&Device::Cpu, dtype);
                let fused = Plan::new(&batch, heads, &[scoring], kernels, dtype, &Device::Cpu).unwrap();
                let fused = fused.attend(&qkv, &batch, heads, &rope, scoring).unwrap();
                let reference = blocks.attend(&qkv, &batch, heads, &rope, scoring).unwrap();
                assert_eq!(fused.dims(), &[tokens, heads.heads * heads.head_dim]);
                assert_eq!(fused.dtype(), dtype);
                let diff =
                    max_abs(&(fused.to_dtype(DType::F32).unwrap() - reference.to_dtype(DType::F32).unwrap()).unwrap());
                let scale = max_abs(&reference);
                assert!(
                    diff <= tolerance * scale,
                    "{heads:?} {scoring:?} {dtype:?}: max abs diff {diff}, largest {scale}"
                );
            }
        }
    }
}
