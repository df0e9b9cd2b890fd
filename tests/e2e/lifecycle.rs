use serde_json::json;

use crate::common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exist_at_zero_before_the_first_request() {
    let server = TestServer::start("tiny-f32", &[]).await;
    let (status, text) = server.get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "armorm_requests_total{route=\"/score\",status=\"200\"} 0",
        "armorm_errors_total{code=\"overloaded\"} 0",
        "armorm_queue_depth 0",
        "armorm_batch_size_count 0",
        "armorm_batch_tokens_count 0",
        "armorm_score_count 0",
        "armorm_input_tokens_count 0",
        "armorm_queue_duration_seconds_count 0",
        "armorm_inference_duration_seconds_count 0",
        "armorm_tokenization_duration_seconds_count 0",
        "armorm_request_duration_seconds_count{route=\"/score\"} 0",
    ] {
        assert!(text.contains(line), "missing {line:?}");
    }
    let resp =
        server.client.post(server.url("/score")).json(&json!({"prompt": "a", "response": "b"})).send().await.unwrap();
    for header in ["x-tokenization-time", "x-queue-time", "x-inference-time", "x-total-time"] {
        let ms: f64 = resp.headers()[header].to_str().unwrap().parse().unwrap();
        assert!(ms >= 0.0, "{header}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_queued_requests_before_exiting() {
    // A long batch wait keeps the requests queued when shutdown begins.
    let server = TestServer::start("tiny-f32", &["--max-batch-wait-ms", "3000"]).await;
    let client = server.client.clone();
    let url = server.url("/score");
    let inflight: Vec<_> = (0..8)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let body = json!({"prompt": format!("Question {i}?"), "response": "Answer."});
                client.post(url).json(&body).send().await.map(|r| r.status().as_u16())
            })
        })
        .collect();
    // Shut down only once all eight wait in the queue.
    let mut queued = false;
    for _ in 0..200 {
        if server.get("/metrics").await.1.contains("armorm_queue_depth 8") {
            queued = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(queued, "the requests never queued up");
    server.stop().await;
    for handle in inflight {
        assert_eq!(handle.await.unwrap().unwrap(), 200);
    }
    // And the listener is gone.
    assert!(client.get(url.replace("/score", "/health")).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_costs_no_forward_pass() {
    let server = TestServer::start("tiny-f32", &["--max-batch-wait-ms", "400"]).await;
    let impatient = reqwest::Client::builder().timeout(std::time::Duration::from_millis(100)).build().unwrap();
    let sent = impatient.post(server.url("/score")).json(&json!({"prompt": "a", "response": "b"})).send().await;
    assert!(sent.unwrap_err().is_timeout());
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let (_, metrics) = server.get("/metrics").await;
    assert!(metrics.contains("armorm_batch_size_count 0"), "the abandoned request reached the model");
    assert!(metrics.contains("armorm_queue_depth 0"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_command_reports_the_servers_health() {
    use armorm_server::cli::{Cli, Command};
    use clap::Parser;
    let server = TestServer::start("tiny-f32", &[]).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let check = move |addr: String| {
        let Command::Healthcheck(args) =
            Cli::try_parse_from(["armorm", "healthcheck", "--addr", &addr]).unwrap().command
        else {
            unreachable!()
        };
        armorm_server::healthcheck::run(&args)
    };
    let healthy = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || check(addr)
    });
    assert!(healthy.await.unwrap().is_ok());
    server.stop().await;
    assert!(tokio::task::spawn_blocking(move || check(addr)).await.unwrap().is_err());
}
