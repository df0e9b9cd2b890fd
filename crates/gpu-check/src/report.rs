//! What the check found, section by section: printed as it goes and, when an output folder is
//! given (`$OUT` on the GPU host), written there as `<section>.json` the moment a section ends, so
//! a run cut short by its time limit still leaves what it measured.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{json, Value};

pub struct Report {
    out: Option<PathBuf>,
    failures: Vec<String>,
}

impl Report {
    pub fn new(out: Option<PathBuf>) -> anyhow::Result<Self> {
        if let Some(dir) = &out {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self { out, failures: Vec::new() })
    }

    /// One section's results: each line printed, the whole written as JSON.
    pub fn section(&mut self, name: &str, value: Value) -> anyhow::Result<()> {
        if let Some(dir) = &self.out {
            std::fs::write(dir.join(format!("{name}.json")), serde_json::to_vec_pretty(&value)?)?;
        }
        Ok(())
    }

    /// Named checks that pass or fail: printed one a line, failures kept for the exit status.
    pub fn checks<T: Serialize>(
        &mut self,
        name: &str,
        results: Vec<(String, anyhow::Result<T>)>,
    ) -> anyhow::Result<()> {
        let mut rows = Vec::new();
        for (run, result) in results {
            match result {
                Ok(found) => {
                    println!("  ok    {run}");
                    rows.push(json!({"run": run, "ok": true, "found": found}));
                }
                Err(e) => {
                    println!("  FAIL  {run}: {e:#}");
                    self.failures.push(format!("{name}: {run}"));
                    rows.push(json!({"run": run, "ok": false, "error": format!("{e:#}")}));
                }
            }
        }
        self.section(name, Value::Array(rows))
    }

    /// Named runs whose outcome is reported, not required (what the device does without a
    /// guarantee armorm makes).
    pub fn observations<T: Serialize>(
        &mut self,
        name: &str,
        results: Vec<(String, anyhow::Result<T>)>,
    ) -> anyhow::Result<()> {
        let rows: Vec<Value> = results
            .into_iter()
            .map(|(run, result)| {
                let found = result.map_err(|e| format!("{e:#}"));
                println!("  {}  {run}", if found.is_ok() { "held" } else { "broke" });
                match found {
                    Ok(found) => json!({"run": run, "held": true, "found": found}),
                    Err(e) => json!({"run": run, "held": false, "error": e}),
                }
            })
            .collect();
        self.section(name, Value::Array(rows))
    }

    pub fn fail(&mut self, what: String) {
        println!("  FAIL  {what}");
        self.failures.push(what);
    }

    /// Ok when every check passed.
    pub fn finish(self) -> anyhow::Result<()> {
        anyhow::ensure!(self.failures.is_empty(), "{} failed: {}", self.failures.len(), self.failures.join("; "));
        Ok(())
    }
}
