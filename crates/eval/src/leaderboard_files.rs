//! The results files reward-bench writes (`--rewardbench-results DIR`), so armorm's numbers go
//! where its tools and the leaderboard read them: `eval-set/{model}.json` (the core set) and
//! `pref-sets/{model}.json` (the preference test sets) hold `model`, `model_type`, `chat_template`
//! and each subset's accuracy; `eval-set-scores/` and `pref-sets-scores/` hold the per-example
//! columns `id`, `subset`, `results` (1 when chosen won), `scores_chosen` and `scores_rejected`
//! (reward-bench also stores the templated texts; these files do not).

use std::path::Path;

use serde_json::{json, Map, Value};

use armorm_model::HeadKind;

use crate::error::{EvalError, Result};
use crate::examples::Example;
use crate::rewardbench::PREF_TEST_SETS;

/// One v1 example's outcome.
pub struct Outcome {
    pub id: String,
    pub subset: String,
    /// The chosen and rejected answers' scores; `None` for a pairwise model, which scores neither
    /// (reward-bench writes nulls for it too).
    pub scores: Option<(f32, f32)>,
    pub correct: bool,
}

impl Outcome {
    pub fn new(example: &Example, scores: Option<(f32, f32)>, correct: bool) -> Self {
        Self { id: example.id.clone(), subset: example.subset.clone(), scores, correct }
    }
}

/// reward-bench's `model_type` for the kind of model that was evaluated.
pub fn model_type(kind: HeadKind) -> &'static str {
    match kind {
        HeadKind::Armo | HeadKind::BradleyTerry => "Seq. Classifier",
        HeadKind::Pairwise => "Custom Classifier",
    }
}

/// Writes both sets' files (a set with no example gets none) for the model reward-bench would name
/// `model` (a Hub id, or a local directory's name).
pub fn write(dir: &Path, (model, model_type): (&str, &str), outcomes: &[Outcome]) -> Result<()> {
    let (pref, core): (Vec<&Outcome>, Vec<&Outcome>) =
        outcomes.iter().partition(|o| PREF_TEST_SETS.contains(&o.subset.as_str()));
    for (set, outcomes) in [("eval-set", core), ("pref-sets", pref)] {
        if outcomes.is_empty() {
            continue;
        }
        let mut grouped = header(model, model_type);
        let mut subsets: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
        for o in &outcomes {
            let e = subsets.entry(o.subset.as_str()).or_default();
            e.0 += usize::from(o.correct);
            e.1 += 1;
        }
        for (subset, (correct, total)) in subsets {
            grouped.insert(subset.to_string(), json!(correct as f64 / total as f64));
        }
        save(&dir.join(set), model, &Value::Object(grouped))?;
        let mut scores = header(model, model_type);
        let column = |f: &dyn Fn(&Outcome) -> Value| Value::Array(outcomes.iter().map(|o| f(o)).collect());
        scores.insert("id".into(), column(&|o| json!(o.id)));
        scores.insert("subset".into(), column(&|o| json!(o.subset)));
        scores.insert("results".into(), column(&|o| json!(u8::from(o.correct))));
        scores.insert("scores_chosen".into(), column(&|o| json!(o.scores.map(|s| s.0))));
        scores.insert("scores_rejected".into(), column(&|o| json!(o.scores.map(|s| s.1))));
        save(&dir.join(format!("{set}-scores")), model, &Value::Object(scores))?;
    }
    Ok(())
}

fn header(model: &str, model_type: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("model".into(), json!(model));
    m.insert("model_type".into(), json!(model_type));
    m.insert("chat_template".into(), json!("tokenizer"));
    m
}

/// `{dir}/{model}.json`, indented by 4 with sorted keys as reward-bench dumps it.
fn save(dir: &Path, model: &str, value: &Value) -> Result<()> {
    let path = dir.join(format!("{model}.json"));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| EvalError::io(parent, e))?;
    }
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    serde::Serialize::serialize(value, &mut ser).map_err(|e| EvalError::Invalid(e.to_string()))?;
    std::fs::write(&path, buf).map_err(|e| EvalError::io(&path, e))
}
