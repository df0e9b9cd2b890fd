//! What every stage of a run reads: the flags, the work directory, the base checkpoint and the
//! data inputs, each input hashed once (a ratings set can be gigabytes) and the ratings read once.

use std::cell::OnceCell;
use std::path::PathBuf;

use armorm_data::digest::{sha256_file, weight_files};
use armorm_data::{DataSource, Dataset};
use armorm_model::load::checkpoint::CheckpointFiles;
use armorm_model::{GatingPattern, LoadOptions};

use crate::cli::RunArgs;
use crate::error::{Result, TrainError};
use crate::features::{Features, Kind};
use crate::ratings::{Labels, ObjectiveSpec};
use crate::store::key;

/// Bumped when a stage's output format or maths change, so old work directories are recomputed.
pub const FORMAT: &str = "armorm-train-1";

/// A data input (the sources one flag names, as one dataset) with the key its features carry.
pub struct Input {
    pub kind: Kind,
    /// Where its features live.
    pub dir: PathBuf,
    pub dataset: Dataset,
    pub sha256: String,
    pub key: String,
}

pub struct Context<'a> {
    pub args: &'a RunArgs,
    pub work: PathBuf,
    pub files: CheckpointFiles,
    /// The load options with the dtype resolved, so every key names the dtype used.
    pub options: LoadOptions,
    pub pattern: GatingPattern,
    /// The base checkpoint's files, dtype and gating pattern.
    pub model_key: String,
    ratings: OnceCell<Input>,
    pairs: OnceCell<Input>,
    reference: OnceCell<Input>,
    labels: OnceCell<Labels>,
}

/// The value in `cell`, computing it first if needed.
pub fn cached<T>(cell: &OnceCell<T>, compute: impl FnOnce() -> Result<T>) -> Result<&T> {
    if cell.get().is_none() {
        let _ = cell.set(compute()?);
    }
    Ok(cell.get().expect("set above"))
}

impl<'a> Context<'a> {
    pub fn new(args: &'a RunArgs, work: PathBuf) -> Result<Self> {
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
            files,
            options,
            pattern,
            model_key,
            ratings: OnceCell::new(),
            pairs: OnceCell::new(),
            reference: OnceCell::new(),
            labels: OnceCell::new(),
        })
    }

    /// The ratings, read and checked once per run.
    pub fn labels(&self) -> Result<&Labels> {
        cached(&self.labels, || Labels::read(&self.ratings()?.dataset, &self.spec(), self.args.skip_bad_rows))
    }

    pub fn spec(&self) -> ObjectiveSpec {
        ObjectiveSpec { names: self.args.objectives.clone(), scales: self.args.scales.clone() }
    }

    pub fn ratings(&self) -> Result<&Input> {
        cached(&self.ratings, || self.input("ratings", ("--ratings", &self.args.ratings), Kind::Ratings))
    }

    pub fn pairs(&self) -> Result<&Input> {
        cached(&self.pairs, || self.input("pairs", ("--pairs", &self.args.pairs), Kind::Pairs))
    }

    /// The debiasing reference set: --reference when it differs from --pairs, else the pairs.
    pub fn reference(&self) -> Result<&Input> {
        let pairs = self.pairs()?;
        if self.args.reference.is_empty() {
            return Ok(pairs);
        }
        let r =
            cached(&self.reference, || self.input("reference", ("--reference", &self.args.reference), Kind::Pairs))?;
        Ok(if r.sha256 == pairs.sha256 { pairs } else { r })
    }

    /// Every distinct input: the ratings, the pairs and, when it is another set, the reference.
    pub fn inputs(&self) -> Result<Vec<(&'static str, &Input)>> {
        let (ratings, pairs, reference) = (self.ratings()?, self.pairs()?, self.reference()?);
        let mut inputs = vec![("ratings", ratings), ("pairs", pairs)];
        if reference.dir != pairs.dir {
            inputs.push(("reference", reference));
        }
        Ok(inputs)
    }

    pub fn features(&self, input: &Input) -> Result<Features> {
        Features::open(&input.dir, &input.key)
    }

    /// The sources `flag` names, as one dataset with the key its features carry.
    fn input(&self, name: &str, (flag, sources): (&str, &[DataSource]), kind: Kind) -> Result<Input> {
        if sources.is_empty() {
            return Err(TrainError::Invalid(format!("{flag} is required")));
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
}
