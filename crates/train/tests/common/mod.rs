//! Shared helpers for the training tests: fixture paths and running `armorm train` in process.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use armorm_train::cli::TrainArgs;
use clap::{Parser, Subcommand};
use serde_json::Value;

/// The binary's shape: `train` is a subcommand, whose own subcommands are the stages.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Train(TrainArgs),
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub fn train_fixture(name: &str) -> PathBuf {
    fixtures().join("train").join(name)
}

pub fn base_model() -> PathBuf {
    fixtures().join("models/tiny-bt")
}

pub fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The flags generate.py trained with (recorded in export_expected.json).
pub fn generator_flags() -> Vec<String> {
    json(&train_fixture("export_expected.json"))["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

/// The generator's run of `armorm train` over the fixtures' ratings and pairs, in `work` and `out`.
pub fn generator_run(work: &Path, out: &Path) -> Vec<String> {
    let (r, p) = (train_fixture("ratings.jsonl"), train_fixture("pairs.jsonl"));
    let mut args: Vec<String> = ["--ratings", path(&r), "--pairs", path(&p), "--work", path(work), "--out", path(out)]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(generator_flags());
    args
}

/// `armorm train [stage] --model tiny-bt ...args` in process.
pub fn train(stage: Option<&str>, args: &[&str]) -> armorm_train::Result<()> {
    train_on(&base_model(), stage, args)
}

/// `armorm train [stage] --model <base> ...args` in process.
pub fn train_on(base: &Path, stage: Option<&str>, args: &[&str]) -> armorm_train::Result<()> {
    let mut argv: Vec<String> = vec!["armorm".into(), "train".into()];
    argv.extend(stage.map(String::from));
    argv.extend(["--model".to_string(), base.display().to_string()]);
    argv.extend(args.iter().map(|s| s.to_string()));
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let Command::Train(args) = cli.command;
    armorm_train::pipeline::run(&args)
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
