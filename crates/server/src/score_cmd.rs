//! `armorm score`: offline annotation of a preference dataset, JSON Lines in, JSON Lines out.

use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};

use anyhow::Context;
use armorm_model::{Conversation, RewardModel};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ScoreArgs;
use crate::error::ApiError;
use crate::input::ConversationInput;

pub fn run(args: &ScoreArgs) -> anyhow::Result<()> {
    let model = RewardModel::load(&args.model.source(), &args.model.load_options())
        .with_context(|| format!("loading {}", args.model.model))?;
    let reader: Box<dyn BufRead> = match &args.input {
        Some(path) => {
            Box::new(BufReader::new(std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?))
        }
        None => Box::new(std::io::stdin().lock()),
    };
    let progress = if std::io::stderr().is_terminal() { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    progress.set_style(ProgressStyle::with_template("{spinner} {pos} scored ({per_sec}) {elapsed}")?);
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut pending: Vec<Result<Conversation, ApiError>> = Vec::new();
    for line in reader.lines() {
        let line = line.context("reading input")?;
        if line.trim().is_empty() {
            continue;
        }
        pending.push(parse_line(&line));
        if pending.len() >= args.batch_size.max(1) {
            flush(&model, &mut pending, &mut out, &progress)?;
        }
    }
    flush(&model, &mut pending, &mut out, &progress)?;
    progress.finish_and_clear();
    Ok(())
}

fn parse_line(line: &str) -> Result<Conversation, ApiError> {
    serde_json::from_str::<ConversationInput>(line)
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?
        .into_conversation()
}

/// Scores the valid conversations of `pending` in one batch and writes every line's result in order.
fn flush(
    model: &RewardModel,
    pending: &mut Vec<Result<Conversation, ApiError>>,
    out: &mut impl Write,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let valid: Vec<Conversation> = pending.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let mut scored = model.score(&valid).context("forward pass failed")?.into_iter();
    for item in pending.drain(..) {
        let result =
            item.and_then(|_| scored.next().expect("one result per valid conversation").map_err(ApiError::from));
        let json = match result {
            Ok(output) => serde_json::to_string(&output)?,
            Err(e) => serde_json::to_string(&e.body())?,
        };
        writeln!(out, "{json}")?;
        progress.inc(1);
    }
    out.flush()?;
    Ok(())
}
