//! The ruler against real servers: Alertmanager receives and resolves the alert of a rule
//! whose condition a push makes true, Prometheus' remote-write receiver gets the recorded
//! series (also across a Prometheus outage), two rulers share the groups through an etcd ring
//! and the survivor takes over when one is killed, bad rule files are refused with
//! Prometheus-style 400s without disturbing the running groups, and a pending alert keeps its
//! `for` progress across a restart.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{NornProcess, eventually, now_ns, proto_body, start_norn, urlencode};
use norn::ring::testing::EtcdServer;
use norn::ruler::testing::ExternalServer;
use reqwest::StatusCode;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// Flags of a single-binary norn whose ruler runs every second.
fn fast_ruler(dir: &Path) -> Vec<String> {
    vec![
        format!("--data.dir={}", dir.display()),
        "--ingester.wal.sync=never".into(),
        "--ruler.evaluation-interval=1s".into(),
        "--ruler.poll-interval=1s".into(),
        "--ruler.resend-delay=1s".into(),
    ]
}

fn start(dir: &Path, args: &[String]) -> NornProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start_norn(dir, &args)
}

async fn push_lines(p: &NornProcess, labels: &str, lines: &[&str]) {
    let now = now_ns();
    let entries = lines.iter().enumerate().map(|(i, l)| (now + i as i64, l.to_string())).collect();
    let r = reqwest::Client::new()
        .post(p.url("/loki/api/v1/push"))
        .body(proto_body(&[(labels, entries)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().await.unwrap());
}

async fn post_rules(p: &NornProcess, namespace: &str, group: &str) -> (StatusCode, String) {
    let r = reqwest::Client::new()
        .post(p.url(&format!("/loki/api/v1/rules/{}", urlencode(namespace))))
        .header("Content-Type", "application/yaml")
        .body(group.to_string())
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn get_json(url: String) -> Value {
    let r = reqwest::get(&url).await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

/// The values of `norn_ruler_group_evaluations_total` by `rule_group`.
async fn evaluations(p: &NornProcess) -> BTreeMap<String, u64> {
    let text = reqwest::get(p.url("/metrics")).await.unwrap().text().await.unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("norn_ruler_group_evaluations_total{")) {
        let group = line.split("rule_group=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default();
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        out.insert(group.to_string(), value as u64);
    }
    out
}

fn start_alertmanager() -> ExternalServer {
    ExternalServer::alertmanager().unwrap_or_else(|e| panic!("{e}"))
}

fn start_prometheus() -> ExternalServer {
    ExternalServer::prometheus().unwrap_or_else(|e| panic!("{e}"))
}

const ALERT_GROUP: &str = r#"
name: checkout-alerts
rules:
  - alert: CheckoutErrors
    expr: sum by (app) (count_over_time({app="checkout"} |= "level=error" [4s])) > 3
    for: 1s
    labels:
      severity: page
    annotations:
      summary: "{{ $labels.app }} logged {{ $value }} errors"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_receives_the_alert_after_a_push_and_its_resolution() {
    let am = start_alertmanager();
    let dir = tempfile::tempdir().unwrap();
    let mut args = fast_ruler(dir.path());
    args.push(format!("--ruler.alertmanager-url={}", am.url()));
    let norn = start(dir.path(), &args);
    let (status, body) = post_rules(&norn, "team-checkout", ALERT_GROUP).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // Nothing fires before the push.
    eventually("the group to be evaluated", DEADLINE, || async {
        (evaluations(&norn).await.get("team-checkout;checkout-alerts").copied().unwrap_or(0) >= 2).then_some(())
    })
    .await;
    let alerts = get_json(format!("{}/api/v2/alerts", am.url())).await;
    assert_eq!(alerts.as_array().unwrap().len(), 0, "{alerts}");

    let errors =
        ["level=error msg=a", "level=error msg=b", "level=error msg=c", "level=error msg=d", "level=error msg=e"];
    push_lines(&norn, r#"{app="checkout"}"#, &errors).await;
    push_lines(&norn, r#"{app="checkout"}"#, &["level=info msg=fine"]).await;

    let pushed = Instant::now();
    let alert = eventually("alertmanager to receive CheckoutErrors", DEADLINE, || async {
        let alerts = get_json(format!("{}/api/v2/alerts", am.url())).await;
        alerts.as_array().unwrap().iter().find(|a| a["labels"]["alertname"] == "CheckoutErrors").cloned()
    })
    .await;
    println!("alert reached alertmanager {:?} after the push", pushed.elapsed());
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["app"], "checkout");
    assert_eq!(alert["annotations"]["summary"], "checkout logged 5 errors");
    assert_eq!(alert["status"]["state"], "active");

    // The Prometheus API lists it too, firing.
    let rules = get_json(norn.url("/prometheus/api/v1/rules")).await;
    let rule = &rules["data"]["groups"][0]["rules"][0];
    assert_eq!(rule["state"], "firing", "{rules}");
    assert_eq!(rule["health"], "ok");
    assert_eq!(rule["alerts"][0]["value"], "5e+00");
    let firing = get_json(norn.url("/prometheus/api/v1/alerts")).await;
    assert_eq!(firing["data"]["alerts"][0]["labels"]["alertname"], "CheckoutErrors");

    // Four seconds later the errors are out of the window: the ruler sends the resolution and
    // Alertmanager no longer lists the alert as active.
    eventually("alertmanager to see the alert resolved", DEADLINE, || async {
        let alerts = get_json(format!("{}/api/v2/alerts", am.url())).await;
        let now = now_ns();
        let active = alerts.as_array().unwrap().iter().any(|a| {
            let ends = norn::timeutil::parse_rfc3339(a["endsAt"].as_str().unwrap_or("")).unwrap_or(i64::MAX);
            a["labels"]["alertname"] == "CheckoutErrors" && ends > now
        });
        (!active).then_some(())
    })
    .await;
    let rules = get_json(norn.url("/prometheus/api/v1/rules")).await;
    assert_eq!(rules["data"]["groups"][0]["rules"][0]["state"], "inactive", "{rules}");
}

const RECORD_GROUP: &str = r#"
name: checkout-records
rules:
  - record: app:log_lines:count10m
    expr: sum by (app) (count_over_time({app="checkout"}[10m]))
    labels:
      source: norn
"#;

/// The latest value of `series` in Prometheus, with its labels.
async fn prom_latest(prom: &ExternalServer, query: &str) -> Option<(Value, f64)> {
    let v = get_json(format!("{}/api/v1/query?query={}", prom.url(), urlencode(query))).await;
    let r = v["data"]["result"].as_array()?.first()?.clone();
    let value = r["value"][1].as_str()?.parse().ok()?;
    Some((r["metric"].clone(), value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_gets_the_recorded_series_also_across_its_own_outage() {
    let mut prom = start_prometheus();
    let dir = tempfile::tempdir().unwrap();
    let mut args = fast_ruler(dir.path());
    args.push(format!("--ruler.remote-write.url={}/api/v1/write", prom.url()));
    args.push("--ruler.remote-write.max-backoff=200ms".into());
    let norn = start(dir.path(), &args);
    push_lines(&norn, r#"{app="checkout"}"#, &["a", "b", "c", "d", "e", "f", "g"]).await;
    let (status, body) = post_rules(&norn, "records", RECORD_GROUP).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let (metric, _) = eventually("prometheus to have the recorded series", DEADLINE, || async {
        prom_latest(&prom, "app:log_lines:count10m").await.filter(|(_, v)| *v == 7.0)
    })
    .await;
    assert_eq!(metric["app"], "checkout");
    assert_eq!(metric["source"], "norn");
    assert_eq!(metric["__name__"], "app:log_lines:count10m");

    // Prometheus goes away; the ruler keeps recording into its queue.
    prom.kill();
    let metric = |name: &'static str| {
        let url = norn.url("/metrics");
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        }
    };
    push_lines(&norn, r#"{app="checkout"}"#, &["h", "i", "j"]).await;
    let pushed_at = now_ns();
    let queued_at_push = metric("norn_ruler_remote_write_samples_queued_total").await;
    let queued = eventually("five evaluations to be queued while prometheus is down", DEADLINE, || async {
        let q = metric("norn_ruler_remote_write_samples_queued_total").await - queued_at_push;
        (q >= 5.0 && metric("norn_ruler_remote_write_failures_total").await > 0.0).then_some(q)
    })
    .await;
    let up_at = now_ns();
    prom.restart().unwrap_or_else(|e| panic!("{e}"));

    // Every sample recorded during the outage arrives (one evaluation may straddle the push).
    let window = format!("app:log_lines:count10m[{}s]", (now_ns() - pushed_at) / 1_000_000_000 + 2);
    let arrived = eventually("the samples of the outage to arrive", DEADLINE, || async {
        let v = get_json(format!("{}/api/v1/query?query={}", prom.url(), urlencode(&window))).await;
        let values = v["data"]["result"][0]["values"].as_array().cloned().unwrap_or_default();
        let during: Vec<&Value> = values
            .iter()
            .filter(|p| {
                let ts = (p[0].as_f64().unwrap_or(0.0) * 1e9) as i64;
                ts > pushed_at && ts < up_at
            })
            .collect();
        (during.len() as f64 >= queued - 1.0).then(|| during.iter().map(|p| p[1].clone()).collect::<Vec<_>>())
    })
    .await;
    println!("{} samples recorded during the outage arrived after it ({queued} queued)", arrived.len());
    assert!(arrived.iter().all(|v| v == "10"), "{arrived:?}");
    assert_eq!(metric("norn_ruler_remote_write_samples_dropped_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rules_are_refused_with_prometheus_errors_and_the_others_keep_running() {
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    let mut args = fast_ruler(dir.path());
    args.push(format!("--ruler.storage.local.directory={}", rules_dir.display()));
    let norn = start(dir.path(), &args);
    let good = "name: good\nrules:\n  - record: ok:vector\n    expr: vector(1)\n";
    assert_eq!(post_rules(&norn, "ns", good).await.0, StatusCode::ACCEPTED);

    let bad = [
        ("name: g\nrules:\n  - alert: A\n    expr: sum(rate({a=\"b\"}[1m])\n", "could not parse expression"),
        ("name: g\nrules:\n  - alert: A\n    expr: '{a=\"b\"}'\n", "only sample expression supported"),
        ("name: g\nrules: [ {alert: A} ]\n", "field 'expr' must be set"),
        ("name: g\nrules:\n  - record: a b\n    expr: vector(1)\n", "invalid recording rule name"),
        ("{{{ not yaml", "invalid rule group"),
        ("name: g\nrules:\n  - alert: A\n    expr: vector(1)\n    annotations: {s: '{{ .x '}\n", "annotation"),
    ];
    for (body, want) in bad {
        let (status, text) = post_rules(&norn, "ns", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(v["status"], "error");
        assert_eq!(v["errorType"], "bad_data");
        assert!(v["error"].as_str().unwrap().contains(want), "{body}: {text}");
    }
    // A broken file dropped into the directory (a bad ConfigMap) is skipped too.
    std::fs::write(rules_dir.join("fake").join("broken.yaml"), "groups: [ {name: x, rules: [ {record: r} ] } ]")
        .unwrap();

    let before = evaluations(&norn).await.get("ns;good").copied().unwrap_or(0);
    eventually("the good group to keep being evaluated", DEADLINE, || async {
        (evaluations(&norn).await.get("ns;good").copied().unwrap_or(0) >= before + 3).then_some(())
    })
    .await;
    // Only the good group is stored and listed, in YAML.
    let listed = reqwest::get(norn.url("/loki/api/v1/rules")).await.unwrap().text().await.unwrap();
    let v: BTreeMap<String, Vec<Value>> = serde_norway::from_str(&listed).unwrap();
    assert_eq!(v.keys().collect::<Vec<_>>(), vec!["ns"], "{listed}");
    assert_eq!(v["ns"][0]["name"], "good");
    let one = reqwest::get(norn.url("/loki/api/v1/rules/ns/good")).await.unwrap();
    assert_eq!(one.status(), StatusCode::OK);
    assert!(one.text().await.unwrap().contains("record: ok:vector"));
    let missing = reqwest::get(norn.url("/loki/api/v1/rules/ns/nope")).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let rules = get_json(norn.url("/prometheus/api/v1/rules")).await;
    assert_eq!(rules["data"]["groups"][0]["rules"][0]["health"], "ok", "{rules}");
    // Deleting it stops it.
    let r = reqwest::Client::new().delete(norn.url("/loki/api/v1/rules/ns/good")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let gone = reqwest::get(norn.url("/loki/api/v1/rules")).await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_alert_keeps_its_for_progress_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let args = fast_ruler(dir.path());
    let norn = start(dir.path(), &args);
    let group = "name: slow\nrules:\n  - alert: Always\n    expr: vector(1) > 0\n    for: 1h\n";
    assert_eq!(post_rules(&norn, "ns", group).await.0, StatusCode::ACCEPTED);
    let active_at = eventually("the alert to be pending", DEADLINE, || async {
        let v = get_json(norn.url("/prometheus/api/v1/alerts")).await;
        let a = v["data"]["alerts"].as_array()?.first()?.clone();
        (a["state"] == "pending").then(|| a["activeAt"].as_str().unwrap().to_string())
    })
    .await;
    norn.terminate(Duration::from_secs(30)).unwrap();
    let norn = start(dir.path(), &args);
    let after = eventually("the alert to be pending again", DEADLINE, || async {
        let v = get_json(norn.url("/prometheus/api/v1/alerts")).await;
        let a = v["data"]["alerts"].as_array()?.first()?.clone();
        (a["state"] == "pending").then(|| a["activeAt"].as_str().unwrap().to_string())
    })
    .await;
    assert_eq!(after, active_at, "activeAt survives the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rulers_evaluate_each_group_once_and_the_survivor_takes_over() {
    let etcd = EtcdServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let shared_store = dir.path().join("objects");
    let shared = |name: &str| -> Vec<String> {
        vec![
            format!("--data.dir={}", dir.path().join(name).display()),
            format!("--instance.id={name}"),
            "--ring.store=etcd".into(),
            format!("--ring.etcd.endpoints={}", etcd.endpoint()),
            "--ring.prefix=ruler-test/".into(),
            "--ring.heartbeat-period=500ms".into(),
            "--ring.heartbeat-timeout=3s".into(),
            "--replication-factor=1".into(),
            format!("--storage.filesystem.dir={}", shared_store.display()),
            "--ingester.wal.sync=never".into(),
            "--ruler.storage.type=object".into(),
            "--ruler.evaluation-interval=1s".into(),
            "--ruler.poll-interval=1s".into(),
        ]
    };
    let with = |name: &str, extra: &[&str]| {
        let mut a = shared(name);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let ingester =
        start(dir.path(), &with("ingester-0", &["--target=ingester,distributor,querier", "--grpc.addr=127.0.0.1:0"]));
    let ruler_a = start(dir.path(), &with("ruler-0", &["--target=ruler"]));
    let ruler_b = start(dir.path(), &with("ruler-1", &["--target=ruler"]));
    eventually("both rulers in the ruler ring", DEADLINE, || async {
        let v = get_json(ruler_a.url("/ruler/ring?format=json")).await;
        let active = v["shards"].as_array()?.iter().filter(|s| s["state"] == "ACTIVE").count();
        (active == 2).then_some(())
    })
    .await;
    push_lines(&ingester, r#"{app="checkout"}"#, &["x"]).await;
    let groups: Vec<String> = (0..8).map(|i| format!("g{i}")).collect();
    for g in &groups {
        let body =
            format!("name: {g}\nrules:\n  - record: r:{g}\n    expr: sum(count_over_time({{app=\"checkout\"}}[1h]))\n");
        let (status, text) = post_rules(&ruler_a, "shared", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    }
    let key = |g: &str| format!("shared;{g}");
    // Every group gets evaluated somewhere.
    eventually("every group to be evaluated", DEADLINE, || async {
        let (a, b) = (evaluations(&ruler_a).await, evaluations(&ruler_b).await);
        groups.iter().all(|g| a.get(&key(g)).or(b.get(&key(g))).is_some()).then_some(())
    })
    .await;
    // Over a few seconds each group advances on exactly one ruler.
    let (a0, b0) = (evaluations(&ruler_a).await, evaluations(&ruler_b).await);
    tokio::time::sleep(Duration::from_secs(4)).await; // a measuring window, not synchronization
    let (a1, b1) = (evaluations(&ruler_a).await, evaluations(&ruler_b).await);
    let delta = |m0: &BTreeMap<String, u64>, m1: &BTreeMap<String, u64>, g: &str| {
        m1.get(&key(g)).copied().unwrap_or(0) - m0.get(&key(g)).copied().unwrap_or(0)
    };
    let mut on_b = Vec::new();
    for g in &groups {
        let (da, db) = (delta(&a0, &a1, g), delta(&b0, &b1, g));
        assert!((da > 0) != (db > 0), "group {g} advanced on ruler-0 by {da} and on ruler-1 by {db}");
        if db > 0 {
            on_b.push(g.clone());
        }
    }
    assert!(!on_b.is_empty() && on_b.len() < groups.len(), "groups are shared, ruler-1 has {on_b:?}");
    // Ruler A lists every group with its live state, asking ruler B for its share.
    let listed = get_json(ruler_a.url("/prometheus/api/v1/rules")).await;
    let evaluated = listed["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["lastEvaluation"] != "0001-01-01T00:00:00Z" && g["rules"][0]["health"] == "ok")
        .count();
    assert_eq!(evaluated, groups.len(), "{listed}");

    // Ruler B dies; its groups move to A within heartbeat timeout + poll interval (+ slack).
    ruler_b.kill9();
    let killed = Instant::now();
    let base = evaluations(&ruler_a).await;
    eventually("ruler-0 to take over ruler-1's groups", Duration::from_secs(20), || async {
        let now = evaluations(&ruler_a).await;
        on_b.iter()
            .all(|g| now.get(&key(g)).copied().unwrap_or(0) > base.get(&key(g)).copied().unwrap_or(0))
            .then_some(())
    })
    .await;
    let moved = killed.elapsed();
    println!("groups of the killed ruler moved after {moved:?}");
    assert!(
        moved < Duration::from_secs(10),
        "documented bound: heartbeat timeout 3s + poll 1s + interval 1s; took {moved:?}"
    );
    drop(ingester);
}
