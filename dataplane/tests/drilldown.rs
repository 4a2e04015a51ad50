//! Grafana Logs Drilldown's endpoints over real HTTP, with Loki's shapes: `detected_labels`,
//! `detected_fields`, `detected_field/<name>/values`, `patterns`, `drilldown-limits` — over
//! data in ingester memory and after a flush to the store — and the sequence of requests the
//! app makes when it opens a service.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, now_ns, urlencode};
use serde_json::{Value, json};

const S: i64 = 1_000_000_000;

/// Two services: `api` logs logfmt from two pods, `web` logs JSON.
async fn load(s: &TestServer, t: i64) {
    let mut api_a = Vec::new();
    let mut api_b = Vec::new();
    for i in 0..20i64 {
        let level = if i % 5 == 0 { "error" } else { "info" };
        let line =
            format!("level={level} msg=\"request done\" status={} took={}ms user=u{}", 200 + i % 3, i + 1, i % 4);
        if i % 2 == 0 { api_a.push((t + i * S, line)) } else { api_b.push((t + i * S, line)) }
    }
    let web: Vec<(i64, String)> = (0..10i64)
        .map(|i| {
            (t + i * S, format!(r#"{{"level":"warn","msg":"slow page","path":"/p{}","ms":{}.5,"ok":true}}"#, i % 2, i))
        })
        .collect();
    s.push(
        None,
        &[
            (r#"{app="api", cluster="eu", pod="api-a", env="prod"}"#, api_a),
            (r#"{app="api", cluster="eu", pod="api-b", env="dev"}"#, api_b),
            (r#"{app="web", cluster="us", pod="web-1", env="prod"}"#, web),
        ],
    )
    .await;
}

fn range(t: i64) -> String {
    format!("start={}&end={}", t - 60 * S, t + 120 * S)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detected_labels_and_fields_from_memory_and_from_the_store() {
    let s = TestServer::start(common::DISCOVERY).await;
    let t = now_ns() - 600 * S;
    load(&s, t).await;
    let r = range(t);
    for phase in ["memory", "store"] {
        if phase == "store" {
            s.flush().await;
        }
        let q = urlencode(r#"{service_name="api"}"#);
        let labels = s.get_json(&format!("/loki/api/v1/detected_labels?query={q}&{r}"), None).await;
        assert_eq!(
            labels,
            json!({"detectedLabels": [
                {"label": "cluster", "cardinality": 1},
                {"label": "env", "cardinality": 2},
                {"label": "pod", "cardinality": 2},
            ]}),
            "{phase}: static labels always, others with 2..=50 values"
        );
        let all = s.get_json(&format!("/loki/api/v1/detected_labels?{r}"), None).await;
        let names: Vec<&str> =
            all["detectedLabels"].as_array().unwrap().iter().map(|l| l["label"].as_str().unwrap()).collect();
        assert_eq!(names, ["app", "cluster", "env", "pod", "service_name"], "{phase}");

        let fields = s.get_json(&format!("/loki/api/v1/detected_fields?query={q}&{r}"), None).await;
        assert_eq!(
            fields,
            json!({"fields": [
                {"label": "detected_level", "type": "string", "cardinality": 2, "parsers": null},
                {"label": "level", "type": "string", "cardinality": 2, "parsers": ["logfmt"]},
                {"label": "msg", "type": "string", "cardinality": 1, "parsers": ["logfmt"]},
                {"label": "status", "type": "int", "cardinality": 3, "parsers": ["logfmt"]},
                {"label": "took", "type": "duration", "cardinality": 20, "parsers": ["logfmt"]},
                {"label": "user", "type": "string", "cardinality": 4, "parsers": ["logfmt"]},
            ], "limit": 1000}),
            "{phase}"
        );
        let web = urlencode(r#"{service_name="web"} |= "slow""#);
        let fields = s.get_json(&format!("/loki/api/v1/detected_fields?query={web}&{r}&line_limit=4"), None).await;
        let f: Vec<(String, String, u64, Value)> = fields["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["label"].as_str().unwrap().into(),
                    f["type"].as_str().unwrap().into(),
                    f["cardinality"].as_u64().unwrap(),
                    f["jsonPath"].clone(),
                )
            })
            .collect();
        assert_eq!(
            f,
            vec![
                ("detected_level".into(), "string".into(), 1, Value::Null),
                ("level".into(), "string".into(), 1, json!(["level"])),
                ("ms".into(), "float".into(), 4, json!(["ms"])),
                ("msg".into(), "string".into(), 1, json!(["msg"])),
                ("ok".into(), "boolean".into(), 1, json!(["ok"])),
                ("path".into(), "string".into(), 2, json!(["path"])),
            ],
            "{phase}: only the newest 4 lines are read"
        );
        let values = s.get_json(&format!("/loki/api/v1/detected_field/status/values?query={q}&{r}"), None).await;
        assert_eq!(values, json!({"values": ["200", "201", "202"], "limit": 1000}), "{phase}");
        let values =
            s.get_json(&format!("/loki/api/v1/detected_field/detected_level/values?query={q}&{r}&limit=1"), None).await;
        assert_eq!(values, json!({"values": ["error"], "limit": 1}), "{phase}");
    }
    let metric = urlencode(r#"count_over_time({app="api"}[1m])"#);
    let (status, _) = s.get(&format!("/loki/api/v1/detected_fields?query={metric}"), None).await;
    assert_eq!(status, 400);
    s.stop().await;
}

/// Polls `path` until `ok` accepts its JSON, or fails after a deadline.
async fn poll_json(s: &TestServer, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let v = s.get_json(path, None).await;
        if ok(&v) {
            return v;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{path}: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_count_lines_per_step_and_work_as_pattern_filters() {
    let s = TestServer::start(common::DISCOVERY).await;
    let t = (now_ns() - 600 * S) / (60 * S) * (60 * S);
    load(&s, t).await;
    let q = urlencode(r#"{service_name="api"}"#);
    let path = format!("/loki/api/v1/patterns?query={q}&start={t}&end={}&step=60s", t + 120 * S);
    let v = poll_json(&s, &path, |v| v["data"].as_array().is_some_and(|d| d.len() == 2)).await;
    assert_eq!(
        v,
        json!({"status": "success", "data": [
            {"pattern": "level=info msg=\"request done\" status=<_> took=<_> user=<_>", "samples": [[t / S, 16]], "level": "info"},
            {"pattern": "level=error msg=\"request done\" status=<_> took=<_> user=<_>", "samples": [[t / S, 4]], "level": "error"},
        ]})
    );
    // Each template selects exactly its lines as a `|>` filter.
    for (p, want) in [(0, 16), (1, 4)] {
        let pattern = v["data"][p]["pattern"].as_str().unwrap();
        let query = format!("sum(count_over_time({{service_name=\"api\"}} |> `{pattern}` [10m]))");
        let out =
            s.get_json(&format!("/loki/api/v1/query?query={}&time={}", urlencode(&query), t + 120 * S), None).await;
        assert_eq!(out["data"]["result"][0]["value"][1], json!(want.to_string()), "{pattern}: {out}");
    }
    let limits = s.get_json("/loki/api/v1/drilldown-limits", None).await;
    assert_eq!(limits["pattern_ingester_enabled"], json!(true));
    assert_eq!(limits["limits"]["discover_log_levels"], json!(true));
    assert_eq!(limits["limits"]["max_entries_limit_per_query"], json!(5000));
    assert_eq!(limits["limits"]["discover_service_name"][0], json!("service"));
    assert!(limits["version"].is_string());
    s.stop().await;

    let s = TestServer::start(&["--pattern-ingester.enabled=false"]).await;
    load(&s, t).await;
    let v = s.get_json(&path, None).await;
    assert_eq!(v, json!({"status": "success", "data": []}));
    let limits = s.get_json("/loki/api/v1/drilldown-limits", None).await;
    assert_eq!(limits["pattern_ingester_enabled"], json!(false));
    s.stop().await;
}

/// The requests Logs Drilldown makes when it lists services and opens one (its service list,
/// the service's log volume by level, logs, labels, fields, patterns), each 200 with a non-empty
/// answer of Loki's shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drilldown_app_opening_a_service() {
    let s = TestServer::start(common::DISCOVERY).await;
    let end = now_ns();
    let t = end - 600 * S;
    load(&s, t).await;
    let start = end - 3600 * S;
    let sel = r#"{service_name="api"}"#;
    let e = |q: &str| urlencode(q);
    let requests: Vec<(String, &str)> = vec![
        ("/loki/api/v1/drilldown-limits".into(), "limits"),
        ("/loki/api/v1/status/buildinfo".into(), "version"),
        (
            format!(
                "/loki/api/v1/index/volume?query={}&start={start}&end={end}&limit=5000&aggregateBy=labels&targetLabels=service_name",
                e(r#"{service_name=~".+"}"#)
            ),
            "data.result",
        ),
        (
            format!(
                "/loki/api/v1/query_range?query={}&start={start}&end={end}&step=60s",
                e(r#"sum by (service_name) (count_over_time({service_name=~".+"} [1m]))"#)
            ),
            "data.result",
        ),
        (format!("/loki/api/v1/detected_labels?query={}&start={start}&end={end}", e(sel)), "detectedLabels"),
        (
            format!(
                "/loki/api/v1/query_range?query={}&start={start}&end={end}&step=60s",
                e(r#"sum by (detected_level) (count_over_time({service_name="api"} | drop __error__ [1m]))"#)
            ),
            "data.result",
        ),
        (
            format!("/loki/api/v1/query_range?query={}&start={start}&end={end}&limit=100&direction=backward", e(sel)),
            "data.result",
        ),
        (format!("/loki/api/v1/detected_fields?query={}&start={start}&end={end}", e(sel)), "fields"),
        (format!("/loki/api/v1/detected_field/status/values?query={}&start={start}&end={end}", e(sel)), "values"),
        (format!("/loki/api/v1/patterns?query={}&start={start}&end={end}&step=60s", e(sel)), "data"),
        (format!("/loki/api/v1/label/service_name/values?start={start}&end={end}"), "data"),
        (
            format!(
                "/loki/api/v1/query_range?query={}&start={start}&end={end}&step=60s",
                e(r#"sum by (pod) (count_over_time({service_name="api"} | pod != "" [1m]))"#)
            ),
            "data.result",
        ),
        (
            format!(
                "/loki/api/v1/query_range?query={}&start={start}&end={end}&step=60s",
                e(r#"sum by (status) (count_over_time({service_name="api"} | logfmt | status != "" [1m]))"#)
            ),
            "data.result",
        ),
    ];
    for (path, key) in &requests {
        let v = if path.contains("/patterns") {
            poll_json(&s, path, |v| v["data"].as_array().is_some_and(|d| !d.is_empty())).await
        } else {
            s.get_json(path, None).await
        };
        let mut at = &v;
        for part in key.split('.') {
            at = &at[part];
        }
        let non_empty = match at {
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            Value::String(s) => !s.is_empty(),
            _ => false,
        };
        assert!(non_empty, "{path}: {key} is empty in {v}");
    }
    s.stop().await;
}

/// Drilldown's grouping by a structured metadata field of high cardinality (`trace_id`) stops
/// at `max_query_series` with Loki's error instead of growing without bound; grouping by
/// `detected_level` answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_cardinality_grouping_stops_at_the_series_limit() {
    let s = TestServer::start(&["--limits.discover-log-levels=true", "--limits.max-query-series=50"]).await;
    let t = now_ns() - 600 * S;
    let values: Vec<Value> = (0..200i64)
        .map(|i| json!([(t + i * 1_000_000).to_string(), format!("level=info n={i}"), {"trace_id": format!("{i:032x}")}]))
        .collect();
    let body = json!({"streams": [{"stream": {"service_name": "api"}, "values": values}]});
    let r = reqwest::Client::new()
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (start, end) = (t - 60 * S, t + 60 * S);
    let q = urlencode(r#"sum by (trace_id) (count_over_time({service_name="api"} [1m]))"#);
    let (status, body) =
        s.get(&format!("/loki/api/v1/query_range?query={q}&start={start}&end={end}&step=60s"), None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.starts_with("maximum number of series (50) reached for a single query"), "{body}");
    let q = urlencode(r#"sum by (detected_level) (count_over_time({service_name="api"} [1m]))"#);
    let v = s.get_json(&format!("/loki/api/v1/query_range?query={q}&start={start}&end={end}&step=60s"), None).await;
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{v}");
    assert_eq!(result[0]["metric"], json!({"detected_level": "info"}));
    s.stop().await;
}
