//! Stage 2's hand-written forward, backward and AdamW step by step against PyTorch
//! (tests/fixtures/train/gating_steps.json: nn.Linear layers, softmax over the objectives,
//! BCE-with-logits on the margin, AdamW, CosineAnnealingLR), with the same initial weights and
//! batches: once through the training loop without dropout, once with PyTorch's dropout masks and
//! weight decay through the step's own pieces.

use std::collections::BTreeMap;
use std::path::Path;

use armorm_train::gating::adamw::AdamW;
use armorm_train::gating::backprop::{Backprop, Batch};
use armorm_train::gating::train::{cosine_lr, run_steps};
use armorm_train::gating::{GatingNet, GatingSettings, GatingShape, PairData};
use armorm_train::tensors::F32Tensor;
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

/// One case of the fixture: the initial network, its data and batches.
struct Case {
    net: GatingNet,
    prompts: Vec<Vec<f32>>,
    chosen: Vec<f32>,
    rejected: Vec<f32>,
    batches: Vec<Vec<usize>>,
}

impl Case {
    fn read(f: &Value) -> Self {
        let s = &f["shape"];
        let dim = |k: &str| s[k].as_u64().unwrap() as usize;
        let shape = GatingShape {
            input: dim("input"),
            hidden: dim("hidden"),
            n_hidden: dim("n_hidden"),
            objectives: dim("objectives"),
            temperature: s["temperature"].as_f64().unwrap(),
        };
        let rows = |key: &str| -> Vec<f32> { f[key].as_array().unwrap().iter().flat_map(floats).collect() };
        let batches = f["batches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect())
            .collect();
        Self {
            net: GatingNet::from_tensors(shape, &tensors(&f["init"])).unwrap(),
            prompts: f["prompts"].as_array().unwrap().iter().map(floats).collect(),
            chosen: rows("chosen"),
            rejected: rows("rejected"),
            batches,
        }
    }

    fn data(&self) -> PairData<'_> {
        PairData {
            prompts: self.prompts.iter().map(Vec::as_slice).collect(),
            chosen: self.chosen.clone(),
            rejected: self.rejected.clone(),
            objectives: self.net.shape.objectives,
        }
    }
}

fn assert_matches(f: &Value, losses: &[f32], net: &GatingNet) {
    for (step, (got, want)) in losses.iter().zip(floats(&f["losses"])).enumerate() {
        assert!((got - want).abs() < 1e-5, "step {step}: loss {got}, PyTorch {want}");
    }
    let trained = net.to_tensors();
    for (name, want) in tensors(&f["final"]) {
        let got = &trained[&name];
        assert_eq!(got.shape, want.shape, "{name}");
        for (i, (g, w)) in got.data.iter().zip(&want.data).enumerate() {
            assert!((g - w).abs() < 1e-4, "{name}[{i}]: {g} after training, PyTorch {w}");
        }
    }
}

#[test]
fn training_steps_match_pytorch() {
    let f = fixture();
    let mut case = Case::read(&f);
    let settings = GatingSettings {
        learning_rate: f["learning_rate"].as_f64().unwrap(),
        dropout: 0.0,
        steps: case.batches.len(),
        ..GatingSettings::default()
    };
    let batches = std::mem::take(&mut case.batches);
    let mut net = case.net.clone();
    let losses = run_steps(&mut net, &case.data(), &batches, &settings, &mut |_, _| {});
    assert_matches(&f, &losses, &net);
}

#[test]
fn steps_with_dropout_and_weight_decay_match_pytorch() {
    let f = &fixture()["dropout"];
    let case = Case::read(f);
    let (k, d) = (case.net.shape.objectives, case.net.shape.input);
    let lr = f["learning_rate"].as_f64().unwrap();
    let mut net = case.net.clone();
    let mut backprop = Backprop::new(&net);
    let mut opt = AdamW::new(&net, f["weight_decay"].as_f64().unwrap());
    let masks: Vec<Vec<Vec<f32>>> =
        f["masks"].as_array().unwrap().iter().map(|s| s.as_array().unwrap().iter().map(floats).collect()).collect();
    let mut losses = Vec::new();
    for (step, idx) in case.batches.iter().enumerate() {
        let prompts: Vec<f32> = idx.iter().flat_map(|&i| case.prompts[i].clone()).collect();
        let pick = |v: &[f32]| -> Vec<f32> { idx.iter().flat_map(|&i| v[i * k..(i + 1) * k].to_vec()).collect() };
        let (chosen, rejected) = (pick(&case.chosen), pick(&case.rejected));
        assert_eq!(prompts.len(), idx.len() * d);
        let batch = Batch { n: idx.len(), prompts: &prompts, chosen: &chosen, rejected: &rejected };
        losses.push(backprop.step(&net, &batch, Some(&masks[step])));
        opt.step(&mut net, &backprop.grads, cosine_lr(lr, step, case.batches.len()));
    }
    assert_matches(f, &losses, &net);
}
