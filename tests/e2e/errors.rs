use serde_json::{json, Value};

use crate::common::{cases, TestServer};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("not a JSON error: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_with_a_fitting_status() {
    let server = TestServer::start("tiny-f32", &["--max-body-bytes", "4096", "--max-input-tokens", "64"]).await;
    let raw = |body: &'static str| {
        let server = &server;
        async move {
            let resp = server
                .client
                .post(server.url("/score"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = raw("{\"messages\": [").await;
    assert_eq!((status, code(&body)), (400, "malformed_json"));
    let (status, body) = raw("{\"messages\": 7}").await;
    assert_eq!((status, code(&body)), (422, "invalid_request"));

    let huge = json!({"prompt": "x".repeat(5000), "response": "y"});
    let (status, body) = server.post("/score", &huge).await;
    assert_eq!((status, code(&body)), (413, "payload_too_large"));

    let long = json!({"prompt": "Explain gradient descent in two sentences. ".repeat(20), "response": "Paris."});
    let (status, body) = server.post("/score", &long).await;
    assert_eq!((status, code(&body)), (413, "input_too_long"));
    let mut truncated = long.clone();
    truncated["truncate"] = json!(true);
    let (status, body) = server.post("/score", &truncated).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["truncated"], true);
    assert!(body["num_tokens"].as_u64().unwrap() <= 64);

    // The fixture's rejected conversations, with the codes the reference expects.
    for (conv, case) in cases("tiny-f32").into_iter().filter(|(_, c)| c.get("error").is_some()) {
        let (status, body) = server.post("/score", &conv).await;
        assert_eq!((status, code(&body)), (422, case["error"].as_str().unwrap()), "{conv}");
    }
    let (status, body) = server.post("/score", &json!({"prompt": "only a prompt"})).await;
    assert_eq!((status, code(&body)), (422, "invalid_request"));
    let (status, body) = server.post("/score", &json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "weights": {"nope": 1}})).await;
    assert_eq!((status, code(&body)), (422, "invalid_request"));
    let batch =
        json!({"conversations": [[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], []]});
    let (status, body) = server.post("/score", &batch).await;
    assert_eq!((status, code(&body)), (422, "empty_conversation"));
    assert!(body["error"]["message"].as_str().unwrap().starts_with("conversations[1]"), "{body}");

    // A misspelled field is refused by name, with the field it probably meant, on every native route.
    let conversation = json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]);
    for (route, body, meant) in [
        ("/score", json!({"prompt": "a", "response": "b", "topk": 3}), "top_k"),
        ("/score", json!({"prompt": "a", "respons": "b"}), "response"),
        ("/score", json!({"messages": conversation, "wieghts": {}}), "weights"),
        ("/rank", json!({"conversations": [conversation], "truncated": true}), "truncate"),
        (
            "/compare",
            json!({"messages": [{"role": "user", "content": "a"}], "chosen": "x", "rejectd": "y"}),
            "rejected",
        ),
    ] {
        let (status, err) = server.post(route, &body).await;
        assert_eq!((status, code(&err)), (422, "invalid_request"), "{route} {body}: {err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("did you mean \"{meant}\"")), "{route}: {message}");
    }

    let resp = server.client.get(server.url("/nope")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(code(&resp.json().await.unwrap()), "not_found");
    // The root, where a person lands first, says where to go.
    let resp = server.client.get(server.url("/")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let body: Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("/ui") && message.contains("/info"), "{message}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_guards_the_api_but_not_health_and_metrics() {
    let server = TestServer::start("tiny-f32", &["--api-key", "s3cret"]).await;
    let body = json!({"prompt": "What is 2+2?", "response": "4"});
    let (status, err) = server.post("/score", &body).await;
    assert_eq!((status, code(&err)), (401, "unauthorized"));
    let wrong = server.client.post(server.url("/score")).bearer_auth("s3creT").json(&body).send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let ok = server.client.post(server.url("/score")).bearer_auth("s3cret").json(&body).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let ok = server.client.get(server.url("/info")).header("x-api-key", "s3cret").send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(server.get("/health").await.0, 200);
    assert_eq!(server.get("/metrics").await.0, 200);
    server.stop().await;

    let strict = TestServer::start("tiny-f32", &["--api-key", "s3cret", "--auth-health-and-metrics"]).await;
    assert_eq!(strict.get("/health").await.0, 401);
    assert_eq!(strict.get("/metrics").await.0, 401);
    strict.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_gets_429_with_retry_after_and_nothing_accepted_is_lost() {
    let server = TestServer::start(
        "tiny-f32",
        // One conversation per forward pass and one waiting: any two arrivals while a pass runs
        // overflow, which 64 concurrent clients always produce.
        &["--max-queue-requests", "1", "--max-batch-size", "1"],
    )
    .await;
    let body = json!({"prompt": "What is 2+2?", "response": "4"});
    let requests = (0..64).map(|_| {
        let server = &server;
        let body = body.clone();
        async move {
            let resp = server.client.post(server.url("/score")).json(&body).send().await.unwrap();
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (status, retry_after, resp.json::<Value>().await.unwrap())
        }
    });
    let responses = futures::future::join_all(requests).await;
    let (mut ok, mut refused) = (0, 0);
    for (status, retry_after, body) in &responses {
        match status {
            200 => {
                ok += 1;
                assert!(body["score"].is_number());
            }
            429 => {
                refused += 1;
                assert_eq!(code(body), "overloaded");
                assert!(retry_after.as_deref().unwrap().parse::<u64>().unwrap() >= 1);
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(refused > 0 && ok > 0, "{ok} ok, {refused} refused");
    let (_, metrics) = server.get("/metrics").await;
    assert!(metrics.contains(&format!("armorm_requests_total{{route=\"/score\",status=\"200\"}} {ok}")));
    assert!(metrics.contains(&format!("armorm_errors_total{{code=\"overloaded\"}} {refused}")));
    server.stop().await;
}
