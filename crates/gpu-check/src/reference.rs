//! transformers on the same GPU, the same checkpoint and the same token ids (benches/reference.py
//! with `--device cuda`): bf16, sdpa attention, padded batches of 8 and 32 in arrival order and of
//! 8 sorted by length, as a user would run it; conversations/s per workload and batching.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::workloads::Workload;

/// Conversations/s keyed by workload, then batching.
pub type Rates = BTreeMap<String, BTreeMap<String, f64>>;

pub fn run(
    python: &Path,
    script: &Path,
    device: &str,
    model: &Path,
    work: &Path,
    workloads: &[Workload],
) -> anyhow::Result<Rates> {
    let inputs: Vec<Value> = workloads
        .iter()
        .map(|w| {
            let items: Vec<Value> =
                w.conversations.iter().map(|e| json!({"ids": e.ids(), "gate": e.gate_pos()})).collect();
            json!({"name": w.name, "items": items})
        })
        .collect();
    let inputs_path = work.join("inputs.json");
    std::fs::write(&inputs_path, serde_json::to_vec(&json!({ "workloads": inputs }))?)?;
    let output = Command::new(python)
        .arg(script)
        .arg("--model")
        .arg(model)
        .arg("--inputs")
        .arg(&inputs_path)
        .args(["--device", device, "--attn", "sdpa", "--dtypes", "bf16", "--repeats", "1"])
        .output()?;
    anyhow::ensure!(output.status.success(), "transformers failed: {}", String::from_utf8_lossy(&output.stderr));
    let mut rates = Rates::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let v: Value = serde_json::from_str(line)?;
        if let (Some(workload), Some(batching), Some(cps)) =
            (v["workload"].as_str(), v["batching"].as_str(), v["conv_per_s"].as_f64())
        {
            rates.entry(workload.to_string()).or_default().insert(batching.to_string(), cps);
        }
    }
    Ok(rates)
}

/// The best batching's rate for `workload`.
pub fn best(rates: &Rates, workload: &str) -> Option<f64> {
    rates.get(workload)?.values().copied().reduce(f64::max)
}
