use serde_json::{json, Value};

use crate::common::{assert_matches, floats, scorable, TestServer, FAMILIES};

const TOL: f64 = 1e-4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_requests_match_the_reference() {
    // The f32 checkpoints by default (f32, their own dtype, on every CPU); the bf16 one asked for f32.
    for (model, flags) in [("tiny-f32", &[][..]), ("tiny-sharded", &["--dtype", "f32"][..]), ("tiny-bt", &[][..])] {
        let server = TestServer::start(model, flags).await;
        for (body, case) in scorable(model) {
            let (status, result) = server.post("/score", &body).await;
            assert_eq!(status, 200, "{model} {result}");
            assert_matches(&result, &case, TOL);
            assert_eq!(result["truncated"], false);
        }
        server.stop().await;
    }
}

/// Every family over HTTP: one batch of every conversation each fixture scores, against
/// transformers' numbers, and `/info` naming the architecture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_is_served_with_the_reference_numbers() {
    for model in FAMILIES {
        let server = TestServer::start(model, &[]).await;
        let (_, info) = server.get("/info").await;
        let info: Value = serde_json::from_str(&info).unwrap();
        let expected = crate::common::expected(model);
        assert_eq!(info["architecture"], expected["architecture"], "{info}");
        let cases = scorable(model);
        let conversations: Vec<Value> = cases
            .iter()
            .map(|(b, _)| match b.get("messages") {
                Some(m) => m.clone(),
                None => {
                    json!([{"role": "user", "content": b["prompt"]}, {"role": "assistant", "content": b["response"]}])
                }
            })
            .collect();
        let (status, body) = server.post("/score", &json!({ "conversations": conversations })).await;
        assert_eq!(status, 200, "{model} {body}");
        for (result, (_, case)) in body["results"].as_array().unwrap().iter().zip(&cases) {
            assert_matches(result, case, TOL);
        }
        // The conversations answering one prompt computed it once.
        let (_, metrics) = server.get("/metrics").await;
        let shared = metrics.lines().find_map(|l| l.strip_prefix("armorm_shared_prompt_tokens_total ")).unwrap();
        assert!(shared.parse::<u64>().unwrap() > 0, "{model}: no prompt was shared");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_requests_keep_input_order() {
    let server = TestServer::start("tiny-f32", &[]).await;
    let cases: Vec<(Value, Value)> =
        scorable("tiny-f32").into_iter().filter(|(b, _)| b.get("messages").is_some()).rev().collect();
    let conversations: Vec<&Value> = cases.iter().map(|(b, _)| &b["messages"]).collect();
    let (status, body) = server.post("/score", &json!({ "conversations": conversations })).await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), cases.len());
    for (result, (_, case)) in results.iter().zip(&cases) {
        assert_matches(result, case, TOL);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_clients_each_get_their_own_numbers() {
    let server = TestServer::start("tiny-f32", &["--max-batch-wait-ms", "10"]).await;
    let cases = scorable("tiny-f32");
    let requests = (0..96).map(|i| {
        let (body, case) = cases[(i * 7) % cases.len()].clone();
        let server = &server;
        async move {
            let (status, result) = server.post("/score", &body).await;
            assert_eq!(status, 200, "{result}");
            assert_matches(&result, &case, TOL);
        }
    });
    futures::future::join_all(requests).await;
    // Batching happened: fewer forward passes than requests.
    let (_, metrics) = server.get("/metrics").await;
    let batches = metric(&metrics, "armorm_batch_size_count");
    assert!(batches > 0.0 && batches < 96.0, "{batches} batches for 96 requests");
    server.stop().await;
}

pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_k_and_weights_follow_the_reference_rewards() {
    let server = TestServer::start("tiny-f32", &[]).await;
    let (body, case) = scorable("tiny-f32").remove(3);
    let (_, info) = server.get("/info").await;
    let names: Vec<String> = serde_json::from_str::<Value>(&info).unwrap()["objectives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 19);
    assert_eq!(names[4], "helpsteer-verbosity");
    let mut req = body.clone();
    req["top_k"] = json!(4);
    req["weights"] = json!({"helpsteer-helpfulness": 1.0, "helpsteer-verbosity": -0.5});
    let (status, result) = server.post("/score", &req).await;
    assert_eq!(status, 200, "{result}");
    let (rewards, coefficients) = (floats(&case["rewards"]), floats(&case["coefficients"]));
    let custom = rewards[0] - 0.5 * rewards[4];
    assert!((result["custom_score"].as_f64().unwrap() - custom).abs() < TOL);
    let mut order: Vec<usize> = (0..coefficients.len()).collect();
    order.sort_by(|&a, &b| coefficients[b].abs().total_cmp(&coefficients[a].abs()));
    let top = result["top_objectives"].as_array().unwrap();
    assert_eq!(top.len(), 4);
    for (t, &i) in top.iter().zip(&order) {
        assert_eq!(t["name"], names[i]);
        assert!((t["contribution"].as_f64().unwrap() - coefficients[i] * rewards[i]).abs() < TOL);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bradley_terry_models_return_only_a_score() {
    let server = TestServer::start("tiny-bt", &[]).await;
    let (body, case) = scorable("tiny-bt").remove(0);
    let (status, result) = server.post("/score", &body).await;
    assert_eq!(status, 200);
    assert_matches(&result, &case, TOL);
    let mut req = body;
    req["top_k"] = json!(2);
    let (status, err) = server.post("/score", &req).await;
    assert_eq!((status, err["error"]["code"].as_str()), (422, Some("invalid_request")));
    let info: Value = serde_json::from_str(&server.get("/info").await.1).unwrap();
    assert_eq!(info["head"], "bradley_terry");
    server.stop().await;
}

/// Over HTTP, with batches cut small by `--max-batch-tokens` / `--max-batch-size` and requests
/// merged by the queue: each conversation's numbers are the same JSON (so the same f32 bits) in
/// batch requests, at random positions, beside random neighbours, some answering its own prompt,
/// as when it is sent alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_gets_the_same_bits_alone_and_in_any_batch() {
    let prompts = ["What is 2+2?", "Name a prime.", &"Explain rust ownership. ".repeat(4), "Hi"];
    let responses = ["4", "Seven.", "It is four, of course.", &"Ownership moves values. ".repeat(3), "Hello!"];
    let conversation = |p: usize, r: usize| json!([{"role": "user", "content": prompts[p]}, {"role": "assistant", "content": responses[r]}]);
    let all: Vec<Value> = (0..prompts.len())
        .flat_map(|p| (0..responses.len()).map(move |r| (p, r)))
        .map(|(p, r)| conversation(p, r))
        .collect();
    let numbers = |result: &Value| ["score", "rewards", "gating", "coefficients"].map(|k| result[k].clone()).to_vec();
    for (dtype, tokens, size) in [("f32", "400", "5"), ("f32", "2048", "64"), ("bf16", "400", "3")] {
        let flags =
            ["--dtype", dtype, "--max-batch-tokens", tokens, "--max-input-tokens", "400", "--max-batch-size", size];
        let server = TestServer::start("tiny-f32", &flags).await;
        let mut alone = Vec::new();
        for c in &all {
            let (status, result) = server.post("/score", &json!({ "messages": c })).await;
            assert_eq!(status, 200, "{result}");
            alone.push(numbers(&result));
        }
        let mut state = 0x1234_5678u64;
        let mut below = move |n: usize| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % n as u64) as usize
        };
        let batches: Vec<Vec<usize>> = (0..12).map(|_| (0..1 + below(9)).map(|_| below(all.len())).collect()).collect();
        let requests = batches.iter().map(|picks| {
            let server = &server;
            let body = json!({ "conversations": picks.iter().map(|&i| &all[i]).collect::<Vec<_>>() });
            async move { (picks, server.post("/score", &body).await) }
        });
        for (picks, (status, body)) in futures::future::join_all(requests).await {
            assert_eq!(status, 200, "{body}");
            for (position, (&i, result)) in picks.iter().zip(body["results"].as_array().unwrap()).enumerate() {
                assert_eq!(numbers(result), alone[i], "{dtype}: conversation {i} at position {position} of {picks:?}");
            }
        }
        let (_, info) = server.get("/info").await;
        let info: Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["batch_invariant"], true, "{info}");
        server.stop().await;
    }
}
