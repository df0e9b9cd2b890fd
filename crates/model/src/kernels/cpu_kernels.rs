//! Which of this CPU's bf16 kernels may run: every one it has, unless `ARMORM_CPU_KERNELS` caps
//! them, so that the tests and benches can run each kernel path on one machine (an AMX CPU also
//! runs the AVX512-BF16 and f32 paths).

use std::sync::OnceLock;

/// The most a process may use, from `ARMORM_CPU_KERNELS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cap {
    /// No bf16 kernel: f32 products only (`f32`).
    F32,
    /// `vdpbf16ps`, not the AMX tiles (`avx512bf16`).
    Avx512Bf16,
    /// Whatever the CPU has (`auto`, the default).
    All,
}

impl Cap {
    fn parse(value: &str) -> Option<Self> {
        match value {
            "auto" | "" => Some(Self::All),
            "avx512bf16" => Some(Self::Avx512Bf16),
            "f32" => Some(Self::F32),
            _ => None,
        }
    }
}

/// The cap in force (read once; an unknown value is logged and ignored).
pub fn cap() -> Cap {
    static CAP: OnceLock<Cap> = OnceLock::new();
    *CAP.get_or_init(|| {
        let value = std::env::var("ARMORM_CPU_KERNELS").unwrap_or_default();
        Cap::parse(&value).unwrap_or_else(|| {
            tracing::error!(value, "ARMORM_CPU_KERNELS: expected auto, avx512bf16 or f32; using auto");
            Cap::All
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_name_a_cap() {
        assert_eq!(Cap::parse("auto"), Some(Cap::All));
        assert_eq!(Cap::parse("avx512bf16"), Some(Cap::Avx512Bf16));
        assert_eq!(Cap::parse("f32"), Some(Cap::F32));
        assert_eq!(Cap::parse("amx2"), None);
    }
}
