//! The evaluation run: read every row, evaluate the model on them ([`crate::scored`] for a model
//! that scores each conversation, [`crate::compared`] for a pairwise preference model), apply
//! reward-bench's rules, and write what was asked for.

use std::collections::BTreeMap;

use armorm_data::digest::{sha256_file, sha256_str, weight_files};
use armorm_model::{HeadKind, RewardModel};

use crate::cache::ScoreCache;
use crate::cli::EvalArgs;
use crate::error::{EvalError, Result};
use crate::evaluated::{Credit, Credited, Evaluated};
use crate::examples::{Example, Format};
use crate::leaderboard_files;
use crate::report;
use crate::result::{DataInfo, EvalResult, ModelInfo, SubsetScore, V1Result, V2Result};
use crate::rewardbench::{self, section_of, TiesPrompt};
use crate::{compared, scored};

/// Runs the evaluation; prints the table to stdout and writes the requested files.
pub fn run(args: &EvalArgs) -> Result<EvalResult> {
    let model = RewardModel::load(&args.model.source(), &args.model.load_options())?;
    let pairwise = model.head_kind() == HeadKind::Pairwise;
    if pairwise {
        for (given, flag) in [(args.cache.is_some(), "--cache"), (args.max_length.is_some(), "--max-length")] {
            if given {
                return Err(EvalError::Invalid(format!(
                    "{flag} is for models that score each conversation; this is a pairwise preference model"
                )));
            }
        }
    }
    let mut skipped = Vec::new();
    let mut examples = Vec::new();
    let mut data = Vec::new();
    for source in &args.data {
        let dataset = source.resolve()?;
        let mut rows = 0;
        for row in dataset.rows()? {
            rows += 1;
            let example = row.map_err(EvalError::from).and_then(|row| {
                let split = dataset.split_of(&row.at.file);
                Example::from_row(&row, split)
            });
            match example {
                Ok(e) => examples.push(e),
                Err(e) if args.skip_bad_rows => skipped.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        let sha256 = dataset.sha256()?;
        data.push(DataInfo { path: dataset.name, files: dataset.files, sha256, rows });
    }
    let evaluated = if pairwise {
        compared::evaluate(&model, examples, (args.batch_size, args.skip_bad_rows), &mut skipped)?
    } else {
        let mut cache = match &args.cache {
            Some(dir) => Some(ScoreCache::open(dir, &model_key(&model)?)?),
            None => None,
        };
        let settings = (args.max_length, args.batch_size, args.skip_bad_rows);
        scored::evaluate(&model, examples, settings, cache.as_mut(), &mut skipped)?
    };
    let Evaluated { credits, distinct_conversations, audit, gating_by_section, per_example, outcomes, points } =
        evaluated;
    let (v1, v2) = benchmarks(credits.iter());
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
        examples: credits.len(),
        distinct_conversations,
        skipped_rows: skipped,
        v1,
        v2,
        audit,
        gating_by_section,
    };
    print!("{}", report::table(&out));
    if let Some(path) = &args.json {
        write(path, &(serde_json::to_string_pretty(&out).unwrap_or_default() + "\n"))?;
    }
    if let Some(path) = &args.per_example {
        let lines: String = per_example.iter().map(|e| e.to_string() + "\n").collect();
        write(path, &lines)?;
    }
    if let Some(dir) = &args.rewardbench_results {
        let name = match model.source() {
            armorm_model::ModelSource::Hub { repo, .. } => repo.clone(),
            armorm_model::ModelSource::Local(dir) => dir.file_name().unwrap_or_default().to_string_lossy().into_owned(),
        };
        leaderboard_files::write(dir, (&name, leaderboard_files::model_type(model.head_kind())), &outcomes)?;
    }
    if let Some(path) = &args.report {
        write(path, &report::html(&out, &points))?;
    }
    Ok(out)
}

/// What a score depends on besides the conversation: the checkpoint's config and weight files, and
/// how it computes (dtype, kernels, the gating pattern it reads at).
fn model_key(model: &RewardModel) -> Result<String> {
    let files = model.files();
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

/// Both benchmarks' results from the examples' credits, by reward-bench's rules.
fn benchmarks<'a>(credits: impl Iterator<Item = &'a Credited>) -> (Option<V1Result>, Option<V2Result>) {
    // (format, subset) -> (examples, summed credit); the Ties subset is scored as a whole.
    let mut subsets: BTreeMap<(Format, String), (usize, f64)> = BTreeMap::new();
    let mut ties: BTreeMap<String, Vec<TiesPrompt>> = BTreeMap::new();
    for c in credits {
        let entry = subsets.entry((c.format, c.subset.clone())).or_default();
        entry.0 += 1;
        match &c.credit {
            Credit::Plain(credit) => entry.1 += credit,
            Credit::Ties(prompt) => ties.entry(c.subset.clone()).or_default().push(prompt.clone()),
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
