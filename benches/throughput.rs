//! Throughput against the PyTorch reference, in one run, as ratios.
//!
//!     export ARMORM_LLAMA3_TOKENIZER=$(scripts/fetch-llama3-tokenizer.sh)
//!     export ARMORM_REFERENCE_PYTHON=$(scripts/reference-env.sh)      # optional: torch + transformers
//!     cargo bench -p armorm-server --bench throughput [-- --scale N] [--skip-bf16] [--forward-only] [--shape 1b]
//!     benches/gpu.sh bundle && benches/gpu.sh run     # GPUs: the 8B-shaped model, tokens/s and MFU
//!
//! Builds a SmolLM2-135M-shaped ArmoRM with random weights (not committed), runs the reference's
//! bare forward loop (benches/reference.py: padded batches of 8, 32 and 8 sorted by length, 2
//! threads), then armorm's forward pass and its HTTP server under a load generator on the same token
//! ids, and prints conversations/s, latency percentiles, ratios, GEMM efficiency, prompt sharing and
//! peak RSS. Every timing is warmed up and the median of three. `--shape 1b` runs the
//! Llama-3.2-1B-shaped model's forward passes on the ~256-token workload instead.

#[path = "support/batches.rs"]
mod batches;
#[path = "support/checkpoint.rs"]
mod checkpoint;
#[path = "support/load.rs"]
mod load;
#[path = "support/stats.rs"]
mod stats;
#[path = "support/workload.rs"]
mod workload;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use armorm_model::layers::linear::amx::Epilogue;
use armorm_model::layers::linear::Linear;
use armorm_model::{ComputeDType, Conversation, EncodeLimits, Encoded, LoadOptions, ModelSource, RewardModel};
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

/// The same allocator as the `armorm` binary, so the bench measures what is deployed.
#[global_allocator]
static ALLOCATOR: armorm_server::allocator::Allocator = mimalloc::MiMalloc;

struct Args {
    scale: usize,
    /// `--shape 1b | qwen3-0.6b | gemma2-2b`: that model on the ~256-token workload (and best-of-8
    /// for the Qwen3 and Gemma-2 shapes), forward passes against the reference (each model is
    /// written once under target/bench-checkpoints).
    shape: Option<(&'static checkpoint::Shape, &'static str)>,
    skip_bf16: bool,
    /// Only armorm's own forward passes (no reference or HTTP): for quick iteration.
    forward_only: bool,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let scale = argv.iter().position(|a| a == "--scale").and_then(|i| argv.get(i + 1)?.parse().ok()).unwrap_or(1);
    let flag = |name: &str| argv.iter().any(|a| a == name);
    let forward_only = flag("--forward-only");
    let shape = match argv.iter().position(|a| a == "--shape").and_then(|i| argv.get(i + 1)).map(String::as_str) {
        None | Some("135m") => None,
        // The 8B shape is the GPU check's (benches/gpu.sh).
        Some(name) => match checkpoint::named(name).filter(|_| name != "8b") {
            Some(named) => Some(named),
            None => {
                eprintln!("--shape 135m, 1b, qwen3-0.6b or gemma2-2b, not {name}");
                std::process::exit(2)
            }
        },
    };
    Args { scale, shape, skip_bf16: flag("--skip-bf16"), forward_only }
}

fn main() -> anyhow::Result<()> {
    armorm_server::allocator::keep_freed_memory();
    let args = args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    let Some(tokenizer) = std::env::var_os("ARMORM_LLAMA3_TOKENIZER") else {
        eprintln!("set ARMORM_LLAMA3_TOKENIZER (scripts/fetch-llama3-tokenizer.sh): the bench model uses vocab 128256");
        return Ok(());
    };
    let (shape, dir) = match args.shape {
        None => (&checkpoint::SMOLLM2_135M, root.join("smollm2-135m-armorm")),
        Some((shape, name)) => (shape, root.join("../bench-checkpoints").join(name)),
    };
    let dir = checkpoint::write(&dir, shape, Path::new(&tokenizer))?;
    let f32_model = load(&dir, ComputeDType::F32)?;
    let mut workloads = workload::all(args.scale);
    match args.shape {
        // The families are measured where their differences show: short answers and a shared prompt.
        Some((s, _)) if s.family != "llama" => workloads.retain(|w| w.name == "256-token" || w.name == "best-of-8"),
        Some(_) => workloads.truncate(1),
        None => {}
    }
    let encoded: Vec<Vec<Encoded>> = workloads.iter().map(|w| workload::encode(&f32_model, w)).collect();

    let long = long_input(&f32_model)?;
    // The reference runs without this process's model resident (a 2B-shaped model is 10 GB in f32).
    drop(f32_model);
    let reference =
        if args.forward_only { HashMap::new() } else { reference(&dir, &root, &workloads, &encoded, args.skip_bf16)? };
    let f32_model = load(&dir, ComputeDType::F32)?;

    let dtypes: &[(DType, ComputeDType, &str)] = if args.skip_bf16 {
        &[(DType::F32, ComputeDType::F32, "f32")]
    } else {
        &[(DType::F32, ComputeDType::F32, "f32"), (DType::BF16, ComputeDType::Bf16, "bf16")]
    };
    println!("\n== GEMM on the model's linear shapes (1024 tokens), GFLOP/s ==");
    let mut gemm = HashMap::new();
    for &(dtype, _, name) in dtypes {
        let gflops = gemm_gflops(shape, dtype)?;
        gemm.insert(name, gflops);
        let torch = reference
            .get(&format!("gemm {name}"))
            .map_or(String::new(), |t| format!("   torch {t:.1}   armorm / torch = {:.2}", gflops / t));
        println!("{name:<5} armorm {gflops:.1}{torch}");
    }

    println!("\n== forward pass (armorm packed batches vs reference padded batches), conversations/s ==");
    let mut forward = HashMap::new();
    for &(_, compute, name) in dtypes {
        let model = if compute == ComputeDType::F32 { None } else { Some(load(&dir, compute)?) };
        for (w, enc) in workloads.iter().zip(&encoded) {
            let cps = forward_cps(model.as_ref().unwrap_or(&f32_model), enc)?;
            if compute == ComputeDType::F32 {
                forward.insert(w.name, cps);
            }
            let tokens: usize = enc.iter().map(Encoded::len).sum();
            let linear_gflops = cps * linear_flops(shape, tokens as f64 / enc.len() as f64, 1.0) / 1e9;
            println!(
                "{:<16} {name:<4} {cps:>6.2}  {}  linear layers at {linear_gflops:.1} GFLOP/s = {:.0}% of the GEMM",
                w.name,
                ratios(&reference, w.name, name, cps),
                100.0 * linear_gflops / gemm[name]
            );
        }
    }

    if args.shape.is_some() {
        println!("\npeak RSS of this process (two models): {:.0} MiB", load::peak_rss_mib());
        return Ok(());
    }
    if !args.forward_only {
        println!("\n== HTTP end to end (16 concurrent clients, /score), conversations/s and latency ==");
        tokio::runtime::Runtime::new()?.block_on(http(&dir, &workloads, &reference))?;
    }

    println!("\n== prompt sharing: best-of-8 (8 x ~128-token responses to one ~1024-token prompt) ==");
    let best_of = &encoded[3];
    let shared = forward_cps(&f32_model, best_of)?;
    let unshared_model =
        load_with(&dir, LoadOptions { dtype: Some(ComputeDType::F32), share_prefixes: false, ..Default::default() })?;
    let unshared = forward_cps(&unshared_model, best_of)?;
    println!(
        "shared {shared:.2} conv/s, unshared {unshared:.2} conv/s: shared cost = {:.2}x unshared (target <= 0.35)",
        unshared / shared
    );

    println!("\n== memory ==");
    println!("8k-token conversation: peak RSS {:.0} MiB above the loaded model's RSS", long);
    println!("peak RSS of this process (models + server): {:.0} MiB", load::peak_rss_mib());
    Ok(())
}

fn load(dir: &Path, dtype: ComputeDType) -> anyhow::Result<RewardModel> {
    load_with(dir, LoadOptions { dtype: Some(dtype), ..Default::default() })
}

fn load_with(dir: &Path, options: LoadOptions) -> anyhow::Result<RewardModel> {
    Ok(RewardModel::load(&ModelSource::Local(dir.to_path_buf()), &options)?)
}

/// Conversations/s with the server's default batching (packed batches of up to 16384 tokens): the
/// median of three timed passes after a warm-up batch, as the reference is timed.
fn forward_cps(model: &RewardModel, encoded: &[Encoded]) -> anyhow::Result<f64> {
    let batches = batches::by_tokens(encoded, 16384);
    model.forward(&batches[0])?;
    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        for batch in &batches {
            model.forward(batch)?;
        }
        rates.push(encoded.len() as f64 / started.elapsed().as_secs_f64());
    }
    Ok(stats::median(rates))
}

/// Extra peak memory for one 8k-token conversation, in MiB (runs before anything else grows RSS).
fn long_input(model: &RewardModel) -> anyhow::Result<f64> {
    let before = load::rss_mib();
    let words = "the reward model reads every token of this long answer ".repeat(1300);
    let conv = Conversation::from_prompt_response("Summarise.".into(), words);
    let limits = EncodeLimits { max_tokens: 8192, truncate: true, content_special_tokens: Default::default() };
    let encoded = model.encoder().encode_within(&conv, &limits)?.encoded;
    model.forward(&[&encoded])?;
    Ok(load::peak_rss_mib() - before)
}

/// Runs benches/reference.py when ARMORM_REFERENCE_PYTHON is set; keys are "workload dtype batch".
fn reference(
    dir: &Path,
    root: &Path,
    workloads: &[workload::Workload],
    encoded: &[Vec<Encoded>],
    skip_bf16: bool,
) -> anyhow::Result<HashMap<String, f64>> {
    let mut out = HashMap::new();
    let Some(python) = std::env::var_os("ARMORM_REFERENCE_PYTHON") else {
        println!("(no ARMORM_REFERENCE_PYTHON: reference not run, no ratios)");
        return Ok(out);
    };
    let inputs: Vec<Value> = workloads
        .iter()
        .zip(encoded)
        .map(|(w, enc)| {
            let items: Vec<Value> = enc.iter().map(|e| json!({"ids": e.ids(), "gate": e.gate_pos()})).collect();
            json!({"name": w.name, "items": items})
        })
        .collect();
    let inputs_path: PathBuf = root.join("inputs.json");
    std::fs::write(&inputs_path, serde_json::to_vec(&json!({ "workloads": inputs }))?)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/reference.py");
    let dtypes = if skip_bf16 { "f32" } else { "f32,bf16" };
    println!("running the PyTorch reference ({dtypes}, batches of 8, 32 and 8 sorted by length; warmed up, median of 3; 2 threads) ...");
    let output = std::process::Command::new(python)
        .arg(script)
        .args(["--model", dir.to_str().unwrap_or_default(), "--inputs", inputs_path.to_str().unwrap_or_default()])
        .args(["--dtypes", dtypes])
        .output()?;
    anyhow::ensure!(output.status.success(), "reference failed: {}", String::from_utf8_lossy(&output.stderr));
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let v: Value = serde_json::from_str(line)?;
        let dtype = v["dtype"].as_str().unwrap_or_default();
        if let Some(g) = v["gemm_gflops"].as_f64() {
            out.insert(format!("gemm {dtype}"), g);
        } else {
            let batching = v["batching"].as_str().unwrap_or_default();
            let key = format!("{} {dtype} {batching}", v["workload"].as_str().unwrap_or_default());
            out.insert(key, v["conv_per_s"].as_f64().unwrap_or_default());
        }
    }
    Ok(out)
}

/// The reference's batchings (benches/reference.py), as printed.
const BATCHINGS: [&str; 3] = ["8", "32", "8-sorted"];

/// "ref 8 x  ref 32 y  ref 8-sorted z  armorm / best ref = r" (medians of warmed-up repeats).
fn ratios(reference: &HashMap<String, f64>, workload: &str, dtype: &str, ours: f64) -> String {
    let rates: Vec<(&str, f64)> =
        BATCHINGS.iter().filter_map(|b| Some((*b, *reference.get(&format!("{workload} {dtype} {b}"))?))).collect();
    let Some(best) = rates.iter().map(|r| r.1).reduce(f64::max) else {
        return String::new();
    };
    let each: Vec<String> = rates.iter().map(|(b, r)| format!("ref {b} {r:>6.2}")).collect();
    format!("{}  armorm / best ref = {:.2}x", each.join("  "), ours / best)
}

/// Projection FLOPs of armorm's forward pass for `tokens` tokens of `conversations` conversations:
/// every layer's projections for every token, except that the last layer's output projection and
/// MLP run only on the two rows per conversation that the heads read.
fn linear_flops(s: &checkpoint::Shape, tokens: f64, conversations: f64) -> f64 {
    let hd = s.head_dim;
    let qkv = (s.hidden * (s.heads * hd + 2 * s.kv_heads * hd)) as f64;
    let rest = (s.heads * hd * s.hidden + 3 * s.hidden * s.intermediate) as f64;
    2.0 * ((qkv + rest) * tokens * (s.layers - 1) as f64 + qkv * tokens + rest * 2.0 * conversations)
}

/// GFLOP/s of armorm's projections alone (the gemm crate's kernels for f32; for bf16 AMX tiles, or
/// `vdpbf16ps` strips and dot products, where the CPU has them) on the model's shapes.
fn gemm_gflops(s: &checkpoint::Shape, dtype: DType) -> anyhow::Result<f64> {
    let hd = s.head_dim;
    let tokens = 1024;
    let shapes = [
        (s.hidden, (s.heads + 2 * s.kv_heads) * hd),
        (s.heads * hd, s.hidden),
        (s.hidden, 2 * s.intermediate),
        (s.intermediate, s.hidden),
    ];
    let (mut flops, mut seconds) = (0.0, 0.0);
    for (k, n) in shapes {
        let a = Tensor::randn(0f32, 1.0, (tokens, k), &Device::Cpu)?.to_dtype(dtype)?;
        let w = Linear::new(&Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?.to_dtype(dtype)?, Epilogue::Plain)?;
        w.forward(&a)?;
        let t = Instant::now();
        for _ in 0..5 {
            w.forward(&a)?;
        }
        seconds += t.elapsed().as_secs_f64();
        flops += 2.0 * (tokens * k * n * 5) as f64;
    }
    Ok(flops / seconds / 1e9)
}

async fn http(dir: &Path, workloads: &[workload::Workload], reference: &HashMap<String, f64>) -> anyhow::Result<()> {
    use clap::Parser;
    /// `armorm serve`'s flags alone.
    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        config: armorm_server::config::ServeConfig,
    }
    let argv = ["serve", "--model", dir.to_str().unwrap_or_default(), "--port", "0", "--no-warmup"];
    let server = armorm_server::serve::start(&Serve::try_parse_from(argv)?.config).await?;
    let url = format!("http://{}/score", server.addr);
    for w in workloads {
        let bodies: Vec<Value> = w.conversations.iter().map(|c| json!({ "messages": c.messages() })).collect();
        // Warm-up, then the median round (by throughput) of three.
        load::run(&url, &bodies[..bodies.len().min(4)], 4, 1).await;
        let mut rounds = Vec::new();
        for _ in 0..3 {
            rounds.push(load::run(&url, &bodies, 16, 1).await);
        }
        rounds.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
        let r = &rounds[1];
        println!(
            "{:<16} {:>7.2} conv/s  p50 {:>7.0} ms  p95 {:>7.0} ms  p99 {:>7.0} ms  {}",
            w.name,
            r.per_second,
            r.p50.as_secs_f64() * 1e3,
            r.p95.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            ratios(reference, w.name, "f32", r.per_second)
        );
    }
    server.shutdown().await
}
