//! `armorm train` builds an ArmoRM on a Qwen3 or a Gemma-2 base (tests/fixtures/families), and its
//! export loads back as that family's gating model: the backbone tensors as they were, the class
//! named for the family (in config.json and in the remote code transformers loads), the gating
//! pattern the family's own template opens its answers with.

mod common;

use armorm_model::arch::Family;
use armorm_model::{ComputeDType, Conversation, LoadOptions, ModelSource, RawMessage, RewardModel};
use common::*;

#[test]
fn an_armorm_on_a_qwen3_or_gemma2_base_exports_and_loads_back() {
    // (base, family, the text the pattern must decode to)
    let bases = [
        ("tiny-qwen3", Family::Qwen3, "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        ("tiny-gemma2", Family::Gemma2, "<end_of_turn>\n<start_of_turn>model\n"),
    ];
    for (base, family, pattern_text) in bases {
        let dir = tempfile::tempdir().unwrap();
        let (work, out) = (dir.path().join("work"), dir.path().join("out"));
        let args = generator_run(&work, &out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        train_on(&fixtures().join("models").join(base), None, &args).unwrap();

        let cfg = json(&out.join("config.json"));
        assert_eq!(cfg["architectures"][0], family.gating_class(), "{base}");
        assert_eq!(cfg["model_type"], family.model_type(), "{base}");
        let remote = format!("modeling_custom.{}", family.gating_class());
        assert_eq!(cfg["auto_map"]["AutoModelForSequenceClassification"], remote.as_str(), "{base}");
        assert!(out.join("modeling_custom.py").is_file(), "{base}: the family's remote code");
        let options = LoadOptions { dtype: Some(ComputeDType::F32), ..Default::default() };
        let model = RewardModel::load(&ModelSource::Local(out.clone()), &options).unwrap();
        assert_eq!(model.architecture().family, family);
        let pattern = model.encoder().pattern().expect("a gating model").ids().to_vec();
        let tokenizer = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
        assert_eq!(tokenizer.decode(&pattern, false).unwrap(), pattern_text, "{base}");
        let messages = serde_json::json!([
            {"role": "user", "content": "What is 38 plus 91?"},
            {"role": "assistant", "content": "129."},
        ]);
        let raw: Vec<RawMessage> = serde_json::from_value(messages).unwrap();
        let out = model.score(&[Conversation::new(raw).unwrap()]).unwrap().remove(0).unwrap();
        let objectives = out.objectives.expect("an ArmoRM's explanation");
        assert_eq!(objectives.rewards.len(), model.objectives().len());
        assert!(out.score.is_finite(), "{base}");
    }
}
