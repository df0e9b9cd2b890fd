//! `armorm score` (the binary) on every fixture checkpoint, against the reference numbers.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{assert_matches, cases, fixtures, FAMILIES};

/// The Llama fixtures of tests/fixtures/generate.py, then every family's.
const FIXTURES: [&str; 10] = [
    "tiny-f32",
    "tiny-bf16",
    "tiny-sharded",
    "tiny-bt",
    FAMILIES[0],
    FAMILIES[1],
    FAMILIES[2],
    FAMILIES[3],
    FAMILIES[4],
    FAMILIES[5],
];

/// A checkpoint armorm cannot score exactly stops `score` and `serve` before any request, naming
/// why: an architecture it lacks, or tensors its config's architecture does not have.
#[test]
fn checkpoints_that_cannot_be_scored_exactly_stop_score_and_serve() {
    for (model, why) in [
        ("refused-mistral", "architecture \"MistralForSequenceClassification\" is not one armorm implements"),
        ("refused-mislabelled", "model.layers.0.self_attn.q_norm.weight"),
    ] {
        let dir = fixtures().join("models").join(model);
        for args in [&["score", "--model"][..], &["serve", "--port", "0", "--model"][..]] {
            let out = Command::new(env!("CARGO_BIN_EXE_armorm"))
                .args(args)
                .arg(&dir)
                .stdin(Stdio::null())
                .env("RUST_BACKTRACE", "0")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success() && stderr.contains(why), "{model} {args:?}: {stderr}");
            assert!(out.stdout.is_empty(), "{model} {args:?}: nothing scored");
        }
    }
}

#[test]
fn score_command_annotates_jsonl_in_order_on_every_fixture() {
    for model in FIXTURES {
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

/// One output line per input line, blank lines included, and every error names its line.
#[test]
fn score_keeps_lines_aligned_and_errors_name_their_line() {
    let input =
        "{\"prompt\": \"Hi\", \"response\": \"Hello\"}\n\n{not json\n{\"prompt\": \"a\", \"response\": \"b\"}\n";
    let mut child = Command::new(env!("CARGO_BIN_EXE_armorm"))
        .args(["score", "--model"])
        .arg(fixtures().join("models").join("tiny-f32"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0]["score"].is_number() && lines[3]["score"].is_number());
    for (i, line) in [(1, &lines[1]), (2, &lines[2])] {
        assert_eq!(line["line"], i + 1, "{line}");
        assert_eq!(line["error"]["code"], "malformed_json", "{line}");
        let message = line["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("line {}: ", i + 1)), "{message}");
    }
}

/// On/off variables take 1/0, yes/no, on/off and true/false, and a wrong value names the variable.
#[test]
fn boolean_environment_variables_take_the_usual_spellings() {
    let score = |value: &str| {
        Command::new(env!("CARGO_BIN_EXE_armorm"))
            .args(["score", "--model"])
            .arg(fixtures().join("models").join("tiny-f32"))
            .env("ARMORM_NO_PREFIX_SHARING", value)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for value in ["1", "yes", "ON", "False", "0"] {
        let out = score(value);
        assert!(out.status.success(), "{value}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = score("maybe");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ARMORM_NO_PREFIX_SHARING=maybe"), "{stderr}");
}
