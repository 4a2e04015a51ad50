//! The write path over real HTTP: formats, tenants, validation errors and limits with Loki's
//! status codes and texts, ops endpoints, and what ends up in the object store.

mod common;

use common::{TestServer, json_body, now_ns, proto_body, stored_entries};
use reqwest::StatusCode;
use serde_json::json;

async fn push(s: &TestServer, body: impl Into<reqwest::Body>, content_type: Option<&str>) -> (StatusCode, String) {
    push_with(s, body, content_type, &[]).await
}

async fn push_with(
    s: &TestServer,
    body: impl Into<reqwest::Body>,
    content_type: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut req = reqwest::Client::new().post(s.url("/loki/api/v1/push")).body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn flush(s: &TestServer) {
    let r = reqwest::Client::new().post(s.url("/flush?wait=true")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().await.unwrap());
}

async fn stored(s: &TestServer, tenant: &str) -> Vec<(String, i64, String)> {
    stored_entries(&s.dir.path().join("chunks"), tenant).await
}

async fn metrics(s: &TestServer) -> String {
    reqwest::get(s.url("/metrics")).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_json_gzip_and_legacy_pushes_are_stored() {
    let s = TestServer::start(&[]).await;
    let t = now_ns();
    let (st, body) =
        push(&s, proto_body(&[(r#"{job="proto", env="a"}"#, vec![(t, "p1".into()), (t + 1, "p2".into())])]), None)
            .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    let (st, body) =
        push(&s, proto_body(&[(r#"{job="proto2"}"#, vec![(t, "p3".into())])]), Some("application/x-protobuf")).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    let (st, body) =
        push(&s, json_body(&[(json!({"job": "json"}), vec![(t, "j1".into())])]), Some("application/json")).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");

    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&json_body(&[(json!({"job": "gzip"}), vec![(t, "g1".into())])])).unwrap();
        e.finish().unwrap()
    };
    let (st, body) = push_with(&s, gz, Some("application/json"), &[("Content-Encoding", "gzip")]).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");

    let legacy = json!({"streams": [{"labels": "{job=\"legacy\"}", "entries": [{"ts": "2030-01-01T00:00:00Z", "line": "too new"}]}]});
    let r = reqwest::Client::new()
        .post(s.url("/api/prom/push"))
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&legacy).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "timestamps in the future are refused");
    assert!(r.text().await.unwrap().contains("has timestamp too new"));

    flush(&s).await;
    let got = stored(&s, "fake").await;
    let want = vec![
        (r#"{env="a", job="proto"}"#.to_string(), t, "p1".to_string()),
        (r#"{env="a", job="proto"}"#.to_string(), t + 1, "p2".to_string()),
        (r#"{job="gzip"}"#.to_string(), t, "g1".to_string()),
        (r#"{job="json"}"#.to_string(), t, "j1".to_string()),
        (r#"{job="proto2"}"#.to_string(), t, "p3".to_string()),
    ];
    assert_eq!(got, want);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_requires_an_org_id_and_separates_tenants() {
    let s = TestServer::start(&["--auth.enabled"]).await;
    let t = now_ns();
    let body = proto_body(&[(r#"{job="a"}"#, vec![(t, "line".into())])]);
    let (st, text) = push(&s, body.clone(), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(text.trim(), "no org id");
    let (st, text) = push_with(&s, body.clone(), None, &[("X-Scope-OrgID", "bad/tenant")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("unsupported character '/'"), "{text}");
    let (st, _) = push_with(&s, body.clone(), None, &[("X-Scope-OrgID", "team-a")]).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    flush(&s).await;
    assert_eq!(stored(&s, "team-a").await.len(), 1);
    assert!(stored(&s, "team-b").await.is_empty());
    assert!(stored(&s, "fake").await.is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_status_and_text_and_never_corrupts_data() {
    let s = TestServer::start(&["--distributor.max-recv-msg-size=12MB"]).await;
    let t = now_ns();
    let good = proto_body(&[(r#"{job="good"}"#, vec![(t, "before".into())])]);
    assert_eq!(push(&s, good, None).await.0, StatusCode::NO_CONTENT);

    let (st, text) = push(&s, &b"{\"streams\": [{\"stream\": "[..], Some("application/json")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(text.contains("decoding JSON push request"), "{text}");

    let full = proto_body(&[(r#"{job="x"}"#, vec![(t, "hello world".repeat(20))])]);
    let (st, text) = push(&s, full.slice(..full.len() / 2), None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(text.contains("snappy"), "{text}");

    let garbage = snap::raw::Encoder::new().compress_vec(&[0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff]).unwrap();
    let (st, text) = push(&s, garbage, Some("application/x-protobuf")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(text.contains("decoding protobuf push request"), "{text}");

    // Invalid UTF-8 in one stream's labels: that stream is refused, the other stored.
    let req = norn::logproto::PushRequest {
        streams: vec![
            norn::logproto::StreamAdapter {
                labels: bytes::Bytes::from_static(b"{job=\"\xff\xfe\"}"),
                entries: vec![norn::logproto::EntryAdapter {
                    timestamp: Some(norn::logproto::Timestamp::from_nanos(t)),
                    line: "bad labels".into(),
                    structured_metadata: vec![],
                    parsed: vec![],
                }],
                hash: 0,
            },
            norn::logproto::StreamAdapter {
                labels: bytes::Bytes::from_static(b"{job=\"fine\"}"),
                entries: vec![norn::logproto::EntryAdapter {
                    timestamp: Some(norn::logproto::Timestamp::from_nanos(t)),
                    line: "kept".into(),
                    structured_metadata: vec![],
                    parsed: vec![],
                }],
                hash: 0,
            },
        ],
    };
    let body = snap::raw::Encoder::new().compress_vec(&prost::Message::encode_to_vec(&req)).unwrap();
    let (st, text) = push(&s, body, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(text.contains("Error parsing labels") && text.contains("invalid UTF-8"), "{text}");

    // A 10 MB line: dropped with Loki's text, its neighbour kept.
    let huge = "x".repeat(10 * 1024 * 1024);
    let body = proto_body(&[(r#"{job="big"}"#, vec![(t, huge), (t + 1, "small".into())])]);
    let (st, text) = push(&s, body, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        text.trim(),
        r#"Max entry size '256000' bytes exceeded for stream '{job="big"}' while adding an entry with length '10485760' bytes"#
    );

    let (st, text) = push_with(&s, &b"xx"[..], None, &[("Content-Encoding", "br")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(text.contains("Content-Encoding \"br\" not supported"), "{text}");

    let (st, text) =
        push(&s, json_body(&[(json!({"job": "many"}), vec![(t, "y".repeat(13_000_000))])]), Some("application/json"))
            .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(text.starts_with("request body too large: 130") && text.contains("limit: 12000000 bytes"), "{text}");

    let (st, text) = push(&s, json_body(&[(json!({}), vec![(t, "no labels".into())])]), Some("application/json")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(text.trim(), "error at least one label pair is required per stream");

    let good = proto_body(&[(r#"{job="good"}"#, vec![(t + 5, "after".into())])]);
    assert_eq!(push(&s, good, None).await.0, StatusCode::NO_CONTENT, "still serving");
    flush(&s).await;
    let got = stored(&s, "fake").await;
    let lines: Vec<&str> = got.iter().map(|(_, _, l)| l.as_str()).collect();
    assert_eq!(lines, vec!["small", "kept", "before", "after"], "{got:?}");
    let m = metrics(&s).await;
    assert!(m.contains(r#"norn_discarded_samples_total{reason="line_too_long",tenant="fake"} 1"#), "{m}");
    assert!(m.contains(r#"norn_discarded_samples_total{reason="invalid_labels",tenant="fake"} 1"#), "{m}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_streams_hit_the_stream_limit() {
    let s = TestServer::start(&[]).await;
    let t = now_ns();
    let mut statuses = Vec::new();
    for batch in 0..10 {
        let streams: Vec<(String, Vec<(i64, String)>)> = (0..10_000)
            .map(|i| (format!(r#"{{job="many", id="{}"}}"#, batch * 10_000 + i), vec![(t, "l".to_string())]))
            .collect();
        let refs: Vec<(&str, Vec<(i64, String)>)> = streams.iter().map(|(l, e)| (l.as_str(), e.clone())).collect();
        let (st, text) = push(&s, proto_body(&refs), None).await;
        if st != StatusCode::NO_CONTENT {
            assert!(
                text.starts_with("Maximum active stream limit exceeded when trying to create stream {id="),
                "{text}"
            );
            assert!(text.contains("user: 'fake'"), "{text}");
        }
        statuses.push(st);
    }
    assert!(statuses.iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let m = metrics(&s).await;
    assert!(m.contains("norn_ingester_memory_streams 5000"), "{m}");
    assert!(m.contains(r#"norn_discarded_samples_total{reason="stream_limit",tenant="fake"} 95000"#), "{m}");
    let ok = proto_body(&[(r#"{job="many", id="17"}"#, vec![(t + 1, "existing stream".into())])]);
    assert_eq!(push(&s, ok, None).await.0, StatusCode::NO_CONTENT, "existing streams still take writes");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_and_stream_rate_limits_answer_429() {
    let s = TestServer::start(&["--limits.ingestion-rate-mb=0.001", "--limits.ingestion-burst-size-mb=0.01"]).await;
    let t = now_ns();
    let body = proto_body(&[(r#"{job="a"}"#, (0..30).map(|i| (t + i, "x".repeat(1000))).collect())]);
    let (st, text) = push(&s, body, None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        text.trim(),
        "Ingestion rate limit exceeded for user fake (limit: 1000 bytes/sec) while attempting to ingest '30' lines totaling '30000' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased"
    );
    s.stop().await;

    let s =
        TestServer::start(&["--limits.per-stream-rate-limit=1KB", "--limits.per-stream-rate-limit-burst=2KB"]).await;
    let body = proto_body(&[(r#"{job="a"}"#, (0..3).map(|i| (t + i, "x".repeat(1000))).collect())]);
    let (st, text) = push(&s, body, None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        text.starts_with(
            "Per stream rate limit exceeded (limit: 1KB/sec) while attempting to ingest for stream '{job=\"a\"}'"
        ),
        "{text}"
    );
    flush(&s).await;
    assert_eq!(stored(&s, "fake").await.len(), 2, "the burst's worth was stored");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_window_and_exact_duplicates() {
    let s = TestServer::start(&["--ingester.max-chunk-age=1h"]).await;
    let t = now_ns() - 60_000_000_000;
    let min = 60_000_000_000i64;
    let first = proto_body(&[(r#"{job="a"}"#, vec![(t, "newest".into()), (t - 10 * min, "ten minutes older".into())])]);
    assert_eq!(push(&s, first.clone(), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(push(&s, first, None).await.0, StatusCode::NO_CONTENT, "a retried push is accepted");
    let too_old = proto_body(&[(r#"{job="a"}"#, vec![(t - 31 * min, "too far behind".into())])]);
    let (st, text) = push(&s, too_old, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(text.contains("entry too far behind, entry timestamp is:"), "{text}");
    assert!(text.contains("user 'fake', total ignored: 1 out of 1 for stream: {job=\"a\"}"), "{text}");
    let same_ts = proto_body(&[(r#"{job="a"}"#, vec![(t, "same time, other line".into())])]);
    assert_eq!(push(&s, same_ts, None).await.0, StatusCode::NO_CONTENT);
    flush(&s).await;
    let lines: Vec<String> = stored(&s, "fake").await.into_iter().map(|(_, _, l)| l).collect();
    assert_eq!(lines, vec!["ten minutes older", "newest", "same time, other line"]);
    let m = metrics(&s).await;
    assert!(m.contains("norn_ingester_duplicate_entries_total 2"), "{m}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_endpoints_report_state() {
    let s = TestServer::start(&[]).await;
    let t = now_ns();
    assert_eq!(
        push(&s, proto_body(&[(r#"{job="a"}"#, vec![(t, "hello".into())])]), None).await.0,
        StatusCode::NO_CONTENT
    );
    let ready = reqwest::get(s.url("/ready")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let cfg = reqwest::get(s.url("/config")).await.unwrap().text().await.unwrap();
    let parsed: serde_json::Value = serde_norway::from_str(&cfg).unwrap();
    assert_eq!(parsed["auth"]["enabled"], json!(false));
    assert_eq!(parsed["limits"]["max_line_size"], json!("256KB"));
    flush(&s).await;
    let m = metrics(&s).await;
    for want in [
        r#"norn_distributor_lines_received_total{tenant="fake"} 1"#,
        r#"norn_distributor_bytes_received_total{tenant="fake"} 5"#,
        r#"norn_ingester_chunks_flushed_total{reason="forced"} 1"#,
        "norn_ingester_memory_streams 0",
        "norn_ingester_wal_bytes_written_total",
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
    s.stop().await;
}
