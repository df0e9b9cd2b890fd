//! The run: which stages are stale, in which order they run, and where their files live.
//!
//! ```text
//! <work>/features/{ratings,pairs,reference}/shard-*/   features (see crate::features)
//! <work>/regression.json, regression.safetensors        stage 1
//! <work>/debias.json                                    λ and T
//! <work>/gating.json, gating.safetensors                stage 2
//! ```
//! Each result records a key of everything it was computed from (input file hashes, the model,
//! the flags that matter, upstream keys); a stage whose key matches is skipped. `--out` is written
//! beside itself and swapped in only when the whole run has succeeded.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use armorm_data::digest::{sha256_file, weight_files};
use armorm_data::{DataSource, Dataset};
use armorm_model::load::checkpoint::CheckpointFiles;
use armorm_model::{Embedder, GatingPattern, LoadOptions, ModelSource};
use clap::ValueEnum;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::card;
use crate::cli::{RunArgs, Stage, TrainArgs};
use crate::debias::{self, Debias};
use crate::embed::{EmbedJob, EmbedSettings};
use crate::error::{Result, TrainError};
use crate::export::{self, Heads};
use crate::features::{self, Features, Kind, Shard};
use crate::gating::{self, GatingNet, GatingReport, GatingSettings, GatingShape, PairData};
use crate::publish::{check_out, publish, sibling};
use crate::ratings::{Labels, ObjectiveSpec};
use crate::regression::{self, Regression, WEIGHT};
use crate::report;
use crate::rewards::{apply_transform, predict};
use crate::split::validation_mask;
use crate::stage::{fresh, key, read_json, write_json};
use crate::tensors;

/// Bumped when a stage's output format or maths change, so old work directories are recomputed.
const FORMAT: &str = "armorm-train-1";
const DEFAULT_VERBOSITY: &str = "helpsteer-verbosity";

pub fn run(args: &TrainArgs) -> Result<()> {
    let (stage, run) = (args.stage, &args.run);
    if stage.is_some() && run.work.is_none() {
        return Err(TrainError::Invalid("a single stage needs --work, where the other stages' files are".into()));
    }
    if run.shard.is_some() && stage != Some(Stage::Embed) {
        return Err(TrainError::Invalid("--shard is for `armorm train embed`".into()));
    }
    let out = match (stage, &run.out) {
        (None | Some(Stage::Export), None) => return Err(TrainError::Invalid("--out is required".into())),
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
    let pipeline = Pipeline::new(run, work.clone(), stage)?;
    let result = match stage {
        None => pipeline.all(out.as_deref().expect("checked")),
        Some(Stage::Embed) => pipeline.embed(run.shard),
        Some(Stage::Regression) => pipeline.regression().map(drop),
        Some(Stage::Debias) => pipeline.debias().map(drop),
        Some(Stage::Gating) => pipeline.gating().map(drop),
        Some(Stage::Export) => pipeline.export(out.as_deref().expect("checked")),
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

/// An input file with the key its features carry.
struct Input {
    kind: Kind,
    dir: PathBuf,
    dataset: Dataset,
    sha256: String,
    key: String,
}

struct Pipeline<'a> {
    args: &'a RunArgs,
    work: PathBuf,
    /// The one stage this command runs (`armorm train STAGE`); the others' results must be on disk
    /// and up to date. `None`: every stale stage is recomputed.
    only: Option<Stage>,
    files: CheckpointFiles,
    options: LoadOptions,
    pattern: GatingPattern,
    model_key: String,
    // Each input with its content hash, hashed once (a ratings file can be gigabytes).
    ratings: OnceCell<Input>,
    pairs: OnceCell<Input>,
    reference: OnceCell<Input>,
    labels: OnceCell<Labels>,
    // Each stage's result, once computed or found up to date (later stages ask for earlier ones).
    regression: OnceCell<(Regression, tensors::F32Tensor)>,
    debias: OnceCell<Debias>,
    gating: OnceCell<(GatingReport, GatingNet)>,
}

/// The value in `cell`, computing it first if needed.
fn cached<T>(cell: &OnceCell<T>, compute: impl FnOnce() -> Result<T>) -> Result<&T> {
    if cell.get().is_none() {
        let _ = cell.set(compute()?);
    }
    Ok(cell.get().expect("set above"))
}

impl<'a> Pipeline<'a> {
    fn new(args: &'a RunArgs, work: PathBuf, only: Option<Stage>) -> Result<Self> {
        let source = args.model.source();
        let mut options = args.model.load_options();
        // Resolved now, as every load resolves it, so the feature cache is keyed on the dtype used.
        let dtype = armorm_model::resolve_dtype(&source, &options)?.dtype;
        options.dtype = Some(dtype);
        let files = source.resolve()?;
        let pattern = GatingPattern::for_checkpoint(&files, options.gating_pattern.as_deref())?;
        let config = sha256_file(&files.config)?;
        let weights = weight_files(&files.weights)?;
        let model_key = key(&[&config, &weights.join(","), &format!("{dtype:?}"), &format!("{:?}", pattern.ids())]);
        Ok(Self {
            args,
            work,
            only,
            files,
            options,
            pattern,
            model_key,
            ratings: OnceCell::new(),
            pairs: OnceCell::new(),
            reference: OnceCell::new(),
            labels: OnceCell::new(),
            regression: OnceCell::new(),
            debias: OnceCell::new(),
            gating: OnceCell::new(),
        })
    }

    fn all(&self, out: &Path) -> Result<()> {
        self.preflight()?;
        self.embed(None)?;
        self.regression()?;
        self.debias()?;
        self.gating()?;
        self.export(out)
    }

    /// Says why `stage` is computed (`stale`: why its result on disk no longer fits; `None`: there
    /// is none), or refuses when this command runs another stage alone: `armorm train export` must
    /// export what `armorm train gating` produced, not quietly retrain it with other flags.
    fn compute(&self, stage: Stage, stale: Option<String>) -> Result<()> {
        let name = |s: Stage| s.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string());
        let why = stale.clone().unwrap_or_else(|| format!("it has no result in {} yet", self.work.display()));
        match self.only {
            Some(only) if only != stage => Err(TrainError::Invalid(format!(
                "stage `{stage}` is needed, but {why}; `armorm train {only}` runs its own stage only: run `armorm \
                 train {stage}` first with the same flags, or `armorm train` to redo every stage that is out of date",
                stage = name(stage),
                only = name(only),
            ))),
            _ => {
                match stale {
                    Some(_) => tracing::warn!(stage = name(stage), why, "re-running a stage"),
                    None => tracing::info!(stage = name(stage), "computing"),
                }
                Ok(())
            }
        }
    }

    /// Why a result on disk at `path` is stale, if there is one: `detail` says what differs when the
    /// stage can tell.
    fn stale_reason(path: &Path, detail: impl FnOnce() -> Option<String>) -> Option<String> {
        path.is_file().then(|| {
            let what = detail().unwrap_or_else(|| "the inputs or flags it was computed from changed".into());
            format!("its result in {} is out of date: {what}", path.display())
        })
    }

    /// The checks that need no model and no features, so bad flags or ratings fail in seconds, not
    /// after hours of feature extraction.
    fn preflight(&self) -> Result<()> {
        self.verbosity_index(&self.labels()?.objectives)?;
        Ok(())
    }

    /// The ratings, read and checked once per run (preflight and stage 1 both need them).
    fn labels(&self) -> Result<&Labels> {
        cached(&self.labels, || Labels::read(&self.ratings()?.dataset, &self.spec(), self.args.skip_bad_rows))
    }

    fn verbosity_index(&self, names: &[String]) -> Result<(String, usize)> {
        let verbosity = match &self.args.verbosity_objective {
            Some(v) => v.clone(),
            None if names.iter().any(|n| n == DEFAULT_VERBOSITY) => DEFAULT_VERBOSITY.to_string(),
            None => {
                return Err(TrainError::Invalid(format!(
                "no {DEFAULT_VERBOSITY} objective: name the verbosity objective with --verbosity-objective (one of {})",
                names.join(", ")
            )))
            }
        };
        let v = names.iter().position(|n| *n == verbosity).ok_or_else(|| {
            TrainError::Invalid(format!(
                "--verbosity-objective {verbosity:?} is not among the objectives: {}",
                names.join(", ")
            ))
        })?;
        Ok((verbosity, v))
    }

    /// The sources `flag` names, as one dataset with the key its features carry.
    fn input(&self, name: &str, (flag, sources): (&str, &[DataSource]), kind: Kind) -> Result<Input> {
        if sources.is_empty() {
            return Err(needs(flag));
        }
        let dataset = Dataset::resolve_all(sources)?;
        let sha256 = dataset.sha256()?;
        let (kind_text, limit) = (format!("{kind:?}"), self.args.max_input_tokens.to_string());
        let mut parts = vec![FORMAT, &self.model_key, &sha256, &kind_text, &limit];
        // Off (the default) adds nothing, so features keyed before the flag stay valid.
        if self.args.skip_bad_rows {
            parts.push("skip-bad-rows");
        }
        let key = key(&parts);
        Ok(Input { kind, dir: self.work.join("features").join(name), dataset, sha256, key })
    }

    fn ratings(&self) -> Result<&Input> {
        cached(&self.ratings, || self.input("ratings", ("--ratings", &self.args.ratings), Kind::Ratings))
    }

    fn pairs(&self) -> Result<&Input> {
        cached(&self.pairs, || self.input("pairs", ("--pairs", &self.args.pairs), Kind::Pairs))
    }

    /// The debiasing reference set: --reference when it differs from --pairs, else the pairs.
    fn reference(&self) -> Result<&Input> {
        let pairs = self.pairs()?;
        if self.args.reference.is_empty() {
            return Ok(pairs);
        }
        let r =
            cached(&self.reference, || self.input("reference", ("--reference", &self.args.reference), Kind::Pairs))?;
        Ok(if r.sha256 == pairs.sha256 { pairs } else { r })
    }

    /// Extracts whatever features are missing: `shard` alone, or every shard of a set another
    /// machine started (resuming), or the whole file as one shard.
    fn embed(&self, shard: Option<Shard>) -> Result<()> {
        let mut inputs = vec![self.ratings()?, self.pairs()?];
        let reference = self.reference()?;
        if reference.dir != inputs[1].dir {
            inputs.push(reference);
        }
        let settings = EmbedSettings {
            max_input_tokens: self.args.max_input_tokens,
            batch_tokens: self.args.embed_batch_tokens,
            skip_bad_rows: self.args.skip_bad_rows,
            ..EmbedSettings::default()
        };
        let mut jobs = Vec::new();
        for input in &inputs {
            let todo: Vec<Shard> = match shard {
                Some(s) => vec![s],
                None if features::complete_shard_count(&input.dir, &input.key).is_some() => Vec::new(),
                None => {
                    let count =
                        features::manifests(&input.dir, &input.key).iter().map(|m| m.shard.count).max().unwrap_or(1);
                    (0..count).map(|index| Shard { index, count }).collect()
                }
            };
            if todo.is_empty() {
                tracing::info!(input = %input.dataset.name, "features up to date");
            }
            jobs.extend(todo.into_iter().map(|s| (input, s)));
        }
        if jobs.is_empty() {
            return Ok(());
        }
        let embedder = &Embedder::load(&self.args.model.source(), &self.options)?;
        let jobs: Vec<(EmbedJob, PathBuf)> = jobs
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

    fn features(&self, input: &Input) -> Result<Features> {
        Features::open(&input.dir, &input.key)
    }

    fn spec(&self) -> ObjectiveSpec {
        ObjectiveSpec { names: self.args.objectives.clone(), scales: self.args.scales.clone() }
    }

    fn regression_key(&self) -> Result<String> {
        let spec = format!("{:?}|{:?}", self.args.objectives, self.args.scales);
        Ok(key(&[FORMAT, &self.ratings()?.key, &spec, &self.args.seed.to_string()]))
    }

    /// Stage 1's summary and weights, computed unless up to date.
    fn regression(&self) -> Result<&(Regression, tensors::F32Tensor)> {
        cached(&self.regression, || self.compute_regression())
    }

    fn compute_regression(&self) -> Result<(Regression, tensors::F32Tensor)> {
        let key = self.regression_key()?;
        let (json, st) = (self.work.join("regression.json"), self.work.join("regression.safetensors"));
        if let Some(r) = fresh::<Regression>(&json, &key) {
            if let Ok(mut t) = tensors::load(&st) {
                let shape = [r.objectives.len(), r.hidden_size];
                if let Ok(w) = tensors::take(&mut t, &st, WEIGHT, &shape) {
                    tracing::info!("stage 1: up to date");
                    return Ok((r, w));
                }
            }
        }
        let stale = Self::stale_reason(&json, || {
            let old = read_json::<Regression>(&json).ok()?;
            (old.seed != self.args.seed).then(|| format!("--seed was {}, is {}", old.seed, self.args.seed))
        });
        self.compute(Stage::Regression, stale)?;
        let started = Instant::now();
        let feats = self.features(self.ratings()?)?;
        let (summary, weights) = regression::run(self.labels()?, &feats, self.args.seed, &key)?;
        tensors::save(&st, &regression::tensors(weights.clone()))?;
        write_json(&json, &summary)?;
        tracing::info!(secs = started.elapsed().as_secs_f64(), "stage 1 done");
        Ok((summary, weights))
    }

    fn debias(&self) -> Result<&Debias> {
        cached(&self.debias, || self.compute_debias())
    }

    fn compute_debias(&self) -> Result<Debias> {
        let (regression, weights) = self.regression()?;
        let reference = self.reference()?;
        let names = regression.names();
        let (verbosity, v) = self.verbosity_index(&names)?;
        let threshold = self.args.spearman_threshold;
        // The paper's threshold adds nothing to the key, so results from before the flag stay valid.
        let threshold_text = threshold.to_string();
        let mut parts = vec![FORMAT, &regression.key, &reference.key, &verbosity];
        if threshold != debias::THRESHOLD {
            parts.push(&threshold_text);
        }
        let key = key(&parts);
        let path = self.work.join("debias.json");
        if let Some(d) = fresh::<Debias>(&path, &key) {
            tracing::info!("debiasing: up to date");
            return Ok(d);
        }
        let stale = Self::stale_reason(&path, || {
            let old = read_json::<Debias>(&path).ok()?;
            if old.threshold != threshold {
                return Some(format!("--spearman-threshold was {}, is {threshold}", old.threshold));
            }
            (old.verbosity != verbosity)
                .then(|| format!("--verbosity-objective was {:?}, is {verbosity:?}", old.verbosity))
        });
        self.compute(Stage::Debias, stale)?;
        let feats = self.features(reference)?;
        let rows = feats.rows().flat_map(|(_, set, i)| [set.matrix("chosen").row(i), set.matrix("rejected").row(i)]);
        let predicted = predict(rows, weights); // (2n, k)
        let k = names.len();
        let n = predicted.len() / k;
        let columns: Vec<Vec<f64>> = (0..k).map(|j| (0..n).map(|i| predicted[i * k + j]).collect()).collect();
        let (lambda, spearman, sweep) = debias::lambdas(&columns, v, threshold);
        for (name, l) in names.iter().zip(&lambda) {
            tracing::info!(objective = %name, lambda = l, "debiasing");
        }
        let d = Debias {
            key,
            verbosity,
            objectives: names,
            transform: debias::transform(&lambda, v),
            lambda,
            spearman,
            sweep,
            threshold,
            reference_rows: n,
        };
        write_json(&path, &d)?;
        Ok(d)
    }

    fn gating_settings(&self) -> GatingSettings {
        GatingSettings {
            steps: self.args.steps,
            batch_size: self.args.batch_size,
            hidden_dim: self.args.hidden_dim,
            n_hidden: self.args.n_hidden,
            learning_rate: self.args.learning_rate,
            dropout: self.args.dropout,
            temperature: self.args.temperature,
            seed: self.args.seed,
            ..GatingSettings::default()
        }
    }

    fn gating(&self) -> Result<&(GatingReport, GatingNet)> {
        cached(&self.gating, || self.compute_gating())
    }

    fn compute_gating(&self) -> Result<(GatingReport, GatingNet)> {
        let (regression, weights) = self.regression()?;
        let debias = self.debias()?;
        let pairs = self.pairs()?;
        let settings = self.gating_settings();
        let settings_text = serde_json::to_string(&settings).unwrap_or_default();
        let key = key(&[FORMAT, &regression.key, &debias.key, &pairs.key, &settings_text]);
        let (json, st) = (self.work.join("gating.json"), self.work.join("gating.safetensors"));
        let shape = GatingShape {
            input: regression.hidden_size,
            hidden: settings.hidden_dim,
            n_hidden: settings.n_hidden,
            objectives: regression.objectives.len(),
            temperature: settings.temperature,
        };
        // Stage 2 runs where the backbone would (a GPU when --device names one).
        let device = self.options.device.open()?;
        if let Some(r) = fresh::<GatingReport>(&json, &key) {
            if let Ok(net) = tensors::load(&st).and_then(|t| GatingNet::from_tensors(shape, &t, &device)) {
                tracing::info!("stage 2: up to date");
                return Ok((r, net));
            }
        }
        let stale = Self::stale_reason(&json, || {
            let old = read_json::<GatingReport>(&json).ok()?;
            let changed = settings_changes(&old.settings, &settings);
            (!changed.is_empty()).then(|| changed.join(", "))
        });
        self.compute(Stage::Gating, stale)?;
        let feats = self.features(pairs)?;
        if feats.len() < 2 {
            return Err(TrainError::Invalid(format!(
                "{}: at least 2 usable pairs are needed, found {}",
                pairs.dataset.name,
                feats.len()
            )));
        }
        let debiased = |name: &str| -> Vec<f32> {
            let raw = predict(feats.rows().map(|(_, set, i)| set.matrix(name).row(i)), weights);
            apply_transform(&raw, &debias.transform)
        };
        let data = PairData {
            prompts: feats.rows().map(|(_, set, i)| set.matrix("prompt").row(i)).collect(),
            chosen: debiased("chosen"),
            rejected: debiased("rejected"),
            objectives: shape.objectives,
        };
        let records: Vec<u64> = feats.rows().map(|(r, ..)| r as u64).collect();
        let val_mask = validation_mask(settings.seed, &records);
        let train: Vec<usize> = (0..records.len()).filter(|&i| !val_mask[i]).collect();
        let val: Vec<usize> = (0..records.len()).filter(|&i| val_mask[i]).collect();
        let mut init_rng = ChaCha8Rng::seed_from_u64(settings.seed);
        let net = GatingNet::init(shape, &mut init_rng, &device)?;
        let started = Instant::now();
        let split = gating::train::Split { train: &train, val: &val };
        let loss = gating::train::fit(&net, &data, split, &settings, &device)?;
        let steps_per_s = settings.steps as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let report = GatingReport {
            key,
            train_accuracy: gating::train::accuracy(&net, &data, &train, &device)?,
            val_accuracy: gating::train::accuracy(&net, &data, &val, &device)?,
            settings,
            train_pairs: train.len(),
            val_pairs: val.len(),
            skipped_too_long: feats.too_long(),
            skipped_bad: feats.bad_records().count(),
            loss,
            steps_per_s,
        };
        tracing::info!(val_accuracy = report.val_accuracy, steps_per_s, "stage 2 done");
        tensors::save(&st, &net.to_tensors()?)?;
        write_json(&json, &report)?;
        Ok((report, net))
    }

    /// The inputs the run trained on, as the model card lists them.
    fn sources(&self) -> Result<Vec<card::Source>> {
        let (ratings, pairs, reference) = (self.ratings()?, self.pairs()?, self.reference()?);
        let mut inputs = vec![("ratings", ratings), ("pairs", pairs)];
        if reference.sha256 != pairs.sha256 {
            inputs.push(("reference", reference));
        }
        Ok(inputs
            .into_iter()
            .map(|(role, input)| card::Source { role, file: input.dataset.name.clone(), sha256: input.sha256.clone() })
            .collect())
    }

    fn export(&self, out: &Path) -> Result<()> {
        let (regression, weights) = self.regression()?;
        let debias = self.debias()?;
        let (gating, net) = self.gating()?;
        let k = regression.objectives.len();
        let mut heads = net.to_tensors()?;
        heads.insert(WEIGHT.to_string(), weights.clone());
        heads.insert(
            debias::TRANSFORM.to_string(),
            tensors::F32Tensor::new(vec![k, k], debias.transform.iter().flatten().copied().collect()),
        );
        let heads = Heads {
            objectives: regression.names(),
            gating_shape: net.shape,
            tensors: heads,
            gating_pattern: self.pattern.ids().to_vec(),
        };
        let sources = self.sources()?;
        let source = self.args.model.source();
        publish(out, |dir| {
            let class = export::export(&self.files, &heads, dir, export::MAX_SHARD_BYTES)?;
            let stages = report::Stages { regression, debias, gating };
            report::write(&stages, dir)?;
            let base_on_hub = matches!(source, ModelSource::Hub { .. });
            card::write(&card::Card { base: source.id(), base_on_hub, class, sources, stages: &stages }, dir)
        })?;
        tracing::info!(out = %out.display(), val_accuracy = gating.val_accuracy, "checkpoint written");
        Ok(())
    }
}

/// The stage-2 flags whose values differ between two runs, as "--flag was A, is B".
fn settings_changes(old: &GatingSettings, new: &GatingSettings) -> Vec<String> {
    let (old, new) = (serde_json::to_value(old).unwrap_or_default(), serde_json::to_value(new).unwrap_or_default());
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else { return Vec::new() };
    new.iter()
        .filter(|&(name, value)| old.get(name) != Some(value))
        .map(|(name, value)| {
            let was = old.get(name).map_or_else(|| "unset".to_string(), ToString::to_string);
            format!("--{} was {was}, is {value}", name.replace('_', "-"))
        })
        .collect()
}

fn needs(flag: &str) -> TrainError {
    TrainError::Invalid(format!("{flag} is required"))
}
