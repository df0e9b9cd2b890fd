//! Load cost of a real-size checkpoint: wall time from process start to the first score, and the
//! process's peak and steady resident memory against the checkpoint's size, per compute dtype.
//!
//!     export ARMORM_LLAMA3_TOKENIZER=$(scripts/fetch-llama3-tokenizer.sh)
//!     export ARMORM_REFERENCE_PYTHON=/opt/refenv/bin/python   # optional: transformers, same run
//!     cargo bench -p armorm-server --bench load [-- --shape 135m|1b|8b] [--dtype bf16,f32]
//!
//! Writes the random checkpoint once under target/bench-checkpoints (1b: Llama-3.2-1B's shape,
//! 2.4 GB; 8b: Llama-3-8B's, 16 GB, needing ~48 GB to generate), then runs the release `armorm
//! score` on one conversation per dtype and reads the "load memory" line it logs; with a reference
//! Python, `benches/load_reference.py` loads the same backbone with transformers and runs one
//! forward pass, in the same run.

#[path = "support/checkpoint.rs"]
mod checkpoint;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Llama-3.2-1B: the shape of a 1.2B-parameter ArmoRM (2.4 GB in bf16).
const LLAMA32_1B: checkpoint::Shape = checkpoint::Shape {
    hidden: 2048,
    layers: 16,
    heads: 32,
    kv_heads: 8,
    intermediate: 8192,
    vocab: 128256,
    rope_theta: 500000.0,
    objectives: 19,
    gating_hidden: 1024,
    gating_layers: 3,
};

fn arg(name: &str) -> Option<String> {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1).cloned())
}

/// `key=value` from a tracing line.
fn field(line: &str, key: &str) -> Option<f64> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    line[at..].split(|c: char| c.is_whitespace()).next()?.parse().ok()
}

fn main() -> anyhow::Result<()> {
    let shape_name = arg("--shape").unwrap_or_else(|| "1b".into());
    let (shape, dir_name) = match shape_name.as_str() {
        "135m" => (&checkpoint::SMOLLM2_135M, "smollm2-135m-armorm"),
        "1b" => (&LLAMA32_1B, "llama32-1b-armorm"),
        "8b" => (&checkpoint::LLAMA3_8B, "llama3-8b-armorm"),
        other => anyhow::bail!("--shape 135m, 1b or 8b, not {other}"),
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
    println!("| dtype | armorm load to first score | armorm peak RSS | armorm RSS after load | peak / checkpoint | PyTorch load to first forward | PyTorch peak RSS |");
    println!("|---|---|---|---|---|---|---|");
    for dtype in dtypes.split(',') {
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
        let elapsed = started.elapsed();
        anyhow::ensure!(out.status.success(), "armorm score failed: {}", String::from_utf8_lossy(&out.stderr));
        let log = String::from_utf8_lossy(&out.stderr);
        let line = log.lines().find(|l| l.contains("load memory")).unwrap_or_default();
        let (ckpt, peak, resident) =
            (field(line, "checkpoint_gib"), field(line, "peak_gib"), field(line, "resident_gib"));
        let gb = |x: Option<f64>| x.map_or("?".into(), |v| format!("{:.2} GB", v * 1.073741824));
        let ratio = peak.zip(ckpt).map_or("?".into(), |(p, c)| format!("{:.2}x", p / c));
        let torch = match &reference {
            None => "(no ARMORM_REFERENCE_PYTHON) | ".to_string(),
            Some(python) => {
                let out = Command::new(python).arg(&script).arg(&dir).arg(dtype).stderr(Stdio::null()).output()?;
                let line = String::from_utf8_lossy(&out.stdout);
                let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_default();
                match (v["seconds"].as_f64(), v["peak_bytes"].as_f64()) {
                    (Some(s), Some(b)) => format!("{s:.1} s | {:.2} GB", b / 1e9),
                    _ => "failed | ".to_string(),
                }
            }
        };
        println!("| {dtype} | {:.1} s | {} | {} | {ratio} | {torch} |", elapsed.as_secs_f64(), gb(peak), gb(resident));
    }
    Ok(())
}
