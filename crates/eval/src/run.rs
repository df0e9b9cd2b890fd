//! The evaluation run: read every row, score every distinct conversation once, apply reward-bench's
//! rules, audit verbosity, and write what was asked for.

use std::collections::BTreeMap;

use armorm_data::digest::{sha256_file, sha256_str, weight_files};
use armorm_model::{RewardModel, Role};
use serde_json::{json, Value};

use crate::audit::audit;
use crate::cache::ScoreCache;
use crate::cli::EvalArgs;
use crate::error::{EvalError, Result};
use crate::examples::{Example, Format};
use crate::leaderboard_files::{self, Outcome};
use crate::report;
use crate::result::{DataInfo, EvalResult, ModelInfo, SectionGating, SubsetScore, V1Result, V2Result};
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

    /// The group the gating report puts it in.
    fn section(&self) -> String {
        match (self.example.format, section_of(&self.example.subset)) {
            (Format::V1, Some(s)) => s.to_string(),
            (Format::V1, None) => "other".to_string(),
            (Format::V2, _) => format!("v2: {}", self.example.subset),
        }
    }
}

/// Runs the evaluation; prints the table to stdout and writes the requested files.
pub fn run(args: &EvalArgs) -> Result<EvalResult> {
    let model = RewardModel::load(&args.model.source(), &args.model.load_options())?;
    let mut distinct = Distinct::default();
    let (mut examples, mut skipped) = (Vec::new(), Vec::new());
    let mut data = Vec::new();
    for source in &args.data {
        let dataset = source.resolve()?;
        let mut rows = 0;
        for row in dataset.rows()? {
            rows += 1;
            let indexed = row.map_err(EvalError::from).and_then(|row| {
                let split = dataset.split_of(&row.at.file);
                index(&model, &mut distinct, &row, (split, args.max_length))
            });
            match indexed {
                Ok(ex) => examples.push(ex),
                Err(e) if args.skip_bad_rows => skipped.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        let sha256 = dataset.sha256()?;
        data.push(DataInfo { path: dataset.name, files: dataset.files, sha256, rows });
    }
    if examples.is_empty() {
        return Err(EvalError::Invalid("no example could be evaluated".into()));
    }
    let distinct_conversations = distinct.len();
    let mut cache = match &args.cache {
        Some(dir) => Some(ScoreCache::open(dir, &model_key(args, &model)?)?),
        None => None,
    };
    let scored = distinct.score(&model, args.batch_size, cache.as_mut())?;
    let (v1, v2) = benchmarks(&examples, &scored);
    let pairs: Vec<(usize, usize)> =
        examples.iter().flat_map(|e| e.rejected.iter().map(move |&r| (e.chosen[0], r))).collect();
    let transform = model.reward_transform()?;
    let out = EvalResult {
        armorm_version: env!("CARGO_PKG_VERSION"),
        model: ModelInfo {
            id: model.source().id(),
            revision: model.source().revision().map(str::to_string),
            head: model.head_kind(),
            dtype: model.dtype(),
            device: model.device_name(),
            objectives: model.objectives().to_vec(),
        },
        data,
        examples: examples.len(),
        distinct_conversations,
        skipped_rows: skipped,
        v1,
        v2,
        audit: audit(&scored, &pairs, model.objectives(), transform.as_deref()),
        gating_by_section: gating_by_section(&model, &examples, &scored),
    };
    print!("{}", report::table(&out));
    if let Some(path) = &args.json {
        write(path, &(serde_json::to_string_pretty(&out).unwrap_or_default() + "\n"))?;
    }
    if let Some(path) = &args.per_example {
        let lines: String = examples.iter().map(|e| per_example(e, &scored).to_string() + "\n").collect();
        write(path, &lines)?;
    }
    if let Some(dir) = &args.rewardbench_results {
        let outcomes: Vec<Outcome> = examples
            .iter()
            .filter(|e| e.example.format == Format::V1)
            .map(|e| {
                let (c, r) = e.scores(&scored);
                let (chosen, rejected) = (c[0], r[0]);
                let correct = rewardbench::v1_correct(chosen, rejected);
                Outcome { id: &e.example.id, subset: &e.example.subset, chosen, rejected, correct }
            })
            .collect();
        let name = match model.source() {
            armorm_model::ModelSource::Hub { repo, .. } => repo.clone(),
            armorm_model::ModelSource::Local(dir) => dir.file_name().unwrap_or_default().to_string_lossy().into_owned(),
        };
        leaderboard_files::write(dir, &name, &outcomes)?;
    }
    if let Some(path) = &args.report {
        let points: Vec<(f64, f64)> = scored.iter().map(|s| (s.response_tokens as f64, f64::from(s.score))).collect();
        write(path, &report::html(&out, &points))?;
    }
    Ok(out)
}

/// What a score depends on besides the conversation: the checkpoint's config and weight files, and
/// how it computes (dtype, kernels, the gating pattern it reads at).
fn model_key(args: &EvalArgs, model: &RewardModel) -> Result<String> {
    let files = args.model.source().resolve()?;
    let mut parts = vec![sha256_file(&files.config)?];
    parts.extend(weight_files(&files.weights)?);
    parts.push(format!(
        "{:?} {} {:?}",
        model.dtype(),
        model.kernels().name(),
        model.encoder().pattern().map(|p| p.ids())
    ));
    Ok(sha256_str(&parts.join("\n"))[..16].to_string())
}

fn write(path: &std::path::Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| EvalError::io(path, e))
}

/// Parses a row and encodes its conversations; errors name the row.
/// `split`: the Hub split the row came from; `max_length`: reward-bench's left cut, if asked.
fn index(
    model: &RewardModel,
    distinct: &mut Distinct,
    row: &armorm_data::Row,
    (split, max_length): (Option<&str>, Option<usize>),
) -> Result<Indexed> {
    let example = Example::from_row(row, split)?;
    if example.format == Format::V2
        && rewardbench::is_ties_subset(&example.subset)
        && TiesPrompt::parse_id(&example.id).is_none()
    {
        return Err(EvalError::Invalid(format!(
            "{}: a Ties row needs an id of the form ref:N or tied:N, found {:?}",
            example.at, example.id
        )));
    }
    let mut add = |conv: &armorm_model::Conversation| -> Result<usize> {
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

/// Both benchmarks' results over the examples of their layouts, by reward-bench's rules.
fn benchmarks(examples: &[Indexed], scored: &[Scored]) -> (Option<V1Result>, Option<V2Result>) {
    // (format, subset) -> (examples, summed credit); the Ties subset is scored as a whole.
    let mut subsets: BTreeMap<(Format, String), (usize, f64)> = BTreeMap::new();
    let mut ties: BTreeMap<String, Vec<TiesPrompt>> = BTreeMap::new();
    for e in examples {
        let entry = subsets.entry((e.example.format, e.example.subset.clone())).or_default();
        entry.0 += 1;
        entry.1 += e.credit(scored).unwrap_or(0.0);
        if e.is_ties() {
            ties.entry(e.example.subset.clone()).or_default().extend(e.ties_prompt(scored));
        }
    }
    let rows = |format: Format| -> Vec<SubsetScore> {
        subsets
            .iter()
            .filter(|((f, _), _)| *f == format)
            .map(|((f, subset), &(n, credit))| {
                let accuracy = match ties.get(subset) {
                    Some(prompts) if *f == Format::V2 => rewardbench::ties_score(prompts),
                    _ => credit / n as f64,
                };
                SubsetScore { subset: subset.clone(), section: section_of(subset), n, accuracy }
            })
            .collect()
    };
    let accuracy = |rows: &[SubsetScore]| -> BTreeMap<String, f64> {
        rows.iter().map(|s| (s.subset.clone(), s.accuracy)).collect()
    };
    let (rows1, rows2) = (rows(Format::V1), rows(Format::V2));
    let v1 = (!rows1.is_empty()).then(|| {
        let acc = accuracy(&rows1);
        let sections = rewardbench::v1_sections(&acc);
        V1Result {
            overall: rewardbench::v1_overall(&sections),
            other: acc.keys().filter(|s| !rewardbench::is_known_subset(s)).cloned().collect(),
            sections,
            subsets: rows1,
        }
    });
    let v2 =
        (!rows2.is_empty()).then(|| V2Result { overall: rewardbench::v2_overall(&accuracy(&rows2)), subsets: rows2 });
    (v1, v2)
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
        let entry = sums.entry(e.section()).or_insert_with(|| (0, vec![0.0; names.len()]));
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

fn per_example(e: &Indexed, scored: &[Scored]) -> Value {
    let (chosen, rejected) = e.scores(scored);
    let credit = e.credit(scored);
    json!({
        "id": e.example.id,
        "subset": e.example.subset,
        "subsubset": e.example.subsubset,
        "format": e.example.format,
        "at": e.example.at,
        "scores": {"chosen": chosen, "rejected": rejected},
        "correct": credit.map(|c| c == 1.0),
        "credit": credit,
    })
}
