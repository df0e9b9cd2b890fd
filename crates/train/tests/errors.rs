//! Bad training input fails with the file and line at fault, before any expensive work, and leaves
//! --out untouched.

mod common;

use common::*;

const GOOD: &str = r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "helpsteer-helpfulness": 1, "helpsteer-verbosity": 0.5}"#;
const PAIR: &str = r#"{"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}"#;

/// Runs `armorm train` on the given ratings and pairs text; returns the error message.
fn fails(ratings: &str, pairs: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (r, p, out) = (dir.path().join("ratings.jsonl"), dir.path().join("pairs.jsonl"), dir.path().join("out"));
    std::fs::write(&r, ratings).unwrap();
    std::fs::write(&p, pairs).unwrap();
    let mut args =
        vec!["--ratings", path(&r), "--pairs", path(&p), "--out", path(&out), "--steps", "2", "--batch-size", "4"];
    args.extend_from_slice(extra);
    let err = train(None, &args).expect_err("bad input must fail").to_string();
    assert!(!out.exists(), "--out was written although the run failed: {err}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(
        leftovers.iter().all(|n| !n.to_string_lossy().contains("partial") && !n.to_string_lossy().contains(".work-")),
        "{leftovers:?}"
    );
    err
}

#[test]
fn unknown_objective() {
    let err = fails(&format!("{GOOD}\n{GOOD}\n"), PAIR, &["--objectives", "helpsteer-helpfulness,honesty"]);
    assert!(err.contains("ratings.jsonl: unknown objective \"honesty\""), "{err}");
}

#[test]
fn non_numeric_rating() {
    let bad = GOOD.replace("\"helpsteer-helpfulness\": 1", "\"helpsteer-helpfulness\": \"very\"");
    let err = fails(&format!("{GOOD}\n{GOOD}\n{bad}\n"), PAIR, &[]);
    assert!(err.contains("ratings.jsonl:3: objective \"helpsteer-helpfulness\" must be a number"), "{err}");
}

#[test]
fn conversation_without_the_gating_pattern() {
    let lone = r#"{"messages": [{"role": "assistant", "content": "I speak alone"}], "helpsteer-helpfulness": 1, "helpsteer-verbosity": 1}"#;
    let err = fails(&format!("{GOOD}\n\n{lone}\n"), PAIR, &[]);
    assert!(err.contains("ratings.jsonl:3: messages: the gating pattern"), "{err}");
}

#[test]
fn empty_files() {
    let err = fails("", PAIR, &[]);
    assert!(err.contains("ratings.jsonl: the file has no rows"), "{err}");
    let err = fails(&format!("{GOOD}\n{GOOD}\n"), "\n", &[]);
    assert!(err.contains("pairs.jsonl: the file has no rows"), "{err}");
}

#[test]
fn pairs_row_with_neither_layout() {
    let err =
        fails(&format!("{GOOD}\n{GOOD}\n"), &format!("{PAIR}\n{{\"question\": \"q\", \"answer\": \"a\"}}\n"), &[]);
    assert!(err.contains("pairs.jsonl:2: not a preference pair: expected"), "{err}");
}

#[test]
fn verbosity_objective_must_exist() {
    let err = fails(&format!("{GOOD}\n{GOOD}\n"), PAIR, &["--verbosity-objective", "length"]);
    assert!(err.contains("--verbosity-objective \"length\" is not among the objectives"), "{err}");
}

#[test]
fn out_that_is_someone_elses_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let r = train_fixture("ratings.jsonl");
    let p = train_fixture("pairs.jsonl");
    let err =
        train(None, &["--ratings", path(&r), "--pairs", path(&p), "--out", path(dir.path())]).unwrap_err().to_string();
    assert!(err.contains("exists and is not an armorm export"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(), "mine");
}
