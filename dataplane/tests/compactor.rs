//! The compactor against real `norn` processes: retention and delete requests over the
//! filesystem store and over S3 (moto), cancellation, and a `--target=compactor` process
//! killed with `kill -9` in the middle of its passes.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{NornProcess, now_ns, proto_body, start_norn, start_norn_with_env, urlencode};
use norn::compactor::testing::{dangling_refs, write_chunk};
use norn::compactor::{DeleteRequests, DeleteStatus};
use norn::labels::Labels;
use norn::storage::testing::MotoServer;
use norn::storage::{FilesystemStore, Index, ObjectStore};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const TENANT: &str = "fake";
const H: i64 = 3_600_000_000_000;
const MIN: i64 = 60_000_000_000;

/// S3 credentials for the norn processes (moto accepts any).
const S3_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "norn-test-key"),
    ("AWS_SECRET_ACCESS_KEY", "norn-test-secret"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// Polls `cond` every 50ms until it holds, failing with `what` after 60s.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn push(p: &NornProcess, streams: &[(&str, Vec<(i64, String)>)]) {
    let r = reqwest::Client::new().post(p.url("/loki/api/v1/push")).body(proto_body(streams)).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT, "{}", r.text().await.unwrap());
}

async fn flush(p: &NornProcess) {
    let r = reqwest::Client::new().post(p.url("/flush?wait=true")).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
}

async fn get_json(p: &NornProcess, path: &str) -> Value {
    let r = reqwest::get(p.url(path)).await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Lines a log query over the last three days returns.
async fn lines(p: &NornProcess, query: &str) -> Vec<String> {
    let (start, end) = (now_ns() - 72 * H, now_ns() + H);
    let v =
        get_json(p, &format!("/loki/api/v1/query_range?query={}&start={start}&end={end}&limit=5000", urlencode(query)))
            .await;
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        for e in s["values"].as_array().unwrap() {
            out.push(e[1].as_str().unwrap().to_string());
        }
    }
    out.sort();
    out
}

async fn index_entries(p: &NornProcess, selector: &str) -> u64 {
    let (start, end) = (now_ns() - 72 * H, now_ns() + H);
    let v =
        get_json(p, &format!("/loki/api/v1/index/stats?query={}&start={start}&end={end}", urlencode(selector))).await;
    v["entries"].as_u64().unwrap()
}

async fn delete_api(p: &NornProcess, method: reqwest::Method, params: &str) -> (reqwest::StatusCode, String) {
    let r =
        reqwest::Client::new().request(method, p.url(&format!("/loki/api/v1/delete?{params}"))).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// `n` lines one minute apart from `from`, alternating "secret i" and "public i".
fn entries(from: i64, n: usize, tag: &str) -> Vec<(i64, String)> {
    (0..n)
        .map(|i| {
            let kind = if i % 2 == 0 { "secret" } else { "public" };
            (from + i as i64 * MIN, format!("{kind} {tag} {i}"))
        })
        .collect()
}

/// Chunk objects of the stream `{app="<app>"}`.
async fn chunk_objects(store: &dyn ObjectStore, app: &str) -> usize {
    let fp = Labels::from_pairs([("app", app)]).sorted().fingerprint(TENANT);
    store.list(&format!("{TENANT}/chunks/{fp:016x}/")).await.unwrap().len()
}

/// What every backend must do: retention removes old data from queries and, after the delay,
/// from the store; a delete request with a line filter removes exactly its lines, at once from
/// queries and, once processed, from the chunks.
async fn retention_and_deletes(p: &NornProcess, store: &dyn ObjectStore) {
    let now = now_ns();
    let old = entries(now - 48 * H, 10, "old");
    let keep = entries(now - H, 20, "keep");
    let other = entries(now - H, 20, "other");
    push(p, &[(r#"{app="old"}"#, old), (r#"{app="keep"}"#, keep.clone()), (r#"{app="other"}"#, other)]).await;
    // Hidden from queries before anything reached the store.
    assert_eq!(lines(p, r#"{app="old"}"#).await.len(), 0);
    assert_eq!(lines(p, r#"{app="keep"}"#).await.len(), 20);
    flush(p).await;
    assert_eq!(chunk_objects(store, "keep").await, 1);
    eventually("the expired chunk to leave the store", || async { chunk_objects(store, "old").await == 0 }).await;
    assert_eq!(chunk_objects(store, "keep").await, 1);
    assert_eq!(chunk_objects(store, "other").await, 1);
    assert_eq!(lines(p, r#"{app="old"}"#).await.len(), 0);
    assert_eq!(lines(p, r#"{app=~"keep|other"}"#).await.len(), 40);
    assert_eq!(index_entries(p, r#"{app="old"}"#).await, 0);

    // Delete the secret lines of stream keep among its first 10 minutes: 5 lines.
    let (start, end) = (keep[0].0, keep[9].0);
    let q = urlencode(r#"{app="keep"} |= "secret""#);
    let (st, body) = delete_api(p, reqwest::Method::POST, &format!("query={q}&start={start}&end={end}")).await;
    assert_eq!(st, reqwest::StatusCode::NO_CONTENT, "{body}");
    let expected: Vec<String> = {
        let mut v: Vec<String> =
            keep.iter().enumerate().filter(|(i, _)| !(*i < 10 && i % 2 == 0)).map(|(_, (_, l))| l.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(lines(p, r#"{app="keep"}"#).await, expected, "filtered at query time");
    assert_eq!(lines(p, r#"{app="other"}"#).await.len(), 20);
    eventually("the delete request to be processed", || async {
        let v = get_json(p, "/loki/api/v1/delete").await;
        v[0]["status"] == "processed"
    })
    .await;
    assert_eq!(lines(p, r#"{app="keep"}"#).await, expected, "after the rewrite");
    assert_eq!(lines(p, r#"{app="other"}"#).await.len(), 20);
    assert_eq!(index_entries(p, r#"{app="keep"}"#).await, 15, "the chunk was rewritten");
    assert_eq!(index_entries(p, r#"{app="other"}"#).await, 20);
    eventually("the replaced chunk to leave the store", || async { chunk_objects(store, "keep").await == 1 }).await;
    assert_eq!(lines(p, r#"{app="keep"}"#).await, expected);

    // A pass adds its counts to the metrics when it ends, after its deletes are visible.
    let value = |metrics: &str, name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
    };
    let metrics_text = || async { reqwest::get(p.url("/metrics")).await.unwrap().text().await.unwrap() };
    eventually("the pass that deleted the replaced chunk to be counted", || async {
        value(&metrics_text().await, "norn_compactor_chunks_deleted_total") >= 2.0
    })
    .await;
    let metrics = metrics_text().await;
    assert_eq!(value(&metrics, "norn_compactor_lines_deleted_total"), 5.0);
    assert_eq!(value(&metrics, "norn_compactor_delete_requests_processed_total"), 1.0);
    let status = get_json(p, "/compactor/ring?format=json").await;
    assert_eq!(status["state"], "active", "{status}");
}

fn compactor_flags() -> Vec<&'static str> {
    vec![
        "--ingester.wal.sync=never",
        "--compactor.retention-enabled",
        "--compactor.compaction-interval=200ms",
        "--compactor.retention-delete-delay=1s",
        "--compactor.delete-request-cancel-period=0s",
        "--limits.retention-period=24h",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_delete_requests_over_the_filesystem_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data.dir={}", dir.path().display());
    let mut args = compactor_flags();
    args.push(&data);
    let p = start_norn(dir.path(), &args);
    let store = FilesystemStore::new(dir.path().join("chunks")).unwrap();
    retention_and_deletes(&p, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_delete_requests_over_s3() {
    let moto = MotoServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let store = moto.store("compactor").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let owned = [
        format!("--data.dir={}", dir.path().display()),
        "--storage.backend=s3".into(),
        format!("--storage.s3.endpoint={}", moto.endpoint()),
        "--storage.s3.bucket=compactor".into(),
        "--storage.s3.region=us-east-1".into(),
    ];
    let mut args = compactor_flags();
    args.extend(owned.iter().map(String::as_str));
    let p = start_norn_with_env(dir.path(), &args, S3_ENV);
    retention_and_deletes(&p, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_request_cancelled_in_time_restores_the_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data.dir={}", dir.path().display());
    let args = [
        data.as_str(),
        "--ingester.wal.sync=never",
        "--compactor.compaction-interval=100ms",
        "--compactor.delete-request-cancel-period=1h",
    ];
    let p = start_norn(dir.path(), &args);
    push(&p, &[(r#"{app="keep"}"#, entries(now_ns() - H, 20, "keep"))]).await;
    flush(&p).await;
    let q = urlencode(r#"{app="keep"}"#);
    let (st, body) = delete_api(&p, reqwest::Method::POST, &format!("query={q}")).await;
    assert_eq!(st, reqwest::StatusCode::NO_CONTENT, "{body}");
    assert_eq!(lines(&p, r#"{app="keep"}"#).await.len(), 0);
    let listed = get_json(&p, "/loki/api/v1/delete").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["status"], "received");
    let id = listed[0]["request_id"].as_str().unwrap().to_string();
    let (st, body) = delete_api(&p, reqwest::Method::DELETE, &format!("request_id={id}")).await;
    assert_eq!(st, reqwest::StatusCode::NO_CONTENT, "{body}");
    assert_eq!(lines(&p, r#"{app="keep"}"#).await.len(), 20);
    assert_eq!(get_json(&p, "/loki/api/v1/delete").await.as_array().unwrap().len(), 0);
    let (st, _) = delete_api(&p, reqwest::Method::DELETE, &format!("request_id={id}")).await;
    assert_eq!(st, reqwest::StatusCode::NOT_FOUND);
    let (st, _) =
        delete_api(&p, reqwest::Method::POST, &format!("query={}", urlencode(r#"{app="keep"} | json"#))).await;
    assert_eq!(st, reqwest::StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delete_api_is_refused_when_deletion_is_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data.dir={}", dir.path().display());
    let p = start_norn(dir.path(), &[data.as_str(), "--ingester.wal.sync=never", "--limits.deletion-mode=disabled"]);
    let (st, body) = delete_api(&p, reqwest::Method::POST, &format!("query={}", urlencode(r#"{a="b"}"#))).await;
    assert_eq!(st, reqwest::StatusCode::FORBIDDEN, "{body}");
}

/// Streams, days and the lines of the crash test's data.
const STREAMS: usize = 20;
const DAYS: i64 = 30;
const LINES: usize = 12;
const RETENTION_DAYS: i64 = 14;

fn crash_stream(i: usize) -> Arc<Labels> {
    Arc::new(Labels::from_pairs([("app", format!("s{i}")), ("group", (i % 2).to_string())]).sorted())
}

/// 20 streams × 30 days, one chunk per stream and day, each with its own index object; a
/// delete request (past its cancel period) for the secret lines of group 0 over days 5..=10.
async fn seed(store: Arc<dyn ObjectStore>, now: i64) {
    let index = Index::new(store.clone(), Duration::from_secs(24 * 3600));
    for day in 1..=DAYS {
        for s in 0..STREAMS {
            let from = now - day * 24 * H + H;
            let lines = entries(from, LINES, &format!("d{day}"));
            write_chunk(&*store, &index, TENANT, &crash_stream(s), &lines).await.unwrap();
        }
    }
    let deletes = DeleteRequests::new(store);
    let (start, end) = (now - 10 * 24 * H, now - 5 * 24 * H + 2 * H);
    deletes.add(TENANT, r#"{group="0"} |= "secret""#, start, end, now - 2 * 24 * H).await.unwrap();
}

/// Entries per stream the index must hold once the work is done.
fn expected_entries() -> HashMap<String, u64> {
    (0..STREAMS)
        .map(|s| {
            // Days 1..=14 are inside retention; days 5..=10 of group 0 lose their 6 secret lines.
            let days = RETENTION_DAYS as u64;
            let deleted_days = if s % 2 == 0 { 6 } else { 0 };
            let per_day = LINES as u64;
            (format!("s{s}"), days * per_day - deleted_days * (per_day / 2))
        })
        .collect()
}

fn compactor_args(dir: &std::path::Path) -> Vec<String> {
    vec![
        "--target=compactor".into(),
        format!("--data.dir={}", dir.display()),
        format!("--limits.retention-period={}h", RETENTION_DAYS * 24),
        "--compactor.retention-enabled".into(),
        "--compactor.retention-delete-delay=0s".into(),
        "--compactor.compaction-interval=1h".into(),
        "--compactor.lease-ttl=300ms".into(),
    ]
}

/// A fresh data directory with the seeded data, and its store.
async fn seeded_dir() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(FilesystemStore::new(dir.path().join("chunks")).unwrap());
    seed(store.clone(), now_ns()).await;
    (dir, store)
}

/// Starts a compactor process and waits until it holds the lease (its first pass starts then).
async fn start_compactor(dir: &std::path::Path) -> NornProcess {
    let args = compactor_args(dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = start_norn(dir, &args);
    eventually("the compactor to take the lease", || async {
        get_json(&p, "/compactor/ring?format=json").await["state"] == "active"
    })
    .await;
    p
}

async fn status(p: &NornProcess) -> Value {
    get_json(p, "/compactor/ring?format=json").await
}

/// Waits for a pass without error.
async fn complete_pass(p: &NornProcess) {
    eventually("a complete pass", || async {
        let s = status(p).await;
        s["passes"].as_u64().unwrap() > 0 && s["last_pass"]["error"].is_null()
    })
    .await;
}

/// Asserts the state a finished pass must leave.
async fn assert_converged(store: &Arc<dyn ObjectStore>, what: &str) {
    let index = Index::new(store.clone(), Duration::from_secs(24 * 3600));
    assert!(dangling_refs(&**store, &index, TENANT).await.unwrap().is_empty(), "{what}");
    let refs = index.chunks(TENANT, i64::MIN / 2, i64::MAX / 2).await.unwrap();
    let indexed: BTreeSet<String> = refs.iter().map(|r| r.key.clone()).collect();
    let objects: BTreeSet<String> =
        store.list(&format!("{TENANT}/chunks/")).await.unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(objects, indexed, "{what}: chunk objects that no index entry lists, or the other way round");
    let mut per_stream: HashMap<String, u64> = HashMap::new();
    for r in &refs {
        *per_stream.entry(r.labels.get("app").unwrap().to_string()).or_default() += u64::from(r.entries);
    }
    assert_eq!(per_stream, expected_entries(), "{what}");
    assert!(store.list(&format!("{TENANT}/compactor/markers/")).await.unwrap().is_empty(), "{what}");
    let listed = DeleteRequests::new(store.clone()).list(TENANT).await.unwrap();
    assert_eq!(listed[0].1, DeleteStatus::Processed, "{what}");
    for p in index.tenant_periods(TENANT).await.unwrap() {
        assert_eq!(index.period_objects(TENANT, p).await.unwrap().len(), 1, "{what}: period {p} not compacted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compactor_killed_mid_pass_never_leaves_a_dangling_index_entry_and_converges() {
    // An uninterrupted pass, to learn how long one takes on this machine.
    let (dir, store) = seeded_dir().await;
    let p = start_compactor(dir.path()).await;
    complete_pass(&p).await;
    let took = status(&p).await["last_pass"]["duration_seconds"].as_f64().unwrap();
    p.kill9();
    assert_converged(&store, "uninterrupted").await;

    let mut mid_pass = 0;
    for seed in 0..6u64 {
        let (dir, store) = seeded_dir().await;
        let index = Index::new(store.clone(), Duration::from_secs(24 * 3600));
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let delay = Duration::from_secs_f64(took * rng.random_range(0.0..1.0));
        let p = start_compactor(dir.path()).await;
        tokio::time::sleep(delay).await;
        let before = status(&p).await;
        p.kill9();
        mid_pass += usize::from(before["passes"] == 0);
        let dangling = dangling_refs(&*store, &index, TENANT).await.unwrap();
        assert!(
            dangling.is_empty(),
            "seed {seed}: killed {delay:?} into the pass: dangling index entries {dangling:?}"
        );
        // The next compactor waits out the dead one's lease, then finishes the work.
        let p = start_compactor(dir.path()).await;
        complete_pass(&p).await;
        p.kill9();
        assert_converged(&store, &format!("seed {seed}, killed {delay:?} into a {took}s pass")).await;
    }
    eprintln!("{mid_pass} of 6 kills landed in the middle of a {took}s pass");
    assert!(mid_pass > 0, "no kill landed in the middle of a pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_one_compactor_works_and_a_second_takes_over_when_it_dies() {
    let etcd = norn::ring::testing::EtcdServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--target=compactor".to_string(),
        format!("--data.dir={}", dir.path().display()),
        "--ring.store=etcd".into(),
        format!("--ring.etcd.endpoints={}", etcd.endpoint()),
        "--compactor.lease-ttl=1s".into(),
        "--compactor.compaction-interval=100ms".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = start_norn(dir.path(), &args);
    eventually("the first compactor to take the lease", || async { status(&first).await["state"] == "active" }).await;
    let second = start_norn(dir.path(), &args);
    // The first keeps renewing: over several lease periods the second only waits.
    let waiting_since = Instant::now();
    while waiting_since.elapsed() < Duration::from_secs(3) {
        assert_eq!(status(&second).await["state"], "waiting for the lease");
        assert_eq!(status(&first).await["state"], "active");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&second).await["passes"], 0);
    first.kill9();
    eventually("the second compactor to take over", || async { status(&second).await["state"] == "active" }).await;
    complete_pass(&second).await;
}
