//! The run: the work directory, and the order of the stages ([`crate::stages`]), each resolved
//! through the [`Stage`] contract (skipped when its result on disk is up to date) and handed to the
//! stages after it.
//!
//! ```text
//! <work>/features/{ratings,pairs,reference}/shard-*/   features (see crate::features)
//! <work>/regression.json, regression.safetensors        stage 1
//! <work>/debias.json                                    λ and T
//! <work>/gating.json, gating.safetensors                stage 2
//! ```
//! `--out` is written beside itself and swapped in only when the whole run has succeeded.

use std::cell::OnceCell;
use std::path::Path;

use crate::cli::{StageName, TrainArgs};
use crate::context::{cached, Context};
use crate::error::{Result, TrainError};
use crate::features;
use crate::gating::{GatingNet, GatingReport};
use crate::publish::{check_out, sibling};
use crate::stage::{resolve, Stage};
use crate::stages::debias::{verbosity_index, Debias, DebiasStage};
use crate::stages::embed::Embed;
use crate::stages::export::ExportStage;
use crate::stages::gating::GatingStage;
use crate::stages::regression::{Regression, RegressionStage};
use crate::tensors::F32Tensor;

pub fn run(args: &TrainArgs) -> Result<()> {
    let (stage, run) = (args.stage, &args.run);
    if stage.is_some() && run.work.is_none() {
        return Err(TrainError::Invalid("a single stage needs --work, where the other stages' files are".into()));
    }
    if run.shard.is_some() && stage != Some(StageName::Embed) {
        return Err(TrainError::Invalid("--shard is for `armorm train embed`".into()));
    }
    let out = match (stage, &run.out) {
        (None | Some(StageName::Export), None) => return Err(TrainError::Invalid("--out is required".into())),
        (_, out) => out.clone(),
    };
    if let Some(out) = &out {
        check_out(out)?;
    }
    let (work, temporary) = match (&run.work, &out) {
        (Some(w), _) => (w.clone(), false),
        (None, Some(out)) => (sibling(out, &format!("work-{}", std::process::id())), true),
        (None, None) => unreachable!("checked above"),
    };
    std::fs::create_dir_all(&work).map_err(|e| TrainError::io(&work, e))?;
    let pipeline = Pipeline {
        cx: Context::new(run, work.clone())?,
        only: stage,
        regression: OnceCell::new(),
        debias: OnceCell::new(),
        gating: OnceCell::new(),
    };
    let result = match stage {
        None => pipeline.all(out.as_deref().expect("checked")),
        Some(StageName::Embed) => pipeline.embed(run.shard),
        Some(StageName::Regression) => pipeline.regression().map(drop),
        Some(StageName::Debias) => pipeline.debias().map(drop),
        Some(StageName::Gating) => pipeline.gating().map(drop),
        Some(StageName::Export) => pipeline.export(out.as_deref().expect("checked")),
    };
    // A temporary work directory goes, unless a failed run leaves features worth resuming from.
    if temporary {
        if result.is_err() && features::any_extracted(&work.join("features")) {
            tracing::warn!(
                work = %work.display(),
                "the run failed; its intermediate files are kept: pass --work {} to resume",
                work.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&work);
        }
    }
    result
}

/// The run's context and each stage's result, once resolved (later stages take earlier ones).
struct Pipeline<'a> {
    cx: Context<'a>,
    /// The one stage this command runs (`armorm train STAGE`); the others' results must be on disk
    /// and up to date. `None`: every stale stage is recomputed.
    only: Option<StageName>,
    regression: OnceCell<(Regression, F32Tensor)>,
    debias: OnceCell<Debias>,
    gating: OnceCell<(GatingReport, GatingNet)>,
}

impl Pipeline<'_> {
    fn all(&self, out: &Path) -> Result<()> {
        self.preflight()?;
        self.embed(None)?;
        self.regression()?;
        self.debias()?;
        self.gating()?;
        self.export(out)
    }

    fn resolve<S: Stage>(&self, stage: S) -> Result<S::Output> {
        resolve(&stage, &self.cx, self.only)
    }

    /// The checks that need no model and no features, so bad flags or ratings fail in seconds, not
    /// after hours of feature extraction.
    fn preflight(&self) -> Result<()> {
        verbosity_index(&self.cx, &self.cx.labels()?.objectives).map(drop)
    }

    fn embed(&self, shard: Option<features::Shard>) -> Result<()> {
        self.resolve(Embed { shard })
    }

    fn regression(&self) -> Result<&(Regression, F32Tensor)> {
        cached(&self.regression, || self.resolve(RegressionStage))
    }

    fn debias(&self) -> Result<&Debias> {
        cached(&self.debias, || self.resolve(DebiasStage { regression: self.regression()? }))
    }

    fn gating(&self) -> Result<&(GatingReport, GatingNet)> {
        cached(&self.gating, || self.resolve(GatingStage { regression: self.regression()?, debias: self.debias()? }))
    }

    fn export(&self, out: &Path) -> Result<()> {
        let (regression, debias, gating) = (self.regression()?, self.debias()?, self.gating()?);
        self.resolve(ExportStage { out, regression, debias, gating })
    }
}
