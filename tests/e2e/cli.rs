//! `armorm score` (the binary) on every fixture checkpoint, against the reference numbers.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{assert_matches, cases, fixtures};

#[test]
fn score_command_annotates_jsonl_in_order_on_every_fixture() {
    for model in ["tiny-f32", "tiny-bf16", "tiny-sharded", "tiny-bt"] {
        let out = Command::new(env!("CARGO_BIN_EXE_armorm"))
            .args(["score", "--model"])
            .arg(fixtures().join("models").join(model))
            .args(["--batch-size", "5", "--dtype", "f32"])
            .stdin(std::fs::File::open(fixtures().join("conversations.jsonl")).unwrap())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{model}: armorm score failed");
        let lines: Vec<Value> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let cases = cases(model);
        assert_eq!(lines.len(), cases.len(), "{model}: one output line per input line");
        for (line, (_, case)) in lines.iter().zip(&cases) {
            match case.get("error") {
                Some(code) => assert_eq!(&line["error"]["code"], code, "{model}: {line}"),
                None => assert_matches(line, case, 1e-4),
            }
        }
    }
}
