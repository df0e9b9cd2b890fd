//! What a person reads: the terminal table and the self-contained HTML page (inline SVG, no
//! scripts, fonts or network), both made from the typed result that `--json` serialises, so they
//! cannot disagree with it.

use std::fmt::Write;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::audit::Audit;
use crate::result::{Benchmark, EvalResult};

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{:.1}", 100.0 * x))
}

/// The terminal summary: subsets, sections, overall, and the verbosity audit.
pub fn table(r: &EvalResult) -> String {
    let mut out = String::new();
    for (title, b) in r.benchmarks() {
        let _ = writeln!(out, "\n{title}\n{:<28} {:>6} {:>9}", "subset", "n", "accuracy");
        for s in b.subsets() {
            let _ = writeln!(out, "{:<28} {:>6} {:>9}", s.subset, s.n, pct(Some(s.accuracy)));
        }
        if let Benchmark::V1(v) = b {
            let _ = writeln!(out, "{:<28} {:>16}", "section", "score");
            for (name, score) in &v.sections {
                let _ = writeln!(out, "{name:<28} {:>16}", pct(Some(*score)));
            }
            if !v.other.is_empty() {
                let _ = writeln!(out, "{:<28} {}", "other (in no section)", v.other.join(", "));
            }
        }
        let _ = writeln!(out, "{:<28} {:>16}", "overall", pct(b.overall()));
    }
    out.push_str(&audit_text(&r.audit, &r.skipped_rows));
    out
}

/// The verbosity audit and the skipped rows, as the table ends and the HTML page quotes them.
fn audit_text(a: &Audit, skipped_rows: &[String]) -> String {
    let mut out = String::new();
    let _ = match a.spearman_score_length {
        Some(rho) => writeln!(
            out,
            "\nVerbosity audit over {} distinct completions: Spearman(score, length) = {rho:+.3}",
            a.completions
        ),
        None => writeln!(
            out,
            "\nVerbosity audit over {} distinct completions (a pairwise model scores no answer alone)",
            a.completions
        ),
    };
    for (split, what) in [(&a.chosen_shorter, "shorter"), (&a.chosen_longer, "longer")] {
        let _ = writeln!(
            out,
            "  accuracy when the chosen answer is {what}: {} ({} pairs)",
            pct(split.accuracy),
            split.pairs
        );
    }
    for o in &a.objectives {
        let _ = writeln!(out, "  {:<36} raw {:+.3}  debiased {:+.3}", o.objective, o.raw, o.debiased);
    }
    if !skipped_rows.is_empty() {
        let _ = writeln!(out, "skipped rows: {}", skipped_rows.len());
    }
    out
}

type Chart = Result<String, Box<dyn std::error::Error>>;

/// Horizontal bars of values in [0, 1].
fn bars(title: &str, items: &[(String, f64)]) -> Chart {
    let mut svg = String::new();
    {
        let height = 60 + 22 * items.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (760, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(10)
            .build_cartesian_2d(0f64..100f64, 0f64..items.len().max(1) as f64)?;
        chart.configure_mesh().disable_y_mesh().y_labels(0).x_desc("accuracy (%)").draw()?;
        // Bars top-down in the given order, each labelled inside with its name and value.
        let row = |i: usize| (items.len() - 1 - i) as f64;
        chart.draw_series(items.iter().enumerate().map(|(i, (_, v))| {
            Rectangle::new([(0.0, row(i) + 0.1), (100.0 * v, row(i) + 0.9)], BLUE.mix(0.3).filled())
        }))?;
        chart.draw_series(items.iter().enumerate().map(|(i, (name, v))| {
            let style = ("sans-serif", 13).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
            Text::new(format!("{name}: {:.1}", 100.0 * v), (1.0, row(i) + 0.5), style)
        }))?;
        root.present()?;
    }
    Ok(svg)
}

fn scatter(points: &[(f64, f64)]) -> Chart {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let (xmax, (ymin, ymax)) = points
            .iter()
            .fold((1.0f64, (f64::MAX, f64::MIN)), |(x, (lo, hi)), (px, py)| (x.max(*px), (lo.min(*py), hi.max(*py))));
        let pad = ((ymax - ymin) * 0.05).max(1e-3);
        let mut chart = ChartBuilder::on(&root)
            .caption("Score against answer length", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..xmax * 1.05, (ymin - pad)..(ymax + pad))?;
        chart.configure_mesh().x_desc("answer length (tokens)").y_desc("score").draw()?;
        chart.draw_series(points.iter().map(|&(x, y)| Circle::new((x, y), 3, BLUE.mix(0.5).filled())))?;
        root.present()?;
    }
    Ok(svg)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The HTML report: section and subset accuracy, the length/score scatter, the audit, and for
/// ArmoRM the mean gating weight per objective per section.
pub fn html(r: &EvalResult, points: &[(f64, f64)]) -> String {
    let mut body = String::new();
    let model = &r.model;
    let _ = write!(
        body,
        "<h1>armorm eval</h1><p>Model <code>{}</code> ({}, {}), {} examples, {} distinct conversations.</p>",
        escape(&model.id),
        escape(model.head.name()),
        escape(model.dtype.name()),
        r.examples,
        r.distinct_conversations
    );
    let chart = |body: &mut String, result: Chart| match result {
        Ok(svg) => body.push_str(&svg),
        Err(e) => {
            let _ = write!(body, "<p>(chart unavailable: {})</p>", escape(&e.to_string()));
        }
    };
    for (title, b) in r.benchmarks() {
        let _ = write!(body, "<h2>{title}: overall {}</h2>", pct(b.overall()));
        if let Benchmark::V1(v) = b {
            chart(&mut body, bars("Sections", &v.sections));
        }
        let items: Vec<(String, f64)> = b.subsets().iter().map(|s| (s.subset.clone(), s.accuracy)).collect();
        chart(&mut body, bars("Subsets", &items));
    }
    body.push_str("<h2>Verbosity audit</h2>");
    if !points.is_empty() {
        chart(&mut body, scatter(points));
    }
    body.push_str("<pre>");
    body.push_str(&escape(&audit_text(&r.audit, &r.skipped_rows)));
    body.push_str("</pre>");
    if let Some(groups) = &r.gating_by_section {
        body.push_str("<h2>Mean gating weight per objective</h2><table><tr><th>objective</th>");
        for g in groups {
            let _ = write!(body, "<th>{}</th>", escape(&g.section));
        }
        body.push_str("</tr>");
        for (i, name) in model.objectives.iter().enumerate() {
            let _ = write!(body, "<tr><td>{}</td>", escape(name));
            for g in groups {
                let w = g.weights.get(i).map_or(0.0, |(_, w)| *w);
                let _ =
                    write!(body, "<td style=\"background: rgba(40, 90, 200, {:.2})\">{w:.3}</td>", w.clamp(0.0, 1.0));
            }
            body.push_str("</tr>");
        }
        body.push_str("</table>");
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>armorm eval</title><style>\
         body {{ font-family: sans-serif; max-width: 800px; margin: auto; }} table {{ border-collapse: collapse; }} \
         td, th {{ border: 1px solid #ccc; padding: 2px 6px; font-size: 13px; }}</style></head><body>{body}</body></html>\n"
    )
}
