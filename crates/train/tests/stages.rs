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

/// The debiasing threshold and stage 2's learning rate, dropout and temperature are flags: each
/// reaches its stage (a threshold of 1 lets λ = 0 through for every objective but verbosity), and a
/// changed value makes the stage stale, named.
#[test]
fn debiasing_and_gating_flags_reach_their_stages() {
    let dir = tempfile::tempdir().unwrap();
    let (work, out) = (dir.path().join("work"), dir.path().join("out"));
    for stage in ["embed", "regression", "debias"] {
        run(Some(stage), &work, &[]).unwrap();
    }
    let paper = json(&work.join("debias.json"));
    assert_eq!(paper["threshold"], 0.03);
    let err = run(Some("gating"), &work, &["--spearman-threshold", "1"]).unwrap_err();
    assert!(err.contains("stage `debias` is needed") && err.contains("--spearman-threshold was 0.03, is 1"), "{err}");
    run(Some("debias"), &work, &["--spearman-threshold", "1"]).unwrap();
    let loose = json(&work.join("debias.json"));
    let verbosity = loose["verbosity"].as_str().unwrap();
    for (name, lambda) in loose["objectives"].as_array().unwrap().iter().zip(loose["lambda"].as_array().unwrap()) {
        let want = if name == verbosity { 1.0 } else { 0.0 };
        assert_eq!(lambda.as_f64(), Some(want), "{name}");
    }
    assert_ne!(loose["lambda"], paper["lambda"], "the fixture's objectives need λ > 0 at 0.03");
    let flags = ["--spearman-threshold", "1", "--learning-rate", "0.004", "--dropout", "0", "--temperature", "5"];
    let mut args = flags.to_vec();
    args.extend(["--steps", "3", "--out", path(&out)]);
    run(None, &work, &args).unwrap();
    let settings = &json(&work.join("gating.json"))["settings"];
    assert_eq!((settings["learning_rate"].as_f64(), settings["dropout"].as_f64()), (Some(0.004), Some(0.0)));
    assert_eq!(json(&out.join("config.json"))["gating_temperature"], 5.0);
    assert_eq!(json(&out.join("train_report.json"))["debias"]["threshold"], 1.0);
}
