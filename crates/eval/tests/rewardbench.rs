//! `armorm eval` on the generated RewardBench v1/v2 files (tests/fixtures/eval/generate.py) against
//! the PyTorch reference scores and reward-bench's formulas, for an ArmoRM and a Bradley-Terry model.

use std::path::{Path, PathBuf};

use armorm_eval::cli::EvalArgs;
use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Eval(EvalArgs),
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The run's result as `--json` writes it.
fn eval(args: &[&str]) -> armorm_eval::Result<Value> {
    let mut argv = vec!["armorm", "eval"];
    argv.extend_from_slice(args);
    let Command::Eval(a) = Cli::try_parse_from(argv).unwrap().command;
    armorm_eval::run::run(&a).map(|r| serde_json::to_value(r).unwrap())
}

fn close(got: &Value, want: &Value, tol: f64, what: &str) {
    let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
    assert!((g - w).abs() <= tol, "{what}: {g}, reference {w}");
}

#[test]
fn scores_sections_and_audit_match_the_reference() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("eval/expected.json")).unwrap()).unwrap();
    for model in ["tiny-f32", "tiny-bt", "tiny-qwen3", "tiny-gemma2"] {
        let dir = tempfile::tempdir().unwrap();
        let (json, lines, html) = (dir.path().join("r.json"), dir.path().join("e.jsonl"), dir.path().join("r.html"));
        let m = fixtures().join("models").join(model);
        let (v1, v2) = (fixtures().join("eval/v1.jsonl"), fixtures().join("eval/v2.jsonl"));
        let paths: Vec<&str> = [&m, &v1, &v2, &json, &lines, &html].iter().map(|p| p.to_str().unwrap()).collect();
        let out = eval(&[
            "--model",
            paths[0],
            "--data",
            paths[1],
            "--data",
            paths[2],
            "--json",
            paths[3],
            "--per-example",
            paths[4],
            "--report",
            paths[5],
            "--batch-size",
            "7",
        ])
        .unwrap();
        let exp = &expected[model];
        assert_eq!(out["distinct_conversations"], exp["distinct"], "{model}: identical completions share one score");
        let examples: Vec<Value> =
            std::fs::read_to_string(&lines).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        for (got, want) in examples.iter().zip(exp["per_example"].as_array().unwrap()) {
            assert_eq!(got["id"], want["id"]);
            for side in ["chosen", "rejected"] {
                for (g, w) in got["scores"][side].as_array().unwrap().iter().zip(want[side].as_array().unwrap()) {
                    close(g, w, 1e-4, &format!("{model} example {} {side}", want["id"]));
                }
            }
            assert_eq!(got["credit"], want["credit"], "{model} example {}", want["id"]);
        }
        for s in out["v1"]["subsets"].as_array().unwrap() {
            close(&s["accuracy"], &exp["v1_subsets"][s["subset"].as_str().unwrap()], 1e-12, "v1 subset");
        }
        for (name, score) in out["v1"]["sections"].as_object().unwrap() {
            close(score, &exp["v1_sections"][name], 1e-12, name);
        }
        assert_eq!(out["v1"]["sections"].as_object().unwrap().len(), 5, "four sections and Prior Sets");
        assert_eq!(out["v1"]["other"], serde_json::json!(["my-own-subset"]));
        close(&out["v1"]["overall"], &exp["v1_overall"], 1e-12, "v1 overall");
        for s in out["v2"]["subsets"].as_array().unwrap() {
            // Ties weighs continuous margins (from f32 scores), hence the looser bound.
            close(&s["accuracy"], &exp["v2_subsets"][s["subset"].as_str().unwrap()], 1e-6, "v2 subset");
        }
        assert!(out["v2"]["subsets"].as_array().unwrap().iter().any(|s| s["subset"] == "Ties"));
        close(&out["v2"]["overall"], &exp["v2_overall"], 1e-6, "v2 overall");
        let (a, ea) = (&out["audit"], &exp["audit"]);
        close(&a["spearman_score_length"], &ea["spearman_score_length"], 1e-6, "audit spearman");
        for split in ["chosen_shorter", "chosen_longer"] {
            assert_eq!(a[split]["pairs"], ea[split]["pairs"], "{split}");
            close(&a[split]["accuracy"], &ea[split]["accuracy"], 1e-12, split);
        }
        match ea.get("raw") {
            Some(raw) => {
                for (i, o) in a["objectives"].as_array().unwrap().iter().enumerate() {
                    close(&o["raw"], &raw[i], 1e-6, "raw reward vs length");
                    close(&o["debiased"], &ea["debiased"][i], 1e-6, "debiased reward vs length");
                }
                assert!(out["gating_by_section"]["Chat"].is_object());
            }
            None => assert!(a["objectives"].as_array().unwrap().is_empty() && out["gating_by_section"].is_null()),
        }
        let page = std::fs::read_to_string(&html).unwrap();
        assert!(page.contains("<svg") && !page.contains("<script") && !page.contains("src="), "self-contained HTML");
        // The page shows the result's numbers: each benchmark's overall, and ArmoRM's gating table.
        for (key, title) in [("v1", "RewardBench"), ("v2", "RewardBench 2")] {
            let overall = format!("{title}: overall {:.1}", 100.0 * out[key]["overall"].as_f64().unwrap());
            assert!(page.contains(&overall), "{model}: the page lacks {overall:?}");
        }
        let gating_table = page.contains("Mean gating weight per objective");
        assert_eq!(gating_table, !out["gating_by_section"].is_null(), "{model}: the gating table");
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(saved["data"][0]["sha256"].as_str().unwrap().len(), 64);
    }
}

#[test]
fn bad_rows_name_file_and_line_or_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": \"b\", \"subset\": \"shp\"}\n{\"question\": \"q\"}\n",
    )
    .unwrap();
    let model = fixtures().join("models/tiny-f32");
    let args = ["--model", model.to_str().unwrap(), "--data", data.to_str().unwrap()];
    let err = eval(&args).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl:2: not an evaluation row"), "{err}");
    let mut skipping = args.to_vec();
    skipping.push("--skip-bad-rows");
    let out = eval(&skipping).unwrap();
    assert_eq!(out["skipped_rows"].as_array().unwrap().len(), 1);
    assert_eq!(out["examples"], 1);
}

/// `--cache`: a run over v1 leaves every score on disk; a run over v1 and v2 takes v1's from there
/// (a score edited in the file shows in the result, so it was read, not recomputed) and adds v2's;
/// and with the edit undone the cached run's numbers are the bits of a run without a cache.
#[test]
fn the_score_cache_resumes_and_gives_the_uncached_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let m = fixtures().join("models/tiny-f32");
    let (v1, v2) = (fixtures().join("eval/v1.jsonl"), fixtures().join("eval/v2.jsonl"));
    let [m, v1, v2, cache] = [&m, &v1, &v2, &cache].map(|p| p.to_str().unwrap());
    let first = eval(&["--model", m, "--data", v1, "--cache", cache]).unwrap();
    let file = std::fs::read_dir(cache).unwrap().flatten().next().unwrap().path();
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count() as u64, first["distinct_conversations"].as_u64().unwrap());

    // Every cached (v1) score doubled, v2's computed fresh: the audit's score-length correlation over
    // both changes, which it would not if the cache were ignored.
    let shifted: String = text
        .lines()
        .map(|l| {
            let mut e: Value = serde_json::from_str(l).unwrap();
            e["score"] = serde_json::json!(e["score"].as_f64().unwrap() * 2.0);
            e.to_string() + "\n"
        })
        .collect();
    std::fs::write(&file, &shifted).unwrap();
    let both = eval(&["--model", m, "--data", v1, "--data", v2, "--cache", cache]).unwrap();
    let uncached = eval(&["--model", m, "--data", v1, "--data", v2]).unwrap();
    assert_ne!(both["audit"], uncached["audit"], "the edited cache was not read");
    let lines = std::fs::read_to_string(&file).unwrap().lines().count() as u64;
    assert_eq!(lines, uncached["distinct_conversations"].as_u64().unwrap(), "v2's scores were added once");

    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace(&shifted, &text)).unwrap();
    let resumed = eval(&["--model", m, "--data", v1, "--data", v2, "--cache", cache]).unwrap();
    for key in ["v1", "v2", "audit"] {
        assert_eq!(resumed[key], uncached[key], "{key}");
    }
}

/// `--max-length N` cuts each conversation to its last N tokens, as reward-bench's pipelines do
/// (`truncation_side="left"`): the scores are transformers' on the cut ids, and the accuracies follow.
#[test]
fn max_length_cuts_from_the_left_as_reward_bench_does() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("eval/expected.json")).unwrap()).unwrap();
    let want = &expected["tiny-bt"]["max_length_24"];
    let dir = tempfile::tempdir().unwrap();
    let per = dir.path().join("e.jsonl");
    let (m, v1) = (fixtures().join("models/tiny-bt"), fixtures().join("eval/v1.jsonl"));
    let [m, v1, per_s] = [&m, &v1, &per].map(|p| p.to_str().unwrap());
    let out = eval(&["--model", m, "--data", v1, "--max-length", "24", "--per-example", per_s]).unwrap();
    let got: Vec<Value> =
        std::fs::read_to_string(&per).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (g, w) in got.iter().zip(want["per_example"].as_array().unwrap()) {
        for side in ["chosen", "rejected"] {
            close(&g["scores"][side][0], &w[side][0], 1e-4, &format!("example {} {side}", w["id"]));
        }
    }
    for row in out["v1"]["subsets"].as_array().unwrap() {
        let subset = row["subset"].as_str().unwrap();
        close(&row["accuracy"], &want["v1_subsets"][subset], 1e-12, subset);
    }
    let uncut = eval(&["--model", m, "--data", v1]).unwrap();
    assert_ne!(out["v1"]["subsets"], uncut["v1"]["subsets"], "24 tokens must cut something");
}

/// A pairwise preference model on RewardBench v1 and v2 (tests/fixtures/pairwise/generate.py runs
/// reward-bench's `SlicPairPMPipeline` on the same rows): every preference within 1e-4, each pair
/// decided as the pipeline decides it (a tie is wrong), v2 examples right only when the chosen
/// answer wins every comparison, and reward-bench's results files with null scores.
#[test]
fn a_pairwise_model_is_evaluated_by_its_comparisons() {
    let exp = json_file(&fixtures().join("expected/tiny-pairwise.json"))["rewardbench"].clone();
    let dir = tempfile::tempdir().unwrap();
    let (model, per_example, results) =
        (fixtures().join("models/tiny-pairwise"), dir.path().join("examples.jsonl"), dir.path().join("rb"));
    let (v1, v2) = (fixtures().join("eval/v1.jsonl"), fixtures().join("eval/v2.jsonl"));
    let out = eval(&[
        "--model",
        model.to_str().unwrap(),
        "--data",
        v1.to_str().unwrap(),
        "--data",
        v2.to_str().unwrap(),
        "--per-example",
        per_example.to_str().unwrap(),
        "--rewardbench-results",
        results.to_str().unwrap(),
        "--batch-size",
        "5",
    ])
    .unwrap();
    assert_eq!(out["model"]["head"], "pairwise");
    for (key, subsets) in [("v1", &exp["v1_subsets"]), ("v2", &exp["v2_subsets"])] {
        for s in out[key]["subsets"].as_array().unwrap() {
            close(&s["accuracy"], &subsets[s["subset"].as_str().unwrap()], 1e-12, "subset accuracy");
        }
    }
    close(&out["v1"]["overall"], &exp["v1_overall"], 1e-12, "v1 overall");
    close(&out["v2"]["overall"], &exp["v2_overall"], 1e-12, "v2 overall");
    assert!(out["audit"]["spearman_score_length"].is_null());
    let lines = std::fs::read_to_string(&per_example).unwrap();
    for (line, want) in lines.lines().zip(exp["per_example"].as_array().unwrap()) {
        let got: Value = serde_json::from_str(line).unwrap();
        assert_eq!(got["id"], want["id"]);
        for (g, w) in got["preferences"].as_array().unwrap().iter().zip(want["preferences"].as_array().unwrap()) {
            close(g, w, 1e-4, "preference");
        }
        assert_eq!(got["credit"], want["credit"], "{}", want["id"]);
    }
    let scores = json_file(&results.join("eval-set-scores/tiny-pairwise.json"));
    assert_eq!(scores["model_type"], "Custom Classifier");
    assert!(scores["scores_chosen"].as_array().unwrap().iter().all(Value::is_null));
}

fn json_file(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
