//! What a person reads: the terminal table and the self-contained HTML page (inline SVG, no
//! scripts, fonts or network), both made from the JSON result so they cannot disagree with it.

use std::fmt::Write;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

fn pct(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |x| format!("{:.1}", 100.0 * x))
}

/// The terminal summary: subsets, sections, overall, and the verbosity audit.
pub fn table(r: &Value) -> String {
    let mut out = String::new();
    for (key, title) in [("v1", "RewardBench"), ("v2", "RewardBench 2")] {
        let v = &r[key];
        if v.is_null() {
            continue;
        }
        let _ = writeln!(out, "\n{title}\n{:<28} {:>6} {:>9}", "subset", "n", "accuracy");
        for s in v["subsets"].as_array().into_iter().flatten() {
            let n = s["n"].as_u64().unwrap_or(0);
            let _ = writeln!(out, "{:<28} {n:>6} {:>9}", s["subset"].as_str().unwrap_or(""), pct(&s["accuracy"]));
        }
        if let Some(sections) = v["sections"].as_object() {
            let _ = writeln!(out, "{:<28} {:>16}", "section", "score");
            for (name, score) in sections {
                let _ = writeln!(out, "{name:<28} {:>16}", pct(score));
            }
            if let Some(other) = v["other"].as_array().filter(|o| !o.is_empty()) {
                let names: Vec<&str> = other.iter().filter_map(Value::as_str).collect();
                let _ = writeln!(out, "{:<28} {}", "other (in no section)", names.join(", "));
            }
        }
        let _ = writeln!(out, "{:<28} {:>16}", "overall", pct(&v["overall"]));
    }
    let a = &r["audit"];
    let _ = writeln!(
        out,
        "\nVerbosity audit over {} distinct completions: Spearman(score, length) = {:+.3}",
        a["completions"],
        a["spearman_score_length"].as_f64().unwrap_or(f64::NAN)
    );
    for (key, what) in [("chosen_shorter", "shorter"), ("chosen_longer", "longer")] {
        let _ = writeln!(
            out,
            "  accuracy when the chosen answer is {what}: {} ({} pairs)",
            pct(&a[key]["accuracy"]),
            a[key]["pairs"]
        );
    }
    for o in a["objectives"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {:<36} raw {:+.3}  debiased {:+.3}",
            o["objective"].as_str().unwrap_or(""),
            o["raw"].as_f64().unwrap_or(f64::NAN),
            o["debiased"].as_f64().unwrap_or(f64::NAN)
        );
    }
    if !r["skipped_rows"].as_array().is_none_or(Vec::is_empty) {
        let _ = writeln!(out, "skipped rows: {}", r["skipped_rows"].as_array().map_or(0, Vec::len));
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
pub fn html(r: &Value, points: &[(f64, f64)]) -> String {
    let mut body = String::new();
    let model = &r["model"];
    let _ = write!(
        body,
        "<h1>armorm eval</h1><p>Model <code>{}</code> ({}, {}), {} examples, {} distinct conversations.</p>",
        escape(model["id"].as_str().unwrap_or("")),
        escape(model["head"].as_str().unwrap_or("")),
        escape(model["dtype"].as_str().unwrap_or("")),
        r["examples"],
        r["distinct_conversations"]
    );
    let chart = |body: &mut String, result: Chart| match result {
        Ok(svg) => body.push_str(&svg),
        Err(e) => {
            let _ = write!(body, "<p>(chart unavailable: {})</p>", escape(&e.to_string()));
        }
    };
    for (key, title) in [("v1", "RewardBench"), ("v2", "RewardBench 2")] {
        let v = &r[key];
        if v.is_null() {
            continue;
        }
        let _ = write!(body, "<h2>{title}: overall {}</h2>", pct(&v["overall"]));
        if let Some(sections) = v["sections"].as_object() {
            let items: Vec<(String, f64)> =
                sections.iter().map(|(n, s)| (n.clone(), s.as_f64().unwrap_or(0.0))).collect();
            chart(&mut body, bars("Sections", &items));
        }
        let items: Vec<(String, f64)> = v["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| (s["subset"].as_str().unwrap_or("").to_string(), s["accuracy"].as_f64().unwrap_or(0.0)))
            .collect();
        chart(&mut body, bars("Subsets", &items));
    }
    body.push_str("<h2>Verbosity audit</h2>");
    chart(&mut body, scatter(points));
    body.push_str("<pre>");
    let audit_only: serde_json::Map<String, Value> =
        [("audit".to_string(), r["audit"].clone()), ("skipped_rows".to_string(), r["skipped_rows"].clone())]
            .into_iter()
            .collect();
    body.push_str(&escape(&table(&Value::Object(audit_only))));
    body.push_str("</pre>");
    if let Some(groups) = r["gating_by_section"].as_object() {
        body.push_str("<h2>Mean gating weight per objective</h2><table><tr><th>objective</th>");
        for g in groups.keys() {
            let _ = write!(body, "<th>{}</th>", escape(g));
        }
        body.push_str("</tr>");
        for name in model["objectives"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let _ = write!(body, "<tr><td>{}</td>", escape(name));
            for weights in groups.values() {
                let w = weights[name].as_f64().unwrap_or(0.0);
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
