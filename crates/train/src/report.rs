//! `train_report.json` and its two plots (the stage-2 loss curve and the debiasing λ sweep), written
//! into the exported checkpoint so the run that made it can be read later.

use std::path::Path;

use plotters::prelude::*;
use serde_json::{json, Map, Value};

use crate::error::{Result, TrainError};
use crate::gating::GatingReport;
use crate::stages::debias::{Debias, LAMBDA_GRID};
use crate::stages::regression::Regression;

pub const REPORT: &str = "train_report.json";
pub const LOSS_SVG: &str = "train_loss.svg";
pub const SWEEP_SVG: &str = "debias_lambda_sweep.svg";

/// The stage results a report is made of.
pub struct Stages<'a> {
    pub regression: &'a Regression,
    pub debias: &'a Debias,
    pub gating: &'a GatingReport,
}

/// `name -> value` in objective order.
fn by_name<T: Into<Value> + Clone>(names: &[String], values: impl IntoIterator<Item = T>) -> Value {
    Value::Object(names.iter().cloned().zip(values.into_iter().map(Into::into)).collect::<Map<_, _>>())
}

pub fn json(s: &Stages) -> Value {
    let names = s.regression.names();
    let r = &s.regression.objectives;
    let g = s.gating;
    json!({
        "armorm_version": env!("CARGO_PKG_VERSION"),
        "objectives": names,
        "features": {
            "ratings": {
                "rows": s.regression.rows,
                "skipped_too_long": s.regression.skipped_too_long,
                "skipped_bad": s.regression.skipped_bad,
            },
            "pairs": {
                "pairs": g.train_pairs + g.val_pairs,
                "skipped_too_long": g.skipped_too_long,
                "skipped_bad": g.skipped_bad,
            },
        },
        "regression": {
            "alpha": by_name(&names, r.iter().map(|o| o.alpha)),
            "val_mse": by_name(&names, r.iter().map(|o| o.val_mse)),
            "mse_by_alpha": by_name(&names, r.iter().map(|o| o.mse_by_alpha.clone())),
            "train_rows": by_name(&names, r.iter().map(|o| o.train_rows)),
            "val_rows": by_name(&names, r.iter().map(|o| o.val_rows)),
            "alphas": s.regression.alphas,
            "seed": s.regression.seed,
        },
        "debias": {
            "verbosity_objective": s.debias.verbosity,
            "lambda": by_name(&names, s.debias.lambda.iter().copied()),
            "spearman": by_name(&names, s.debias.spearman.iter().copied()),
            "threshold": s.debias.threshold,
            "grid": LAMBDA_GRID,
            "reference_rows": s.debias.reference_rows,
            "reward_transform_matrix": s.debias.transform,
        },
        "gating": {
            "val_accuracy": g.val_accuracy,
            "train_accuracy": g.train_accuracy,
            "steps": g.settings.steps,
            "batch_size": g.settings.batch_size,
            "learning_rate": g.settings.learning_rate,
            "dropout": g.settings.dropout,
            "hidden_dim": g.settings.hidden_dim,
            "n_hidden": g.settings.n_hidden,
            "seed": g.settings.seed,
            "train_pairs": g.train_pairs,
            "val_pairs": g.val_pairs,
            "steps_per_s": g.steps_per_s,
            "loss": g.loss,
        },
        "plots": [LOSS_SVG, SWEEP_SVG],
    })
}

/// Writes the report and both plots into `dir`.
pub fn write(s: &Stages, dir: &Path) -> Result<()> {
    crate::store::write_json(&dir.join(REPORT), &json(s))?;
    loss_plot(&s.gating.loss, &dir.join(LOSS_SVG)).map_err(|e| plot_error(LOSS_SVG, e))?;
    sweep_plot(s.debias, &dir.join(SWEEP_SVG)).map_err(|e| plot_error(SWEEP_SVG, e))
}

fn plot_error(name: &str, e: Box<dyn std::error::Error>) -> TrainError {
    TrainError::Invalid(format!("drawing {name}: {e}"))
}

type PlotResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn loss_plot(loss: &[f32], path: &Path) -> PlotResult {
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = loss.iter().cloned().fold(0f32, f32::max).max(1e-6) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption("Stage 2: gating network training loss", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f32..loss.len().max(1) as f32, 0f32..top)?;
    chart.configure_mesh().x_desc("step").y_desc("Bradley-Terry loss").draw()?;
    chart.draw_series(LineSeries::new(loss.iter().enumerate().map(|(i, &l)| (i as f32, l)), &BLUE))?;
    root.present()?;
    Ok(())
}

fn sweep_plot(d: &Debias, path: &Path) -> PlotResult {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let finite = d.sweep.iter().flatten().copied().filter(|c| c.is_finite());
    let threshold = d.threshold;
    let (lo, hi) = finite.fold((threshold, threshold), |(a, b), c| (a.min(c), b.max(c)));
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Verbosity debiasing: Spearman(r_i - λ r_v, r_v), v = {}", d.verbosity), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..1f64, (lo - 0.05)..(hi + 0.05))?;
    chart.configure_mesh().x_desc("λ").y_desc("Spearman correlation with verbosity").draw()?;
    chart
        .draw_series(LineSeries::new([(0.0, threshold), (1.0, threshold)], BLACK.stroke_width(1)))?
        .label(format!("threshold {threshold}"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
    for (i, (name, sweep)) in d.objectives.iter().zip(&d.sweep).enumerate() {
        if *name == d.verbosity {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        let points = LAMBDA_GRID.iter().zip(sweep).filter(|(_, c)| c.is_finite()).map(|(&l, &c)| (l, c));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(format!("{name} (λ = {})", d.lambda[i]))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
