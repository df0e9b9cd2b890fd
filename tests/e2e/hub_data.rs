//! Data by Hub dataset id, offline: tests/fixtures/hub is a Hub cache (its generate.py) holding
//! `RLHFlow/ArmoRM-Multi-Objective-Data-v0.1` (ratings in two Parquet shards) and
//! `allenai/reward-bench` (splits `filtered` and `raw`) under their real ids and file names.
//! `armorm train` and `armorm eval` read them by id and compute what they compute from the same rows
//! as local files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::fixtures;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The binary with the fixture cache as HF_HUB_CACHE, offline.
fn armorm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_armorm"))
        .args(args)
        .env("HF_HUB_CACHE", fixtures().join("hub"))
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("HF_HOME")
        .output()
        .unwrap()
}

fn snapshot(repo: &str) -> PathBuf {
    fixtures().join("hub").join(format!("datasets--{}", repo.replace('/', "--"))).join("snapshots").join(COMMIT)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn train_reads_ratings_by_hub_id_across_its_parquet_shards() {
    let dir = tempfile::tempdir().unwrap();
    let (model, pairs) = (fixtures().join("models/tiny-bt"), fixtures().join("train/pairs.jsonl"));
    let local = fixtures().join("train/ratings.parquet");
    let run = |ratings: &[&str], name: &str| {
        let (work, out) = (dir.path().join(format!("work-{name}")), dir.path().join(format!("out-{name}")));
        let flags = ["--scale", "prometheus-score=1:5", "--steps", "3", "--batch-size", "16", "--hidden-dim", "8"];
        let mut args = vec!["train", "--model", path(&model), "--pairs", path(&pairs)];
        for r in ratings {
            args.extend(["--ratings", r]);
        }
        args.extend(["--work", path(&work), "--out", path(&out)]);
        args.extend(flags);
        let output = armorm(&args);
        assert!(output.status.success(), "{ratings:?}: {}", String::from_utf8_lossy(&output.stderr));
        (work, out)
    };
    let (hub_work, hub_out) = run(&["RLHFlow/ArmoRM-Multi-Objective-Data-v0.1"], "hub");
    let (local_work, _) = run(&[path(&local)], "local");
    // The same shards named one by one (a repeated flag): one dataset in the order given.
    let shards = snapshot("RLHFlow/ArmoRM-Multi-Objective-Data-v0.1").join("data");
    let (a, b) = (shards.join("train-00000-of-00002.parquet"), shards.join("train-00001-of-00002.parquet"));
    let (repeated_work, _) = run(&[path(&a), path(&b)], "repeated");
    // The shards in order are the local file's rows: the same records, split and fits.
    let (h, l) = (json(&hub_work.join("regression.json")), json(&local_work.join("regression.json")));
    assert_eq!(h["rows"], l["rows"]);
    assert_eq!(h["objectives"], l["objectives"]);
    for work in [&hub_work, &repeated_work] {
        assert_eq!(
            std::fs::read(work.join("regression.safetensors")).unwrap(),
            std::fs::read(local_work.join("regression.safetensors")).unwrap()
        );
    }
    let card = std::fs::read_to_string(hub_out.join("README.md")).unwrap();
    assert!(card.contains("RLHFlow/ArmoRM-Multi-Objective-Data-v0.1@main"), "{card}");
}

#[test]
fn eval_reads_a_split_by_hub_id_and_names_the_splits_that_exist() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/tiny-f32");
    let local = snapshot("allenai/reward-bench").join("data/filtered-00000-of-00001.parquet");
    let run = |data: &str, name: &str| {
        let out = dir.path().join(format!("{name}.json"));
        let output = armorm(&["eval", "--model", path(&model), "--data", data, "--json", path(&out)]);
        assert!(output.status.success(), "{data}: {}", String::from_utf8_lossy(&output.stderr));
        json(&out)
    };
    let (hub, local) = (run("allenai/reward-bench:filtered", "hub"), run(path(&local), "local"));
    assert_eq!(hub["v1"], local["v1"]);
    assert_eq!(hub["data"][0]["path"], "allenai/reward-bench:filtered@main");
    assert_eq!(hub["data"][0]["sha256"], local["data"][0]["sha256"]);

    for (data, why) in [
        ("allenai/reward-bench", "name a split (`:split`); it has filtered, raw"),
        ("allenai/reward-bench:test", "no split \"test\"; its splits: filtered, raw"),
        ("nobody/nothing", "nobody/nothing@main is not in the local cache"),
    ] {
        let output = armorm(&["eval", "--model", path(&model), "--data", data]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(why), "{data}: {stderr}");
    }
}

/// reward-bench's filtered split and every preference test set by id: every section is present, so
/// the overall is the leaderboard's (tests/fixtures/eval/generate.py computes it from transformers'
/// scores of the same rows); each test set's rows count under their split, anthropic_hhh's own
/// `subset` kept as the sub-subset.
#[test]
fn eval_over_every_section_gives_the_leaderboards_overall() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/tiny-f32");
    let (out, per, rb) = (dir.path().join("eval.json"), dir.path().join("eval.jsonl"), dir.path().join("results"));
    let output = armorm(&[
        "eval",
        "--model",
        path(&model),
        "--data",
        "allenai/reward-bench:filtered",
        "--data",
        "allenai/pref-test-sets:*",
        "--json",
        path(&out),
        "--per-example",
        path(&per),
        "--rewardbench-results",
        path(&rb),
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Prior Sets"));
    let (got, want) = (json(&out), json(&fixtures().join("eval/expected.json"))["tiny-f32"]["leaderboard"].clone());
    let close = |a: &Value, b: &Value, what: &str| {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!((a - b).abs() <= 1e-12, "{what}: armorm {a}, reference {b}");
    };
    for row in got["v1"]["subsets"].as_array().unwrap() {
        let subset = row["subset"].as_str().unwrap();
        close(&row["accuracy"], &want["v1_subsets"][subset], subset);
    }
    let sections = want["v1_sections"].as_object().unwrap();
    assert_eq!(sections.len(), 5, "every section, Prior Sets included");
    for (name, score) in sections {
        close(&got["v1"]["sections"][name], score, name);
    }
    close(&got["v1"]["overall"], &want["v1_overall"], "overall");
    // reward-bench's own files: the core set's subsets and the test sets' apart, each as it writes them.
    let (core, prefs) = (json(&rb.join("eval-set/tiny-f32.json")), json(&rb.join("pref-sets/tiny-f32.json")));
    for file in [&core, &prefs] {
        assert_eq!((&file["model"], &file["model_type"]), (&Value::from("tiny-f32"), &Value::from("Seq. Classifier")));
    }
    for (subset, accuracy) in want["v1_subsets"].as_object().unwrap() {
        let pref = armorm_eval::rewardbench::PREF_TEST_SETS.contains(&subset.as_str());
        close(&(if pref { &prefs } else { &core })[subset], accuracy, subset);
    }
    let scores = json(&rb.join("pref-sets-scores/tiny-f32.json"));
    let n = scores["results"].as_array().unwrap().len();
    assert!(
        n > 0
            && ["id", "subset", "scores_chosen", "scores_rejected"].iter().all(|k| scores[*k]
                .as_array()
                .unwrap()
                .len()
                == n)
    );
    let hhh: Vec<Value> = std::fs::read_to_string(&per)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["subset"] == "anthropic_hhh")
        .collect();
    assert_eq!(hhh.iter().map(|e| e["subsubset"].as_str().unwrap()).collect::<Vec<_>>(), ["harmless", "helpful"]);
}
