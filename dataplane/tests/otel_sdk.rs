//! A real OpenTelemetry client: the Python SDK's OTLP/HTTP log exporter (gzip, protobuf)
//! sends to Norn, and what it sent is queryable with Loki's labels and structured metadata.
//!
//! Needs `NORN_OTEL_PYTHON`: a python with `opentelemetry-sdk` and
//! `opentelemetry-exporter-otlp-proto-http` (`scripts/test.sh` installs them into `.venv` and
//! sets it). Without it the test says so and passes without running.

mod common;

use std::path::Path;

use common::{TestServer, now_ns, urlencode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_exports_logs_that_come_back_with_lokis_labels() {
    let Some(python) = std::env::var_os("NORN_OTEL_PYTHON") else {
        eprintln!("SKIPPED: NORN_OTEL_PYTHON is not set (scripts/test.sh sets it to .venv/bin/python)");
        return;
    };
    let s = TestServer::start(&["--auth.enabled=true", "--limits.discover-log-levels=true"]).await;
    let start = now_ns() - 1_000_000_000;
    let run = format!("run-{}", std::process::id());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otel_sdk/export_logs.py");
    let out = tokio::process::Command::new(python)
        .arg(&script)
        .arg(format!("http://{}", s.addr))
        .arg("team-otel")
        .arg(&run)
        .output()
        .await
        .expect("run the exporter script");
    assert!(out.status.success(), "exporter failed: {}", String::from_utf8_lossy(&out.stderr));
    // The SDK logs export failures instead of failing: there must be none.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Failed to export"), "{stderr}");
    let ids: Value = serde_json::from_slice(&out.stdout).expect("the script prints the span's ids");

    let q = urlencode(r#"{service_name="checkout"}"#);
    let path = format!("/loki/api/v1/query_range?query={q}&start={start}&direction=forward&limit=100");
    let (status, body) = s.get_tenant(&path, "team-otel").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let streams = v["data"]["result"].as_array().unwrap();
    let mut lines: Vec<(String, Value)> = streams
        .iter()
        .flat_map(|s| {
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |e| (e[1].as_str().unwrap().to_string(), s["stream"].clone()))
        })
        .collect();
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(got, ["inventory lookup failed", "order o-18 shipped", "payment declined"], "{v}");

    let declined = &lines[2].1;
    for (k, want) in [
        ("service_name", json!("checkout")),
        ("service_namespace", json!("shop")),
        ("k8s_namespace_name", json!("prod")),
        ("host_name", json!("node-7")),
        ("norn_test_run", json!(run)),
        ("scope_name", json!("shop.checkout")),
        ("order_id", json!("o-17")),
        ("amount", json!("42")),
        ("severity_text", json!("WARN")),
        ("severity_number", json!("13")),
        ("detected_level", json!("warn")),
        ("trace_id", ids["trace_id"].clone()),
        ("span_id", ids["span_id"].clone()),
        ("telemetry_sdk_language", json!("python")),
    ] {
        assert_eq!(declined[k], want, "{k} in {declined}");
    }
    assert_eq!(lines[0].1["detected_level"], json!("error"));
    assert_eq!(lines[1].1["detected_level"], json!("info"));
    assert!(lines[1].1.get("trace_id").is_none(), "logged outside the span: {}", lines[1].1);

    // Only the index labels are labels; the rest is structured metadata. (Recent SDKs add a
    // random `service.instance.id`, which is on Loki's default list.)
    let (_, names) = s.get_tenant("/loki/api/v1/labels", "team-otel").await;
    let names: Value = serde_json::from_str(&names).unwrap();
    let names: Vec<&str> = names["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .filter(|n| *n != "service_instance_id")
        .collect();
    assert_eq!(names, ["k8s_namespace_name", "service_name", "service_namespace"]);
    let (status, _) = s.get_tenant("/loki/api/v1/labels", "someone-else").await;
    assert_eq!(status, 200);
    let (_, other) = s.get_tenant(&path, "someone-else").await;
    assert_eq!(serde_json::from_str::<Value>(&other).unwrap()["data"]["result"], json!([]), "tenants stay apart");
    s.stop().await;
}
