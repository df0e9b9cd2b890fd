//! The check's binary as the GPU host runs it, here on the CPU: the parity section passes and
//! writes its JSON, and a host without a CUDA device is told so at once with a non-zero exit.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn check() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_armorm-gpu-check"));
    cmd.current_dir(repo()).env_remove("OUT");
    cmd
}

#[test]
fn parity_passes_on_the_cpu_and_writes_its_json() {
    let out = tempfile::tempdir().unwrap();
    let run = check().args(["parity", "--device", "cpu", "--out"]).arg(out.path()).output().unwrap();
    let log = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{log}\n{}", String::from_utf8_lossy(&run.stderr));
    let rows: Value = serde_json::from_slice(&std::fs::read(out.path().join("parity.json")).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    // Every scored fixture in f32, the bf16 references, and the pairwise model.
    assert!(rows.len() >= 15, "{rows:?}");
    assert!(rows.iter().all(|r| r["ok"] == true), "{rows:?}");
    for model in ["tiny-f32", "tiny-qwen3", "tiny-gemma2", "tiny-starling", "tiny-pairwise"] {
        assert!(rows.iter().any(|r| r["found"]["model"] == model), "{model} missing");
    }
    let about: Value = serde_json::from_slice(&std::fs::read(out.path().join("about.json")).unwrap()).unwrap();
    assert_eq!(about["device"], "cpu");
}

#[test]
fn a_host_without_cuda_fails_at_once_saying_so() {
    if cfg!(feature = "cuda") && candle_core::Device::new_cuda(0).is_ok() {
        return; // a GPU host: nothing to refuse
    }
    let run = check().args(["all", "--device", "cuda"]).output().unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("no CUDA device was found"), "{err}");
}

#[test]
fn the_script_refuses_a_host_without_a_gpu() {
    let has_gpu = Command::new("nvidia-smi").arg("-L").output().is_ok_and(|o| o.status.success());
    let run = Command::new("bash").arg(repo().join("benches/gpu.sh")).args(["run", "/nonexistent"]).output().unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    let expected = if has_gpu { "no bundle in /nonexistent" } else { "no CUDA device was found" };
    assert!(err.contains(expected), "{err}");
}

/// The README's section on the GPU check names every flag the binary takes.
#[test]
fn the_readme_names_every_flag() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("### The GPU check").expect("README section");
    let section = &readme[start..][..readme[start + 4..].find("\n## ").map_or(readme.len() - start, |e| e + 4)];
    let help = check().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches(|c: char| !c.is_alphanumeric()))
        .filter(|f| !matches!(*f, "--help" | "--version"))
        .collect();
    assert!(flags.len() >= 8, "{help}");
    let missing: Vec<&&str> = flags.iter().filter(|f| !section.contains(&format!("`{f}"))).collect();
    assert!(missing.is_empty(), "the README's GPU check section lacks {missing:?}");
}
