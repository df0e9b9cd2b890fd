//! `--gpu`: the forward pass of an 8B-shaped model on CUDA in bf16, as tokens/s and MFU.
//! Token ids are synthetic (the workloads' lengths), so no tokenizer download is needed.

use std::path::Path;
use std::time::Instant;

use armorm_model::{ComputeDType, DeviceChoice, Encoded, LoadOptions, ModelSource, RewardModel};

use crate::checkpoint::{self, Shape};

/// Dense bf16 tensor-core peak of an H100/H200 SXM, TFLOP/s; override with ARMORM_PEAK_TFLOPS.
const DEFAULT_PEAK_TFLOPS: f64 = 989.0;

fn flops_per_token(s: &Shape, context: usize) -> f64 {
    let hd = s.head_dim;
    let linear =
        s.hidden * (s.heads * hd + 2 * s.kv_heads * hd) + s.heads * hd * s.hidden + 3 * s.hidden * s.intermediate;
    // Causal attention: QK^T and PV over on average half the context.
    let attention = 2 * s.heads * hd * context / 2 * 2;
    2.0 * (linear * s.layers) as f64 + (attention * s.layers) as f64
}

/// Pseudo-random token ids below Llama-3's special tokens (128000..).
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        1000 + ((self.0 >> 33) % 100_000) as u32
    }
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
    let pattern: Vec<u32> = model.encoder().pattern().map(|p| p.ids().to_vec()).unwrap_or_default();
    let mut ids = Ids(0x5EED);
    // prompt + gating pattern + response, with distinct pseudo-random ids (no two conversations share
    // a prefix unless the workload means them to).
    let mut conversation = |prompt: &[u32], response: usize| -> Vec<u32> {
        let mut v = prompt.to_vec();
        v.extend_from_slice(&pattern);
        v.extend((0..response).map(|_| ids.next()));
        v
    };
    let mut workloads: Vec<(&str, Vec<Vec<u32>>)> = Vec::new();
    let fresh = |n: usize, ids: &mut Ids| -> Vec<u32> { (0..n).map(|_| ids.next()).collect() };
    let mut prompts = Ids(0xFACE);
    workloads.push(("256-token", (0..256).map(|_| conversation(&fresh(128, &mut prompts), 120)).collect()));
    workloads.push(("1024-token", (0..64).map(|_| conversation(&fresh(600, &mut prompts), 415)).collect()));
    let mixed = [64, 2048, 128, 512, 96, 1024, 256, 1536, 80, 384, 768, 160];
    workloads.push((
        "mixed 64..2048",
        mixed.iter().cycle().take(48).map(|&n| conversation(&fresh(n / 2, &mut prompts), n / 2 - 9)).collect(),
    ));
    // 16 prompts of ~1024 tokens, each with 8 responses of ~128 tokens (prompt sharing computes each
    // prompt once per batch).
    let mut best_of = Vec::new();
    for _ in 0..16 {
        let prompt = fresh(1000, &mut prompts);
        best_of.extend((0..8).map(|_| conversation(&prompt, 128)));
    }
    workloads.push(("best-of-8", best_of));
    println!("| workload | conversations | tokens/s | conv/s | model TFLOP/s | MFU |");
    println!("|---|---|---|---|---|---|");
    for (name, convs) in workloads {
        let batch: Vec<Encoded> = convs.into_iter().map(|c| model.encoder().encode_ids(c)).collect::<Result<_, _>>()?;
        let refs: Vec<&Encoded> = batch.iter().collect();
        // Warm-up: kernels load, allocator fills.
        model.forward(&refs[..refs.len().min(8)])?;
        // Batches of up to 32768 tokens, in order (best-of-8 groups stay together).
        let batches = crate::batches::by_tokens(refs.iter().copied(), 32768);
        let mut rounds = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            for b in &batches {
                model.forward(b)?;
            }
            rounds.push(started.elapsed().as_secs_f64());
        }
        let seconds = crate::stats::median(rounds);
        let tokens: usize = refs.iter().map(|e| e.len()).sum();
        // The model's FLOPs: every token's as if computed (best-of-8 computes fewer: MFU over 100%
        // there is prompt sharing, not a miscount).
        let flops: f64 = refs.iter().map(|e| e.len() as f64 * flops_per_token(shape, e.len())).sum();
        let tflops = flops / seconds / 1e12;
        println!(
            "| {name} | {} | {:.0} | {:.1} | {tflops:.1} | {:.1}% |",
            refs.len(),
            tokens as f64 / seconds,
            refs.len() as f64 / seconds,
            100.0 * tflops / peak
        );
    }
    Ok(())
}
