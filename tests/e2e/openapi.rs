use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::common::{scorable, TestServer};

fn spec() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

#[test]
fn router_routes_and_spec_paths_are_the_same_set() {
    let spec = spec();
    let documented: BTreeSet<String> = spec["paths"].as_object().unwrap().keys().cloned().collect();
    let served: BTreeSet<String> = armorm_server::routes::paths().into_iter().map(String::from).collect();
    assert_eq!(documented, served);
    for route in armorm_server::routes::table() {
        let m = route.method.as_str().to_lowercase();
        assert!(spec["paths"][route.path].get(&m).is_some(), "{} {} is not documented", route.method, route.path);
    }
}

/// The schema the spec gives for `path`/`method`/`status` as JSON, with the spec's components
/// reachable for `$ref`s.
fn validator(spec: &Value, path: &str, method: &str, status: u16) -> jsonschema::Validator {
    let response = &spec["paths"][path][method]["responses"][status.to_string()];
    let response = match response.get("$ref").and_then(|r| r.as_str()) {
        Some(r) => &spec["components"]["responses"][r.rsplit('/').next().unwrap()],
        None => response,
    };
    let mut schema = response["content"]["application/json"]["schema"].clone();
    assert!(!schema.is_null(), "no JSON schema for {method} {path} {status}");
    schema["components"] = spec["components"].clone();
    jsonschema::validator_for(&schema).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_responses_validate_against_the_spec() {
    let spec = spec();
    let server = TestServer::start("tiny-f32", &["--max-input-tokens", "64"]).await;
    let (one, _) = scorable("tiny-f32").remove(0);
    let mut with_options = one.clone();
    with_options["top_k"] = json!(3);
    with_options["weights"] = json!({"helpsteer-helpfulness": 1.0});
    let batch = json!({"conversations": [one["messages"], one["messages"]]});
    let bad = json!({"messages": []});
    let long = json!({"prompt": "word ".repeat(200), "response": "ok"});
    for (body, status) in [(one, 200), (with_options, 200), (batch, 200), (bad, 422), (long, 413)] {
        let (got, response) = server.post("/score", &body).await;
        assert_eq!(got, status, "{response}");
        let v = validator(&spec, "/score", "post", status);
        assert!(
            v.is_valid(&response),
            "{response} does not match the spec: {:?}",
            v.iter_errors(&response).map(|e| e.to_string()).collect::<Vec<_>>()
        );
    }
    let text = crate::common::cases("tiny-f32")[0].1["text"].as_str().unwrap().to_string();
    let prompt = json!([{"role": "user", "content": "Hi"}]);
    let protocol_bodies = [
        ("/rank", json!({"messages": prompt, "responses": ["a", "b"], "top_k": 1})),
        ("/compare", json!({"messages": prompt, "chosen": "a", "rejected": "b"})),
        ("/get_reward", json!({"query": [text]})),
        ("/classify", json!({"input": text})),
        ("/classify", json!({"text": [text]})),
        ("/v1/classify", json!({"input": [text]})),
        ("/pooling", json!({"input": text})),
        ("/v1/embeddings", json!({"input": text})),
        ("/reward", json!({"prompt": "Hi", "response": "Hello"})),
    ];
    for (path, body) in protocol_bodies {
        let (status, response) = server.post(path, &body).await;
        assert_eq!(status, 200, "{path}: {response}");
        let v = validator(&spec, path, "post", 200);
        assert!(v.is_valid(&response), "{path}: {response} does not match the spec");
    }
    for (path, status) in [("/info", 200), ("/health", 200)] {
        let (got, text) = server.get(path).await;
        assert_eq!(got, status);
        let body: Value = serde_json::from_str(&text).unwrap();
        let v = validator(&spec, path, "get", status);
        assert!(v.is_valid(&body), "{path}: {body}");
    }
    let (status, served) = server.get("/openapi.yaml").await;
    assert_eq!(status, 200);
    assert_eq!(serde_yaml_ng::from_str::<Value>(&served).unwrap(), spec);
    server.stop().await;

    // A pairwise preference model's own answers, and its refusal of single-response routes.
    let server = TestServer::start("tiny-pairwise", &[]).await;
    let pairwise_bodies = [
        ("/compare", json!({"messages": prompt, "chosen": "a", "rejected": "b"}), 200),
        ("/rank", json!({"messages": prompt, "responses": ["a", "b", "c"]}), 200),
        ("/score", json!({"prompt": "Hi", "response": "a"}), 422),
    ];
    for (path, body, status) in pairwise_bodies {
        let (got, response) = server.post(path, &body).await;
        assert_eq!(got, status, "{path}: {response}");
        let v = validator(&spec, path, "post", status);
        assert!(v.is_valid(&response), "{path}: {response} does not match the spec");
    }
    let (_, info) = server.get("/info").await;
    let info: Value = serde_json::from_str(&info).unwrap();
    assert!(validator(&spec, "/info", "get", 200).is_valid(&info), "{info}");
    server.stop().await;
}
