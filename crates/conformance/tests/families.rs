//! What the families' fixtures prove beyond their references (those are checked with every fixture
//! in parity.rs): the checkpoints armorm cannot score exactly are refused naming why, and
//! Starling-RM is read where its own class reads.

use armorm_conformance::fixtures::Fixtures;
use armorm_model::{DeviceChoice, LoadOptions, ModelError, ModelSource, RewardModel};

fn load(name: &str, dtype: Option<armorm_model::ComputeDType>) -> Result<RewardModel, ModelError> {
    let source = ModelSource::Local(Fixtures::repo().model(name));
    RewardModel::load(&source, &LoadOptions { device: DeviceChoice::Cpu, dtype, ..Default::default() })
}

#[test]
fn checkpoints_armorm_cannot_score_exactly_are_refused_naming_why() {
    let err = load("refused-mistral", None).err().unwrap().to_string();
    assert!(
        err.contains("\"MistralForSequenceClassification\" is not one armorm implements")
            && err.contains("Qwen3ForSequenceClassification")
            && err.contains("Gemma2ForSequenceClassification"),
        "{err}"
    );
    let err = load("refused-mislabelled", None).err().unwrap().to_string();
    assert!(
        err.contains("model.layers.0.self_attn.q_norm.weight") && err.contains("LlamaForSequenceClassification"),
        "{err}"
    );
    // Features for training read every backbone tensor too.
    let source = ModelSource::Local(Fixtures::repo().model("refused-mislabelled"));
    let options = LoadOptions { device: DeviceChoice::Cpu, ..Default::default() };
    let err = armorm_model::Embedder::load(&source, &options).err().unwrap().to_string();
    assert!(err.contains("q_norm"), "{err}");
}

/// Starling-RM's own layout reads the token before the first id 0 (`<unk>` in Yi's tokenizer), not
/// transformers' last non-pad token: an answer containing the parsed `<unk>` is scored there.
#[test]
fn starling_reads_before_the_first_pad_as_its_class_does() {
    let model = load("tiny-starling", None).unwrap();
    assert_eq!(model.layout(), armorm_model::arch::layout::TensorLayout::Starling);
    for case in Fixtures::repo().expected("tiny-starling").unwrap()["extra"].as_array().unwrap() {
        let raw: Vec<armorm_model::RawMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let encoded = model.encode(&armorm_model::Conversation::new(raw).unwrap()).unwrap();
        let ids = armorm_conformance::fixtures::ids(&case["ids"]).unwrap();
        assert_eq!(encoded.ids(), ids.as_slice());
        assert_eq!(encoded.last_pos(), ids.iter().position(|&id| id == 0).unwrap() - 1);
        let got = model.forward(&[&encoded]).unwrap()[0].score;
        let want = case["score"].as_f64().unwrap() as f32;
        assert!((got - want).abs() <= 1e-4, "got {got}, its class {want}");
    }
}
