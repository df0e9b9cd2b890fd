//! The GPU check in one binary, for a GPU host without Rust (benches/gpu.sh bundles and runs it):
//!
//!     armorm-gpu-check [all | parity | invariance | bench] [--device cuda] [--out DIR]
//!
//! `parity`: every fixture checkpoint against its transformers reference (f32 within 1e-4, bf16
//! within the bf16 bound, each conversation alone bit-identical to its batch) and the pairwise
//! model; `invariance`: bit-exact batch invariance over random batches for every head, dtype and
//! prompt-sharing setting; `bench`: an 8B-shaped bf16 model's tokens/s and MFU on four workloads,
//! transformers on the same GPU and ids, and the server under 64 concurrent clients. Everything
//! printed is also written as JSON into `--out` (default `$OUT`). Exits non-zero at once when the
//! device cannot be opened, and at the end when any check failed.

mod bench;
mod http;
mod reference;
mod report;
mod throughput;
mod workloads;

use std::path::PathBuf;

use anyhow::Context;
use armorm_conformance::fixtures::Fixtures;
use armorm_conformance::{golden, invariance, pairwise};
use armorm_model::{ComputeDType, DeviceChoice, LoadOptions, ModelSource, RewardModel};
use clap::{Parser, Subcommand};
use serde_json::json;

use report::Report;

#[global_allocator]
static ALLOCATOR: armorm_server::allocator::Allocator = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "armorm-gpu-check", about = "armorm's GPU check: parity, batch invariance, throughput")]
struct Args {
    #[command(subcommand)]
    section: Option<Section>,
    /// Where the model runs.
    #[arg(long, global = true, default_value = "cuda")]
    device: DeviceChoice,
    /// The repository's tests/fixtures.
    #[arg(long, global = true, default_value = "tests/fixtures")]
    fixtures: PathBuf,
    /// Where the 8B-shaped checkpoint and the reference's inputs are written (~16 GB).
    #[arg(long, global = true, default_value = "target/gpu-check-work")]
    work: PathBuf,
    /// A folder for the results as JSON, one file per section.
    #[arg(long, global = true, env = "OUT")]
    out: Option<PathBuf>,
    /// The python that holds torch and transformers, for the reference.
    #[arg(long, global = true, env = "ARMORM_REFERENCE_PYTHON", default_value = "python3")]
    python: PathBuf,
    /// Dense bf16 peak of the GPU in TFLOP/s, for MFU.
    #[arg(long, global = true, env = "ARMORM_PEAK_TFLOPS", default_value_t = throughput::DEFAULT_PEAK_TFLOPS)]
    peak_tflops: f64,
    /// The bench's model shape: 8b (the default) or a CPU-sized one (135m, 1b) to try the bench here.
    #[arg(long, global = true, default_value = "8b")]
    shape: String,
    /// The bench on the first 8 conversations of each workload: a trial that the bench runs.
    #[arg(long, global = true)]
    quick: bool,
}

#[derive(Subcommand, Clone, Copy, PartialEq)]
enum Section {
    /// parity, invariance and bench, in that order.
    All,
    Parity,
    Invariance,
    Bench,
}

fn main() -> anyhow::Result<()> {
    armorm_server::allocator::keep_freed_memory();
    let args = Args::parse();
    let section = args.section.unwrap_or(Section::All);
    let device = open(args.device)?;
    let mut report = Report::new(args.out.clone())?;
    let fx = Fixtures::at(&args.fixtures);
    let about = json!({
        "device": device,
        "gpu": nvidia_smi(),
        "commit": option_env!("ARMORM_COMMIT").unwrap_or("unknown"),
        "features": if cfg!(feature = "flash-attn") { "cuda,flash-attn" } else if cfg!(feature = "cuda") { "cuda" } else { "" },
    });
    println!("== armorm-gpu-check on {device}: {about}");
    report.section("about", about)?;
    if matches!(section, Section::All | Section::Parity) {
        println!("== parity: every fixture against its reference, and the pairwise model");
        let mut results = golden::every(&fx, args.device)?;
        results.push(("tiny-pairwise F32 vs f32".into(), pairwise::check(&fx, args.device)));
        report.checks("parity", results)?;
    }
    if matches!(section, Section::All | Section::Invariance) {
        // The CPU's kernels promise invariance; elsewhere `--batch-invariant` (each conversation
        // computed alone) does, and what the device's own kernels do is reported.
        let kernels_promise = args.device == DeviceChoice::Cpu;
        println!("== invariance: bit-identical alone and in random batches (--batch-invariant {})", !kernels_promise);
        report.checks("invariance", invariance::every(&fx, args.device, !kernels_promise))?;
        if !kernels_promise {
            println!("== invariance without --batch-invariant (reported, not promised)");
            report.observations("invariance-batched", invariance::every(&fx, args.device, false))?;
        }
    }
    if matches!(section, Section::All | Section::Bench) {
        run_bench(&args, &device, &fx, &mut report)?;
    }
    report.finish()
}

/// The device, opened once so that a host without it fails at once; its name as `--device` takes it.
fn open(device: DeviceChoice) -> anyhow::Result<String> {
    match device {
        DeviceChoice::Cpu => Ok("cpu".into()),
        DeviceChoice::Cuda(n) => {
            let opened = candle_core::Device::new_cuda(n);
            opened.map(|_| format!("cuda:{n}")).map_err(|e| anyhow::anyhow!("no CUDA device was found (cuda:{n}): {e}"))
        }
    }
}

fn nvidia_smi() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader"])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn run_bench(args: &Args, device: &str, fx: &Fixtures, report: &mut Report) -> anyhow::Result<()> {
    let (shape, name) = bench::checkpoint::named(&args.shape).with_context(|| format!("no shape {}", args.shape))?;
    println!("== bench: {name} in bf16 (writing the checkpoint once under {})", args.work.display());
    let dir = bench::checkpoint::write(&args.work.join(name), shape, &fx.model("tiny-f32").join("tokenizer.json"))?;
    let options = LoadOptions { device: args.device, dtype: Some(ComputeDType::Bf16), ..Default::default() };
    let model = RewardModel::load(&ModelSource::Local(dir.clone()), &options)?;
    let mut workloads = workloads::all(&model)?;
    if args.quick {
        workloads.iter_mut().for_each(|w| w.conversations.truncate(8));
    }
    println!("| workload | conversations | tokens/s | conv/s | model TFLOP/s | MFU |");
    println!("|---|---|---|---|---|---|");
    let mut measured = Vec::new();
    for w in &workloads {
        let m = throughput::measure(&model, shape, w, args.peak_tflops)?;
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1}% |",
            m.workload,
            m.conversations,
            m.tokens_per_s,
            m.conv_per_s,
            m.model_tflops,
            100.0 * m.mfu
        );
        measured.push(m);
    }
    let mut alone = Vec::new();
    for w in workloads.iter().filter(|w| matches!(w.name, "256-token" | "best-of-8")) {
        let cps = throughput::measure_alone(&model, w)?;
        let packed = measured.iter().find(|m| m.workload == w.name).map_or(f64::NAN, |m| m.conv_per_s);
        println!("{}: {cps:.1} conv/s each alone (--batch-invariant), {:.2}x of packed batches", w.name, cps / packed);
        alone.push(json!({"workload": w.name, "conv_per_s": cps, "vs_packed": cps / packed}));
    }
    report.section(
        "throughput",
        json!({"model": name, "peak_tflops": args.peak_tflops, "workloads": measured, "each_alone": alone}),
    )?;
    // The GPU's memory goes to the reference next, then to the server.
    drop(model);
    println!("== transformers on the same device (bf16, sdpa, padded batches)");
    let script = fx.root().join("../../benches/reference.py");
    let rates = match reference::run(&args.python, &script, device, &dir, &args.work, &workloads) {
        Ok(rates) => rates,
        Err(e) => {
            report.fail(format!("transformers reference: {e:#}"));
            Default::default()
        }
    };
    report.section("transformers", json!(rates))?;
    println!("== HTTP: {} concurrent clients, one conversation per request", http::CLIENTS);
    let runtime = tokio::runtime::Runtime::new()?;
    let served = runtime.block_on(http::run(&dir, device, throughput::BATCH_TOKENS, &workloads))?;
    report.section("http", json!(served))?;
    println!("| workload | forward conv/s | HTTP conv/s | p50 ms | p99 ms | transformers best conv/s | forward / tf | HTTP / tf |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for (m, s) in measured.iter().zip(&served) {
        let best = reference::best(&rates, m.workload);
        let ratio = |x: f64| best.map(|b| x / b);
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {} | {} | {} |",
            m.workload,
            m.conv_per_s,
            s.conv_per_s,
            s.p50_ms,
            s.p99_ms,
            best.map_or("-".into(), |b| format!("{b:.1}")),
            ratio(m.conv_per_s).map_or("-".into(), |r| format!("{r:.2}x")),
            ratio(s.conv_per_s).map_or("-".into(), |r| format!("{r:.2}x")),
        );
        summary.push(json!({
            "workload": m.workload, "forward_conv_per_s": m.conv_per_s, "http_conv_per_s": s.conv_per_s,
            "http_p50_ms": s.p50_ms, "http_p99_ms": s.p99_ms, "transformers_best_conv_per_s": best,
            "forward_vs_transformers": ratio(m.conv_per_s), "http_vs_transformers": ratio(s.conv_per_s), "mfu": m.mfu,
        }));
    }
    report.section("summary", json!(summary))
}
