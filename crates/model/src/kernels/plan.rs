//! Which kernels one load computes with: decided once, from its device, its compute dtype and what
//! this CPU may run ([`cpu_kernels`]), then held by every layer that has a choice to make. Nothing
//! below asks the CPU again.

use candle_core::{DType, Device};

use crate::kernels::cpu_kernels::{self, Cap};
use crate::kernels::tiles::{self, BLOCK};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPlan {
    /// bf16 on AMX tiles: projections packed for them (activations fused into their epilogue),
    /// attention on them where head_dim is a multiple of 32.
    AmxTiles,
    /// bf16 projections on AVX512-BF16's `vdpbf16ps` over the stored rows; attention accumulates
    /// in f32.
    Avx512Bf16,
    /// A CPU product in the compute dtype: armorm's f32 GEMM, or for f16 (and bf16 where neither
    /// kernel above runs) the gemm crate's; attention accumulates in f32.
    CpuGemm,
    /// A GPU: candle's products (cuBLAS) and attention as tensor ops or flash-attn.
    Gpu,
}

impl KernelPlan {
    pub const ALL: [Self; 4] = [Self::AmxTiles, Self::Avx512Bf16, Self::CpuGemm, Self::Gpu];

    pub fn choose(device: &Device, dtype: DType) -> Self {
        match (device, dtype) {
            (Device::Cpu, DType::BF16) if tiles::available() => Self::AmxTiles,
            (Device::Cpu, DType::BF16) if avx512_bf16() => Self::Avx512Bf16,
            (Device::Cpu, _) => Self::CpuGemm,
            _ => Self::Gpu,
        }
    }

    /// Whether this process has a bf16 CPU kernel: without one, candle's bf16 products widen to
    /// f32 and are no faster than f32, which is what the dtype choice needs to know.
    pub fn cpu_computes_bf16() -> bool {
        Self::choose(&Device::Cpu, DType::BF16) != Self::CpuGemm
    }

    /// Whether attention with `head_dim` runs on the tiles.
    pub fn attention_on_tiles(self, head_dim: usize) -> bool {
        self == Self::AmxTiles && head_dim.is_multiple_of(BLOCK)
    }

    /// As `/info` and the log name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::AmxTiles => "amx-bf16",
            Self::Avx512Bf16 => "avx512-bf16",
            Self::CpuGemm => "cpu",
            Self::Gpu => "gpu",
        }
    }
}

/// Whether this CPU runs `vdpbf16ps` and `ARMORM_CPU_KERNELS` allows it (checked once).
pub fn avx512_bf16() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| cpu_kernels::cap() >= Cap::Avx512Bf16 && detect())
}

#[cfg(target_arch = "x86_64")]
fn detect() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512bf16")
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bf16_on_a_cpu_with_a_bf16_kernel_leaves_the_plain_products() {
        for dtype in [DType::F32, DType::F16] {
            assert_eq!(KernelPlan::choose(&Device::Cpu, dtype), KernelPlan::CpuGemm);
        }
        let bf16 = KernelPlan::choose(&Device::Cpu, DType::BF16);
        assert_eq!(bf16 != KernelPlan::CpuGemm, KernelPlan::cpu_computes_bf16());
        assert_eq!(bf16 == KernelPlan::AmxTiles, tiles::available());
        assert!(!KernelPlan::Avx512Bf16.attention_on_tiles(128));
        assert!(KernelPlan::AmxTiles.attention_on_tiles(128) && !KernelPlan::AmxTiles.attention_on_tiles(80));
    }
}
