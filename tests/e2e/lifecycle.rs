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
        "armorm_shared_prompt_tokens_total 0",
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
    use armorm_cli::args::{Cli, Command};
    use clap::Parser;
    let server = TestServer::start("tiny-f32", &[]).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let check = move |addr: String| {
        let Command::Healthcheck(args) =
            Cli::try_parse_from(["armorm", "healthcheck", "--addr", &addr]).unwrap().command
        else {
            unreachable!()
        };
        armorm_cli::healthcheck::run(&args)
    };
    let healthy = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || check(addr)
    });
    assert!(healthy.await.unwrap().is_ok());
    server.stop().await;
    assert!(tokio::task::spawn_blocking(move || check(addr)).await.unwrap().is_err());
}

/// With --auth-health-and-metrics the health check presents the key it is given the server's ways,
/// and --addr takes a host name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_sends_the_api_key_and_resolves_host_names() {
    use armorm_cli::args::{Cli, Command};
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "s3cret\n").unwrap();
    let server = TestServer::start("tiny-f32", &["--api-key", "s3cret", "--auth-health-and-metrics"]).await;
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let check = move |extra: Vec<String>| {
        let mut argv = vec!["armorm".to_string(), "healthcheck".into(), "--addr".into(), format!("localhost:{port}")];
        argv.extend(extra);
        let Command::Healthcheck(args) = Cli::try_parse_from(argv).unwrap().command else { unreachable!() };
        armorm_cli::healthcheck::run(&args).map_err(|e| format!("{e:#}"))
    };
    let run = |extra: Vec<String>| {
        let check = check.clone();
        tokio::task::spawn_blocking(move || check(extra))
    };
    let err = run(vec![]).await.unwrap().unwrap_err();
    assert!(err.contains("401"), "{err}");
    run(vec!["--api-key-file".into(), key_file.display().to_string()]).await.unwrap().unwrap();
    run(vec!["--api-key".into(), "s3cret".into()]).await.unwrap().unwrap();
    server.stop().await;
}

/// The port is bound before the model loads: a port in use fails at once (here before a checkpoint
/// that does not exist is even looked at), and while the model loads and warms up every request,
/// /health included, gets a JSON 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_is_bound_first_and_answers_503_while_loading() {
    use armorm_cli::args::{Cli, Command};
    use clap::Parser;
    let serve_args = |model: &str, port: u16, warm: bool| {
        let port = port.to_string();
        let mut argv = vec!["armorm", "serve", "--model", model, "--port", &port, "--max-batch-tokens", "16384"];
        if !warm {
            argv.push("--no-warmup");
        }
        let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else { unreachable!() };
        args
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = armorm_server::serve::start(&serve_args("/no/such/checkpoint", port, false)).await.err().unwrap();
    assert!(format!("{err:#}").contains(&format!("binding 127.0.0.1:{port}")), "{err:#}");
    drop(taken);

    // A full-size warm-up batch keeps the server loading long enough to be asked.
    let model = crate::common::fixtures().join("models").join("tiny-f32");
    let args = serve_args(model.to_str().unwrap(), port, true);
    let starting = tokio::spawn(async move { armorm_server::serve::start(&args).await });
    let client = reqwest::Client::new();
    let (mut loading, mut ready) = (0, false);
    for _ in 0..600 {
        if let Ok(resp) = client.get(format!("http://127.0.0.1:{port}/health")).send().await {
            match resp.status().as_u16() {
                503 => {
                    let body: serde_json::Value = resp.json().await.unwrap();
                    assert_eq!(body["error"]["code"], "not_ready", "{body}");
                    loading += 1;
                }
                200 => {
                    ready = true;
                    break;
                }
                other => panic!("/health answered {other} while starting"),
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(loading > 0 && ready, "503s while loading: {loading}, then ready: {ready}");
    starting.await.unwrap().unwrap().shutdown().await.unwrap();
}
