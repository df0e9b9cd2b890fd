//! Feature extraction split over shards, and resumed after an interruption, gives the features of
//! one uninterrupted run, bit for bit (the backbone is batch-invariant, so which conversations share
//! a forward pass cannot change a feature).

mod common;

use std::path::Path;

use armorm_train::features::{FeatureSet, Features, Manifest, Matrix};
use common::*;

fn args<'a>(work: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--ratings", "", "--pairs", "", "--work", path(work), "--max-input-tokens", "384"];
    a.extend_from_slice(extra);
    a
}

fn run(stage: &str, work: &Path, extra: &[&str]) {
    let (r, p) = (train_fixture("ratings.jsonl"), train_fixture("pairs.jsonl"));
    let mut a = args(work, extra);
    a[1] = path(&r);
    a[3] = path(&p);
    train(Some(stage), &a).unwrap();
}

/// Every feature row of `dir`'s complete shard set, by record index.
fn rows(dir: &Path, matrix: Matrix) -> Vec<(usize, Vec<f32>)> {
    let key = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .find_map(|e| {
            serde_json::from_str::<Manifest>(&std::fs::read_to_string(e.path().join("manifest.json")).ok()?).ok()
        })
        .unwrap()
        .key;
    let f = Features::open(dir, &key).unwrap();
    let mut out: Vec<(usize, Vec<f32>)> = f.rows().map(|(r, set, i)| (r, set.matrix(matrix).row(i).to_vec())).collect();
    out.sort_by_key(|(r, _)| *r);
    out
}

fn assert_same(a: &[(usize, Vec<f32>)], b: &[(usize, Vec<f32>)]) {
    assert_eq!(a.len(), b.len());
    for ((ra, xa), (rb, xb)) in a.iter().zip(b) {
        assert_eq!(ra, rb);
        for (p, q) in xa.iter().zip(xb) {
            assert_eq!(p.to_bits(), q.to_bits(), "record {ra}: {p} vs {q}");
        }
    }
}

#[test]
fn two_shards_and_a_resumed_run_equal_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, sharded) = (dir.path().join("whole"), dir.path().join("sharded"));
    run("embed", &whole, &[]);
    run("embed", &sharded, &["--shard", "1/2"]);
    run("embed", &sharded, &["--shard", "0/2"]);
    // The full stage after sharded extraction extracts nothing more and reads both shards.
    run("regression", &sharded, &["--scale", "prometheus-score=1:5"]);
    assert_eq!(std::fs::read_dir(sharded.join("features/pairs")).unwrap().count(), 2);
    for (kind, matrix) in [("ratings", Matrix::Reward), ("pairs", Matrix::Prompt), ("pairs", Matrix::Rejected)] {
        assert_same(
            &rows(&whole.join("features").join(kind), matrix),
            &rows(&sharded.join("features").join(kind), matrix),
        );
    }
    // And so is what is trained on them: the regression's weights, byte for byte.
    run("regression", &whole, &["--scale", "prometheus-score=1:5"]);
    let weights = |dir: &Path| std::fs::read(dir.join("regression.safetensors")).unwrap();
    assert!(weights(&whole) == weights(&sharded), "the sharded run trained other regression weights");

    // Interrupt the pairs extraction after record 100: the manifest says so, the matrices hold rows
    // beyond it (written but never synced), and the run picks up from there.
    let shard = whole.join("features/pairs/shard-00000-of-00001");
    let before = rows(&whole.join("features/pairs"), Matrix::Chosen);
    let mut m: Manifest = serde_json::from_str(&std::fs::read_to_string(shard.join("manifest.json")).unwrap()).unwrap();
    m.kept = FeatureSet::open(&shard).unwrap().rows.data().iter().filter(|&&r| r < 100).count();
    (m.next_record, m.complete) = (100, false);
    m.skipped.retain(|s| s.record < 100);
    std::fs::write(shard.join("manifest.json"), serde_json::to_string(&m).unwrap()).unwrap();
    run("embed", &whole, &[]);
    assert_same(&before, &rows(&whole.join("features/pairs"), Matrix::Chosen));
}
