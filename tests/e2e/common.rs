use std::path::{Path, PathBuf};

use armorm_cli::args::{Cli, Command};
use armorm_server::serve::{start, RunningServer};
use clap::Parser;
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub fn expected(name: &str) -> Value {
    let path = fixtures().join("expected").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Each line of conversations.jsonl with its reference case for `model` (f32 compute).
pub fn cases(model: &str) -> Vec<(Value, Value)> {
    let text = std::fs::read_to_string(fixtures().join("conversations.jsonl")).unwrap();
    let exp = expected(model);
    text.lines().map(|l| serde_json::from_str(l).unwrap()).zip(exp["f32"].as_array().unwrap().iter().cloned()).collect()
}

pub fn scorable(model: &str) -> Vec<(Value, Value)> {
    cases(model).into_iter().filter(|(_, case)| case.get("score").is_some()).collect()
}

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    server: RunningServer,
}

impl TestServer {
    pub async fn start(model: &str, extra: &[&str]) -> Self {
        let dir = fixtures().join("models").join(model);
        let mut args = vec!["armorm", "serve", "--model", dir.to_str().unwrap(), "--port", "0", "--no-warmup"];
        if !extra.contains(&"--max-batch-tokens") {
            args.extend_from_slice(&["--max-batch-tokens", "4096"]);
        }
        args.extend_from_slice(extra);
        let Command::Serve(serve) = Cli::try_parse_from(args).unwrap().command else { unreachable!() };
        let server = start(&serve).await.unwrap();
        Self { base: format!("http://{}", server.addr), client: reqwest::Client::new(), server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self.client.post(self.url(path)).json(body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.client.get(self.url(path)).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    pub async fn stop(self) {
        self.server.shutdown().await.unwrap();
    }

    /// Shuts down and returns what the shutdown reported (e.g. a missed deadline).
    pub async fn stop_result(self) -> anyhow::Result<()> {
        self.server.shutdown().await
    }
}

pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// A /score result against a reference case, within `tol` on every number.
/// The family fixtures (tests/fixtures/families/generate.py): Llama-3.1, Qwen2, Qwen3, Gemma-2
/// and an MLP score head, each scored by transformers' own class.
pub const FAMILIES: [&str; 6] =
    ["tiny-llama31", "tiny-qwen2", "tiny-qwen3", "tiny-gemma2", "tiny-mlp-head", "tiny-starling"];

pub fn assert_matches(result: &Value, case: &Value, tol: f64) {
    let idx = &case["index"];
    let close = |what: &str, got: f64, want: f64| {
        assert!((got - want).abs() <= tol, "case {idx} {what}: got {got}, reference {want}");
    };
    close("score", result["score"].as_f64().unwrap(), case["score"].as_f64().unwrap());
    assert_eq!(result["num_tokens"], case["num_tokens"], "case {idx}");
    for key in ["rewards", "gating", "coefficients", "logits"] {
        match case.get(key) {
            Some(want) => {
                let (got, want) = (floats(&result[key]), floats(want));
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    close(key, *g, *w);
                }
            }
            None => assert!(result.get(key).is_none(), "case {idx}: unexpected {key}"),
        }
    }
}

/// The README's command that starts with `prefix` (e.g. "cargo run --release -- eval"), joined over
/// its continuation lines, as the arguments after `--`.
pub fn readme_command(prefix: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find(prefix).unwrap_or_else(|| panic!("README shows `{prefix}`"));
    let mut command = String::new();
    for line in readme[start..].lines() {
        command.push_str(line.trim_end_matches('\\'));
        command.push(' ');
        if !line.ends_with('\\') {
            break;
        }
    }
    command.split_whitespace().skip(4).map(str::to_string).collect()
}
