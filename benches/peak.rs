//! The CPU's arithmetic peak, the ceiling the throughput bench's GEMM figures are read against:
//! f32 FMA (`vfmadd231ps`) and, where the CPU has AVX512-BF16, `vdpbf16ps`, each as a register-only
//! loop of 24 independent 512-bit instructions, on one thread and on every core at once.
//!
//!     cargo bench -p armorm-server --bench peak
//!
//! No memory is touched, so these are the instruction rates alone: no GEMM reaches them.

use std::time::Instant;

/// Iterations of the 24-instruction loop per thread: about a second at 2 instructions per cycle.
const ITERATIONS: usize = 200_000_000;

/// A register-only loop of 24 independent instructions (enough to cover the latency of two pipes)
/// writing zmm0-23 from zmm30 and zmm31.
macro_rules! peak_loop {
    ($name:ident, $feature:literal, $mnemonic:literal, [$($r:literal)*]) => {
        /// # Safety
        /// The CPU must have the instruction's feature (checked by the caller).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name(iterations: usize) {
            // SAFETY: registers only, and every vector register is declared clobbered.
            unsafe {
                std::arch::asm!(
                    "vpxord zmm30, zmm30, zmm30",
                    "vpxord zmm31, zmm31, zmm31",
                    "2:",
                    $(concat!($mnemonic, " zmm", $r, ", zmm30, zmm31"),)*
                    "dec rcx",
                    "jnz 2b",
                    inout("rcx") iterations => _,
                    clobber_abi("C"),
                    options(nomem, nostack),
                )
            }
        }
    };
}

peak_loop!(fma, "avx512f", "vfmadd231ps", [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23]);
peak_loop!(dpbf16, "avx512f,avx512bf16", "vdpbf16ps", [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23]);

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        /// A name, the flops one instruction does, and its loop.
        type Kind = (&'static str, f64, unsafe fn(usize));
        let mut kinds: Vec<Kind> = Vec::new();
        if is_x86_feature_detected!("avx512f") {
            kinds.push(("f32 FMA (vfmadd231ps)", 32.0, fma));
        }
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16") {
            kinds.push(("bf16 dot (vdpbf16ps)", 64.0, dpbf16));
        }
        if kinds.is_empty() {
            println!("no AVX-512 on this CPU: nothing to measure");
        }
        for (name, flops, kernel) in kinds {
            for n in [1, threads] {
                let start = Instant::now();
                let workers: Vec<_> = (0..n)
                    .map(|_| {
                        std::thread::spawn(move || {
                            // SAFETY: the feature was detected above.
                            unsafe { kernel(ITERATIONS) }
                        })
                    })
                    .collect();
                workers.into_iter().for_each(|w| w.join().expect("a peak thread panicked"));
                let gflops = (n * ITERATIONS * 24) as f64 * flops / start.elapsed().as_secs_f64() / 1e9;
                println!("{name:<24} {n:>3} thread(s): {gflops:>8.1} GFLOP/s");
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("the peak probe is x86-64 only");
}
