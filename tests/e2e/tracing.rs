//! With --otlp-endpoint, request spans reach an OTLP/HTTP collector as children of the caller's
//! traceparent. Runs the real binary: the exporter is process-global.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use serde_json::json;

use crate::common::fixtures;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_are_exported_under_the_callers_trace() {
    let received: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let sink = received.clone();
    let collector = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move { sink.lock().unwrap().push(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let port = free_port().to_string();
    let mut server = Command::new(env!("CARGO_BIN_EXE_armorm"))
        .args(["serve", "--no-warmup", "--port", &port, "--model"])
        .arg(fixtures().join("models/tiny-f32"))
        .args(["--otlp-endpoint", &format!("http://{collector_addr}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if client.get(format!("{url}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "server did not start");
    let resp = client
        .post(format!("{url}/score"))
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .json(&json!({"prompt": "a", "response": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // SIGTERM: the server drains, and dropping the exporter flushes the buffered spans.
    Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    let status = tokio::task::spawn_blocking(move || server.wait()).await.unwrap().unwrap();
    assert!(status.success());
    let trace_id: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&TRACE_ID[2 * i..2 * i + 2], 16).unwrap()).collect();
    let bodies = received.lock().unwrap();
    assert!(
        bodies.iter().any(|b| b.windows(16).any(|w| w == trace_id.as_slice())),
        "no exported span carries the caller's trace id ({} export requests)",
        bodies.len()
    );
}
