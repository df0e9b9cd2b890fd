//! The exported checkpoint: armorm loads it and scores exactly what PyTorch computes from the same
//! files (generate.py's own LlamaForRewardModelWithGating, strict about tensor names). The stage
//! results are the committed ones from the generator's run, so this test does not depend on
//! re-training reproducing them bit for bit.

mod common;

use armorm_data::digest::sha256_file;
use armorm_model::{ComputeDType, Conversation, LoadOptions, ModelSource, RawMessage, RewardModel};
use common::*;

#[test]
fn export_scores_like_the_pytorch_reference_and_reruns_skip_stages() {
    let dir = tempfile::tempdir().unwrap();
    let (work, out) = (dir.path().join("work"), dir.path().join("out"));
    std::fs::create_dir_all(&work).unwrap();
    for f in std::fs::read_dir(train_fixture("work")).unwrap().flatten() {
        std::fs::copy(f.path(), work.join(f.file_name())).unwrap();
    }
    let args = generator_run(&work, &out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Every stage result is up to date: export must not need features (there are none in work/).
    train(Some("export"), &args).unwrap();
    assert!(!work.join("features").exists(), "export recomputed an up-to-date stage");

    let model = RewardModel::load(
        &ModelSource::Local(out.clone()),
        &LoadOptions { dtype: Some(ComputeDType::F32), ..Default::default() },
    )
    .unwrap();
    let exp = json(&train_fixture("export_expected.json"));
    let names: Vec<String> = json(&train_fixture("expected.json"))["objectives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert_eq!(model.objectives(), names.as_slice());
    for case in exp["cases"].as_array().unwrap() {
        let raw: Vec<RawMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let got = model.score(&[Conversation::new(raw).unwrap()]).unwrap().remove(0).unwrap();
        let want = case["score"].as_f64().unwrap() as f32;
        assert!((got.score - want).abs() < 1e-4, "score {} vs PyTorch {want}", got.score);
        let o = got.objectives.unwrap();
        for (key, values) in [("rewards", &o.rewards), ("gating", &o.gating), ("coefficients", &o.coefficients)] {
            for (g, w) in values.iter().zip(case[key].as_array().unwrap()) {
                assert!((g - w.as_f64().unwrap() as f32).abs() < 1e-4, "{key}: {g} vs PyTorch {w}");
            }
        }
    }
    let cfg = json(&out.join("config.json"));
    assert_eq!(cfg["architectures"][0], "LlamaForRewardModelWithGating");
    assert_eq!(cfg["gating_hidden_dim"], 32);
    assert!(cfg.get("num_labels").is_none());
    for file in ["tokenizer.json", "tokenizer_config.json", "modeling_custom.py", "train_report.json"] {
        assert!(out.join(file).is_file(), "{file} missing from the export");
    }
    let tensors = std::fs::read(out.join("model.safetensors")).unwrap();
    let names = safetensors::SafeTensors::deserialize(&tensors)
        .unwrap()
        .names()
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    assert!(!names.iter().any(|n| n == "score.weight"), "the base model's Bradley-Terry head was copied");

    // A second export over the first replaces it in place.
    train(Some("export"), &args).unwrap();
    assert!(out.join("train_report.json").is_file());

    // A changed input (here the seed) invalidates stage 1: it must be recomputed, which needs the
    // features this work directory does not have, rather than reuse the committed result.
    let mut reseeded = args.clone();
    let seed = reseeded.iter().position(|a| *a == "--seed").expect("the generator's flags set a seed") + 1;
    reseeded[seed] = "1";
    let err = train(Some("regression"), &reseeded).unwrap_err().to_string();
    assert!(err.contains("no complete set of feature shards"), "{err}");
}

/// The exports of tests/fixtures/export/generate.py, run there by transformers itself
/// (`AutoModelForSequenceClassification`, `trust_remote_code=True`, f32/bf16/f16, left-padded
/// batches equal to one conversation at a time): today's export is the code that ran (the same
/// modeling_custom.py), loads in transformers 5 (no padding index past the vocabulary), carries a
/// model card, and armorm scores it as transformers did.
#[test]
fn the_export_runs_in_transformers_as_armorm_scores_it() {
    let expected = json(&fixtures().join("export/expected.json"));
    let flags: Vec<String> =
        expected["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
    for export in expected["exports"].as_array().unwrap() {
        let base = export["base"].as_str().unwrap();
        let stages = match base {
            "tiny-bt" => train_fixture("work"),
            other => fixtures().join("export").join(other).join("work"),
        };
        let dir = tempfile::tempdir().unwrap();
        let (work, out) = (dir.path().join("work"), dir.path().join("out"));
        std::fs::create_dir_all(&work).unwrap();
        for f in std::fs::read_dir(&stages).unwrap().flatten() {
            std::fs::copy(f.path(), work.join(f.file_name())).unwrap();
        }
        let (r, p) = (train_fixture("ratings.jsonl"), train_fixture("pairs.jsonl"));
        let mut args = vec!["--ratings", path(&r), "--pairs", path(&p), "--work", path(&work), "--out", path(&out)];
        args.extend(flags.iter().map(String::as_str));
        train_on(&fixtures().join("models").join(base), Some("export"), &args).unwrap();

        assert_eq!(
            sha256_file(&out.join("modeling_custom.py")).unwrap(),
            export["modeling_sha256"].as_str().unwrap(),
            "{base}: modeling_custom.py changed since transformers ran it; rerun tests/fixtures/export/generate.py"
        );
        let cfg = json(&out.join("config.json"));
        let class = export["class"].as_str().unwrap();
        assert_eq!(cfg["architectures"][0], class);
        assert_eq!(cfg["auto_map"]["AutoModelForSequenceClassification"], format!("modeling_custom.{class}"));
        let vocab = cfg["vocab_size"].as_u64().unwrap();
        assert!(cfg.get("pad_token_id").and_then(|p| p.as_u64()).is_none_or(|p| p < vocab), "{base}: {cfg}");
        let card = std::fs::read_to_string(out.join("README.md")).unwrap();
        let ratings_hash = sha256_file(&r).unwrap();
        assert!(card.contains(&ratings_hash) && card.contains(class), "{base}: {card}");

        for (dtype, key) in [(ComputeDType::F32, "f32"), (ComputeDType::Bf16, "bf16")] {
            let options = LoadOptions { dtype: Some(dtype), ..Default::default() };
            let model = RewardModel::load(&ModelSource::Local(out.clone()), &options).unwrap();
            for name in model.objectives() {
                assert!(card.contains(&format!("`{name}`")), "{base}: the card lacks {name}");
            }
            for case in export["cases"].as_array().unwrap() {
                let raw: Vec<RawMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
                let conversation = Conversation::new(raw).unwrap();
                let ids: Vec<u64> = case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
                let encoded = model.encode(&conversation).unwrap();
                assert_eq!(encoded.ids().iter().map(|&i| i as u64).collect::<Vec<_>>(), ids, "{base}");
                let got = model.forward(&[&encoded]).unwrap().remove(0);
                let want = &case[key];
                let o = got.objectives.unwrap();
                let pairs = [
                    (vec![got.score], vec![want["score"].as_f64().unwrap() as f32]),
                    (o.rewards, floats(&want["rewards"])),
                    (o.gating, floats(&want["gating"])),
                    (o.coefficients, floats(&want["coefficients"])),
                ];
                for (g, w) in pairs {
                    // f32 to 1e-4; bf16 as the parity tests bound it (5% of the largest, at least 0.05).
                    let tol = match dtype {
                        ComputeDType::F32 => 1e-4,
                        _ => 0.05 * w.iter().fold(1.0f32, |m, x| m.max(x.abs())),
                    };
                    for (a, b) in g.iter().zip(&w) {
                        assert!((a - b).abs() <= tol, "{base} {key}: armorm {a}, transformers {b}");
                    }
                }
            }
        }
    }
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}
