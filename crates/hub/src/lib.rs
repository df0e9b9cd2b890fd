//! The Hugging Face Hub, for models and datasets alike, through the standard cache layout
//! (`HF_HOME` / `HF_HUB_CACHE`), so files fetched by Python tools are reused and tools here reuse
//! theirs. `HF_HUB_OFFLINE=1` reads the cache only; `HF_TOKEN` (or the cached token) opens gated
//! repos.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

/// What went wrong reaching a repository or its files, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HubError(pub String);

pub type Result<T, E = HubError> = std::result::Result<T, E>;

/// What the environment says about the Hub, read once so tests can pass their own.
pub struct HubEnv {
    pub offline: bool,
    pub endpoint: String,
    /// Connect and read timeout of the requests made before hf-hub's (which have none).
    pub timeout: std::time::Duration,
    pub cache: Cache,
}

impl HubEnv {
    pub fn from_env() -> Self {
        let offline =
            std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"));
        let seconds = std::env::var("HF_HUB_ETAG_TIMEOUT").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(10.0);
        Self {
            offline,
            endpoint: std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into()),
            timeout: std::time::Duration::from_secs_f64(seconds.max(0.1)),
            cache: cache_from_env(),
        }
    }

    fn token(&self) -> Option<String> {
        ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|t| !t.is_empty()))
            // The token file lives in HF_HOME whatever HF_HUB_CACHE says.
            .or_else(|| Cache::from_env().token())
    }
}

/// The cache huggingface_hub uses: `HF_HUB_CACHE` (or the older `HUGGINGFACE_HUB_CACHE`), else
/// `$HF_HOME/hub`, else `~/.cache/huggingface/hub` (hf-hub itself reads only `HF_HOME`).
fn cache_from_env() -> Cache {
    ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"]
        .iter()
        .find_map(|k| std::env::var_os(k).filter(|v| !v.is_empty()))
        .map_or_else(Cache::from_env, |dir| Cache::new(PathBuf::from(dir)))
}

/// One repository at one revision: its files from the cache, else from the Hub.
pub struct HubRepo<'a> {
    env: &'a HubEnv,
    id: String,
    repo: Repo,
    api: Option<ApiRepo>,
    /// What the Hub said to the first request (asked once, before any hf-hub request), or why it
    /// could not be asked.
    asked: std::cell::OnceCell<std::result::Result<Answer, String>>,
}

/// The Hub's answer to a listing: the files, or the status it refused with (it is there, though).
#[derive(Clone)]
enum Answer {
    Listed(Vec<String>),
    Refused(String),
}

impl<'a> HubRepo<'a> {
    pub fn model(env: &'a HubEnv, id: &str, revision: &str) -> Result<Self> {
        Self::new(env, id, Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string()))
    }

    pub fn dataset(env: &'a HubEnv, id: &str, revision: &str) -> Result<Self> {
        Self::new(env, id, Repo::with_revision(id.to_string(), RepoType::Dataset, revision.to_string()))
    }

    fn new(env: &'a HubEnv, id: &str, repo: Repo) -> Result<Self> {
        let api = if env.offline {
            None
        } else {
            let api = ApiBuilder::from_cache(env.cache.clone())
                .with_endpoint(env.endpoint.clone())
                .with_token(env.token())
                .with_progress(true)
                .build()
                .map_err(|e| HubError(e.to_string()))?;
            Some(api.repo(repo.clone()))
        };
        Ok(Self { env, id: id.to_string(), repo, api, asked: std::cell::OnceCell::new() })
    }

    /// `owner/name@revision`, for messages.
    pub fn name(&self) -> String {
        format!("{}@{}", self.id, self.repo.revision())
    }

    /// A file of the repo on local disk: the cached copy, else downloaded into the cache.
    pub fn get(&self, file: &str) -> Result<PathBuf> {
        if let Some(path) = self.env.cache.repo(self.repo.clone()).get(file) {
            return Ok(path);
        }
        match &self.api {
            Some(api) => {
                self.ask().map_err(HubError)?;
                api.get(file).map_err(|e| HubError(format!("{}/{file}: {e}", self.name())))
            }
            None => {
                Err(HubError(format!("{}/{file} is not in the local cache and HF_HUB_OFFLINE is set", self.name())))
            }
        }
    }

    /// Every file of the repo at this revision (paths inside it, `/`-separated, sorted): from the
    /// cached snapshot when offline or when the Hub cannot be asked, else the Hub's listing.
    pub fn files(&self) -> Result<Vec<String>> {
        if self.api.is_none() {
            return self.cached_files();
        }
        match self.ask() {
            Ok(Answer::Listed(files)) => Ok(files),
            Ok(Answer::Refused(why)) | Err(why) => self.cached_files().map_err(|e| HubError(format!("{why}; {e}"))),
        }
    }

    fn cached_files(&self) -> Result<Vec<String>> {
        let dir = self.env.cache.path().join(self.repo.folder_name());
        let revision = self.repo.revision();
        let commit = std::fs::read_to_string(dir.join("refs").join(revision))
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|_| revision.to_string());
        let snapshot = dir.join("snapshots").join(&commit);
        if !snapshot.is_dir() {
            let offline = if self.env.offline { " and HF_HUB_OFFLINE is set" } else { "" };
            return Err(HubError(format!(
                "{} is not in the local cache ({}){offline}",
                self.name(),
                self.env.cache.path().display()
            )));
        }
        let unreadable = |e: std::io::Error| HubError(format!("{}: {e}", snapshot.display()));
        let mut files: Vec<String> = files_under(&snapshot)
            .map_err(unreadable)?
            .iter()
            .filter_map(|path| Some(path.strip_prefix(&snapshot).ok()?.to_string_lossy().replace('\\', "/")))
            .collect();
        files.sort();
        Ok(files)
    }

    /// The Hub's file list, asked once with a connect and read timeout (`HF_HUB_ETAG_TIMEOUT`
    /// seconds, default 10, as in huggingface_hub): hf-hub's own client has none, so an endpoint
    /// that accepts connections and never answers would hang the caller. Any answer shows the Hub
    /// is there; an error status lists nothing.
    fn ask(&self) -> std::result::Result<Answer, String> {
        self.asked.get_or_init(|| self.ask_listing()).clone()
    }

    fn ask_listing(&self) -> std::result::Result<Answer, String> {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(self.env.timeout)
            .timeout_read(self.env.timeout)
            .try_proxy_from_env(true)
            .build();
        let endpoint = self.env.endpoint.trim_end_matches('/');
        let url = format!("{endpoint}/api/{}", self.repo.api_url());
        let mut request = agent.get(&url);
        if let Some(token) = self.env.token() {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        match request.call() {
            Ok(response) => {
                let info: serde_json::Value = response.into_json().unwrap_or_default();
                let files = info["siblings"].as_array().map_or_else(Vec::new, |s| {
                    s.iter().filter_map(|f| f["rfilename"].as_str().map(str::to_string)).collect()
                });
                Ok(Answer::Listed(files))
            }
            Err(ureq::Error::Status(code, _)) => {
                Ok(Answer::Refused(format!("the Hub answered {code} for {}", self.name())))
            }
            Err(e) => Err(format!(
                "cannot reach the Hub at {endpoint} for {} within {:?}: {e} (a local path? give it; already \
                 downloaded? set HF_HUB_OFFLINE=1)",
                self.name(),
                self.env.timeout
            )),
        }
    }
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(dir, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
