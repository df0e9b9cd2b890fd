//! Every metric the Grafana dashboard and the autoscaler query is one the server exports.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::TestServer;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `armorm_*` identifiers in a PromQL expression, with histogram series suffixes removed.
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(start) = rest.find("armorm_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        out.insert(base.to_string());
        rest = &tail[end..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_autoscaler_query_only_exported_metrics() {
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/armorm.json")).unwrap();
    let mut names = BTreeSet::new();
    let panels = dashboard["panels"].as_array().unwrap();
    for target in panels.iter().flat_map(|p| p["targets"].as_array().unwrap()) {
        metric_names(target["expr"].as_str().unwrap(), &mut names);
    }
    metric_names(&read("deploy/kubernetes/hpa.yaml"), &mut names);
    assert!(names.len() >= 10, "{names:?}");

    let server = TestServer::start("tiny-f32", &[]).await;
    let (_, exported) = server.get("/metrics").await;
    for name in &names {
        assert!(
            exported.contains(&format!("# TYPE {name} ")),
            "dashboard queries {name}, which the server does not export"
        );
    }
    server.stop().await;
}
