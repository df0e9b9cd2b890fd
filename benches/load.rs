//! Load cost of a real-size checkpoint: wall time from process start to the first score, and the
//! process's peak and steady resident memory against the checkpoint's size, per compute dtype.
//!
//!     export ARMORM_LLAMA3_TOKENIZER=$(scripts/fetch-llama3-tokenizer.sh)
//!     export ARMORM_REFERENCE_PYTHON=$(scripts/reference-env.sh)   # optional: transformers, same run
//!     cargo bench -p armorm-cli --bench load [-- --shape 135m|1b|8b] [--dtype bf16,f32] [--repeat 3]
//!
//! Writes the random checkpoint once under target/bench-checkpoints (1b: Llama-3.2-1B's shape,
//! 2.4 GB; 8b: Llama-3-8B's, 16 GB, needing ~48 GB to generate), then runs the release `armorm
//! score` on one conversation per dtype and reads the "load memory" line it logs; with a reference
//! Python, `benches/load_reference.py` loads the same backbone with transformers and runs one
//! forward pass, in the same run.

#[path = "support/checkpoint.rs"]
mod checkpoint;
#[path = "support/stats.rs"]
mod stats;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1).cloned())
}

/// What one load logged, in bytes.
struct LoadMemory {
    checkpoint: f64,
    peak: f64,
    resident: f64,
    /// The weights' size in f32 (twice a bf16 checkpoint).
    f32_weights: f64,
}

/// Runs `armorm score` on one conversation: seconds from process start to its score, and the
/// "load memory" line it logged.
fn armorm_load(dir: &Path, dtype: &str) -> anyhow::Result<(f64, LoadMemory)> {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_armorm"))
        .args(["score", "--model", dir.to_str().unwrap(), "--dtype", dtype])
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(b"{\"prompt\": \"What is 2+2?\", \"response\": \"4\"}\n")?;
    let out = child.wait_with_output()?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "armorm score failed: {}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log.lines().find(|l| l.contains("load memory")).unwrap_or_default();
    let gib =
        |key| field(line, key).map(|v| v * (1u64 << 30) as f64).ok_or_else(|| anyhow::anyhow!("no {key} in {line:?}"));
    let memory = LoadMemory {
        checkpoint: gib("checkpoint_gib")?,
        f32_weights: gib("f32_weights_gib")?,
        peak: gib("peak_gib")?,
        resident: gib("resident_gib")?,
    };
    Ok((seconds, memory))
}

/// benches/load_reference.py: seconds to its first forward pass and its peak RSS in bytes.
fn torch_load(python: &str, script: &Path, dir: &Path, dtype: &str) -> anyhow::Result<(f64, f64)> {
    let out = Command::new(python).arg(script).arg(dir).arg(dtype).output()?;
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| {
        anyhow::anyhow!("load_reference.py printed {line:?} ({e}): {}", String::from_utf8_lossy(&out.stderr))
    })?;
    match (v["seconds"].as_f64(), v["peak_bytes"].as_f64()) {
        (Some(s), Some(b)) => Ok((s, b)),
        _ => anyhow::bail!("load_reference.py printed {line:?}"),
    }
}

fn min(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(f64::INFINITY, f64::min)
}

fn max(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(f64::NEG_INFINITY, f64::max)
}

fn gb(bytes: f64) -> String {
    format!("{:.2} GB", bytes / 1e9)
}

/// `key=value` from a tracing line.
fn field(line: &str, key: &str) -> Option<f64> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    line[at..].split(|c: char| c.is_whitespace()).next()?.parse().ok()
}

fn main() -> anyhow::Result<()> {
    let shape_name = arg("--shape").unwrap_or_else(|| "1b".into());
    let Some((shape, dir_name)) = checkpoint::named(&shape_name) else {
        anyhow::bail!("--shape 135m, 1b, 8b, qwen3-0.6b or gemma2-2b, not {shape_name}")
    };
    let dtypes = arg("--dtype").unwrap_or_else(|| "bf16,f32".into());
    let tokenizer = std::env::var("ARMORM_LLAMA3_TOKENIZER")
        .map_err(|_| anyhow::anyhow!("set ARMORM_LLAMA3_TOKENIZER=$(scripts/fetch-llama3-tokenizer.sh)"))?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-checkpoints");
    let started = Instant::now();
    let dir = checkpoint::write(&root.join(dir_name), shape, Path::new(&tokenizer))?;
    println!("checkpoint {} ready in {:.0?}", dir.display(), started.elapsed());
    let reference = std::env::var("ARMORM_REFERENCE_PYTHON").ok();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/load_reference.py");
    let repeat: usize = arg("--repeat").map_or(Ok(3), |r| r.parse())?;
    println!("{repeat} alternating rounds per dtype; medians, (min-max) for times");
    println!("| dtype | armorm load to first score | PyTorch load to first forward | armorm / PyTorch time | armorm peak RSS | armorm RSS after load | peak / weights at dtype | PyTorch peak RSS |");
    println!("|---|---|---|---|---|---|---|---|");
    for dtype in dtypes.split(',') {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut memory = None;
        for _ in 0..repeat {
            let (seconds, load) = armorm_load(&dir, dtype)?;
            ours.push(seconds);
            memory = Some(load);
            if let Some(python) = &reference {
                theirs.push(torch_load(python, &script, &dir, dtype)?);
            }
        }
        let load = memory.expect("at least one round");
        let times = |v: &[f64]| match v {
            [] => "(no ARMORM_REFERENCE_PYTHON)".to_string(),
            v => format!(
                "{:.1} s ({:.1}-{:.1})",
                stats::median(v.iter().copied()),
                min(v.iter().copied()),
                max(v.iter().copied())
            ),
        };
        let torch_time: Vec<f64> = theirs.iter().map(|t| t.0).collect();
        let ratio = if theirs.is_empty() {
            "?".to_string()
        } else {
            format!("{:.2}x", stats::median(ours.iter().copied()) / stats::median(torch_time.iter().copied()))
        };
        let torch_peak = if theirs.is_empty() { "?".into() } else { gb(max(theirs.iter().map(|t| t.1))) };
        // The bound is against the weights at the compute dtype: the checkpoint for bf16,
        // twice a bf16 checkpoint for f32.
        let at_dtype = if dtype == "f32" { load.f32_weights } else { load.checkpoint };
        println!(
            "| {dtype} | {} | {} | {ratio} | {} | {} | {:.2}x | {torch_peak} |",
            times(&ours),
            times(&torch_time),
            gb(load.peak),
            gb(load.resident),
            load.peak / at_dtype
        );
    }
    Ok(())
}
