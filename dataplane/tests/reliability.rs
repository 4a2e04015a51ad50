//! Hostile and broken clients: one tenant's data never reaches another, and requests built to
//! exhaust the server get a 4xx while the process keeps serving.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, eventually, now_ns, urlencode};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// What must never appear in an answer to anyone but tenant `alpha`: its label values, line
/// text and structured metadata.
const MARKS: [&str; 3] = ["secret-app", "SECRET-LINE", "alpha-team"];

fn leaked(body: &str) -> Option<&'static str> {
    MARKS.into_iter().find(|m| body.contains(m))
}

/// Every read endpoint, as (method, path): queries of both kinds, label and series lookups,
/// index statistics, Drilldown's endpoints, rules, alerts and delete requests.
fn read_endpoints(start_ns: i64, end_ns: i64) -> Vec<(reqwest::Method, String)> {
    let range = format!("start={start_ns}&end={end_ns}");
    let q = |s: &str| urlencode(s);
    let any = q(r#"{app=~".+"}"#);
    let secret = q(r#"{app="secret-app"}"#);
    let metric = q(r#"sum by (app, team) (count_over_time({app=~".+"}[1h]))"#);
    let get = reqwest::Method::GET;
    [
        format!("/loki/api/v1/query_range?query={any}&{range}&limit=1000"),
        format!("/loki/api/v1/query_range?query={secret}&{range}"),
        format!("/loki/api/v1/query_range?query={metric}&{range}&step=60"),
        format!("/loki/api/v1/query?query={metric}&time={end_ns}"),
        format!("/loki/api/v1/labels?{range}"),
        format!("/loki/api/v1/label/app/values?{range}"),
        format!("/loki/api/v1/label/team/values?{range}"),
        format!("/loki/api/v1/series?match[]={any}&{range}"),
        format!("/loki/api/v1/index/stats?query={any}&{range}"),
        format!("/loki/api/v1/index/volume?query={any}&{range}"),
        format!("/loki/api/v1/index/volume_range?query={any}&{range}&step=60"),
        format!("/loki/api/v1/patterns?query={any}&{range}"),
        format!("/loki/api/v1/detected_labels?query={any}&{range}"),
        format!("/loki/api/v1/detected_fields?query={any}&{range}"),
        format!("/loki/api/v1/detected_field/trace_id/values?query={any}&{range}"),
        "/loki/api/v1/rules".to_string(),
        "/prometheus/api/v1/rules".to_string(),
        "/prometheus/api/v1/alerts".to_string(),
        "/loki/api/v1/delete".to_string(),
    ]
    .into_iter()
    .map(|p| (get.clone(), p))
    .collect()
}

async fn request(s: &TestServer, method: &reqwest::Method, path: &str, tenant: &str) -> (StatusCode, String) {
    let r = reqwest::Client::new()
        .request(method.clone(), s.url(path))
        .header("X-Scope-OrgID", tenant)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Tenant `alpha` pushes (some flushed to the store, some only in the ingester), adds a rule
/// group and a delete request; tenant `beta` and every mis-spelling of `alpha|beta` read every
/// endpoint and never see any of it, while `alpha` itself does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_endpoint_returns_one_tenants_data_to_another() {
    let s = TestServer::start(&["--auth.enabled", "--limits.discover-log-levels=true"]).await;
    let t0 = now_ns() - 600 * 1_000_000_000;
    let alpha = |i: i64| {
        (
            t0 + i * 1_000_000_000,
            format!("level=error SECRET-LINE id={i} trace_id=SECRET-LINE-{i} msg=\"card declined\""),
        )
    };
    let beta = |i: i64| (t0 + i * 1_000_000_000, format!("level=info hello from beta {i} trace_id=b{i}"));
    let secret = r#"{app="secret-app", team="alpha-team"}"#;
    let public = r#"{app="public", team="beta"}"#;
    s.push(Some("alpha"), &[(secret, (0..50).map(alpha).collect())]).await;
    s.push(Some("beta"), &[(public, (0..50).map(beta).collect())]).await;
    s.flush().await;
    s.push(Some("alpha"), &[(secret, (50..100).map(alpha).collect())]).await;
    s.push(Some("beta"), &[(public, (50..100).map(beta).collect())]).await;
    let client = reqwest::Client::new();
    let rule = "name: secret-app-group\nrules:\n  - record: secret_app:lines:rate1m\n    expr: sum(rate({app=\"secret-app\"}[1m]))\n";
    let r = client
        .post(s.url("/loki/api/v1/rules/alpha-team"))
        .header("X-Scope-OrgID", "alpha")
        .header("Content-Type", "application/yaml")
        .body(rule)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = client
        .post(s.url(&format!(
            "/loki/api/v1/delete?query={}&start={}&end={}",
            urlencode(r#"{app="secret-app"} |= "id=7 ""#),
            t0 / 1_000_000_000,
            t0 / 1_000_000_000 + 10
        )))
        .header("X-Scope-OrgID", "alpha")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().await.unwrap());

    let endpoints = read_endpoints(t0 - 1_000_000_000, now_ns());
    // The control: alpha sees its own data where the endpoint returns data (patterns and
    // detected fields may need more lines than this; every data endpoint below must show it).
    let mut seen_by_alpha = 0;
    for (m, path) in &endpoints {
        let (st, body) = request(&s, m, path, "alpha").await;
        assert_eq!(st, StatusCode::OK, "alpha {path}: {body}");
        seen_by_alpha += usize::from(leaked(&body).is_some());
    }
    assert!(seen_by_alpha >= 12, "alpha saw its own data in only {seen_by_alpha} of {} endpoints", endpoints.len());

    let strangers = [
        "beta",
        "Alpha",
        "ALPHA",
        "alpha.",
        "alpha_",
        "alpha*",
        "beta|alpha",
        "alpha|beta",
        "alpha|",
        "|alpha",
        "alpha||beta",
        "alpha,beta",
        "alpha;beta",
        "alpha/beta",
        "../alpha",
        "./alpha",
        "alpha/..",
        "alpha%7Cbeta",
        "alpha\\",
        "alpha beta",
        "fake",
    ];
    let mut answered = 0;
    for tenant in strangers {
        for (m, path) in &endpoints {
            let (st, body) = request(&s, m, path, tenant).await;
            assert!(st == StatusCode::OK || st.is_client_error(), "{tenant} {path}: {st} {body}");
            if let Some(mark) = leaked(&body) {
                panic!("tenant {tenant:?} read {mark:?} of tenant alpha from {path}: {body}");
            }
            answered += usize::from(st == StatusCode::OK);
        }
    }
    // The strangers that are valid tenant IDs got real (empty) answers, not only refusals.
    assert!(answered >= 6 * endpoints.len(), "only {answered} answers were 200");

    // Tail as beta: alpha's line pushed before beta's never arrives.
    let url = format!("ws://{}/loki/api/v1/tail?query={}", s.addr, urlencode(r#"{app=~".+"}"#));
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    req.headers_mut().insert("X-Scope-OrgID", "beta".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("websocket upgrade");
    let now = now_ns();
    s.push(Some("alpha"), &[(secret, vec![(now, "SECRET-LINE live".into())])]).await;
    s.push(Some("beta"), &[(public, vec![(now + 1, "beta live".into())])]).await;
    let mut frames = String::new();
    while !frames.contains("beta live") {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a tail frame within 30s")
            .expect("open connection")
            .expect("a frame");
        if let Message::Text(text) = msg {
            frames.push_str(&text);
        }
    }
    assert_eq!(leaked(&frames), None, "tail as beta: {frames}");
    ws.close(None).await.ok();
    s.stop().await;
}

/// A read of several tenants is refused unless `querier.multi_tenant_queries_enabled`, and then
/// bounded by `querier.max_query_tenants`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_tenant_reads_are_opt_in_and_bounded() {
    let s = TestServer::start(&["--auth.enabled"]).await;
    let (st, body) = s.get("/loki/api/v1/labels", Some("a|b")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains("multiple org IDs present"), "{body}");
    s.stop().await;

    let s = TestServer::start(&[
        "--auth.enabled",
        "--querier.multi-tenant-queries-enabled",
        "--querier.max-query-tenants=3",
    ])
    .await;
    assert_eq!(s.get("/loki/api/v1/labels", Some("a|b|c")).await.0, StatusCode::OK);
    let (st, body) = s.get("/loki/api/v1/labels", Some("a|b|c|d")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains("too many tenants in one read: 4 > querier.max_query_tenants (3)"), "{body}");
    s.stop().await;
}

async fn post_form(s: &TestServer, path: &str, form: String) -> reqwest::Response {
    let client = reqwest::Client::new();
    let req = client.post(s.url(path)).header("Content-Type", "application/x-www-form-urlencoded").body(form);
    req.send().await.unwrap()
}

const DEEP: &str = "query is nested too deeply (more than 64 levels)";

/// Queries built to blow the parser's or evaluator's stack, the regex compiler or the result
/// size get a 400 each, and the server answers the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_get_400_and_the_server_stays_up() {
    let s = TestServer::start(&["--limits.max-query-series=50"]).await;
    let t = now_ns() - 60 * 1_000_000_000;
    let streams: Vec<(String, Vec<(i64, String)>)> =
        (0..60).map(|i| (format!(r#"{{app="h", n="{i}"}}"#), vec![(t, format!("line {i}"))])).collect();
    let refs: Vec<(&str, Vec<(i64, String)>)> = streams.iter().map(|(l, e)| (l.as_str(), e.clone())).collect();
    s.push(None, &refs).await;
    let sel = r#"{app="h"}"#;
    let deep_parens = format!("{}{sel}{}", "(".repeat(100_000), ")".repeat(100_000));
    let fits = |unit: &str, close: &str, inner: &str| {
        let n = (5000 - inner.len()) / (unit.len() + close.len());
        format!("{}{inner}{}", unit.repeat(n), close.repeat(n))
    };
    let cot = format!("count_over_time({sel}[1m])");
    let cases: Vec<(String, &str)> = vec![
        (deep_parens, "input size too long"),
        (fits("(", ")", sel), DEEP),
        (fits("sum(", ")", &format!("count_over_time({sel}[1m])")), DEEP),
        (fits("-(", ")", "1"), ""),
        // Literal chains fold while parsing; a chain of range aggregations cannot.
        (format!("{cot}{}", format!(" + {cot}").repeat(140)), DEEP),
        (format!("{sel} | logfmt | n=\"1\"{}", " or n=\"1\"".repeat(480)), DEEP),
        (format!("{sel} | logfmt | n=\"1\"{}", ", n=\"1\"".repeat(700)), DEEP),
        (format!("{}count_over_time({sel}[1m]){}", "sum(".repeat(30), ")".repeat(30)), "\"success\""),
        (format!("{sel} |~ \"(a{{1000}}){{1000}}\""), ""),
        (format!("{sel} |~ \"{}\"", "(".repeat(2000)), ""),
        (format!("sum by (n) (count_over_time({sel}[1m]))"), "maximum number of series (50) reached"),
    ];
    let end = now_ns();
    for (query, want) in &cases {
        let form = format!("query={}&start={}&end={end}&step=60", urlencode(query), t - 1);
        let r = post_form(&s, "/loki/api/v1/query_range", form).await;
        let (st, body) = (r.status(), r.text().await.unwrap());
        let shown = &query[..query.len().min(60)];
        assert!(st == StatusCode::OK || st == StatusCode::BAD_REQUEST, "{shown}...: {st} {body}");
        assert!(body.contains(want), "{shown}...: {st} {body}");
        if !want.is_empty() && !want.contains("success") {
            assert_eq!(st, StatusCode::BAD_REQUEST, "{shown}...: {body}");
        }
        // Still serving.
        let (st, _) = s.get("/ready", None).await;
        assert_eq!(st, StatusCode::OK, "after {shown}...");
    }
    // The same through the query printer (format_query) and the instant endpoint.
    for (query, _) in &cases[1..5] {
        for path in ["/loki/api/v1/format_query", "/loki/api/v1/query"] {
            let r = post_form(&s, path, format!("query={}", urlencode(query))).await;
            let st = r.status();
            assert!(st == StatusCode::OK || st == StatusCode::BAD_REQUEST, "{path}: {st}");
        }
    }
    let v: Value = eventually("ready", Duration::from_secs(5), || async {
        let r = reqwest::get(s.url("/loki/api/v1/labels")).await.ok()?;
        r.json().await.ok()
    })
    .await;
    assert_eq!(v["status"], "success");
    s.stop().await;
}

/// Reads from `stream` until the server closes it (Ok with what it sent) or `within` passes.
async fn until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> Result<String, String> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.map_err(|_| "the server kept the connection open".to_string())?;
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// Clients that hold the server: a request head sent a byte at a time, a body that never
/// comes, idle connections, too many connections and requests, oversized headers. Each is cut
/// off or refused with the right status, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_greedy_clients_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    let s = TestServer::start(&[
        "--http.read-timeout=1s",
        "--http.idle-timeout=2s",
        "--http.conn-limit=4",
        "--http.max-concurrent-requests=1",
        "--http.max-header-bytes=16KB",
    ])
    .await;
    let connect = || tokio::net::TcpStream::connect(s.addr);
    let started = Instant::now();

    // Slowloris: half a request head, then nothing. Closed after read_timeout, well before idle.
    let mut slow = connect().await.unwrap();
    slow.write_all(b"GET /loki/api/v1/labels HTTP/1.1\r\nHost: x\r\nX-A: ").await.unwrap();
    until_closed(&mut slow, Duration::from_secs(10)).await.unwrap();
    let slowloris = started.elapsed();
    assert!(slowloris < Duration::from_millis(1900), "a half-sent head held the connection {slowloris:?}");

    // A body that never comes: the request holds the only request slot, a second request gets
    // 503 meanwhile, and the body's deadline ends the first.
    let mut body = connect().await.unwrap();
    body.write_all(
        b"POST /loki/api/v1/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let busy: StatusCode = eventually("the request slot to be taken", Duration::from_secs(5), || async {
        let st = reqwest::get(s.url("/loki/api/v1/labels")).await.ok()?.status();
        (st == StatusCode::SERVICE_UNAVAILABLE).then_some(st)
    })
    .await;
    assert_eq!(busy, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.get("/ready", None).await.0, StatusCode::OK, "/ready is not counted");
    let answer = until_closed(&mut body, Duration::from_secs(10)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 4"), "a body past read_timeout gets a 4xx: {answer:?}");

    // An idle keep-alive connection is closed after idle_timeout, not read_timeout.
    let mut idle = connect().await.unwrap();
    idle.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let since = Instant::now();
    let got = until_closed(&mut idle, Duration::from_secs(10)).await.unwrap();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    let idle_for = since.elapsed();
    assert!(idle_for >= Duration::from_millis(1900), "idle connection closed after {idle_for:?}, before idle_timeout");

    // Headers past max_header_bytes: 431.
    let big = format!("GET /ready HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(40_000));
    let mut c = connect().await.unwrap();
    c.write_all(big.as_bytes()).await.ok();
    let got = until_closed(&mut c, Duration::from_secs(10)).await.unwrap();
    assert!(got.starts_with("HTTP/1.1 431"), "{got:?}");

    // Past conn_limit (4): held connections, then one more gets a 503 and is closed.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = connect().await.unwrap();
        c.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        use tokio::io::AsyncReadExt;
        let n = c.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(c);
    }
    let mut extra = connect().await.unwrap();
    extra.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let got = until_closed(&mut extra, Duration::from_secs(10)).await.unwrap();
    assert!(got.starts_with("HTTP/1.1 503") && got.contains("http.conn_limit"), "{got:?}");
    drop(held);
    println!(
        "FIGURE http-limits: slowloris cut after {slowloris:?} (read_timeout 1s), idle keep-alive closed after {idle_for:?} (idle_timeout 2s)"
    );
    // Serving as before.
    let v: Value = eventually("labels", Duration::from_secs(10), || async {
        let r = reqwest::get(s.url("/loki/api/v1/labels")).await.ok()?;
        if r.status() != StatusCode::OK {
            return None;
        }
        r.json().await.ok()
    })
    .await;
    assert_eq!(v["status"], "success");
    s.stop().await;
}
