//! A stage run alone never redoes another stage: `armorm train export` exports what `train gating`
//! produced, or refuses naming what differs; the full run redoes a stale stage, saying why.

mod common;

use std::path::Path;

use common::*;

fn run(stage: Option<&str>, work: &Path, extra: &[&str]) -> Result<(), String> {
    let (r, p) = (train_fixture("ratings.jsonl"), train_fixture("pairs.jsonl"));
    let mut args = vec!["--ratings", path(&r), "--pairs", path(&p), "--work", path(work)];
    args.extend_from_slice(&["--scale", "prometheus-score=1:5", "--batch-size", "16", "--hidden-dim", "8"]);
    args.extend_from_slice(extra);
    train(stage, &args).map_err(|e| e.to_string())
}

#[test]
fn export_exports_what_gating_trained_or_names_the_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let (work, out) = (dir.path().join("work"), dir.path().join("out"));
    // Nothing computed yet: export refuses rather than running every stage unasked.
    let err = run(Some("export"), &work, &["--out", path(&out)]).unwrap_err();
    assert!(err.contains("stage `regression` is needed") && err.contains("armorm train regression"), "{err}");
    for stage in ["embed", "regression", "debias"] {
        run(Some(stage), &work, &[]).unwrap();
    }
    run(Some("gating"), &work, &["--steps", "7"]).unwrap();
    let trained = std::fs::read(work.join("gating.safetensors")).unwrap();
    // The README's old trap: export without gating's --steps.
    let err = run(Some("export"), &work, &["--out", path(&out)]).unwrap_err();
    assert!(err.contains("stage `gating` is needed") && err.contains("--steps was 7, is 2000"), "{err}");
    assert!(!out.exists());
    run(Some("export"), &work, &["--out", path(&out), "--steps", "7"]).unwrap();
    assert!(out.join("model.safetensors").is_file() || out.join("model.safetensors.index.json").is_file());
    assert_eq!(std::fs::read(work.join("gating.safetensors")).unwrap(), trained, "export retrained stage 2");
    // The full run redoes the stale stage on its own.
    run(None, &work, &["--out", path(&out), "--steps", "5"]).unwrap();
    assert_ne!(std::fs::read(work.join("gating.safetensors")).unwrap(), trained);
    assert_eq!(json(&work.join("gating.json"))["settings"]["steps"], 5);
}
