//! Intel AMX tiles (Sapphire Rapids and later) for bf16 products: permission, configuration and
//! the one micro-kernel that both the projections and attention run on.
//!
//! A tile holds 16 rows of 64 bytes. `tdpbf16ps` adds A (16 x 32 bf16) times B (32 x 16 bf16, stored
//! as 16 rows of 16 column pairs, "VNNI" order) into C (16 x 16 f32). The micro-kernel keeps a
//! 32 x 32 block of C in four tiles and streams A and B through the other four.

use std::sync::OnceLock;

/// The micro-kernel's block of C.
pub const BLOCK: usize = 32;
/// bf16 elements per B tile (16 rows x 16 columns x 2).
pub const TILE: usize = 512;

/// Whether this process may use AMX bf16 tiles: the CPU has them, `ARMORM_CPU_KERNELS` does not
/// rule them out, and Linux granted the permission (asked for once, on first use).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE
        .get_or_init(|| crate::kernels::cpu_kernels::cap() == crate::kernels::cpu_kernels::Cap::All && imp::enable())
}

pub use imp::{kernel as block, with_tiles};

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::asm;
    use std::arch::x86_64::__cpuid_count;

    use half::bf16;

    use super::BLOCK;

    const ARCH_REQ_XCOMP_PERM: libc::c_ulong = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_ulong = 18;

    pub fn enable() -> bool {
        // CPUID.(7, 0): EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
        let edx = __cpuid_count(7, 0).edx;
        if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
            return false;
        }
        // Linux hands out the 8 KiB tile state only to processes that ask (kernel 5.16+).
        // SAFETY: a plain syscall with integer arguments.
        unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
    }

    /// Palette 1, every tile 16 rows of 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    /// Runs `f` with the tiles configured on this thread, and releases them after.
    pub fn with_tiles(f: impl FnOnce()) {
        let mut config = TileConfig([0; 64]);
        config.0[0] = 1;
        for t in 0..8 {
            config.0[16 + 2 * t] = 64;
            config.0[48 + t] = 16;
        }
        // SAFETY: only called once `enable` succeeded; the config is a valid palette-1 layout.
        unsafe { asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly)) };
        f();
        // SAFETY: releasing tiles is always allowed after a config.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }

    /// c (32 x 32 f32, row-major) = a (32 rows of k bf16, row stride `lda` elements) times two
    /// column blocks of B, each k / 32 tiles one after the other, starting at `b0` and `b1`.
    ///
    /// # Safety
    /// Inside `with_tiles` on this thread; k a multiple of 32; `a` valid for 32 rows of k at stride
    /// `lda`, and `b0`, `b1` for k / 32 tiles each.
    pub unsafe fn kernel(
        a: *const bf16,
        lda: usize,
        k: usize,
        b0: *const bf16,
        b1: *const bf16,
        c: &mut [f32; BLOCK * BLOCK],
    ) {
        let k_blocks = k / 32;
        let a0 = a;
        // SAFETY: `a` holds 32 rows at stride `lda` (the caller's contract); row 16 is inside.
        let a1 = unsafe { a0.add(16 * lda) };
        let out = c.as_mut_ptr();
        // SAFETY: the caller's contract: tiles configured on this thread (`with_tiles`), `a0`/`a1`
        // cover 16 rows each of k bf16 at stride `lda`, `b0`/`b1` k / 32 tiles of 1024 bytes; `c`
        // is 32 x 32 f32, whose four 16 x 16 quarters start at the offsets below (all in bounds).
        unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "2:",
                "tileloadd tmm4, [{a0} + {lda}*1]",
                "tileloadd tmm5, [{a1} + {lda}*1]",
                "tileloadd tmm6, [{b0} + {ldb}*1]",
                "tileloadd tmm7, [{b1} + {ldb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a0}, 64",
                "add {a1}, 64",
                "add {b0}, 1024",
                "add {b1}, 1024",
                "dec {blocks}",
                "jnz 2b",
                "tilestored [{c0} + {ldc}*1], tmm0",
                "tilestored [{c1} + {ldc}*1], tmm1",
                "tilestored [{c2} + {ldc}*1], tmm2",
                "tilestored [{c3} + {ldc}*1], tmm3",
                a0 = inout(reg) a0 => _,
                a1 = inout(reg) a1 => _,
                b0 = inout(reg) b0 => _,
                b1 = inout(reg) b1 => _,
                blocks = inout(reg) k_blocks => _,
                lda = in(reg) 2 * lda,
                ldb = in(reg) 64usize,
                ldc = in(reg) 4 * BLOCK,
                c0 = in(reg) out,
                c1 = in(reg) out.add(16),
                c2 = in(reg) out.add(16 * BLOCK),
                c3 = in(reg) out.add(16 * BLOCK + 16),
                options(nostack),
            );
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use half::bf16;

    pub fn enable() -> bool {
        false
    }

    pub fn with_tiles(_: impl FnOnce()) {
        unreachable!("AMX is x86-64 only")
    }

    pub unsafe fn kernel(
        _: *const bf16,
        _: usize,
        _: usize,
        _: *const bf16,
        _: *const bf16,
        _: &mut [f32; super::BLOCK * super::BLOCK],
    ) {
        unreachable!("AMX is x86-64 only")
    }
}
