//! Each compatibility protocol with the body shapes its clients send, checked against the
//! reference numbers (not just the shape).

use serde_json::{json, Value};

use crate::common::{assert_matches, cases, floats, TestServer};

const TOL: f64 = 1e-4;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Case 0 ("Paris ...") and case 1 ("... Lyon ...") answer the same prompt.
fn paris_and_lyon() -> (Value, Value) {
    let c = cases("tiny-f32");
    (c[0].1.clone(), c[1].1.clone())
}

fn score(case: &Value) -> f64 {
    case["score"].as_f64().unwrap()
}

fn close(got: &Value, want: f64) {
    let got = got.as_f64().unwrap_or_else(|| panic!("not a number: {got}"));
    assert!((got - want).abs() <= TOL, "got {got}, reference {want}");
}

const PROMPT: &str = "What is the capital of France?";
const PARIS: &str = "Paris is the capital of France.";
const LYON: &str = "I think it might be Lyon, or maybe Rome.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rank_and_compare_equal_per_conversation_scores() {
    let server = TestServer::start("tiny-f32", &[]).await;
    let (paris, lyon) = paris_and_lyon();
    let prompt = json!([{"role": "user", "content": PROMPT}]);
    let (status, ranked) =
        server.post("/rank", &json!({"messages": prompt, "responses": [LYON, PARIS, LYON], "top_k": 2})).await;
    assert_eq!(status, 200, "{ranked}");
    let results = ranked["results"].as_array().unwrap();
    assert_matches(&results[0], &lyon, TOL);
    assert_matches(&results[1], &paris, TOL);
    assert_matches(&results[2], &lyon, TOL);
    assert_eq!(results[0]["top_objectives"].as_array().unwrap().len(), 2);
    // The two identical Lyons tie and keep their input order, whichever side of Paris they land.
    let (ranking, best, worst) =
        if score(&paris) > score(&lyon) { (json!([1, 0, 2]), 1, 2) } else { (json!([0, 2, 1]), 0, 1) };
    assert_eq!(ranked["ranking"], ranking);
    assert_eq!((ranked["best"].as_u64(), ranked["worst"].as_u64()), (Some(best), Some(worst)));
    close(&ranked["margin"], (score(&paris) - score(&lyon)).abs());

    let (status, cmp) = server.post("/compare", &json!({"messages": prompt, "chosen": PARIS, "rejected": LYON})).await;
    assert_eq!(status, 200, "{cmp}");
    assert_matches(&cmp["chosen"], &paris, TOL);
    assert_matches(&cmp["rejected"], &lyon, TOL);
    close(&cmp["preference"], sigmoid(score(&paris) - score(&lyon)));

    let (status, err) = server.post("/rank", &json!({"messages": prompt})).await;
    assert_eq!((status, err["error"]["code"].as_str()), (422, Some("invalid_request")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openrlhf_get_reward_handles_llama3_chatml_single_and_empty() {
    let server = TestServer::start("tiny-f32", &[]).await;
    let (paris, lyon) = paris_and_lyon();
    let llama3 = paris["text"].as_str().unwrap().to_string();
    // What a Llama-3 policy's decode looks like: BOS doubled by a careless client, EOS padding.
    let sloppy = format!("<|begin_of_text|>{}<|end_of_text|><|end_of_text|>", lyon["text"].as_str().unwrap());
    // The same conversation from a Qwen (ChatML) policy.
    let chatml = format!("<|im_start|>system\n<|im_end|>\n<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n{PARIS}<|im_end|>\n<|endoftext|>");
    let body = json!({"query": [llama3, sloppy, chatml], "prompts": ["p", "p", "p"], "labels": [null, null, null]});
    let (status, out) = server.post("/get_reward", &body).await;
    assert_eq!(status, 200, "{out}");
    let rewards = out["rewards"].as_array().unwrap();
    close(&rewards[0], score(&paris));
    close(&rewards[1], score(&lyon));
    // ChatML has an (empty) system turn here, so only the structure, not the number, matches case 0.
    assert!(rewards[2].is_number());
    // OpenRLHF's own reward server sends `scores == rewards` (its dynamic filtering reads scores).
    assert_eq!(out["scores"], out["rewards"]);
    let helpfulness = &out["extra_logs"]["helpsteer-helpfulness"];
    close(&helpfulness[0], floats(&paris["rewards"])[0]);
    assert_eq!(out["extra_logs"].as_object().unwrap().len(), 19);

    let qwen_no_system = format!("<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n{PARIS}<|im_end|>");
    let (status, single) = server.post("/get_reward", &json!({"query": [qwen_no_system]})).await;
    assert_eq!(status, 200);
    close(&single["rewards"][0], score(&paris));

    let (status, empty) = server.post("/get_reward", &json!({"query": [], "prompts": []})).await;
    assert_eq!(status, 200);
    assert_eq!(empty["rewards"], json!([]));
    assert_eq!(empty["scores"], json!([]));

    let (status, err) = server.post("/get_reward", &json!({"query": ["plain text, no chat markers"]})).await;
    assert_eq!(status, 422);
    assert!(err["error"]["message"].as_str().unwrap().contains("cannot parse"), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vllm_sglang_openai_and_slime_shapes_carry_the_reference_score() {
    let server = TestServer::start("tiny-f32", &[]).await;
    let (paris, lyon) = paris_and_lyon();
    let text = paris["text"].as_str().unwrap();
    let ids = paris["ids"].clone();

    // vLLM /classify and /v1/classify: verl reads data[-1].probs[-1].
    let (status, out) = server.post("/classify", &json!({"model": "armorm", "input": [lyon["text"], text]})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["object"], "list");
    assert_eq!(out["data"][1]["index"], 1);
    close(&out["data"][1]["probs"][0], sigmoid(score(&paris)));
    close(&out["data"][0]["probs"][0], sigmoid(score(&lyon)));
    assert_eq!(
        out["usage"]["prompt_tokens"].as_u64(),
        Some(paris["num_tokens"].as_u64().unwrap() + lyon["num_tokens"].as_u64().unwrap())
    );
    let (_, raw) = server.post("/v1/classify", &json!({"input": text, "use_activation": false})).await;
    close(&raw["data"][0]["probs"][0], score(&paris));
    let (_, msgs) = server
        .post("/v1/classify", &json!({"messages": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": PARIS}], "activation": false}))
        .await;
    close(&msgs["data"][0]["probs"][0], score(&paris));
    let (_, by_ids) = server.post("/v1/classify", &json!({"input": ids, "use_activation": false})).await;
    close(&by_ids["data"][0]["probs"][0], score(&paris));

    // SGLang /classify: same path, told apart by "text" / "input_ids".
    let (status, out) = server.post("/classify", &json!({"text": text})).await;
    assert_eq!(status, 200, "{out}");
    close(&out[0]["embedding"][0], score(&paris));
    let (_, out) = server.post("/classify", &json!({"input_ids": [ids, lyon["ids"]]})).await;
    close(&out[0]["embedding"][0], score(&paris));
    close(&out[1]["embedding"][0], score(&lyon));
    assert_eq!(out[0]["meta_info"]["prompt_tokens"], paris["num_tokens"]);

    // /pooling: [score, rewards..., gating...].
    let (_, out) = server.post("/pooling", &json!({"input": text})).await;
    let v = floats(&out["data"][0]["data"]);
    assert_eq!(v.len(), 1 + 19 + 19);
    assert!((v[0] - score(&paris)).abs() <= TOL);
    assert!((v[1] - floats(&paris["rewards"])[0]).abs() <= TOL);
    assert!((v[20] - floats(&paris["gating"])[0]).abs() <= TOL);

    // OpenAI /v1/embeddings: the score is the last element.
    let (_, out) = server.post("/v1/embeddings", &json!({"model": "armorm", "input": [text]})).await;
    let e = floats(&out["data"][0]["embedding"]);
    assert!((e[e.len() - 1] - score(&paris)).abs() <= TOL);
    assert_eq!(out["model"], "armorm");

    // slime /reward: plain prompt, or the policy's rendered prompt with its generation header.
    let (status, out) = server.post("/reward", &json!({"prompt": PROMPT, "response": PARIS, "label": "Paris"})).await;
    assert_eq!(status, 200, "{out}");
    close(&out["score"], score(&paris));
    close(&out["objectives"]["helpsteer-helpfulness"], floats(&paris["rewards"])[0]);
    let rendered = format!("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{PROMPT}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    let (_, out) = server.post("/reward", &json!({"prompt": rendered, "response": LYON})).await;
    close(&out["score"], score(&lyon));
    server.stop().await;
}
