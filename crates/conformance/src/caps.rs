//! Reruns of a test under each `ARMORM_CPU_KERNELS` cap, so that one AMX machine runs every CPU
//! kernel path (the cap is read once per process).

use std::process::Command;

/// Runs `test` of the calling test binary again with the AMX tiles ruled out, then with every bf16
/// kernel ruled out, each in its own process. Returns at once in such a child run.
pub fn rerun_under_every_cap(test: &str) {
    if std::env::var_os("ARMORM_CPU_KERNELS").is_some() {
        return;
    }
    for cap in ["avx512bf16", "f32"] {
        let out = Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", test, "--nocapture", "--test-threads", "1"])
            .env("ARMORM_CPU_KERNELS", cap)
            .output()
            .expect("the test binary runs");
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && log.contains("1 passed"), "ARMORM_CPU_KERNELS={cap}:\n{log}");
        let line = log.lines().find(|l| l.starts_with("kernels:")).unwrap_or_default();
        eprintln!("ARMORM_CPU_KERNELS={cap}: passed ({line})");
        assert!(line.contains("AMX false"), "the cap must rule the tiles out: {line}");
    }
}

/// The line a rerun test prints first, read by [`rerun_under_every_cap`].
pub fn print_kernels() {
    eprintln!(
        "kernels: cap {:?}, AMX {}, AVX512-BF16 {}",
        armorm_model::kernels::cpu_kernels::cap(),
        armorm_model::kernels::tiles::available(),
        armorm_model::kernels::plan::avx512_bf16()
    );
}
