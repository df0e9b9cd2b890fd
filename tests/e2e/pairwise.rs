//! A pairwise preference model over HTTP (tests/fixtures/pairwise/generate.py: reward-bench's
//! `SlicPairPMPipeline` on transformers' LlamaForCausalLM): `/compare` gives one preference from
//! both orders, `/rank` compares every pair, past `--max-rank-pairwise` responses it is refused
//! with 413, and every route that scores one response at a time answers 422 `pairwise_model`.

use serde_json::{json, Value};

use crate::common::{expected, floats, TestServer};

const TOL: f64 = 1e-4;

fn close(got: &Value, want: &Value, what: &str) {
    let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
    assert!((g - w).abs() <= TOL, "{what}: {g} vs reference {w}");
}

#[tokio::test]
async fn pairwise_model_compares_ranks_and_refuses_single_responses() {
    let server = TestServer::start("tiny-pairwise", &["--max-rank-pairwise", "4"]).await;
    let exp = expected("tiny-pairwise");
    let (_, info) = server.get("/info").await;
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!((info["head"].as_str(), info["architecture"].as_str()), (Some("pairwise"), Some("LlamaForCausalLM")));
    assert_eq!(info["limits"]["max_rank_pairwise"], 4);

    for case in exp["comparisons"].as_array().unwrap() {
        let body = json!({"messages": case["prompt"], "chosen": case["chosen"], "rejected": case["rejected"]});
        let (status, out) = server.post("/compare", &body).await;
        assert_eq!(status, 200, "{out}");
        close(&out["preference"], &case["preference"], "preference");
        close(&out["orders"]["chosen_first"], &case["chosen_first"]["p_first"], "P(chosen) as A");
        let p = case["preference"].as_f64().unwrap();
        close(&out["margin"], &json!((p / (1.0 - p)).ln()), "margin");
        assert!(out.get("chosen").is_none(), "no per-response score: {out}");
    }

    let rank = &exp["rank"];
    let body = json!({"messages": rank["prompt"], "responses": rank["responses"]});
    let (status, out) = server.post("/rank", &body).await;
    assert_eq!(status, 200, "{out}");
    let n = rank["responses"].as_array().unwrap().len();
    assert_eq!(out["comparisons"], n * (n - 1));
    for (i, row) in rank["preferences"].as_array().unwrap().iter().enumerate() {
        for (j, want) in row.as_array().unwrap().iter().enumerate() {
            close(&out["preferences"][i][j], want, &format!("P({i} beats {j})"));
        }
        let mean = (floats(row).iter().sum::<f64>() - 0.5) / (n - 1) as f64;
        close(&out["scores"][i], &json!(mean), "mean preference");
    }
    let scores = floats(&out["scores"]);
    let best = out["best"].as_u64().unwrap() as usize;
    assert!(scores.iter().all(|&s| s <= scores[best]));
    // The conversations form says the same.
    let conversations: Vec<Value> = rank["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut c = rank["prompt"].as_array().unwrap().clone();
            c.push(json!({"role": "assistant", "content": r}));
            Value::Array(c)
        })
        .collect();
    let (_, same) = server.post("/rank", &json!({"conversations": conversations})).await;
    assert_eq!(same["preferences"], out["preferences"]);

    let five = json!({"messages": rank["prompt"], "responses": ["a", "b", "c", "d", "e"]});
    let (status, err) = server.post("/rank", &five).await;
    assert_eq!((status, err["error"]["code"].as_str()), (413, Some("payload_too_large")), "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("N(N-1) = 20"), "{err}");
    let truncated = json!({"messages": rank["prompt"], "responses": ["a", "b"], "truncate": true});
    assert_eq!(server.post("/rank", &truncated).await.0, 422);

    let turn = json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]);
    let text = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>";
    for (route, body) in [
        ("/score", json!({"messages": turn})),
        ("/get_reward", json!({"query": [text]})),
        ("/v1/classify", json!({"messages": turn})),
        ("/reward", json!({"prompt": "Hi", "response": "Hello"})),
    ] {
        let (status, err) = server.post(route, &body).await;
        assert_eq!((status, err["error"]["code"].as_str()), (422, Some("pairwise_model")), "{route}: {err}");
        assert!(err["error"]["message"].as_str().unwrap().contains("/compare"), "{route}: {err}");
    }
    server.stop().await;
}
