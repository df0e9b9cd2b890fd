//! Evaluating a model that scores each conversation (ArmoRM, Bradley-Terry): every distinct
//! conversation scored once ([`crate::scoring`]), then each example credited by comparing its
//! scores, as reward-bench does.

use std::collections::BTreeMap;

use armorm_model::{Conversation, RewardModel, Role};
use serde_json::json;

use crate::audit::audit;
use crate::cache::ScoreCache;
use crate::error::{EvalError, Result};
use crate::evaluated::{example_line, Credit, Credited, Evaluated};
use crate::examples::{Example, Format};
use crate::leaderboard_files::Outcome;
use crate::result::SectionGating;
use crate::rewardbench::{self, section_of, TiesPrompt};
use crate::scoring::{Distinct, Scored};

/// An example with the indices of its conversations among the distinct ones.
struct Indexed {
    example: Example,
    chosen: Vec<usize>,
    rejected: Vec<usize>,
}

impl Indexed {
    fn scores(&self, scored: &[Scored]) -> (Vec<f32>, Vec<f32>) {
        let pick = |ids: &[usize]| ids.iter().map(|&i| scored[i].score).collect();
        (pick(&self.chosen), pick(&self.rejected))
    }

    fn is_ties(&self) -> bool {
        self.example.format == Format::V2 && rewardbench::is_ties_subset(&self.example.subset)
    }

    /// v1: 1 or 0; v2: the tie-shared credit; `None` in the Ties subset, which is scored as a whole.
    fn credit(&self, scored: &[Scored]) -> Option<f64> {
        let (c, r) = self.scores(scored);
        match self.example.format {
            _ if self.is_ties() => None,
            Format::V1 => Some(f64::from(u8::from(rewardbench::v1_correct(c[0], r[0])))),
            Format::V2 => Some(rewardbench::v2_credit(&c, &r)),
        }
    }

    fn ties_prompt(&self, scored: &[Scored]) -> Option<TiesPrompt> {
        let (tied, prompt) = TiesPrompt::parse_id(&self.example.id)?;
        let (c, r) = self.scores(scored);
        let widen = |v: Vec<f32>| v.into_iter().map(f64::from).collect();
        Some(TiesPrompt { tied, prompt, correct: widen(c), incorrect: widen(r) })
    }
}

/// Encodes every example's conversations (errors name the row; `skipped` collects them with
/// `skip_bad_rows`), scores the distinct ones, and credits each example.
pub fn evaluate(
    model: &RewardModel,
    examples: Vec<Example>,
    (max_length, batch_size, skip_bad_rows): (Option<usize>, usize, bool),
    cache: Option<&mut ScoreCache>,
    skipped: &mut Vec<String>,
) -> Result<Evaluated> {
    let mut distinct = Distinct::default();
    let mut indexed = Vec::with_capacity(examples.len());
    for example in examples {
        match index(model, &mut distinct, example, max_length) {
            Ok(e) => indexed.push(e),
            Err(e) if skip_bad_rows => skipped.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    if indexed.is_empty() {
        return Err(EvalError::Invalid("no example could be evaluated".into()));
    }
    let distinct_conversations = distinct.len();
    let scored = distinct.score(model, batch_size, cache)?;
    let credits = indexed
        .iter()
        .map(|e| {
            let credit = match e.ties_prompt(&scored).filter(|_| e.is_ties()) {
                Some(prompt) => Credit::Ties(prompt),
                None => Credit::Plain(e.credit(&scored).unwrap_or(0.0)),
            };
            Credited::new(&e.example, credit)
        })
        .collect();
    let pairs: Vec<(usize, usize)> =
        indexed.iter().flat_map(|e| e.rejected.iter().map(move |&r| (e.chosen[0], r))).collect();
    let transform = model.reward_transform()?;
    let outcomes = indexed
        .iter()
        .filter(|e| e.example.format == Format::V1)
        .map(|e| {
            let (c, r) = e.scores(&scored);
            let correct = rewardbench::v1_correct(c[0], r[0]);
            Outcome::new(&e.example, Some((c[0], r[0])), correct)
        })
        .collect();
    Ok(Evaluated {
        credits,
        distinct_conversations,
        audit: audit(&scored, &pairs, model.objectives(), transform.as_deref()),
        gating_by_section: gating_by_section(model, &indexed, &scored),
        per_example: indexed.iter().map(|e| per_example(e, &scored)).collect(),
        outcomes,
        points: scored.iter().map(|s| (s.response_tokens as f64, f64::from(s.score))).collect(),
    })
}

/// Encodes an example's conversations; errors name its row. `max_length`: reward-bench's left
/// cut, if asked.
fn index(model: &RewardModel, distinct: &mut Distinct, example: Example, max_length: Option<usize>) -> Result<Indexed> {
    if example.format == Format::V2
        && rewardbench::is_ties_subset(&example.subset)
        && TiesPrompt::parse_id(&example.id).is_none()
    {
        return Err(EvalError::Invalid(format!(
            "{}: a Ties row needs an id of the form ref:N or tied:N, found {:?}",
            example.at, example.id
        )));
    }
    let mut add = |conv: &Conversation| -> Result<usize> {
        let at = |e: armorm_model::ModelError| EvalError::Invalid(format!("{}: {e}", example.at));
        // With a cut, the whole conversation first (it may exceed the positions), then its tail.
        let mut encoded = match max_length {
            Some(_) => model.encoder().encode(conv),
            None => model.encode(conv),
        }
        .map_err(at)?;
        if let Some(n) = max_length.filter(|&n| encoded.len() > n) {
            // reward-bench's cut: the last n tokens, the answer kept and the prompt's start lost.
            encoded = model.encoder().encode_ids(encoded.ids()[encoded.len() - n..].to_vec()).map_err(at)?;
        }
        let answer = conv.messages().last().filter(|m| m.role == Role::Assistant).map_or("", |m| &m.content);
        Ok(distinct.add(encoded, model.encoder().token_count(answer)?))
    };
    let chosen = example.chosen.iter().map(&mut add).collect::<Result<_>>()?;
    let rejected = example.rejected.iter().map(&mut add).collect::<Result<_>>()?;
    Ok(Indexed { example, chosen, rejected })
}

/// ArmoRM only: the mean gating weight per objective over each section's prompts.
fn gating_by_section(model: &RewardModel, examples: &[Indexed], scored: &[Scored]) -> Option<Vec<SectionGating>> {
    let names = model.objectives();
    if names.is_empty() {
        return None;
    }
    let mut sums: BTreeMap<String, (usize, Vec<f64>)> = BTreeMap::new();
    for e in examples {
        let Some(o) = &scored[e.chosen[0]].objectives else { continue };
        let entry = sums.entry(section(&e.example)).or_insert_with(|| (0, vec![0.0; names.len()]));
        entry.0 += 1;
        for (s, g) in entry.1.iter_mut().zip(&o.gating) {
            *s += f64::from(*g);
        }
    }
    let sections = sums.into_iter().map(|(section, (n, s))| SectionGating {
        section,
        weights: names.iter().zip(&s).map(|(name, v)| (name.clone(), v / n as f64)).collect(),
    });
    Some(sections.collect())
}

/// The group the gating report puts an example in.
fn section(example: &Example) -> String {
    match (example.format, section_of(&example.subset)) {
        (Format::V1, Some(s)) => s.to_string(),
        (Format::V1, None) => "other".to_string(),
        (Format::V2, _) => format!("v2: {}", example.subset),
    }
}

fn per_example(e: &Indexed, scored: &[Scored]) -> serde_json::Value {
    let (chosen, rejected) = e.scores(scored);
    let credit = e.credit(scored);
    let outcome = json!({
        "scores": {"chosen": chosen, "rejected": rejected},
        "correct": credit.map(|c| c == 1.0),
        "credit": credit,
    });
    example_line(&e.example, outcome)
}
