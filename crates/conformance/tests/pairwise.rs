//! A pairwise preference model (the architecture of RLHFlow/pair-preference-model-LLaMA3-8B)
//! against reward-bench's `SlicPairPMPipeline` run on transformers' LlamaForCausalLM
//! (tests/fixtures/pairwise/generate.py, committed outputs): each order's token ids and "A"/"B"
//! logits, and the averaged preference; how it is recognised, and what is refused.

use armorm_conformance::fixtures::Fixtures;
use armorm_model::{DeviceChoice, HeadKind, LoadOptions, ModelError, ModelSource, RewardModel};
use serde_json::Value;

fn load(dir: &std::path::Path, pairwise: bool) -> Result<RewardModel, ModelError> {
    let options = LoadOptions { device: DeviceChoice::Cpu, pairwise, ..Default::default() };
    RewardModel::load(&ModelSource::Local(dir.to_path_buf()), &options)
}

#[test]
fn comparisons_match_the_reward_bench_pipeline() {
    let checked = armorm_conformance::pairwise::check(&Fixtures::repo(), DeviceChoice::Cpu).unwrap();
    assert!(checked.computed_tokens < checked.tokens, "both orders share their context");
    eprintln!("{checked:?}");
}

#[test]
fn a_causal_lm_is_pairwise_only_when_marked_and_scores_nothing_alone() {
    let dir = tempfile::tempdir().unwrap();
    let src = Fixtures::repo().model("tiny-pairwise");
    for f in std::fs::read_dir(&src).unwrap().flatten() {
        std::fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
    }
    let cfg_path = dir.path().join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg.as_object_mut().unwrap().remove("pairwise_preference");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    // Unmarked, a causal LM has no reward head; the error says how to load it.
    let err = load(dir.path(), false).err().expect("an unmarked causal LM is refused").to_string();
    assert!(err.contains("--pairwise"), "{err}");
    let model = load(dir.path(), true).unwrap();
    assert_eq!(model.head_kind(), HeadKind::Pairwise);
    let conversation = armorm_model::Conversation::from_prompt_response("Hi".into(), "Hello".into());
    assert!(matches!(model.encode(&conversation), Err(ModelError::PairwiseModel)));
    // A classification checkpoint is no pairwise model, whatever the flag says.
    let err = load(&Fixtures::repo().model("tiny-bt"), true).err().expect("refused").to_string();
    assert!(err.contains("causal LM"), "{err}");
}
