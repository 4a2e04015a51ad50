//! Log and metric queries over real HTTP — `/loki/api/v1/query_range`, `/query` and `/tail` —
//! checked against Loki's documented semantics and response shapes: ordering by direction, the
//! limit across streams, line filters, parsers, formatting and `__error__`, over ingester memory
//! and, after a flush, over the object store.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestServer, now_ns, urlencode};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const SEC: i64 = 1_000_000_000;

/// `query_range` of a log query: the streams as (labels object as JSON text → [(ts, line)]), in
/// the order each stream's entries came back.
async fn streams(s: &TestServer, query: &str, extra: &str) -> BTreeMap<String, Vec<(i64, String)>> {
    let v = s.get_json(&format!("/loki/api/v1/query_range?query={}{extra}", urlencode(query)), None).await;
    assert_eq!(v["status"], json!("success"), "{v}");
    assert_eq!(v["data"]["resultType"], json!("streams"), "{v}");
    assert!(v["data"]["stats"]["summary"].is_object(), "a stats block: {v}");
    let mut out = BTreeMap::new();
    for r in v["data"]["result"].as_array().unwrap() {
        let values = r["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e[0].as_str().unwrap().parse::<i64>().unwrap(), e[1].as_str().unwrap().to_string()))
            .collect();
        let prev = out.insert(r["stream"].to_string(), values);
        assert!(prev.is_none(), "a stream appears once: {v}");
    }
    out
}

/// Every (ts, line) of a result, in the order the streams and their entries came.
fn all_lines(result: &BTreeMap<String, Vec<(i64, String)>>) -> Vec<(i64, String)> {
    result.values().flatten().cloned().collect()
}

/// Time range parameters around `t0`.
fn range(t0: i64, extra: &str) -> String {
    format!("&start={}&end={}{extra}", t0 - SEC, t0 + 600 * SEC)
}

/// Runs `check` once over ingester memory and once more after everything is flushed to the
/// object store: both must give the same answers.
async fn in_memory_and_in_the_store<F>(s: &TestServer, check: F)
where
    F: AsyncFn(&str),
{
    check("memory").await;
    s.flush().await;
    check("store").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direction_and_limit_order_entries_across_streams() {
    let s = TestServer::start(&[]).await;
    let t0 = now_ns() - 3600 * SEC;
    // Two streams interleaved in time: api at even seconds, web at odd ones.
    let api: Vec<_> = (0..10).map(|i| (t0 + 2 * i * SEC, format!("api {i}"))).collect();
    let web: Vec<_> = (0..10).map(|i| (t0 + (2 * i + 1) * SEC, format!("web {i}"))).collect();
    s.push(None, &[(r#"{app="api", env="prod"}"#, api.clone()), (r#"{app="web", env="prod"}"#, web.clone())]).await;
    let api_key = json!({"app": "api", "env": "prod"}).to_string();
    let web_key = json!({"app": "web", "env": "prod"}).to_string();

    in_memory_and_in_the_store(&s, async |phase: &str| {
        // Forward: the oldest entries of all streams, each stream ascending.
        let r = streams(&s, r#"{env="prod"}"#, &range(t0, "&direction=forward&limit=5")).await;
        assert_eq!(r[&api_key], api[..3].to_vec(), "{phase}");
        assert_eq!(r[&web_key], web[..2].to_vec(), "{phase}");

        // Backward (the default): the newest entries, each stream descending.
        let r = streams(&s, r#"{env="prod"}"#, &range(t0, "&limit=5")).await;
        let newest_api: Vec<_> = api.iter().rev().take(2).cloned().collect();
        let newest_web: Vec<_> = web.iter().rev().take(3).cloned().collect();
        assert_eq!(r[&api_key], newest_api, "{phase}");
        assert_eq!(r[&web_key], newest_web, "{phase}");

        // The window is [start, end): an entry at `end` is left out, one at `start` kept.
        let extra = format!("&start={}&end={}&direction=forward", t0 + 2 * SEC, t0 + 5 * SEC);
        let r = streams(&s, r#"{app="api"}"#, &extra).await;
        assert_eq!(all_lines(&r), vec![api[1].clone(), api[2].clone()], "{phase}");

        // Without a limit parameter Loki's default of 100 applies; all 20 fit.
        let r = streams(&s, r#"{env="prod"}"#, &range(t0, "")).await;
        assert_eq!(r.values().map(Vec::len).sum::<usize>(), 20, "{phase}");
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_filters_parsers_formatting_and_error_labels() {
    let s = TestServer::start(&[]).await;
    let t0 = now_ns() - 3600 * SEC;
    let lines = [
        r#"{"level":"error","msg":"disk full","took":"1.5s","size":"2MB"}"#,
        r#"{"level":"info","msg":"request served","took":"20ms","size":"512B"}"#,
        r#"{"level":"warn","msg":"slow request","took":"800ms","size":"1KB"}"#,
        "plain text, not json",
    ];
    let entries: Vec<_> = lines.iter().enumerate().map(|(i, l)| (t0 + i as i64 * SEC, l.to_string())).collect();
    s.push(None, &[(r#"{app="svc"}"#, entries.clone())]).await;
    let at = |i: usize| entries[i].clone();

    in_memory_and_in_the_store(&s, async |phase: &str| {
        let fwd = range(t0, "&direction=forward");

        // Line filters: contains, not contains, regex, chained and `or`.
        assert_eq!(all_lines(&streams(&s, r#"{app="svc"} |= "request""#, &fwd).await), vec![at(1), at(2)], "{phase}");
        assert_eq!(all_lines(&streams(&s, r#"{app="svc"} != "request" |~ "(?i)DISK""#, &fwd).await), vec![at(0)], "{phase}");
        assert_eq!(all_lines(&streams(&s, r#"{app="svc"} |= "disk" or "plain""#, &fwd).await), vec![at(0), at(3)], "{phase}");
        assert_eq!(all_lines(&streams(&s, r#"{app="svc"} !~ "level""#, &fwd).await), vec![at(3)], "{phase}");

        // `json` adds the fields as labels: one result stream per distinct label set; the line
        // that is not JSON carries `__error__` and `__error_details__`.
        let r = streams(&s, r#"{app="svc"} | json"#, &fwd).await;
        assert_eq!(r.len(), 4, "{phase}: {r:?}");
        let error_stream = r
            .iter()
            .find(|(k, _)| k.contains("__error__"))
            .unwrap_or_else(|| panic!("{phase}: no __error__ stream in {r:?}"));
        let labels: Value = serde_json::from_str(error_stream.0).unwrap();
        assert_eq!(labels["__error__"], json!("JSONParserErr"), "{phase}");
        assert!(labels["__error_details__"].as_str().is_some_and(|d| !d.is_empty()), "{phase}: {labels}");
        assert_eq!(error_stream.1, &vec![at(3)], "{phase}");
        let info_key = json!({"app": "svc", "level": "info", "msg": "request served", "size": "512B", "took": "20ms"});
        assert_eq!(r[&info_key.to_string()], vec![at(1)], "{phase}");

        // Dropping the errors, then label filters on strings, durations and bytes.
        assert_eq!(all_lines(&streams(&s, r#"{app="svc"} | json | __error__="""#, &fwd).await).len(), 3, "{phase}");
        let r = streams(&s, r#"{app="svc"} | json | __error__="" | took > 500ms"#, &fwd).await;
        assert_eq!(sorted(all_lines(&r)), vec![at(0), at(2)], "{phase}");
        let r = streams(&s, r#"{app="svc"} | json | __error__="" | size >= 1KB and level != "warn""#, &fwd).await;
        assert_eq!(all_lines(&r), vec![at(0)], "{phase}");
        let r = streams(&s, r#"{app="svc"} | json | level="info" or (level="warn", took < 1s)"#, &fwd).await;
        assert_eq!(sorted(all_lines(&r)), vec![at(1), at(2)], "{phase}");

        // `line_format` rewrites the line with Go-template semantics; `drop` removes labels, so
        // the remaining streams merge back into one.
        let r = streams(&s, r#"{app="svc"} | json | __error__="" | line_format "{{.level | ToUpper}}: {{.msg}}" | drop level, msg, took, size"#, &fwd).await;
        let want = vec![
            (at(0).0, "ERROR: disk full".to_string()),
            (at(1).0, "INFO: request served".to_string()),
            (at(2).0, "WARN: slow request".to_string()),
        ];
        assert_eq!(r.len(), 1, "{phase}: {r:?}");
        assert_eq!(r[&json!({"app": "svc"}).to_string()], want, "{phase}");

        // `regexp` extracts named groups; `label_format` renames (the source label goes).
        let r = streams(&s, r#"{app="svc"} | regexp "\"level\":\"(?P<lvl>\\w+)\"" | lvl="warn" | label_format severity=lvl"#, &fwd).await;
        let key = json!({"app": "svc", "severity": "warn"}).to_string();
        assert_eq!(r.get(&key), Some(&vec![at(2)]), "{phase}: {r:?}");

        // The limit counts entries after the pipeline.
        let r = streams(&s, r#"{app="svc"} |= "request""#, &range(t0, "&direction=forward&limit=1")).await;
        assert_eq!(all_lines(&r), vec![at(1)], "{phase}");
    })
    .await;
    s.stop().await;
}

fn sorted(mut v: Vec<(i64, String)>) -> Vec<(i64, String)> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_queries_answer_matrix_vector_and_scalar() {
    let s = TestServer::start(&[]).await;
    // Aligned to the minute so the steps fall on known boundaries.
    let t0 = (now_ns() - 3600 * SEC) / (60 * SEC) * (60 * SEC);
    let entries: Vec<_> = (0..6).map(|i| (t0 + i * 10 * SEC, format!("line {i}"))).collect();
    s.push(None, &[(r#"{app="api"}"#, entries.clone()), (r#"{app="web"}"#, entries[..3].to_vec())]).await;

    in_memory_and_in_the_store(&s, async |phase: &str| {
        let q = urlencode(r#"sum by (app) (count_over_time({app=~".+"}[1m]))"#);
        let path = format!("/loki/api/v1/query_range?query={q}&start={}&end={}&step=60", t0, t0 + 120 * SEC);
        let v = s.get_json(&path, None).await;
        assert_eq!(v["data"]["resultType"], json!("matrix"), "{phase}: {v}");
        let secs = |ns: i64| json!(ns / SEC);
        // Windows (t-1m, t]: at t0 only the entry at t0; at t0+60s the other five (api) / two (web).
        assert_eq!(
            v["data"]["result"],
            json!([
                {"metric": {"app": "api"}, "values": [[secs(t0), "1"], [secs(t0 + 60 * SEC), "5"]]},
                {"metric": {"app": "web"}, "values": [[secs(t0), "1"], [secs(t0 + 60 * SEC), "2"]]},
            ]),
            "{phase}"
        );

        let q = urlencode(r#"sum(count_over_time({app=~".+"}[5m]))"#);
        let v = s.get_json(&format!("/loki/api/v1/query?query={q}&time={}", t0 + 60 * SEC), None).await;
        assert_eq!(v["data"]["resultType"], json!("vector"), "{phase}: {v}");
        assert_eq!(v["data"]["result"], json!([{"metric": {}, "value": [secs(t0 + 60 * SEC), "9"]}]), "{phase}");

        let v = s.get_json(&format!("/loki/api/v1/query?query={}&time={}", urlencode("2 * 21"), t0), None).await;
        assert_eq!(v["data"]["resultType"], json!("scalar"), "{phase}: {v}");
        assert_eq!(v["data"]["result"], json!([secs(t0), "42"]), "{phase}");
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_sends_history_then_new_lines_once_each() {
    let s = TestServer::start(&[]).await;
    let t0 = now_ns() - 10 * SEC;
    s.push(None, &[(r#"{app="tail"}"#, vec![(t0, "old 1".into()), (t0 + 1, "old 2".into())])]).await;
    s.push(None, &[(r#"{app="other"}"#, vec![(t0, "not mine".into())])]).await;

    // A bad query is refused before the upgrade, with Loki's status and message.
    for (query, want) in
        [("{app=", "parse error"), (r#"rate({app="tail"}[1m])"#, "tailing is only supported for log queries")]
    {
        let url = format!("ws://{}/loki/api/v1/tail?query={}", s.addr, urlencode(query));
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), StatusCode::BAD_REQUEST.as_u16(), "{query}");
                let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
                assert!(body.contains(want), "{query}: {body}");
            }
            other => panic!("{query}: expected a 400, got {other:?}"),
        }
    }

    let url =
        format!("ws://{}/loki/api/v1/tail?query={}&start={}", s.addr, urlencode(r#"{app="tail"} != "skip""#), t0 - SEC);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket upgrade");
    let mut seen = Vec::new();
    let mut pushed_new = false;
    let want = ["old 1", "old 2", "new 1", "new 2"];
    while seen.len() < want.len() {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no tail frame within 30s; seen {seen:?}"))
            .expect("open connection")
            .expect("a frame");
        if let Message::Close(frame) = &msg {
            panic!("tail closed: {frame:?}; seen {seen:?}");
        }
        let Message::Text(text) = msg else { continue };
        let frame: Value = serde_json::from_str(&text).unwrap();
        for stream in frame["streams"].as_array().unwrap() {
            assert_eq!(stream["stream"], json!({"app": "tail"}), "{frame}");
            for v in stream["values"].as_array().unwrap() {
                seen.push(v[1].as_str().unwrap().to_string());
            }
        }
        if !pushed_new && seen.len() >= 2 {
            pushed_new = true;
            let now = now_ns();
            s.push(None, &[(r#"{app="tail"}"#, vec![(now, "new 1".into()), (now + 1, "skip me".into())])]).await;
            s.push(None, &[(r#"{app="tail"}"#, vec![(now + 2, "new 2".into())])]).await;
        }
    }
    assert_eq!(seen, want, "every matching line once, in order");
    ws.close(None).await.ok();
    s.stop().await;
}
