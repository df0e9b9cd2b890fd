//! What a data flag names, resolved to the files its rows are read from: a local file, a folder of
//! data files, a glob, or a Hub dataset id with an optional split and revision
//! (`allenai/reward-bench:filtered`, `owner/name@rev`, `owner/name:test@rev`; `owner/name:*` is every
//! split, each file remembering its split). Hub datasets come
//! through the standard cache ([`armorm_hub`]); a split's files are chosen by the
//! dataset card's `configs:` when it has them, else by the Hub's file layout
//! (`data/{split}-00000-of-00002.parquet`, `{split}.jsonl`, `data/{split}/...`).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use armorm_hub::{HubEnv, HubRepo};

use crate::digest::{sha256_file, sha256_str};
use crate::error::{DataError, Result};

const EXTENSIONS: [&str; 4] = ["jsonl", "json", "parquet", "pq"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// A file, or a folder whose data files (recursively, in name order) form the dataset.
    Local(PathBuf),
    /// A glob over local files (`data/train-*.parquet`), in name order.
    Glob(String),
    Hub {
        repo: String,
        split: Option<String>,
        revision: String,
    },
}

impl std::str::FromStr for DataSource {
    type Err = std::convert::Infallible;

    fn from_str(arg: &str) -> std::result::Result<Self, Self::Err> {
        Ok(Self::parse(arg))
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::Glob(g) => write!(f, "{g}"),
            Self::Hub { repo, split, revision } => {
                write!(f, "{repo}")?;
                if let Some(split) = split {
                    write!(f, ":{split}")?;
                }
                write!(f, "@{revision}")
            }
        }
    }
}

impl DataSource {
    /// An existing path, anything that reads as a path (`./`, `/`, `~`, a data-file extension, a
    /// parent directory that exists) or holds glob characters is local; `owner/name[:split][@rev]`
    /// is a Hub dataset. So a typo in a local path is reported as a missing file, not sent to the Hub.
    pub fn parse(arg: &str) -> Self {
        let path = match arg.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME").map_or_else(|| PathBuf::from(arg), |h| Path::new(&h).join(rest)),
            None => PathBuf::from(arg),
        };
        let path_like = ["./", "../", "/", "~"].iter().any(|p| arg.starts_with(p))
            || path.exists()
            || path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e))
            || path.parent().is_some_and(|p| !p.as_os_str().is_empty() && p.is_dir());
        match (path_like, hub_id(arg)) {
            (false, Some(source)) => source,
            _ if arg.contains(['*', '?', '[']) => Self::Glob(arg.to_string()),
            _ => Self::Local(path),
        }
    }

    /// The dataset: its files on local disk, in order, and a name for messages and reports.
    pub fn resolve(&self) -> Result<Dataset> {
        self.resolve_with(&HubEnv::from_env())
    }

    pub fn resolve_with(&self, env: &HubEnv) -> Result<Dataset> {
        let files = match self {
            Self::Local(path) if path.is_dir() => {
                let mut files = Vec::new();
                data_files_in(path, &mut files)?;
                files.sort();
                if files.is_empty() {
                    return Err(invalid(format!(
                        "{}: no .jsonl, .json or .parquet files in this folder",
                        path.display()
                    )));
                }
                files
            }
            Self::Local(path) => {
                if !path.is_file() {
                    return Err(invalid(format!(
                        "{}: no such file (a local path; Hub datasets look like `owner/name` or `owner/name:split`)",
                        path.display()
                    )));
                }
                vec![path.clone()]
            }
            Self::Glob(pattern) => {
                let paths = glob::glob(pattern).map_err(|e| invalid(format!("{pattern}: {e}")))?;
                let mut files: Vec<PathBuf> =
                    paths.filter_map(std::result::Result::ok).filter(|p| p.is_file()).collect();
                files.sort();
                if files.is_empty() {
                    return Err(invalid(format!("{pattern}: matches no file")));
                }
                files
            }
            Self::Hub { repo, split, revision } => {
                let hub = HubRepo::dataset(env, repo, revision).map_err(hub_error)?;
                let listing = hub.files().map_err(hub_error)?;
                let card = listing.iter().any(|f| f == "README.md").then(|| hub.get("README.md")).and_then(|r| r.ok());
                let card = card.and_then(|p| std::fs::read_to_string(p).ok());
                let chosen = split_files(&listing, split.as_deref(), card.as_deref())
                    .map_err(|why| invalid(format!("{}: {why}", self)))?;
                let mut files = Vec::new();
                let mut splits = Vec::new();
                for (split, names) in chosen {
                    for name in names {
                        files.push(hub.get(&name).map_err(hub_error)?);
                        splits.push(Some(split.clone()));
                    }
                }
                return Ok(Dataset { name: self.to_string(), files, splits });
            }
        };
        let splits = vec![None; files.len()];
        Ok(Dataset { name: self.to_string(), files, splits })
    }
}

/// A resolved data source: the files its rows are read from, in order.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub files: Vec<PathBuf>,
    /// Each file's split, for Hub datasets.
    pub splits: Vec<Option<String>>,
}

impl Dataset {
    /// Several sources read in order as one dataset (records numbered on across them).
    pub fn resolve_all(sources: &[DataSource]) -> Result<Self> {
        let parts = sources.iter().map(DataSource::resolve).collect::<Result<Vec<_>>>()?;
        let name = parts.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(" + ");
        let (mut files, mut splits) = (Vec::new(), Vec::new());
        for d in parts {
            files.extend(d.files);
            splits.extend(d.splits);
        }
        Ok(Self { name, files, splits })
    }

    pub fn rows(&self) -> Result<crate::Rows> {
        crate::Rows::open_all(&self.files)
    }

    /// The split `file` (one of this dataset's) belongs to, when it came from a Hub split.
    pub fn split_of(&self, file: &Path) -> Option<&str> {
        let i = self.files.iter().position(|f| f == file)?;
        self.splits[i].as_deref()
    }

    /// The content hash: a single file's own SHA-256 (as for any file), else the hash of the
    /// files' hashes in order.
    pub fn sha256(&self) -> Result<String> {
        match self.files.as_slice() {
            [one] => sha256_file(one),
            many => Ok(sha256_str(&many.iter().map(|f| sha256_file(f)).collect::<Result<Vec<_>>>()?.join("\n"))),
        }
    }
}

fn invalid(message: String) -> DataError {
    DataError::Source(message)
}

fn hub_error(e: armorm_hub::HubError) -> DataError {
    DataError::Source(e.0)
}

/// `owner/name`, `owner/name:split`, `owner/name@rev`, `owner/name:split@rev`.
fn hub_id(arg: &str) -> Option<DataSource> {
    let (rest, revision) = match arg.split_once('@') {
        Some((rest, rev)) if !rev.is_empty() => (rest, rev),
        Some(_) => return None,
        None => (arg, "main"),
    };
    let (repo, split) = match rest.split_once(':') {
        Some((repo, split)) if !split.is_empty() => (repo, Some(split.to_string())),
        Some(_) => return None,
        None => (rest, None),
    };
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let (owner, name) = repo.split_once('/')?;
    (ok(owner) && ok(name)).then(|| DataSource::Hub { repo: repo.to_string(), split, revision: revision.to_string() })
}

fn data_files_in(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let files = armorm_hub::files_under(dir).map_err(|e| DataError::io(dir, e))?;
    out.extend(files.into_iter().filter(|path| is_data_file(&path.to_string_lossy())));
    Ok(())
}

fn is_data_file(name: &str) -> bool {
    Path::new(name).extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e))
}

/// The split a data file belongs to by the Hub's layout: `{split}-00000-of-00002.ext` or
/// `{split}.ext` anywhere, or any file under a `{split}/` folder of `data/`.
fn split_of(file: &str) -> Option<String> {
    if !is_data_file(file) {
        return None;
    }
    let path = Path::new(file);
    let stem = path.file_stem()?.to_str()?;
    let parent = path.parent().and_then(|p| p.to_str()).unwrap_or("");
    if let Some(split) = parent.strip_prefix("data/").filter(|s| !s.contains('/')) {
        return Some(split.to_string());
    }
    // `train-00000-of-00002`: strip the shard suffix.
    let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
    if let [total, "of", index, split] = parts.as_slice() {
        if [total, index].iter().all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())) {
            return Some((*split).to_string());
        }
    }
    Some(stem.to_string())
}

/// The split's files among `files` (the repo's, `/`-separated): by the card's `configs:` when it
/// declares the default config's data files, else by the Hub's layout. No split named: the only
/// one, else `train`; `*`: every split, in name order. A split that is not there is an error
/// listing those that are.
fn split_files(
    files: &[String],
    split: Option<&str>,
    card: Option<&str>,
) -> std::result::Result<Vec<(String, Vec<String>)>, String> {
    let declared = card.and_then(card_splits);
    let splits: Vec<(String, Vec<String>)> = match declared {
        Some(patterns) => patterns
            .into_iter()
            .map(|(name, globs)| {
                let matched = files
                    .iter()
                    .filter(|f| globs.iter().any(|g| glob::Pattern::new(g).is_ok_and(|p| p.matches(f))))
                    .cloned()
                    .collect();
                (name, matched)
            })
            .collect(),
        None => {
            let names: BTreeSet<String> = files.iter().filter_map(|f| split_of(f)).collect();
            names
                .into_iter()
                .map(|name| {
                    let matched = files.iter().filter(|f| split_of(f).as_deref() == Some(&name)).cloned().collect();
                    (name, matched)
                })
                .collect()
        }
    };
    let names: Vec<String> = splits.iter().map(|(n, _)| n.clone()).collect();
    if split == Some("*") {
        let present: Vec<_> = splits.into_iter().filter(|(_, f)| !f.is_empty()).collect();
        return if present.is_empty() { Err("no data files (.jsonl, .json, .parquet)".into()) } else { Ok(present) };
    }
    let wanted = match split {
        Some(s) => s.to_string(),
        None if splits.len() == 1 => names[0].clone(),
        None if names.iter().any(|n| n == "train") => "train".to_string(),
        None => return Err(format!("name a split (`:split`); it has {}", names.join(", "))),
    };
    match splits.into_iter().find(|(n, _)| *n == wanted) {
        Some((name, files)) if !files.is_empty() => Ok(vec![(name, files)]),
        Some((name, _)) => Err(format!("split {name:?} has no data files")),
        None if names.is_empty() => Err("no data files (.jsonl, .json, .parquet)".into()),
        None => Err(format!("no split {wanted:?}; its splits: {}", names.join(", "))),
    }
}

/// The default config's `data_files` from a dataset card's YAML front matter: (split, globs).
fn card_splits(card: &str) -> Option<Vec<(String, Vec<String>)>> {
    let front = card.strip_prefix("---\n")?;
    let yaml = &front[..front.find("\n---")?];
    let meta: serde_json::Value = serde_yaml_ng::from_str(yaml).ok()?;
    let configs = meta.get("configs")?.as_array()?;
    let config = configs.iter().find(|c| c["config_name"] == "default").or_else(|| configs.first())?;
    let globs = |v: &serde_json::Value| -> Vec<String> {
        match v {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        }
    };
    match &config["data_files"] {
        serde_json::Value::Array(entries) => {
            Some(entries.iter().filter_map(|e| Some((e["split"].as_str()?.to_string(), globs(&e["path"])))).collect())
        }
        other => Some(vec![("train".to_string(), globs(other))]).filter(|v| !v[0].1.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(repo: &str, split: Option<&str>, revision: &str) -> DataSource {
        DataSource::Hub { repo: repo.into(), split: split.map(String::from), revision: revision.into() }
    }

    #[test]
    fn paths_globs_and_hub_ids_are_told_apart() {
        assert_eq!(DataSource::parse("allenai/reward-bench"), hub("allenai/reward-bench", None, "main"));
        assert_eq!(
            DataSource::parse("allenai/reward-bench:filtered"),
            hub("allenai/reward-bench", Some("filtered"), "main")
        );
        assert_eq!(DataSource::parse("o/n:test@v1.0"), hub("o/n", Some("test"), "v1.0"));
        assert_eq!(DataSource::parse("o/n@abc123"), hub("o/n", None, "abc123"));
        for local in ["./o/n", "/o/n", "o/pairs.jsonl", "pairs.parquet", "~/o/n", "src/typo", "a/b/c"] {
            assert!(matches!(DataSource::parse(local), DataSource::Local(_)), "{local}");
        }
        assert_eq!(DataSource::parse("data/train-*.parquet"), DataSource::Glob("data/train-*.parquet".into()));
        assert_eq!(DataSource::parse("shards/*.jsonl"), DataSource::Glob("shards/*.jsonl".into()));
        assert_eq!(DataSource::parse("allenai/pref-test-sets:*"), hub("allenai/pref-test-sets", Some("*"), "main"));
    }

    #[test]
    fn a_split_is_found_by_the_hub_layout_or_named_as_missing() {
        let files: Vec<String> = [
            ".gitattributes",
            "README.md",
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet",
            "data/test-00000-of-00001.parquet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let train = split_files(&files, None, None).unwrap();
        assert_eq!((train[0].0.as_str(), train[0].1.len(), train.len()), ("train", 2, 1));
        assert_eq!(split_files(&files, Some("test"), None).unwrap()[0].1, ["data/test-00000-of-00001.parquet"]);
        let every: Vec<String> = split_files(&files, Some("*"), None).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(every, ["test", "train"]);
        let err = split_files(&files, Some("filtered"), None).unwrap_err();
        assert_eq!(err, "no split \"filtered\"; its splits: test, train");
        let two = ["data/raw-00000-of-00001.parquet".to_string(), "data/filtered-00000-of-00001.parquet".to_string()];
        assert!(split_files(&two, None, None).unwrap_err().contains("name a split"));
        let folders = ["data/v1/a.jsonl".to_string(), "data/v1/b.jsonl".to_string(), "other.jsonl".to_string()];
        assert_eq!(split_files(&folders, Some("v1"), None).unwrap()[0].1.len(), 2);
    }

    #[test]
    fn the_cards_configs_decide_when_present() {
        let card = "---\nlicense: mit\nconfigs:\n- config_name: default\n  data_files:\n  - split: test\n    path: \
                    prefs/*.jsonl\n---\n# A dataset\n";
        let files = ["prefs/a.jsonl".to_string(), "prefs/b.jsonl".to_string(), "data/train.jsonl".to_string()];
        assert_eq!(split_files(&files, None, Some(card)).unwrap(), [("test".to_string(), files[..2].to_vec())]);
        assert!(split_files(&files, Some("train"), Some(card)).unwrap_err().contains("its splits: test"));
    }
}
