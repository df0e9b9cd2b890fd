//! Evaluating a pairwise preference model, as reward-bench runs RLHFlow's pair-preference model:
//! each example's (first) chosen answer against each rejected one, both orders of each comparison
//! in one batch sharing the prompt's context. v1: the pair is right when the mean P(chosen) is
//! above 1/2; v2: the example is right only if its chosen answer wins every comparison (the Ties
//! subset too: a pairwise model gives no per-answer scores for its formula).

use std::collections::HashSet;

use armorm_model::preference::Verdict;
use armorm_model::text::tokenize::share_common_prefix;
use armorm_model::{EncodeLimits, Encoded, Prompt, RewardModel};
use serde_json::json;

use crate::audit::{Audit, LengthSplit};
use crate::error::{EvalError, Result};
use crate::evaluated::{example_line, Credit, Credited, Evaluated};
use crate::examples::{Example, Format};
use crate::leaderboard_files::Outcome;

/// An example with both orders of each of its comparisons (chosen against rejected[k]).
struct Encoded2 {
    example: Example,
    /// Per rejected answer: (chosen as A, chosen as B).
    orders: Vec<[Encoded; 2]>,
    /// The answers' lengths in tokens: chosen, then each rejected.
    lengths: (usize, Vec<usize>),
}

pub fn evaluate(
    model: &RewardModel,
    examples: Vec<Example>,
    (batch_size, skip_bad_rows): (usize, bool),
    skipped: &mut Vec<String>,
) -> Result<Evaluated> {
    let answers: HashSet<String> = examples
        .iter()
        .flat_map(Example::conversations)
        .filter_map(|c| Some(c.messages().last()?.content.clone()))
        .collect();
    let mut encoded = Vec::with_capacity(examples.len());
    for example in examples {
        match encode(model, example) {
            Ok(e) => encoded.push(e),
            Err(e) if skip_bad_rows => skipped.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    if encoded.is_empty() {
        return Err(EvalError::Invalid("no example could be evaluated".into()));
    }
    let distinct: HashSet<&[u32]> = encoded.iter().flat_map(|e| e.orders.iter().flatten()).map(Encoded::ids).collect();
    let distinct_conversations = distinct.len();
    // Every order of every comparison, in example order, batch_size at a time.
    let items: Vec<&Encoded> = encoded.iter().flat_map(|e| e.orders.iter().flatten()).collect();
    let mut outputs = Vec::with_capacity(items.len());
    for batch in items.chunks(batch_size.max(2)) {
        outputs.extend(model.forward(batch)?);
    }
    let mut verdicts = Verdict::of_orders(&outputs)?.into_iter();
    let judged: Vec<(Encoded2, Vec<Verdict>)> = encoded
        .into_iter()
        .map(|e| {
            let verdicts = verdicts.by_ref().take(e.orders.len()).collect();
            (e, verdicts)
        })
        .collect();
    let wins = |verdicts: &[Verdict]| verdicts.iter().all(Verdict::chosen_wins);
    let credits =
        judged.iter().map(|(e, v)| Credited::new(&e.example, Credit::Plain(f64::from(u8::from(wins(v)))))).collect();
    let outcomes = judged
        .iter()
        .filter(|(e, _)| e.example.format == Format::V1)
        .map(|(e, v)| Outcome::new(&e.example, None, wins(v)))
        .collect();
    let per_example = judged
        .iter()
        .map(|(e, v)| {
            let preferences: Vec<f64> = v.iter().map(|v| v.preference).collect();
            let outcome = json!({
                "preferences": preferences,
                "correct": wins(v),
                "credit": f64::from(u8::from(wins(v))),
            });
            example_line(&e.example, outcome)
        })
        .collect();
    Ok(Evaluated {
        credits,
        distinct_conversations,
        audit: audit(&judged, answers.len()),
        gating_by_section: None,
        per_example,
        outcomes,
        points: Vec::new(),
    })
}

/// Both orders of the example's comparisons, sharing what they all begin with.
fn encode(model: &RewardModel, example: Example) -> Result<Encoded2> {
    let at = |e: armorm_model::ModelError| EvalError::Invalid(format!("{}: {e}", example.at));
    let chosen = &example.chosen[0];
    let prompt = Prompt::of(chosen).ok_or_else(|| {
        EvalError::Invalid(format!("{}: a pairwise model needs the prompt before the answers", example.at))
    })?;
    let answer = |c: &armorm_model::Conversation| c.messages().last().map_or(String::new(), |m| m.content.clone());
    let limits = EncodeLimits::exact(model.max_positions());
    let chosen_answer = answer(chosen);
    let mut orders = Vec::with_capacity(example.rejected.len());
    let mut lengths = Vec::with_capacity(example.rejected.len());
    for rejected in &example.rejected {
        let rejected_answer = answer(rejected);
        let pair =
            model.encoder().encode_comparison(&prompt, (&chosen_answer, &rejected_answer), &limits).map_err(at)?;
        orders.push(pair.map(|p| p.encoded));
        lengths.push(model.encoder().token_count(&rejected_answer)?);
    }
    let mut flat: Vec<Encoded> = orders.into_iter().flatten().collect();
    share_common_prefix(&mut flat);
    let orders = flat.chunks(2).map(|o| [o[0].clone(), o[1].clone()]).collect();
    let lengths = (model.encoder().token_count(&chosen_answer)?, lengths);
    Ok(Encoded2 { example, orders, lengths })
}

/// The verbosity audit without scores: accuracy on comparisons whose chosen answer is the shorter,
/// and the longer, one. No answer has a score of its own, so there is no score/length correlation.
fn audit(judged: &[(Encoded2, Vec<Verdict>)], completions: usize) -> Audit {
    let comparisons: Vec<(usize, usize, bool)> = judged
        .iter()
        .flat_map(|(e, v)| e.lengths.1.iter().zip(v).map(|(&r, v)| (e.lengths.0, r, v.chosen_wins())))
        .collect();
    let split = |keep: fn(usize, usize) -> bool| {
        let won: Vec<bool> = comparisons.iter().filter(|(c, r, _)| keep(*c, *r)).map(|&(.., w)| w).collect();
        LengthSplit {
            pairs: won.len(),
            accuracy: (!won.is_empty()).then(|| won.iter().filter(|&&w| w).count() as f64 / won.len() as f64),
        }
    };
    Audit {
        completions,
        spearman_score_length: None,
        objectives: Vec::new(),
        chosen_shorter: split(|c, r| c < r),
        chosen_longer: split(|c, r| c > r),
    }
}
