//! Soak: the release `armorm` binary under 64 concurrent clients for minutes, honest and hostile.
//!
//!     cargo bench -p armorm-cli --bench soak [-- --seconds 180] [--clients 64]
//!
//! Serves the tiny fixture model from a child process and drives it with a mix per client loop:
//! single and batched `/score` of the fixture conversations (each answer checked against the
//! PyTorch reference score of its own conversation, so a crossed or wrong answer is counted),
//! clients that hang up mid-request, over-long text, truncation of many turns and malformed
//! bodies. Prints requests/s, p50/p99 of the honest requests, wrong answers (must be 0), and the
//! server's RSS sampled over time with a plateau verdict: the last third's peak against the
//! middle third's.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Args {
    seconds: u64,
    clients: usize,
}

fn args() -> Args {
    let mut a = Args { seconds: 180, clients: 64 };
    let argv: Vec<String> = std::env::args().collect();
    for (i, arg) in argv.iter().enumerate() {
        let value = || argv.get(i + 1).and_then(|v| v.parse().ok());
        match arg.as_str() {
            "--seconds" => a.seconds = value().expect("--seconds N"),
            "--clients" => a.clients = value().map(|v: u64| v as usize).expect("--clients N"),
            _ => {}
        }
    }
    a
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .map_or(0.0, |kib: f64| kib / 1024.0)
}

#[derive(Default)]
struct Counts {
    honest: AtomicU64,
    hostile: AtomicU64,
    wrong: AtomicU64,
    server_errors: AtomicU64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = root.join("tests/fixtures/models/tiny-f32");
    let port = 18733;
    let child = Command::new(env!("CARGO_BIN_EXE_armorm"))
        .args(["serve", "--model", model.to_str().unwrap(), "--port", &port.to_string(), "--max-batch-tokens", "4096"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("armorm binary");
    let server = Server(child);
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The fixture conversations with their reference scores.
    let conversations: Vec<Value> = std::fs::read_to_string(root.join("tests/fixtures/conversations.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("tests/fixtures/expected/tiny-f32.json")).unwrap())
            .unwrap();
    let cases: Arc<Vec<(Value, f64)>> = Arc::new(
        conversations
            .into_iter()
            .zip(expected["f32"].as_array().unwrap())
            .filter_map(|(c, e)| Some((c, e.get("score")?.as_f64()?)))
            .collect(),
    );
    let start_rss = rss_mib(pid);
    println!(
        "soak: {} clients for {} s against {base} (pid {pid}), RSS at start {start_rss:.0} MiB",
        args.clients, args.seconds
    );
    let counts = Arc::new(Counts::default());
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let sampler = {
        let started = Instant::now();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                samples.push((started.elapsed().as_secs_f64(), rss_mib(pid)));
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            samples.push((started.elapsed().as_secs_f64(), rss_mib(pid)));
            samples
        })
    };
    let workers: Vec<_> = (0..args.clients)
        .map(|w| {
            let (cases, counts, latencies, base) = (cases.clone(), counts.clone(), latencies.clone(), base.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let impatient = reqwest::Client::builder().timeout(Duration::from_millis(20)).build().unwrap();
                let mut n = w as u64;
                while Instant::now() < deadline {
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let pick = (n >> 33) as usize;
                    let score_url = format!("{base}/score");
                    match pick % 20 {
                        // Hostile: hang up mid-request, over-long text, many turns, malformed JSON.
                        0 => {
                            let (conv, _) = &cases[pick % cases.len()];
                            let _ = impatient.post(&score_url).json(conv).send().await;
                            counts.hostile.fetch_add(1, Ordering::Relaxed);
                        }
                        1 => {
                            let body = json!({"prompt": "x".repeat(2_000_000), "response": "y"});
                            let r = client.post(&score_url).json(&body).send().await.unwrap();
                            if r.status().is_server_error() {
                                counts.server_errors.fetch_add(1, Ordering::Relaxed);
                            }
                            counts.hostile.fetch_add(1, Ordering::Relaxed);
                        }
                        2 => {
                            let roles = ["user", "assistant"];
                            let turns: Vec<Value> = (0..3000)
                                .map(|i| json!({"role": roles[i % 2], "content": format!("turn {i}")}))
                                .collect();
                            let body = json!({"messages": turns, "truncate": true});
                            let r = client.post(&score_url).json(&body).send().await.unwrap();
                            if r.status().is_server_error() {
                                counts.server_errors.fetch_add(1, Ordering::Relaxed);
                            }
                            counts.hostile.fetch_add(1, Ordering::Relaxed);
                        }
                        3 => {
                            let r = client
                                .post(&score_url)
                                .header("content-type", "application/json")
                                .body("{\"messages\": [")
                                .send()
                                .await
                                .unwrap();
                            if r.status().is_server_error() {
                                counts.server_errors.fetch_add(1, Ordering::Relaxed);
                            }
                            counts.hostile.fetch_add(1, Ordering::Relaxed);
                        }
                        // Honest: one conversation, or a batch of four, each answer checked.
                        k => {
                            let picks: Vec<usize> = if k % 2 == 0 {
                                vec![pick % cases.len()]
                            } else {
                                (0..4).map(|j| (pick / 7 + j * 5) % cases.len()).collect()
                            };
                            let body = if picks.len() == 1 {
                                cases[picks[0]].0.clone()
                            } else {
                                let convs: Vec<Value> = picks
                                    .iter()
                                    .map(|&i| {
                                        let c = &cases[i].0;
                                        c.get("messages").cloned().unwrap_or_else(|| {
                                            json!([{"role": "user", "content": c["prompt"]},
                                                   {"role": "assistant", "content": c["response"]}])
                                        })
                                    })
                                    .collect();
                                json!({"conversations": convs})
                            };
                            let t = Instant::now();
                            let r = client.post(&score_url).json(&body).send().await.unwrap();
                            let status = r.status();
                            let out: Value = r.json().await.unwrap_or(Value::Null);
                            latencies.lock().unwrap().push(t.elapsed());
                            let scores: Vec<f64> = match out.get("results") {
                                Some(results) => {
                                    results.as_array().unwrap().iter().filter_map(|r| r["score"].as_f64()).collect()
                                }
                                None => out["score"].as_f64().into_iter().collect(),
                            };
                            let right = status.is_success()
                                && scores.len() == picks.len()
                                && picks.iter().zip(&scores).all(|(&i, s)| (s - cases[i].1).abs() <= 1e-4);
                            if !right {
                                counts.wrong.fetch_add(1, Ordering::Relaxed);
                            }
                            counts.honest.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let samples = sampler.await.unwrap();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied();
    let honest = counts.honest.load(Ordering::Relaxed);
    let hostile = counts.hostile.load(Ordering::Relaxed);
    println!(
        "requests: {honest} honest ({:.0}/s), {hostile} hostile; p50 {:?}, p99 {:?}",
        honest as f64 / args.seconds as f64,
        pct(0.50).unwrap_or_default(),
        pct(0.99).unwrap_or_default()
    );
    println!(
        "wrong or crossed answers: {} (must be 0); 5xx to hostile requests: {}",
        counts.wrong.load(Ordering::Relaxed),
        counts.server_errors.load(Ordering::Relaxed)
    );
    println!(
        "RSS over time (s: MiB): {}",
        samples.iter().map(|(t, r)| format!("{t:.0}: {r:.0}")).collect::<Vec<_>>().join(", ")
    );
    let third = samples.len() / 3;
    let peak = |s: &[(f64, f64)]| s.iter().map(|x| x.1).fold(0.0, f64::max);
    let (middle, last) = (peak(&samples[third..2 * third]), peak(&samples[2 * third..]));
    let growth = (last - middle) / middle.max(1.0);
    println!(
        "plateau: peak RSS {middle:.0} MiB in the middle third, {last:.0} MiB in the last ({:+.1}%): {}",
        growth * 100.0,
        if growth <= 0.05 { "levels off" } else { "STILL GROWING" }
    );
    drop(server);
}
