//! Stage 0: the features of every input, extracted where missing: one shard (`--shard I/N`), or
//! every shard of a set other machines started (resuming), or the whole set as one shard.

use armorm_model::Embedder;

use crate::cli::StageName;
use crate::context::{Context, Input};
use crate::error::Result;
use crate::extract::{EmbedJob, EmbedSettings};
use crate::features::{self, Shard};
use crate::stage::Stage;
use crate::store::key;

pub struct Embed {
    /// The one shard to extract (`armorm train embed --shard I/N`).
    pub shard: Option<Shard>,
}

impl Embed {
    /// The shards of `input` still to extract.
    fn todo(&self, input: &Input) -> Vec<Shard> {
        match self.shard {
            Some(s) => vec![s],
            None if features::complete_shard_count(&input.dir, &input.key).is_some() => Vec::new(),
            None => {
                let count =
                    features::manifests(&input.dir, &input.key).iter().map(|m| m.shard.count).max().unwrap_or(1);
                (0..count).map(|index| Shard { index, count }).collect()
            }
        }
    }
}

impl Stage for Embed {
    const NAME: StageName = StageName::Embed;
    type Output = ();

    fn key(&self, cx: &Context) -> Result<String> {
        let keys: Vec<&str> = cx.inputs()?.into_iter().map(|(_, input)| input.key.as_str()).collect();
        Ok(key(&keys))
    }

    /// Every input's features are complete (each shard's manifest carries its input's key).
    fn load(&self, cx: &Context, _key: &str) -> Option<()> {
        let inputs = cx.inputs().ok()?;
        inputs.iter().all(|(_, input)| self.todo(input).is_empty()).then_some(())
    }

    fn compute(&self, cx: &Context, _key: String) -> Result<()> {
        let args = cx.args;
        let settings = EmbedSettings {
            max_input_tokens: args.max_input_tokens,
            batch_tokens: args.embed_batch_tokens,
            skip_bad_rows: args.skip_bad_rows,
            ..EmbedSettings::default()
        };
        let mut jobs = Vec::new();
        for (_, input) in cx.inputs()? {
            let todo = self.todo(input);
            if todo.is_empty() {
                tracing::info!(input = %input.dataset.name, "features up to date");
            }
            jobs.extend(todo.into_iter().map(|s| (input, s)));
        }
        let embedder = &Embedder::load(&args.model.source(), &cx.options)?;
        let jobs: Vec<_> = jobs
            .into_iter()
            .map(|(input, shard)| {
                let job = EmbedJob {
                    embedder,
                    kind: input.kind,
                    input: &input.dataset,
                    shard,
                    key: &input.key,
                    settings: &settings,
                };
                (job, input.dir.join(shard.dir_name()))
            })
            .collect();
        // Every input is checked before any is embedded: a bad pairs row must not cost the ratings' hours.
        let prepared = jobs.iter().map(|(job, dir)| job.prepare(dir)).collect::<Result<Vec<_>>>()?;
        for ((job, dir), prepared) in jobs.iter().zip(prepared) {
            job.extract(dir, prepared)?;
        }
        Ok(())
    }
}
