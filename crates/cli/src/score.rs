//! `armorm score`: offline annotation of a preference dataset, JSON Lines in, JSON Lines out.

use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};

use anyhow::Context;
use armorm_model::{Conversation, HeadKind, RewardModel};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::ScoreArgs;
use armorm_server::error::ApiError;
use armorm_server::input::ConversationInput;

pub fn run(args: &ScoreArgs) -> anyhow::Result<()> {
    let model = RewardModel::load(&args.model.source(), &args.model.load_options())
        .with_context(|| format!("loading {}", args.model.model))?;
    if model.head_kind() == HeadKind::Pairwise {
        anyhow::bail!(
            "{}: {}; evaluate it with `armorm eval`, or serve it and use /compare and /rank",
            args.model.model,
            armorm_model::ModelError::PairwiseModel
        );
    }
    let reader: Box<dyn BufRead> = match &args.input {
        Some(path) => {
            Box::new(BufReader::new(std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?))
        }
        None => Box::new(std::io::stdin().lock()),
    };
    let progress = if std::io::stderr().is_terminal() { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    progress.set_style(ProgressStyle::with_template("{spinner} {pos} scored ({per_sec}) {elapsed}")?);
    let mut out = BufWriter::new(std::io::stdout().lock());
    // (input line number, its conversation or why it has none): one output line per input line.
    let mut pending: Vec<(usize, Result<Conversation, ApiError>)> = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading input line {}", index + 1))?;
        pending.push((index + 1, parse_line(&line)));
        if pending.len() >= args.batch_size.max(1) {
            flush(&model, &mut pending, &mut out, &progress)?;
        }
    }
    flush(&model, &mut pending, &mut out, &progress)?;
    progress.finish_and_clear();
    Ok(())
}

fn parse_line(line: &str) -> Result<Conversation, ApiError> {
    if line.trim().is_empty() {
        return Err(ApiError::MalformedJson("a blank line (expected a JSON object)".into()));
    }
    serde_json::from_str::<ConversationInput>(line)
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?
        .into_conversation()
}

/// Scores the valid conversations of `pending` in one batch and writes every line's result in order;
/// an error names its input line, in its message and as `"line"`.
fn flush(
    model: &RewardModel,
    pending: &mut Vec<(usize, Result<Conversation, ApiError>)>,
    out: &mut impl Write,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let valid: Vec<Conversation> = pending.iter().filter_map(|(_, p)| p.as_ref().ok().cloned()).collect();
    let first = pending.first().map_or(0, |(n, _)| *n);
    let mut scored = model.score(&valid).with_context(|| format!("forward pass over lines {first}.."))?.into_iter();
    for (line, item) in pending.drain(..) {
        let result =
            item.and_then(|_| scored.next().expect("one result per valid conversation").map_err(ApiError::from));
        let json = match result {
            Ok(output) => serde_json::to_string(&output)?,
            Err(e) => {
                let mut body = serde_json::to_value(e.at(format!("line {line}")).body())?;
                body["line"] = line.into();
                serde_json::to_string(&body)?
            }
        };
        writeln!(out, "{json}")?;
        progress.inc(1);
    }
    out.flush()?;
    Ok(())
}
