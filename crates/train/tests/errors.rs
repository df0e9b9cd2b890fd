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

/// `--skip-bad-rows`: the same bad rows are skipped instead, the run finishes, and the report counts
/// them (a row with a bad rating keeps its features but no rating; an unreadable one has neither).
#[test]
fn bad_rows_are_skipped_and_counted_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (r, p, out) = (dir.path().join("ratings.jsonl"), dir.path().join("pairs.jsonl"), dir.path().join("out"));
    let ratings = std::fs::read_to_string(train_fixture("ratings.jsonl")).unwrap();
    let bad_rating = GOOD.replace("\"helpsteer-helpfulness\": 1", "\"helpsteer-helpfulness\": \"very\"");
    std::fs::write(&r, format!("{ratings}{{oops\n{bad_rating}\n{{\"helpsteer-helpfulness\": 1}}\n")).unwrap();
    let pairs = std::fs::read_to_string(train_fixture("pairs.jsonl")).unwrap();
    std::fs::write(&p, format!("{pairs}[1, 2]\n{{\"question\": \"q\"}}\n")).unwrap();
    let mut args = vec!["--ratings", path(&r), "--pairs", path(&p), "--out", path(&out)];
    args.extend(["--scale", "prometheus-score=1:5", "--steps", "3", "--batch-size", "16", "--hidden-dim", "8"]);
    let err = train(None, &args).unwrap_err().to_string();
    assert!(err.contains("ratings.jsonl:362: invalid JSON"), "{err}");
    args.push("--skip-bad-rows");
    train(None, &args).unwrap();
    let report = json(&out.join("train_report.json"));
    assert_eq!(report["features"]["ratings"]["skipped_bad"], 3, "{}", report["features"]);
    assert_eq!(report["features"]["pairs"]["skipped_bad"], 2, "{}", report["features"]);
    let good_rows = ratings.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    assert_eq!(report["features"]["ratings"]["rows"], good_rows + 1, "the bad rating's row keeps its features");
}
