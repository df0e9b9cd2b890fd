//! The last stage: every stage's result in, the checkpoint out (`--out`, swapped in only when it is
//! complete): the base's backbone, the heads, `train_report.json` and the model card.

use std::path::Path;

use armorm_model::ModelSource;

use super::debias::{Debias, TRANSFORM};
use super::regression::{Regression, WEIGHT};
use crate::card;
use crate::checkpoint::{self, Heads};
use crate::cli::StageName;
use crate::context::Context;
use crate::error::Result;
use crate::gating::{GatingNet, GatingReport};
use crate::publish::publish;
use crate::report;
use crate::stage::Stage;
use crate::tensors::F32Tensor;

pub struct ExportStage<'a> {
    pub out: &'a Path,
    pub regression: &'a (Regression, F32Tensor),
    pub debias: &'a Debias,
    pub gating: &'a (GatingReport, GatingNet),
}

impl Stage for ExportStage<'_> {
    const NAME: StageName = StageName::Export;
    type Output = ();

    /// Always written: `--out` is a new directory on every run.
    fn key(&self, _cx: &Context) -> Result<String> {
        Ok(String::new())
    }

    fn load(&self, _cx: &Context, _key: &str) -> Option<()> {
        None
    }

    fn compute(&self, cx: &Context, _key: String) -> Result<()> {
        let ((regression, weights), (gating, net)) = (self.regression, self.gating);
        let k = regression.objectives.len();
        let mut tensors = net.to_tensors();
        tensors.insert(WEIGHT.to_string(), weights.clone());
        let transform = self.debias.transform.iter().flatten().copied().collect();
        tensors.insert(TRANSFORM.to_string(), F32Tensor::new(vec![k, k], transform));
        let heads = Heads {
            objectives: regression.names(),
            gating_shape: net.shape,
            tensors,
            gating_pattern: cx.pattern.ids().to_vec(),
        };
        let sources = cx
            .inputs()?
            .into_iter()
            .map(|(role, input)| card::Source { role, file: input.dataset.name.clone(), sha256: input.sha256.clone() })
            .collect();
        let source = cx.args.model.source();
        publish(self.out, |dir| {
            let class = checkpoint::export(&cx.files, &heads, dir, checkpoint::MAX_SHARD_BYTES)?;
            let stages = report::Stages { regression, debias: self.debias, gating };
            report::write(&stages, dir)?;
            let base_on_hub = matches!(source, ModelSource::Hub { .. });
            card::write(&card::Card { base: source.id(), base_on_hub, class, sources, stages: &stages }, dir)
        })?;
        tracing::info!(out = %self.out.display(), val_accuracy = gating.val_accuracy, "checkpoint written");
        Ok(())
    }
}
