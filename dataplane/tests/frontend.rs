//! The query frontend as its own process with two queriers pulling from it over gRPC, in front
//! of two ingesters (ring in a real etcd, chunks in a real S3 from moto), compared with a querier
//! answering on its own. Every process is a `norn` binary on 127.0.0.1 with OS-assigned ports.

mod common;

use std::time::{Duration, Instant};

use common::{NornProcess, now_ns, proto_body, urlencode};

async fn eventually<T, Fut>(what: &str, f: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    common::eventually(what, DEADLINE, f).await
}
use norn::ring::testing::EtcdServer;
use norn::storage::testing::MotoServer;
use reqwest::StatusCode;
use serde_json::Value;

const S3_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "norn-test-key"),
    ("AWS_SECRET_ACCESS_KEY", "norn-test-secret"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];
const DEADLINE: Duration = Duration::from_secs(60);
const S: i64 = 1_000_000_000;
const MIN: i64 = 60 * S;

/// etcd, S3, two ingesters (RF 2), a distributor, a frontend, two queriers pulling from it and
/// a reference querier that answers on its own.
struct Cluster {
    dir: tempfile::TempDir,
    etcd: EtcdServer,
    moto: MotoServer,
    _ingesters: Vec<NornProcess>,
    distributor: NornProcess,
    frontend: NornProcess,
    queriers: Vec<Option<NornProcess>>,
    reference: NornProcess,
    frontend_grpc: String,
    http: reqwest::Client,
}

impl Cluster {
    async fn start(bucket: &str, querier_flags: &[&str], frontend_flags: &[&str]) -> Cluster {
        let etcd = EtcdServer::start().await.unwrap_or_else(|e| panic!("{e}"));
        let moto = MotoServer::start().await.unwrap_or_else(|e| panic!("{e}"));
        moto.create_bucket(bucket).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let shared = |name: &str| -> Vec<String> {
            vec![
                format!("--data.dir={}", dir.path().join(name).display()),
                "--auth.enabled".into(),
                "--ring.store=etcd".into(),
                format!("--ring.etcd.endpoints={}", etcd.endpoint()),
                "--ring.prefix=norn-frontend-test/".into(),
                "--ring.heartbeat-period=1s".into(),
                "--replication-factor=2".into(),
                "--storage.backend=s3".into(),
                format!("--storage.s3.endpoint={}", moto.endpoint()),
                format!("--storage.s3.bucket={bucket}"),
                "--storage.s3.region=us-east-1".into(),
                "--ingester.wal.sync=never".into(),
                "--limits.ingestion-rate-mb=10000".into(),
                "--limits.ingestion-burst-size-mb=10000".into(),
                "--limits.per-stream-rate-limit=1GB".into(),
                "--limits.per-stream-rate-limit-burst=1GB".into(),
                "--limits.max-query-series=100000".into(),
            ]
        };
        let start = |name: &str, extra: &[String]| {
            let mut args = shared(name);
            args.push(format!("--instance.id={name}"));
            args.extend(extra.iter().cloned());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            common::start_norn_with_env(dir.path(), &args, S3_ENV)
        };
        let ingesters: Vec<NornProcess> = (0..2)
            .map(|i| start(&format!("ingester-{i}"), &["--target=ingester".into(), "--grpc.addr=127.0.0.1:0".into()]))
            .collect();
        let distributor = start("distributor-0", &["--target=distributor".into()]);
        let mut frontend_args: Vec<String> = vec![
            "--target=query-frontend".into(),
            "--grpc.addr=127.0.0.1:0".into(),
            "--limits.split-queries-by-interval=5m".into(),
            "--frontend.max-outstanding-per-tenant=100000".into(),
            "--query-range.shards=4".into(),
            "--query-range.cache-results=false".into(),
        ];
        // A flag given again replaces the default above.
        let key = |a: &str| a.split('=').next().unwrap_or_default().to_string();
        frontend_args.retain(|a| frontend_flags.iter().all(|f| key(f) != key(a)));
        frontend_args.extend(frontend_flags.iter().map(|s| s.to_string()));
        let frontend = start("frontend-0", &frontend_args);
        let frontend_grpc = frontend.grpc_addr().expect("the frontend serves grpc").to_string();
        let mut querier_args =
            vec!["--target=querier".to_string(), format!("--frontend-worker.frontend-address={frontend_grpc}")];
        querier_args.extend(querier_flags.iter().map(|s| s.to_string()));
        let queriers = (0..2).map(|i| Some(start(&format!("querier-{i}"), &querier_args))).collect();
        let reference = start("querier-ref", &["--target=querier".into()]);
        let c = Cluster {
            dir,
            etcd,
            moto,
            _ingesters: ingesters,
            distributor,
            frontend,
            queriers,
            reference,
            frontend_grpc,
            http: reqwest::Client::new(),
        };
        eventually("two queriers connected to the frontend", || async {
            (c.metric(&c.frontend, "norn_query_frontend_connected_queriers").await == 2.0).then_some(())
        })
        .await;
        c
    }

    async fn metric(&self, p: &NornProcess, name: &str) -> f64 {
        let text = self.http.get(p.url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn push(&self, tenant: &str, streams: &[(String, Vec<(i64, String)>)]) {
        let refs: Vec<(&str, Vec<(i64, String)>)> = streams.iter().map(|(l, e)| (l.as_str(), e.clone())).collect();
        let r = self
            .http
            .post(self.distributor.url("/loki/api/v1/push"))
            .header("X-Scope-OrgID", tenant)
            .body(proto_body(&refs))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().await.unwrap());
    }

    async fn get(&self, p: &NornProcess, tenant: &str, path: &str) -> (StatusCode, Value, String) {
        let r = self.http.get(p.url(path)).header("X-Scope-OrgID", tenant).send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
    }
}

/// `count` lines per stream over the last `span` ns, in `streams` streams of `app`.
fn lines(app: &str, streams: usize, count: usize, span: i64, end: i64) -> Vec<(String, Vec<(i64, String)>)> {
    (0..streams)
        .map(|s| {
            let entries = (0..count)
                .map(|i| {
                    let ts = end - span + (i as i64 * span / count as i64) + s as i64;
                    let level = ["info", "warn", "error"][i % 3];
                    (ts, format!("level={level} stream={s} i={i} latency_ms={} msg=\"request done\"", i % 97))
                })
                .collect();
            (format!("{{app=\"{app}\", pod=\"pod-{s}\", zone=\"z{}\"}}", s % 3), entries)
        })
        .collect()
}

fn range_path(query: &str, start: i64, end: i64, step: &str, limit: usize) -> String {
    format!("/loki/api/v1/query_range?query={}&start={start}&end={end}&step={step}&limit={limit}", urlencode(query))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_and_sharded_queries_through_two_queriers_equal_one_querier_and_survive_a_kill_9() {
    let mut c = Cluster::start("frontend-equal", &[], &[]).await;
    let end = now_ns();
    c.push("team-a", &lines("api", 12, 3000, 110 * MIN, end)).await;
    // Half of it flushed to S3: answers merge ingester memory and the store.
    for i in &c._ingesters {
        let r = c.http.post(i.url("/flush?wait=true")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    c.push("team-a", &lines("web", 5, 2000, 100 * MIN, end)).await;
    let (start, stop) = (end - 2 * 60 * MIN, end + S);
    let queries = [
        ("sum by (zone) (count_over_time({app=~\".+\"}[5m]))", "60"),
        ("avg by (app) (rate({app=~\".+\"} |= \"error\" [2m]))", "120"),
        ("topk(3, sum by (pod) (bytes_over_time({app=\"api\"}[10m])))", "300"),
        ("max by (app) (max_over_time({app=~\".+\"} | logfmt | unwrap latency_ms [5m]))", "60"),
        ("quantile_over_time(0.99, {app=\"web\"} | logfmt | unwrap latency_ms [5m]) by (pod)", "60"),
        ("sum(count_over_time({app=\"api\"} |= \"level=warn\" [1m])) / sum(count_over_time({app=\"api\"}[1m]))", "60"),
        ("{app=\"api\", pod=\"pod-3\"} |= \"error\"", "60"),
    ];
    for (q, step) in queries {
        let path = range_path(q, start, stop, step, 500);
        let (s1, want, text) = c.get(&c.reference, "team-a", &path).await;
        assert_eq!(s1, StatusCode::OK, "{q}: {text}");
        let (s2, got, text) = c.get(&c.frontend, "team-a", &path).await;
        assert_eq!(s2, StatusCode::OK, "{q}: {text}");
        assert_eq!(got["data"]["result"], want["data"]["result"], "{q}");
        assert!(!want["data"]["result"].as_array().unwrap().is_empty(), "{q}: no data");
    }
    // Both queriers did work; the frontend never answered itself.
    for q in c.queriers.iter().flatten() {
        assert!(c.metric(q, "norn_querier_worker_jobs_total").await > 0.0);
    }
    // Tenants stay apart: another tenant sees nothing of team-a through the frontend.
    let (_, other, _) = c.get(&c.frontend, "team-b", &range_path(queries[0].0, start, stop, "60", 100)).await;
    assert_eq!(other["data"]["result"], serde_json::json!([]));

    // kill -9 of a querier in the middle of a query with many sub-queries: the query succeeds.
    let heavy = "sum by (pod) (count_over_time({app=~\".+\"} | logfmt | latency_ms > 10 [1m]))";
    let path = range_path(heavy, start, stop, "15", 100);
    let (_, want, _) = c.get(&c.reference, "team-a", &path).await;
    let retries_before = c.metric(&c.frontend, "norn_query_frontend_retries_total").await;
    let running = {
        let (http, url) = (c.http.clone(), c.frontend.url(&path));
        tokio::spawn(async move {
            let r = http.get(url).header("X-Scope-OrgID", "team-a").send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        })
    };
    let victim = c.queriers[1].as_ref().unwrap();
    let jobs_before = c.metric(victim, "norn_querier_worker_jobs_total").await;
    // Polled tightly: the kill must land while the query's sub-queries are still running.
    let waiting = Instant::now();
    while c.metric(victim, "norn_querier_worker_jobs_total").await <= jobs_before {
        assert!(waiting.elapsed() < DEADLINE, "the querier never took a sub-query of the heavy query");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    c.queriers[1].take().unwrap().kill9();
    let (status, text) = running.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    let got: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(got["data"]["result"], want["data"]["result"]);
    let retried = c.metric(&c.frontend, "norn_query_frontend_retries_total").await - retries_before;
    println!("kill -9 of a querier mid-query: the query succeeded; {retried} sub-queries queued again");
    assert!(retried >= 1.0, "no sub-query was in flight on the killed querier");
    let _ = (&c.dir, &c.etcd, &c.moto, &c.frontend_grpc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_noisy_tenant_does_not_hold_up_a_quiet_one() {
    let c = Cluster::start("frontend-fair", &[], &["--limits.query-timeout=5m", "--query-range.shards=0"]).await;
    let end = now_ns();
    c.push("noisy", &lines("api", 10, 2000, 110 * MIN, end)).await;
    c.push("quiet", &lines("web", 1, 50, 10 * MIN, end)).await;
    let (start, stop) = (end - 2 * 60 * MIN, end + S);
    // Not shardable: 24 splits each, 1,200 sub-queries queued at once.
    let heavy = "quantile_over_time(0.9, {app=\"api\"} | logfmt | unwrap latency_ms [1m]) by (pod)";
    let small = "sum(count_over_time({app=\"web\"}[5m]))";
    let started = Instant::now();
    let noisy: Vec<_> = (0..50)
        .map(|_| {
            let (http, url) = (c.http.clone(), c.frontend.url(&range_path(heavy, start, stop, "30", 100)));
            tokio::spawn(async move {
                let r = http.get(url).header("X-Scope-OrgID", "noisy").send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
                Instant::now()
            })
        })
        .collect();
    eventually("the noisy tenant's sub-queries to queue", || async {
        (c.metric(&c.frontend, "norn_query_frontend_queue_length").await > 100.0).then_some(())
    })
    .await;
    let mut latencies = Vec::new();
    let mut quiet_done = Instant::now();
    for _ in 0..10 {
        let t = Instant::now();
        let (status, v, text) = c.get(&c.frontend, "quiet", &range_path(small, end - 30 * MIN, stop, "60", 100)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(!v["data"]["result"].as_array().unwrap().is_empty());
        latencies.push(t.elapsed());
        quiet_done = Instant::now();
    }
    let mut noisy_done = Vec::new();
    for h in noisy {
        noisy_done.push(h.await.unwrap());
    }
    let last_noisy = noisy_done.iter().max().unwrap();
    latencies.sort();
    println!(
        "quiet tenant beside 50 heavy queries of a noisy one: p50 {:?}, max {:?}; the noisy load took {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        *last_noisy - started
    );
    // Fair scheduling: the quiet tenant's queries are all answered while the noisy tenant's
    // backlog is still being worked off, not after it.
    assert!(quiet_done < *last_noisy, "the quiet tenant waited for the noisy tenant's whole backlog");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_over_the_memory_budget_fails_alone_and_the_querier_stays_within_it() {
    // 2 MiB per query, 4 at a time: 8 MiB of query memory on top of the process's base. One
    // sub-query per query (no splits, no shards), so the heavy one needs several times the budget.
    let c = Cluster::start(
        "frontend-budget",
        &["--querier.max-query-memory=2MiB"],
        &["--limits.split-queries-by-interval=0s", "--query-range.shards=1"],
    )
    .await;
    let end = now_ns();
    for part in 0..4 {
        c.push("big", &lines(&format!("bulk-{part}"), 10, 20_000, 100 * MIN, end)).await;
    }
    c.push("small", &lines("web", 1, 100, 10 * MIN, end)).await;
    let (start, stop) = (end - 2 * 60 * MIN, end + S);
    let heavy = "sum by (pod) (count_over_time({app=~\"bulk.*\"} |= \"error\" [1h]))";
    let small = "sum(count_over_time({app=\"web\"}[5m]))";
    let (heavy, small) = (range_path(heavy, start, stop, "60", 100), range_path(small, start, stop, "60", 100));
    let (big, little) = tokio::join!(c.get(&c.frontend, "big", &heavy), c.get(&c.frontend, "small", &small));
    assert_eq!(big.0, StatusCode::BAD_REQUEST, "{}", big.2);
    assert!(big.2.contains("querier.max_query_memory (2MiB)"), "{}", big.2);
    assert_eq!(little.0, StatusCode::OK, "{}", little.2);
    assert!(!little.1["data"]["result"].as_array().unwrap().is_empty());
    for q in c.queriers.iter().flatten() {
        let peak = q.peak_rss().unwrap();
        println!("querier peak RSS {} MiB (budget 2 MiB x 4 concurrent + base)", peak >> 20);
        // Documented in docs/read-path.md: base of a querier process under 96 MiB.
        assert!(peak < (2 << 20) * 4 + (96 << 20), "querier peak RSS {peak} bytes");
    }
}
