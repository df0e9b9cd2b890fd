//! The stage-2 optimisation step by step against PyTorch (tests/fixtures/train/gating_steps.json:
//! nn.Linear layers, softmax over the objectives, BCE-with-logits on the margin, AdamW,
//! CosineAnnealingLR), with the same initial weights and batches and no dropout.

use std::collections::BTreeMap;
use std::path::Path;

use armorm_train::gating::train::run_steps;
use armorm_train::gating::{GatingNet, GatingSettings, GatingShape, PairData};
use armorm_train::tensors::F32Tensor;
use candle_core::Device;
use serde_json::Value;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/train/gating_steps.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn tensors(v: &Value) -> BTreeMap<String, F32Tensor> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(name, t)| {
            let shape = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            (name.clone(), F32Tensor::new(shape, floats(&t["data"])))
        })
        .collect()
}

#[test]
fn training_steps_match_pytorch() {
    let f = fixture();
    let s = &f["shape"];
    let dim = |k: &str| s[k].as_u64().unwrap() as usize;
    let shape = GatingShape {
        input: dim("input"),
        hidden: dim("hidden"),
        n_hidden: dim("n_hidden"),
        objectives: dim("objectives"),
        temperature: s["temperature"].as_f64().unwrap(),
    };
    let net = GatingNet::from_tensors(shape, &tensors(&f["init"]), &Device::Cpu).unwrap();
    let prompts: Vec<Vec<f32>> = f["prompts"].as_array().unwrap().iter().map(floats).collect();
    let rows = |key: &str| -> Vec<f32> { f[key].as_array().unwrap().iter().flat_map(floats).collect() };
    let data = PairData {
        prompts: prompts.iter().map(Vec::as_slice).collect(),
        chosen: rows("chosen"),
        rejected: rows("rejected"),
        objectives: shape.objectives,
    };
    let batches: Vec<Vec<usize>> = f["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect())
        .collect();
    let settings = GatingSettings {
        learning_rate: f["learning_rate"].as_f64().unwrap(),
        dropout: 0.0,
        steps: batches.len(),
        ..GatingSettings::default()
    };
    let losses = run_steps(&net, &data, &batches, &settings, &Device::Cpu, &mut |_| {}).unwrap();
    for (step, (got, want)) in losses.iter().zip(floats(&f["losses"])).enumerate() {
        assert!((got - want).abs() < 1e-5, "step {step}: loss {got}, PyTorch {want}");
    }
    let trained = net.to_tensors().unwrap();
    for (name, want) in tensors(&f["final"]) {
        let got = &trained[&name];
        assert_eq!(got.shape, want.shape, "{name}");
        for (i, (g, w)) in got.data.iter().zip(&want.data).enumerate() {
            assert!((g - w).abs() < 1e-4, "{name}[{i}]: {g} after training, PyTorch {w}");
        }
    }
}
