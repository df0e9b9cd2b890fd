//! What the model crate's integration tests share: the fixtures, their conversations, and reruns of
//! a test under each `ARMORM_CPU_KERNELS` cap.
#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;

use armorm_model::{Conversation, RawMessage};
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// tests/fixtures/expected/<name>.json
pub fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected").join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// tests/fixtures/conversations.jsonl, each a conversation or the code it is refused with.
pub fn conversations() -> Vec<Result<Conversation, String>> {
    let text = std::fs::read_to_string(fixtures().join("conversations.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            match v.get("messages") {
                Some(m) => {
                    let raw: Vec<RawMessage> = serde_json::from_value(m.clone()).unwrap();
                    Conversation::new(raw).map_err(|e| e.code().to_string())
                }
                None => Ok(Conversation::from_prompt_response(
                    v["prompt"].as_str().unwrap().into(),
                    v["response"].as_str().unwrap().into(),
                )),
            }
        })
        .collect()
}

/// Runs `test` of this binary again with the AMX tiles ruled out, then with every bf16 kernel
/// ruled out, each in its own process (the cap is read once per process), so that one AMX machine
/// runs every kernel path. Returns at once in such a child run.
pub fn rerun_under_every_cap(test: &str) {
    if std::env::var_os("ARMORM_CPU_KERNELS").is_some() {
        return;
    }
    for cap in ["avx512bf16", "f32"] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads", "1"])
            .env("ARMORM_CPU_KERNELS", cap)
            .output()
            .unwrap();
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && log.contains("1 passed"), "ARMORM_CPU_KERNELS={cap}:\n{log}");
        let line = log.lines().find(|l| l.starts_with("kernels:")).unwrap_or_default();
        eprintln!("ARMORM_CPU_KERNELS={cap}: passed ({line})");
        assert!(line.contains("AMX false"), "the cap must rule the tiles out: {line}");
    }
}

/// The line a rerun test prints first, read by `rerun_under_every_cap`.
pub fn print_kernels() {
    eprintln!(
        "kernels: cap {:?}, AMX {}, AVX512-BF16 {}",
        armorm_model::kernels::cpu_kernels::cap(),
        armorm_model::kernels::tiles::available(),
        armorm_model::kernels::plan::avx512_bf16()
    );
}
