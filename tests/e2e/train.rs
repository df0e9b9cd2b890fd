//! The README's `armorm train` command, run as written (the binary, on the shipped tiny model and
//! planted data), and its output served by `armorm score`.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::readme_command;

/// The README's train command as arguments, `target/armorm-tiny` replaced by `out`.
fn readme_train_command(out: &str) -> Vec<String> {
    let args = readme_command("cargo run --release -- train");
    assert_eq!(args[0], "train");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    assert!(
        readme.contains("cargo run --release -- serve --model target/armorm-tiny"),
        "README serves what it trained"
    );
    args.into_iter().map(|a| if a == "target/armorm-tiny" { out.to_string() } else { a }).collect()
}

#[test]
fn readme_train_command_produces_a_model_that_scores() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("armorm-tiny");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let run = Command::new(env!("CARGO_BIN_EXE_armorm"))
        .current_dir(root)
        .args(readme_train_command(out.to_str().unwrap()))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the README's train command failed:\n{log}");
    // Stage 2 reports its progress as plain log lines too (stderr is no terminal here).
    let progress: Vec<&str> = log.lines().filter(|l| l.contains("stage 2 step=")).collect();
    assert!(progress.len() >= 2, "no stage-2 progress lines:\n{log}");
    assert!(
        progress.iter().all(|l| l.contains("val_accuracy=") && l.contains("loss=") && l.contains("eta_s=")),
        "{progress:?}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("train_report.json")).unwrap()).unwrap();
    assert_eq!(report["objectives"].as_array().unwrap().len(), 5);
    let scored = Command::new(env!("CARGO_BIN_EXE_armorm"))
        .args(["score", "--model", out.to_str().unwrap()])
        .stdin(std::fs::File::open(format!("{root}/tests/fixtures/conversations.jsonl")).unwrap())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(scored.status.success());
    let first: Value = serde_json::from_str(String::from_utf8(scored.stdout).unwrap().lines().next().unwrap()).unwrap();
    assert!(first["score"].as_f64().unwrap().is_finite());
    assert_eq!(first["rewards"].as_array().unwrap().len(), 5);
}
