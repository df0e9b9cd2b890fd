//! The exported checkpoint: armorm loads it and scores exactly what PyTorch computes from the same
//! files (generate.py's own LlamaForRewardModelWithGating, strict about tensor names). The stage
//! results are the committed ones from the generator's run, so this test does not depend on
//! re-training reproducing them bit for bit.

mod common;

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
