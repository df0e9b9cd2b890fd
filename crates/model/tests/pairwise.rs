//! A pairwise preference model (the architecture of RLHFlow/pair-preference-model-LLaMA3-8B)
//! against reward-bench's `SlicPairPMPipeline` run on transformers' LlamaForCausalLM
//! (tests/fixtures/pairwise/generate.py, committed outputs): each order's token ids and "A"/"B"
//! logits, and the averaged preference; how it is recognised, and what is refused.

mod common;

use armorm_model::preference::Verdict;
use armorm_model::text::tokenize::share_common_prefix;
use armorm_model::{
    DeviceChoice, EncodeLimits, Encoded, HeadKind, LoadOptions, ModelError, ModelSource, Prompt, RawMessage,
    RewardModel,
};
use common::{expected, fixtures};
use serde_json::Value;

fn load(dir: &std::path::Path, pairwise: bool) -> Result<RewardModel, ModelError> {
    let options = LoadOptions { device: DeviceChoice::Cpu, pairwise, ..Default::default() };
    RewardModel::load(&ModelSource::Local(dir.to_path_buf()), &options)
}

fn messages(v: &Value) -> Vec<RawMessage> {
    serde_json::from_value(v.clone()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn comparisons_match_the_reward_bench_pipeline() {
    let model = load(&fixtures().join("models/tiny-pairwise"), false).unwrap();
    assert_eq!(model.head_kind(), HeadKind::Pairwise);
    let exp = expected("tiny-pairwise");
    let limits = EncodeLimits::exact(model.max_positions());
    // Every comparison's two orders in one batch, sharing what they begin with, as the server runs them.
    let mut batch: Vec<Encoded> = Vec::new();
    for case in exp["comparisons"].as_array().unwrap() {
        let prompt = Prompt::new(messages(&case["prompt"])).unwrap();
        let (chosen, rejected) = (case["chosen"].as_str().unwrap(), case["rejected"].as_str().unwrap());
        let orders = model.encoder().encode_comparison(&prompt, (chosen, rejected), &limits).unwrap();
        for (order, key) in orders.into_iter().zip(["chosen_first", "chosen_second"]) {
            assert_eq!(order.encoded.ids(), ids(&case[key]["ids"]).as_slice(), "{key} of {chosen:?}");
            batch.push(order.encoded);
        }
    }
    share_common_prefix(&mut batch);
    assert!(model.computed_tokens(&batch.iter().collect::<Vec<_>>()) < batch.iter().map(Encoded::len).sum());
    let outputs = model.forward(&batch.iter().collect::<Vec<_>>()).unwrap();
    for (case, orders) in exp["comparisons"].as_array().unwrap().iter().zip(outputs.chunks(2)) {
        let logits: Vec<[f32; 2]> = orders.iter().map(|o| o.logits.clone().unwrap().try_into().unwrap()).collect();
        for (got, key) in logits.iter().zip(["chosen_first", "chosen_second"]) {
            for (g, name) in got.iter().zip(["logit_a", "logit_b"]) {
                let want = case[key][name].as_f64().unwrap();
                assert!((f64::from(*g) - want).abs() < 1e-4, "{key} {name}: {g} vs {want}");
            }
        }
        let verdict = Verdict::new(logits[0], logits[1]);
        let want = case["preference"].as_f64().unwrap();
        assert!((verdict.preference - want).abs() < 1e-4, "preference {} vs {want}", verdict.preference);
        assert!((verdict.chosen_first - case["chosen_first"]["p_first"].as_f64().unwrap()).abs() < 1e-4);
    }
}

#[test]
fn a_causal_lm_is_pairwise_only_when_marked_and_scores_nothing_alone() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("models/tiny-pairwise");
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
    let err = load(&fixtures().join("models/tiny-bt"), true).err().expect("refused").to_string();
    assert!(err.contains("causal LM"), "{err}");
}
