//! The whole training run on planted data (tests/fixtures/train/generate.py) against scikit-learn's
//! ridge fits, scipy's Spearman-based lambdas and the best fixed mixture's accuracy.

mod common;

use common::*;
use serde_json::Value;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn rel_close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(1e-3)
}

#[test]
fn planted_data_recovers_the_reference_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (work, out) = (dir.path().join("work"), dir.path().join("out"));
    let mut args: Vec<String> = vec![
        "--ratings".into(),
        path(&train_fixture("ratings.jsonl")).into(),
        "--pairs".into(),
        path(&train_fixture("pairs.jsonl")).into(),
        "--work".into(),
        path(&work).into(),
        "--out".into(),
        path(&out).into(),
    ];
    args.extend(generator_flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    train(None, &args).unwrap();
    let exp = json(&train_fixture("expected.json"));
    let report = json(&out.join("train_report.json"));
    let names: Vec<String> = exp["objectives"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().into()).collect();
    assert_eq!(report["objectives"], exp["objectives"]);

    // Stage 1: every alpha's validation MSE as sklearn computes it; the chosen alpha is sklearn's
    // unless the two are closer than the features' f32 noise can separate; weights as sklearn's.
    let weights = armorm_train::tensors::load(&work.join("regression.safetensors")).unwrap();
    let w = &weights["regression_layer.weight"];
    let d = w.shape[1];
    let alphas = floats(&report["regression"]["alphas"]);
    for (j, name) in names.iter().enumerate() {
        let mse = floats(&report["regression"]["mse_by_alpha"][name]);
        let want = floats(&exp["mse_by_alpha"][name]);
        for (a, (g, e)) in mse.iter().zip(&want).enumerate() {
            assert!(rel_close(*g, *e, 1e-3), "{name} alpha {}: MSE {g}, sklearn {e}", alphas[a]);
        }
        let alpha = report["regression"]["alpha"][name].as_f64().unwrap();
        let (chosen, best) = (alphas.iter().position(|&a| a == alpha).unwrap(), exp["alpha"][name].as_f64().unwrap());
        let best_i = alphas.iter().position(|&a| a == best).unwrap();
        assert!(
            chosen == best_i || (want[chosen] - want[best_i]).abs() <= 1e-4 * want[best_i],
            "{name}: alpha {alpha}, sklearn picks {best}"
        );
        let sk = floats(&exp["weights_by_alpha"][name][chosen]);
        let norm = sk.iter().map(|x| x * x).sum::<f64>().sqrt();
        let err =
            w.data[j * d..(j + 1) * d].iter().zip(&sk).map(|(g, e)| (f64::from(*g) - e).powi(2)).sum::<f64>().sqrt();
        assert!(err <= 1e-3 * norm, "{name}: |W - W_sklearn| = {err}, |W_sklearn| = {norm}");
        assert_eq!(report["regression"]["train_rows"][name], exp["train_rows"][name], "{name}");
        assert_eq!(report["regression"]["val_rows"][name], exp["val_rows"][name], "{name}");
    }
    assert_eq!(report["features"]["ratings"]["skipped_too_long"], 1);
    assert_eq!(report["features"]["pairs"]["skipped_too_long"], 1);

    // Debiasing: lambdas and T exactly as scipy's Spearman gives them.
    for name in &names {
        assert_eq!(report["debias"]["lambda"][name], exp["lambda"][name], "lambda of {name}");
        let (g, e) = (report["debias"]["spearman"][name].as_f64().unwrap(), exp["spearman"][name].as_f64().unwrap());
        assert!((g - e).abs() < 1e-3, "spearman of {name}: {g} vs scipy {e}");
    }
    let t: Vec<Vec<f64>> = report["debias"]["reward_transform_matrix"].as_array().unwrap().iter().map(floats).collect();
    let t_exp: Vec<Vec<f64>> = exp["transform"].as_array().unwrap().iter().map(floats).collect();
    for (row, row_exp) in t.iter().zip(&t_exp) {
        for (g, e) in row.iter().zip(row_exp) {
            assert!((g - e).abs() < 1e-6, "T: {t:?} vs {t_exp:?}");
        }
    }

    // Stage 2: the prompt-dependent gating beats every fixed mixture on the held-out pairs.
    let acc = report["gating"]["val_accuracy"].as_f64().unwrap();
    let fixed = exp["best_fixed_val_accuracy"].as_f64().unwrap();
    assert!(acc > fixed, "gating validation accuracy {acc} <= best fixed mixture {fixed}");
    assert_eq!(report["gating"]["val_pairs"], exp["val_pairs"]);
    assert_eq!(report["gating"]["loss"].as_array().unwrap().len(), 300);
    for plot in ["train_loss.svg", "debias_lambda_sweep.svg"] {
        let svg = std::fs::read_to_string(out.join(plot)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{plot}");
    }
    eprintln!("val accuracy {acc} vs best fixed mixture {fixed}");
}

#[test]
fn parquet_ratings_train_exactly_like_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut weights = Vec::new();
    for (i, file) in ["ratings.jsonl", "ratings.parquet"].iter().enumerate() {
        let work = dir.path().join(format!("work{i}"));
        let ratings = train_fixture(file);
        let pairs = train_fixture("pairs.jsonl");
        let mut args = vec!["--ratings", path(&ratings), "--pairs", path(&pairs), "--work", path(&work)];
        args.extend(["--scale", "prometheus-score=1:5", "--max-input-tokens", "384"]);
        train(Some("embed"), &args).unwrap();
        train(Some("regression"), &args).unwrap();
        weights.push(armorm_train::tensors::load(&work.join("regression.safetensors")).unwrap());
    }
    assert_eq!(weights[0], weights[1]);
}
