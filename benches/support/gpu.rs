//! `--gpu`: the forward pass of an 8B-shaped model on CUDA in bf16, as tokens/s and MFU.
//! Token ids are synthetic (the workloads' lengths), so no tokenizer download is needed.

use std::path::Path;
use std::time::Instant;

use armorm_model::{ComputeDType, DeviceChoice, Encoded, LoadOptions, ModelSource, RewardModel};

use crate::checkpoint::{self, Shape};

/// Dense bf16 tensor-core peak of an H100/H200 SXM, TFLOP/s; override with ARMORM_PEAK_TFLOPS.
const DEFAULT_PEAK_TFLOPS: f64 = 989.0;

fn flops_per_token(s: &Shape, context: usize) -> f64 {
    let hd = s.hidden / s.heads;
    let linear =
        s.hidden * (s.heads * hd + 2 * s.kv_heads * hd) + s.heads * hd * s.hidden + 3 * s.hidden * s.intermediate;
    // Causal attention: QK^T and PV over on average half the context.
    let attention = 2 * s.heads * hd * context / 2 * 2;
    2.0 * (linear * s.layers) as f64 + (attention * s.layers) as f64
}

pub fn run(root: &Path) -> anyhow::Result<()> {
    let shape = &checkpoint::LLAMA3_8B;
    let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/tiny-f32/tokenizer.json");
    println!("writing an 8B-shaped random checkpoint (once; ~16 GB) ...");
    let dir = checkpoint::write(&root.join("llama3-8b-armorm"), shape, &tokenizer)?;
    let options = LoadOptions { device: DeviceChoice::Cuda(0), dtype: Some(ComputeDType::Bf16), ..Default::default() };
    let model = RewardModel::load(&ModelSource::Local(dir), &options)?;
    let peak = std::env::var("ARMORM_PEAK_TFLOPS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_PEAK_TFLOPS);
    println!("device {}, peak {peak} TFLOP/s (bf16 dense)", model.device_name());
    for (name, len, count) in [("256-token", 256, 256), ("1024-token", 1024, 64), ("4096-token", 4096, 16)] {
        let batch: Vec<Encoded> = (0..count).map(|_| model.encoder().synthetic(len)).collect::<Result<_, _>>()?;
        let refs: Vec<&Encoded> = batch.iter().collect();
        model.forward(&refs[..refs.len().min(4)])?; // warm-up: kernels load, allocator fills
        let started = Instant::now();
        for chunk in refs.chunks((32768 / len).max(1)) {
            model.forward(chunk)?;
        }
        let seconds = started.elapsed().as_secs_f64();
        let tokens = (len * count) as f64;
        let tflops = tokens * flops_per_token(shape, len) / seconds / 1e12;
        println!(
            "{name:<11} {:>9.0} tokens/s  {:>7.1} conv/s  {tflops:>6.1} TFLOP/s  MFU {:.1}%",
            tokens / seconds,
            count as f64 / seconds,
            100.0 * tflops / peak
        );
    }
    Ok(())
}
