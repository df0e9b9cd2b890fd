//! Every fixture checkpoint against its reference on this CPU (tests/fixtures/generate.py,
//! tests/fixtures/families/generate.py; committed outputs): ArmoRM and Llama classifiers, Llama-3.1
//! with biases and llama3 rope scaling, Qwen2 (q/k/v biases, two labels), Qwen3 (q/k norms, head_dim
//! unlike hidden / heads, template in chat_template.jinja), Gemma-2 (sliding windows shorter than
//! the inputs, soft-capped attention, sandwich norms, GeGLU), an MLP score head, Starling-RM's own
//! layout; f32 within 1e-4, bf16 within the bf16 bound, each conversation alone bit-identical to
//! its batch. [`every_kernel_path_this_cpu_runs`] reruns it under each `ARMORM_CPU_KERNELS` cap.

use armorm_conformance::caps;
use armorm_conformance::fixtures::Fixtures;
use armorm_conformance::golden::{self, Against};
use armorm_model::{
    ComputeDType, Conversation, DeviceChoice, EncodeLimits, Encoded, LoadOptions, RawMessage, RewardModel,
};

fn load(name: &str, dtype: Option<ComputeDType>) -> RewardModel {
    let options = LoadOptions { device: DeviceChoice::Cpu, dtype, ..Default::default() };
    golden::load(&Fixtures::repo(), name, &options).unwrap()
}

#[test]
fn every_fixture_matches_its_reference() {
    caps::print_kernels();
    let checked = golden::every(&Fixtures::repo(), DeviceChoice::Cpu).unwrap();
    assert!(checked.len() >= 15, "{} runs", checked.len());
    let failed: Vec<String> = checked
        .iter()
        .filter_map(|(run, result)| match result {
            Ok(c) => {
                eprintln!("{run}: max |err| {:.2e} over {} conversations", c.max_err, c.conversations);
                None
            }
            Err(e) => Some(format!("{run}: {e:#}")),
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn every_kernel_path_this_cpu_runs() {
    caps::rerun_under_every_cap("every_fixture_matches_its_reference");
}

#[test]
fn bf16_compute_stays_near_the_f32_reference() {
    let fx = Fixtures::repo();
    golden::check_on(&fx, "tiny-bf16", DeviceChoice::Cpu, Some(ComputeDType::Bf16), Against::BF16_NEAR_F32).unwrap();
}

/// With no `--dtype`, the f32 checkpoints compute in f32 and match the f32 reference on every CPU,
/// this one's bf16 kernels notwithstanding; the bf16 checkpoint computes in bf16 where a bf16
/// kernel runs (matching PyTorch's bf16 forward) and in f32 elsewhere.
#[test]
fn the_default_dtype_is_the_checkpoints_own() {
    let fx = Fixtures::repo();
    for name in fx.scored().unwrap().into_iter().filter(|n| n != "tiny-bf16") {
        assert_eq!(load(&name, None).dtype(), ComputeDType::F32, "{name} is stored in f32");
    }
    for name in ["tiny-f32", "tiny-bt"] {
        golden::check_on(&fx, name, DeviceChoice::Cpu, None, Against::F32).unwrap();
    }
    let bf16 = load("tiny-bf16", None);
    eprintln!("tiny-bf16 by default: {:?}", bf16.dtype_choice());
    let against = if armorm_model::kernels::plan::KernelPlan::cpu_computes_bf16() {
        assert_eq!(bf16.dtype(), ComputeDType::Bf16);
        Against::BF16
    } else {
        assert_eq!(bf16.dtype(), ComputeDType::F32);
        Against::F32
    };
    golden::check(&fx, "tiny-bf16", &bf16, against).unwrap();
}

#[test]
fn score_reports_each_conversation_separately() {
    let model = load("tiny-f32", Some(ComputeDType::F32));
    let good = Conversation::from_prompt_response("What is 2+2?".into(), "4".into());
    let bad = Conversation::new(vec![RawMessage { role: "assistant".into(), content: "alone".into() }]).unwrap();
    let results = model.score(&[good.clone(), bad, good]).unwrap();
    assert!(results[0].is_ok() && results[2].is_ok());
    assert_eq!(results[0].as_ref().unwrap(), results[2].as_ref().unwrap());
    let err = results[1].as_ref().unwrap_err().to_string();
    assert!(err.contains("gating pattern"), "{err}");
}

#[test]
fn out_of_vocabulary_ids_are_rejected_not_crashed_on() {
    let model = load("tiny-f32", Some(ComputeDType::F32));
    let err = model.encoder().encode_ids(vec![1, 2, 100_000]).unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
}

#[test]
fn truncation_keeps_the_answer_end_and_the_gating_anchor() {
    let model = load("tiny-f32", Some(ComputeDType::F32));
    let long_prompt = "Explain gradient descent in two sentences. ".repeat(40);
    let conv = Conversation::from_prompt_response(long_prompt, "Paris is the capital of France.".into());
    let full = model.encode(&conv).unwrap();
    let cut_to = |max_tokens| {
        let limits = EncodeLimits { max_tokens, truncate: true, content_special_tokens: Default::default() };
        model.encoder().encode_within(&conv, &limits).map(|e| (e.encoded, e.truncated))
    };
    let (cut, truncated) = cut_to(60).unwrap();
    assert!(truncated && full.len() > 60 && cut.len() <= 60, "{} -> {}", full.len(), cut.len());
    // The tail (gating pattern + answer + end of turn) is untouched, and the gate still anchors there.
    let tail = full.len() - full.gate_pos();
    assert_eq!(&cut.ids()[cut.len() - tail..], &full.ids()[full.gate_pos()..]);
    assert_eq!(cut.gate_pos(), cut.len() - tail);
    let (same, truncated) = cut_to(full.len()).unwrap();
    assert!(!truncated && same == full);
    let too_small = cut_to(5).unwrap_err();
    assert!(too_small.to_string().contains("limit is 5"), "{too_small}");
}

#[test]
fn shared_prompts_give_the_same_numbers_as_unshared_and_the_reference() {
    let fx = Fixtures::repo();
    let shared = load("tiny-f32", Some(ComputeDType::F32));
    let options = LoadOptions { dtype: Some(ComputeDType::F32), share_prefixes: false, ..Default::default() };
    let unshared = golden::load(&fx, "tiny-f32", &options).unwrap();
    let exp = fx.expected("tiny-f32").unwrap();
    let cases = exp["f32"].as_array().unwrap();
    let encoded = golden::encode_all(&fx, &shared, cases).unwrap();
    // Cases 0/1 and 15/16 answer the same prompts; repeat them so prompts are shared 2-4 ways, and
    // mix in conversations that share nothing.
    let picks = [0usize, 15, 1, 4, 16, 0, 1, 12];
    let batch: Vec<&Encoded> = picks.iter().map(|&i| &encoded[i].0).collect();
    assert!(shared.computed_tokens(&batch) < unshared.computed_tokens(&batch));
    let with = shared.forward(&batch).unwrap();
    let without = unshared.forward(&batch).unwrap();
    for ((a, b), &i) in with.iter().zip(&without).zip(&picks) {
        golden::compare(&format!("case {i}"), a, encoded[i].1, Against::F32.tol).unwrap();
        assert_eq!(a, b, "case {i}: shared and unshared differ");
    }
}

/// `--batch-invariant` computes each conversation alone (what a GPU needs for invariance): on every
/// head kind the outputs are the packed batch's bits here, where the kernels are invariant anyway,
/// and the references' within their bounds.
#[test]
fn computing_each_conversation_alone_gives_the_packed_bits() {
    let fx = Fixtures::repo();
    for name in ["tiny-f32", "tiny-qwen2", "tiny-gemma2"] {
        let packed = load(name, Some(ComputeDType::F32));
        let options = LoadOptions { dtype: Some(ComputeDType::F32), batch_invariant: true, ..Default::default() };
        let alone = golden::load(&fx, name, &options).unwrap();
        assert!(alone.batch_invariant());
        let checked = golden::check(&fx, name, &alone, Against::F32).unwrap();
        assert_eq!(checked.computed_tokens, checked.tokens, "{name}: nothing shared when each is alone");
        let exp = fx.expected(name).unwrap();
        let encoded = golden::encode_all(&fx, &alone, exp["f32"].as_array().unwrap()).unwrap();
        let batch: Vec<&Encoded> = encoded.iter().map(|(e, _)| e).collect();
        assert_eq!(alone.forward(&batch).unwrap(), packed.forward(&batch).unwrap(), "{name}");
    }
}
