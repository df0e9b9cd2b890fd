//! Training speed against the authors' procedure, in one run, as ratios.
//!
//!     export ARMORM_REFERENCE_PYTHON=$(scripts/reference-env.sh)   # numpy + scikit-learn + torch
//!     cargo bench -p armorm-train --bench train [-- --rows-per-group N] [--steps N]
//!
//! Stage 1 at d = 4096: 19 objectives in 4 groups that share a label mask (as the public ArmoRM data
//! groups them by source dataset), N rows per group (default 16000), planted linear labels. armorm
//! streams the rows into one Gram matrix per group and solves each alpha by one Cholesky
//! factorisation; the reference (benches/train_reference.py) runs scikit-learn's Ridge for every
//! objective and alpha, as the authors' stage-1 script does. Stage 2: gating steps/s (d 4096 -> 1024
//! x 3 -> 19, 1024 pairs a step, dropout) against the same steps in PyTorch on the same CPU.

use std::path::Path;
use std::time::Instant;

use armorm_train::gating::train::run_steps;
use armorm_train::gating::{GatingNet, GatingSettings, GatingShape, PairData};
use armorm_train::npy::NpyWriter;
use armorm_train::ridge::{fit, Moments, ALPHAS};
use armorm_train::split::{splitmix64, validation_mask};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const D: usize = 4096;
const GROUPS: [usize; 4] = [5, 5, 5, 4];

fn arg(name: &str, default: usize) -> usize {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)?.parse().ok()).unwrap_or(default)
}

/// Standard normal draws from a seeded generator (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn main() -> armorm_train::Result<()> {
    let rows_per_group = arg("--rows-per-group", 16000);
    let steps = arg("--steps", 20);
    let k: usize = GROUPS.iter().sum();
    let n = rows_per_group * GROUPS.len();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench/train");
    std::fs::create_dir_all(&dir).map_err(|e| armorm_train::TrainError::io(&dir, e))?;
    println!("stage 1: d = {D}, {k} objectives in {} groups of {rows_per_group} rows ({n} rows)", GROUPS.len());

    // Planted data: x ~ N(0, 1), y = x w + noise; group g's objectives are rated on its rows only.
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(42));
    let w: Vec<Vec<f64>> = (0..k).map(|_| (0..D).map(|_| normal(&mut rng) / (D as f64).sqrt()).collect()).collect();
    let (mut xw, mut yw) = (
        NpyWriter::<f32>::create(&dir.join("x.npy"), Some(D))?,
        NpyWriter::<f32>::create(&dir.join("y.npy"), Some(k))?,
    );
    let mut ys = vec![f64::NAN; n * k];
    let mut first = 0;
    for (g, &size) in GROUPS.iter().enumerate() {
        for r in g * rows_per_group..(g + 1) * rows_per_group {
            let x: Vec<f32> = (0..D).map(|_| normal(&mut rng) as f32).collect();
            for j in first..first + size {
                let clean: f64 = x.iter().zip(&w[j]).map(|(a, b)| f64::from(*a) * b).sum();
                ys[r * k + j] = clean + 0.3 * normal(&mut rng);
            }
            xw.push(&x)?;
            yw.push(&ys[r * k..(r + 1) * k].iter().map(|&v| v as f32).collect::<Vec<_>>())?;
        }
        first += size;
    }
    xw.sync()?;
    yw.sync()?;
    let x = armorm_train::npy::NpyMatrix::<f32>::open(&dir.join("x.npy"))?;

    // armorm: one streamed pass per group, one Cholesky factorisation per group and alpha.
    let started = Instant::now();
    let mut alphas = Vec::new();
    let mut solve_secs = 0.0;
    let mut first = 0;
    for (g, &size) in GROUPS.iter().enumerate() {
        let rows: Vec<u64> = (g * rows_per_group..(g + 1) * rows_per_group).map(|r| r as u64).collect();
        let val = validation_mask(0, &rows);
        let (mut train, mut valm) = (Moments::new(D, size), Moments::new(D, size));
        for (&r, &is_val) in rows.iter().zip(&val) {
            let r = r as usize;
            let y: Vec<f64> = (first..first + size).map(|j| f64::from(ys[r * k + j] as f32)).collect();
            if is_val {
                valm.push(x.row(r), &y)
            } else {
                train.push(x.row(r), &y)
            }
        }
        let solve = Instant::now();
        let fits = fit(train, valm, &ALPHAS).map_err(|e| armorm_train::TrainError::Invalid(format!("{e:?}")))?;
        solve_secs += solve.elapsed().as_secs_f64();
        alphas.extend(fits.iter().map(|f| f.alpha));
        first += size;
    }
    let ours = started.elapsed().as_secs_f64();
    println!("armorm stage 1: {ours:.1} s ({:.1} s of it the alphas' solves and validation)", solve_secs);

    // Stage 2: gating steps at the paper's shape.
    let batch = 1024;
    let shape = GatingShape { input: D, hidden: 1024, n_hidden: 3, objectives: k, temperature: 10.0 };
    let mut net = GatingNet::init(shape, &mut rng);
    let m = 4 * batch;
    let prompts: Vec<f32> = (0..m * D).map(|_| normal(&mut rng) as f32).collect();
    let data = PairData {
        prompts: prompts.chunks(D).collect(),
        chosen: (0..m * k).map(|_| normal(&mut rng) as f32).collect(),
        rejected: (0..m * k).map(|_| normal(&mut rng) as f32).collect(),
        objectives: k,
    };
    let batches: Vec<Vec<usize>> =
        (0..steps + 1).map(|_| (0..batch).map(|_| rng.random_range(0..m)).collect()).collect();
    let settings = GatingSettings { steps, ..GatingSettings::default() };
    run_steps(&mut net, &data, &batches[..1], &settings, &mut |_, _| {}); // warm-up
    let started = Instant::now();
    run_steps(&mut net, &data, &batches[1..], &settings, &mut |_, _| {});
    let steps_per_s = steps as f64 / started.elapsed().as_secs_f64();
    println!("armorm stage 2: {steps_per_s:.2} steps/s");

    let Some(python) = std::env::var_os("ARMORM_REFERENCE_PYTHON") else {
        println!("(no ARMORM_REFERENCE_PYTHON: reference not run, no ratios)");
        return Ok(());
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/train_reference.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args([dir.join("x.npy"), dir.join("y.npy")])
        .args([D, k, steps, batch, 1024, 3].map(|v| v.to_string()))
        .env("OMP_NUM_THREADS", "2")
        .output()
        .map_err(|e| armorm_train::TrainError::Invalid(format!("reference: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let reference: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("{}")).map_err(|_| {
        armorm_train::TrainError::Invalid(format!("reference failed: {}", String::from_utf8_lossy(&out.stderr)))
    })?;
    let ref_secs = reference["stage1_secs"].as_f64().unwrap_or(f64::NAN);
    let ref_alphas: Vec<f64> =
        reference["alphas"].as_array().map(|a| a.iter().filter_map(|v| v.as_f64()).collect()).unwrap_or_default();
    let same = ref_alphas == alphas;
    let ref_sps = reference["stage2_steps_per_s"].as_f64().unwrap_or(f64::NAN);
    println!();
    println!("| | reference | armorm | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| stage 1, s (sklearn Ridge per objective per alpha) | {ref_secs:.1} | {ours:.1} | {:.1}x faster |",
        ref_secs / ours
    );
    println!("| stage 2, steps/s (PyTorch) | {ref_sps:.2} | {steps_per_s:.2} | {:.2}x |", steps_per_s / ref_sps);
    println!("same chosen alphas: {same} (armorm {alphas:?}, sklearn {ref_alphas:?})");
    Ok(())
}
