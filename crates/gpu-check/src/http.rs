//! The server over HTTP under 64 concurrent clients, as an RL job calls it: one conversation's
//! token ids per request (SGLang's `/classify` body), latency percentiles and conversations/s.

use std::path::Path;

use clap::Parser;
use serde::Serialize;
use serde_json::{json, Value};

use crate::bench::load;
use crate::workloads::Workload;

pub const CLIENTS: usize = 64;

#[derive(Debug, Clone, Serialize)]
pub struct Served {
    pub workload: &'static str,
    pub conv_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// `armorm serve`'s flags alone.
#[derive(Parser)]
struct Serve {
    #[command(flatten)]
    config: armorm_server::config::ServeConfig,
}

pub async fn run(
    model: &Path,
    device: &str,
    batch_tokens: usize,
    workloads: &[Workload],
) -> anyhow::Result<Vec<Served>> {
    let model = model.to_str().unwrap_or_default();
    let batch_tokens = batch_tokens.to_string();
    let argv = [
        "serve",
        "--model",
        model,
        "--device",
        device,
        "--dtype",
        "bf16",
        "--port",
        "0",
        "--max-batch-tokens",
        &batch_tokens,
    ];
    let server = armorm_server::serve::start(&Serve::try_parse_from(argv)?.config).await?;
    let url = format!("http://{}/classify", server.addr);
    let mut served = Vec::new();
    for w in workloads {
        let bodies: Vec<Value> = w.conversations.iter().map(|e| json!({ "input_ids": e.ids() })).collect();
        load::run(&url, &bodies[..bodies.len().min(CLIENTS)], CLIENTS, 1).await;
        let r = load::run(&url, &bodies, CLIENTS, 1).await;
        served.push(Served {
            workload: w.name,
            conv_per_s: r.per_second,
            p50_ms: r.p50.as_secs_f64() * 1e3,
            p99_ms: r.p99.as_secs_f64() * 1e3,
        });
    }
    server.shutdown().await?;
    Ok(served)
}
