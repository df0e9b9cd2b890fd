//! Every decoder family against transformers' own classes (tests/fixtures/families/generate.py,
//! committed outputs): Llama-3.1 with biases and llama3 rope scaling, Qwen2 (q/k/v biases, two
//! labels), Qwen3 (q/k norms, head_dim unlike hidden / heads, template in chat_template.jinja),
//! Gemma-2 (sliding windows shorter than the inputs, soft-capped attention, sandwich norms, GeGLU),
//! an MLP score head, Starling-RM's own layout; and the checkpoints that must be refused at load.
//!
//! `ARMORM_CPU_KERNELS` caps the kernels a process uses, so [`every_kernel_path_this_cpu_runs`]
//! reruns the bf16 checks under each cap, as the batch-invariance test does.

mod common;

use armorm_model::{ComputeDType, DeviceChoice, Encoded, LoadOptions, ModelError, ModelSource, RewardModel};
use common::{conversations, expected, fixtures};
use serde_json::Value;

const FAMILIES: [&str; 6] =
    ["tiny-llama31", "tiny-qwen2", "tiny-qwen3", "tiny-gemma2", "tiny-mlp-head", "tiny-starling"];

fn load(name: &str, dtype: Option<ComputeDType>) -> Result<RewardModel, ModelError> {
    let source = ModelSource::Local(fixtures().join("models").join(name));
    RewardModel::load(&source, &LoadOptions { device: DeviceChoice::Cpu, dtype, ..Default::default() })
}

/// The code a conversation is refused with, as the CLI and the server name it.
fn code(e: &ModelError) -> &'static str {
    match e {
        ModelError::Conversation(c) => c.code(),
        // A template that raises (Gemma's on a system turn) refuses the conversation.
        ModelError::Template(_) => "invalid_request",
        other => panic!("{other}"),
    }
}

/// Encodes every conversation, checking text, ids and refusals against the reference; returns the
/// scorable ones with their reference case.
fn encode_all<'a>(model: &RewardModel, cases: &'a [Value]) -> Vec<(Encoded, &'a Value)> {
    let mut out = Vec::new();
    for (conv, case) in conversations().iter().zip(cases) {
        let idx = &case["index"];
        let encoded = conv.as_ref().map_err(String::clone).and_then(|c| {
            let text = model.encoder().render(c).map_err(|e| code(&e).to_string())?;
            assert_eq!(Some(text.as_str()), case["text"].as_str(), "case {idx} text");
            model.encode(c).map_err(|e| code(&e).to_string())
        });
        match encoded {
            Err(got) => assert_eq!(case["error"].as_str(), Some(got.as_str()), "case {idx}"),
            Ok(enc) => {
                let ids: Vec<u32> =
                    case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
                assert_eq!(enc.ids(), ids.as_slice(), "case {idx} ids");
                out.push((enc, case));
            }
        }
    }
    out
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// Scores every conversation in one batch and checks score and logits within `bound(reference)`;
/// returns the largest error.
fn check(name: &str, dtype: ComputeDType, key: &str, bound: impl Fn(&[f32]) -> f32) -> f32 {
    let exp = expected(name);
    let Some(cases) = exp[key].as_array() else { return 0.0 };
    let model = load(name, Some(dtype)).unwrap();
    assert_eq!(model.architecture().class, exp["architecture"].as_str().unwrap(), "{name}");
    let encoded = encode_all(&model, cases);
    let batch: Vec<&Encoded> = encoded.iter().map(|(e, _)| e).collect();
    let outputs = model.forward(&batch).unwrap();
    let mut worst = 0.0f32;
    for ((_, case), out) in encoded.iter().zip(&outputs) {
        let idx = &case["index"];
        assert_eq!(out.num_tokens as u64, case["num_tokens"].as_u64().unwrap(), "{name} case {idx}");
        let (got, want) = match case.get("logits") {
            Some(logits) => (out.logits.clone().expect("every logit"), floats(logits)),
            None => {
                assert!(out.logits.is_none(), "{name} case {idx}: one label, no logits");
                (vec![out.score], vec![case["score"].as_f64().unwrap() as f32])
            }
        };
        assert_eq!(out.score, got[0], "{name} case {idx}: the score is the first logit");
        let tol = bound(&want);
        for (g, w) in got.iter().zip(&want) {
            let err = (g - w).abs();
            worst = worst.max(err);
            assert!(err <= tol, "{name} {key} case {idx}: got {g}, transformers {w}, |err| {err} > {tol}");
        }
    }
    // Conversations answering one prompt computed it once, and each alone (nothing shared) gets
    // the bits it got in the batch (sliding windows and soft caps included).
    let total: usize = batch.iter().map(|e| e.len()).sum();
    assert!(model.computed_tokens(&batch) < total, "{name}: the batch's shared prompts were computed once");
    for (enc, out) in batch.iter().zip(&outputs) {
        assert_eq!(&model.forward(&[enc]).unwrap()[0], out, "{name} {key}: alone vs in a batch");
    }
    worst
}

#[test]
fn every_family_matches_transformers_in_f32() {
    for name in FAMILIES {
        let worst = check(name, ComputeDType::F32, "f32", |_| 1e-4);
        eprintln!("{name} f32: max |err| {worst:.2e}");
    }
}

/// bf16 rounds every activation to 8 bits of mantissa, as transformers' bf16 forward does, in
/// another order; held to the bound the Llama parity tests use: 5% of the largest magnitude in the
/// vector, at least 0.05.
#[test]
fn every_family_matches_transformers_in_bf16() {
    eprintln!(
        "kernels: cap {:?}, AMX {}",
        armorm_model::kernels::cpu_kernels::cap(),
        armorm_model::kernels::tiles::available()
    );
    for name in FAMILIES {
        let worst = check(name, ComputeDType::Bf16, "bf16", |r| 0.05 * r.iter().fold(1.0f32, |m, x| m.max(x.abs())));
        eprintln!("{name} bf16: max |err| {worst:.2e}");
    }
}

#[test]
fn every_kernel_path_this_cpu_runs() {
    common::rerun_under_every_cap("every_family_matches_transformers_in_bf16");
}

#[test]
fn the_default_dtype_is_the_checkpoints_own() {
    for name in FAMILIES {
        assert_eq!(load(name, None).unwrap().dtype(), ComputeDType::F32, "{name} is stored in f32");
    }
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
    let source = ModelSource::Local(fixtures().join("models/refused-mislabelled"));
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
    for case in expected("tiny-starling")["extra"].as_array().unwrap() {
        let raw: Vec<armorm_model::RawMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let encoded = model.encode(&armorm_model::Conversation::new(raw).unwrap()).unwrap();
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(encoded.ids(), ids.as_slice());
        assert_eq!(encoded.last_pos(), ids.iter().position(|&id| id == 0).unwrap() - 1);
        let got = model.forward(&[&encoded]).unwrap()[0].score;
        let want = case["score"].as_f64().unwrap() as f32;
        assert!((got - want).abs() <= 1e-4, "got {got}, its class {want}");
    }
}
