//! A bounded load generator: N concurrent clients on loopback, each request timed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct LoadResult {
    pub per_second: f64,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
}

/// Posts every body once to `url` from `clients` concurrent clients; `items_per_body` converts
/// requests/s into conversations/s.
pub async fn run(url: &str, bodies: &[Value], clients: usize, items_per_body: usize) -> LoadResult {
    let client = reqwest::Client::new();
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let workers = (0..clients).map(|_| async {
        let mut latencies = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(body) = bodies.get(i) else { break };
            let t = Instant::now();
            let resp = client.post(url).json(body).send().await.expect("bench server reachable");
            assert!(resp.status().is_success(), "bench request failed: {}", resp.text().await.unwrap_or_default());
            resp.bytes().await.expect("bench response body");
            latencies.push(t.elapsed());
        }
        latencies
    });
    let mut latencies: Vec<Duration> = futures::future::join_all(workers).await.into_iter().flatten().collect();
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    LoadResult {
        per_second: (bodies.len() * items_per_body) as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p95: pct(0.95),
        p99: pct(0.99),
    }
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:") / 1024.0
}

pub fn rss_mib() -> f64 {
    status_kib("VmRSS:") / 1024.0
}

fn status_kib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0.0)
}
