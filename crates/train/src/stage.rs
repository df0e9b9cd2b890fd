//! The contract every stage of `armorm train` keeps ([`crate::stages`] holds one module per
//! stage): its inputs are the fields of its value (upstream results) and the run's [`Context`]; a
//! key names everything its result depends on; a result on disk with that key is used as it is;
//! otherwise the stage computes, unless the command runs another stage alone.

use std::path::PathBuf;

use crate::cli::StageName;
use crate::context::Context;
use crate::error::{Result, TrainError};

pub trait Stage {
    const NAME: StageName;
    type Output;

    /// The key of everything the result depends on: input hashes, the flags that matter, upstream
    /// keys.
    fn key(&self, cx: &Context) -> Result<String>;

    /// The result on disk, when there is one computed from `key`.
    fn load(&self, cx: &Context, key: &str) -> Option<Self::Output>;

    /// The file that holds the result, if the stage keeps one (a stale one is reported).
    fn result_file(&self, _cx: &Context) -> Option<PathBuf> {
        None
    }

    /// What changed since the result on disk was computed, when the stage can tell (a flag).
    fn changes(&self, _cx: &Context) -> Option<String> {
        None
    }

    fn compute(&self, cx: &Context, key: String) -> Result<Self::Output>;
}

/// `stage`'s result: the one on disk when it is up to date, else computed, which `only` (the one
/// stage this command runs, if any) forbids for every other stage: `armorm train export` must
/// export what `armorm train gating` produced, not quietly retrain it with other flags.
pub fn resolve<S: Stage>(stage: &S, cx: &Context, only: Option<StageName>) -> Result<S::Output> {
    let name = S::NAME.as_str();
    let key = stage.key(cx)?;
    if let Some(out) = stage.load(cx, &key) {
        tracing::info!(stage = name, "up to date");
        return Ok(out);
    }
    let stale = stage.result_file(cx).filter(|f| f.is_file()).map(|f| {
        let what = stage.changes(cx).unwrap_or_else(|| "the inputs or flags it was computed from changed".into());
        format!("its result in {} is out of date: {what}", f.display())
    });
    let why = stale.clone().unwrap_or_else(|| format!("it has no result in {} yet", cx.work.display()));
    match only {
        Some(only) if only != S::NAME => {
            return Err(TrainError::Invalid(format!(
                "stage `{name}` is needed, but {why}; `armorm train {only}` runs its own stage only: run `armorm \
                 train {name}` first with the same flags, or `armorm train` to redo every stage that is out of date",
                only = only.as_str(),
            )))
        }
        _ if stale.is_some() => tracing::warn!(stage = name, why, "re-running a stage"),
        _ => tracing::info!(stage = name, "computing"),
    }
    stage.compute(cx, key)
}
