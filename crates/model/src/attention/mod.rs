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
use crate::packed::PackedBatch;
use crate::rope::Rope;

#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// How one forward pass runs attention: prepared once, used by every layer.
pub enum Plan {
    Fused,
    #[cfg(feature = "flash-attn")]
    Flash(flash::Varlen),
    TensorOps(tensor_ops::Blocks),
}

impl Plan {
    /// `dtype` matters only with the `flash-attn` feature (its kernel takes bf16 and f16).
    #[cfg_attr(not(feature = "flash-attn"), allow(unused_variables))]
    pub fn new(batch: &PackedBatch, heads: Heads, dtype: DType, device: &Device) -> Result<Self> {
        Ok(match device {
            Device::Cpu => Self::Fused,
            #[cfg(feature = "flash-attn")]
            Device::Cuda(_) if matches!(dtype, DType::BF16 | DType::F16) => {
                Self::Flash(flash::Varlen::new(batch, device)?)
            }
            _ => Self::TensorOps(tensor_ops::Blocks::new(batch, heads, device)?),
        })
    }

    /// (tokens, (heads + 2 kv_heads) head_dim) -> (tokens, heads head_dim), in qkv's dtype.
    pub fn attend(&self, qkv: &Tensor, batch: &PackedBatch, heads: Heads, rope: &Rope) -> Result<Tensor> {
        match self {
            Self::Fused => Ok(qkv.apply_op1_no_bwd(&scaffold::FusedAttention { heads, batch, rope: rope.table() })?),
            #[cfg(feature = "flash-attn")]
            Self::Flash(varlen) => varlen.attend(qkv, heads, rope),
            Self::TensorOps(blocks) => blocks.attend(qkv, batch, heads, rope),
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
            CpuStorage::BF16(x) if amx::supports(self.heads) => {
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
    use crate::config::{LlamaConfig, RopeScaling};
    use crate::packed::PackedBatchBuilder;

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
        let cfg = LlamaConfig {
            vocab_size: 1,
            hidden_size: heads.heads * heads.head_dim,
            intermediate_size: 1,
            num_hidden_layers: 1,
            num_attention_heads: heads.heads,
            num_key_value_heads: heads.kv_heads,
            head_dim: heads.head_dim,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: RopeScaling::None,
            max_position_embeddings: 1024,
        };
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
        let blocks = Plan::TensorOps(tensor_ops::Blocks::new(&batch, heads, &Device::Cpu).unwrap());
        // Relative to the largest output: f32 to rounding, the half types to two units in the last
        // place (the paths round the rotary products and the probabilities at different points).
        for (dtype, tolerance) in [(DType::F32, 1e-6), (DType::BF16, 2.0 / 256.0), (DType::F16, 2.0 / 2048.0)] {
            let rope = Rope::new(&cfg, dtype, &Device::Cpu).unwrap();
            let qkv = qkv.to_dtype(dtype).unwrap();
            let fused = Plan::Fused.attend(&qkv, &batch, heads, &rope).unwrap();
            let reference = blocks.attend(&qkv, &batch, heads, &rope).unwrap();
            assert_eq!(fused.dims(), &[tokens, heads.heads * heads.head_dim]);
            assert_eq!(fused.dtype(), dtype);
            let diff =
                max_abs(&(fused.to_dtype(DType::F32).unwrap() - reference.to_dtype(DType::F32).unwrap()).unwrap());
            let scale = max_abs(&reference);
            assert!(diff <= tolerance * scale, "{heads:?} {dtype:?}: max abs diff {diff}, largest output {scale}");
        }
    }
}
