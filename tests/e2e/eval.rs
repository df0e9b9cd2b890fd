//! The README's `armorm eval` command, run as written (the binary, on the shipped fixtures).

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::readme_command;

#[test]
fn readme_eval_command_writes_every_output() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = readme_command("cargo run --release -- eval")
        .into_iter()
        .map(|a| match a.strip_prefix("target/") {
            Some(name) => dir.path().join(name).display().to_string(),
            None => a,
        })
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_armorm"))
        .current_dir(root)
        .args(&args)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "the README's eval command failed");
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("overall") && table.contains("Verbosity audit"), "{table}");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("eval.json")).unwrap()).unwrap();
    assert!(json["v1"]["overall"].as_f64().is_some() && json["v2"]["overall"].as_f64().is_some());
    assert!(std::fs::read_to_string(dir.path().join("eval.html")).unwrap().contains("<svg"));
    assert!(std::fs::read_to_string(dir.path().join("eval.jsonl")).unwrap().lines().count() > 30);
}
