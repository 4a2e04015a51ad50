//! The frontend over a real ingester and querier in this process, with in-process workers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::cache::EmbeddedCache;
use super::*;
use crate::config::SyncMode;
use crate::config::units::Dur;
use crate::entry::{Direction, Entry, PushStream};
use crate::ingester::{Ingester, SingleProcess};
use crate::labels::Labels;
use crate::limits::Limits;
use crate::querier::{IngesterData, Querier, QuerierConfig};
use crate::storage::{Index, IndexConfig, MemoryStore};

const S: i64 = 1_000_000_000;
const MIN: i64 = 60 * S;
const HOUR: i64 = 60 * MIN;

struct Fixture {
    _dir: tempfile::TempDir,
    ingester: Arc<Ingester>,
    querier: Querier,
    frontend: Frontend,
    workers: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.workers.cancel();
    }
}

fn fixture_with(limits: Limits, range: QueryRangeConfig, workers: usize) -> Fixture {
    fixture_full(limits, range, workers, QuerierConfig::default())
}

fn fixture_full(limits: Limits, range: QueryRangeConfig, workers: usize, qcfg: QuerierConfig) -> Fixture {
    let metrics = Metrics::new();
    let cache = ResultsCache::new(Arc::new(EmbeddedCache::new(64 << 20, Duration::from_secs(3600))), &metrics);
    fixture_cache(limits, range, workers, qcfg, cache)
}

fn fixture_cache(
    limits: Limits,
    range: QueryRangeConfig,
    workers: usize,
    qcfg: QuerierConfig,
    cache: ResultsCache,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let limits = Arc::new(TenantLimits::new(limits, &HashMap::new()).unwrap());
    let store = Arc::new(MemoryStore::default());
    let index = Arc::new(Index::with_config(store.clone(), &IndexConfig::default()));
    let mut icfg = crate::config::IngesterConfig::default();
    icfg.wal.sync = SyncMode::Never;
    let metrics = Arc::new(Metrics::new());
    let ingester = Ingester::open(
        icfg,
        dir.path().join("wal"),
        limits.clone(),
        Arc::new(SingleProcess),
        store.clone(),
        index.clone(),
        metrics.clone(),
    )
    .unwrap();
    let querier = Querier::new(qcfg, Some(ingester.clone() as Arc<dyn IngesterData>), store, index, limits.clone());
    let frontend = Frontend::new(FrontendConfig::default(), range, 1 << 30, limits, Some(cache), &metrics);
    let stop = CancellationToken::new();
    if workers > 0 {
        worker::spawn_local(&frontend, querier.clone(), "local", workers, Default::default(), stop.clone());
    }
    Fixture { _dir: dir, ingester, querier, frontend, workers: stop }
}

fn fixture() -> Fixture {
    let limits = Limits { reject_old_samples: false, ..Default::default() };
    fixture_with(limits, QueryRangeConfig::default(), 4)
}

fn tenants(t: &str) -> Vec<String> {
    vec![t.to_string()]
}

impl Fixture {
    /// Pushes `n` lines per stream, one every `every` ns ending at `end`, in streams
    /// `{app="a", pod="0..pods"}`.
    async fn push(&self, tenant: &str, pods: usize, n: usize, every: i64, end: i64) {
        let mut streams = Vec::new();
        for pod in 0..pods {
            let labels = Labels::parse(&format!("{{app=\"a\", pod=\"{pod}\"}}")).unwrap().sorted();
            let fingerprint = labels.fingerprint(tenant);
            let entries = (0..n)
                .map(|i| {
                    let ts = end - (n - 1 - i) as i64 * every;
                    Entry::new(ts, format!("level={} pod={pod} i={i}", if i % 3 == 0 { "error" } else { "info" }))
                })
                .collect();
            streams.push(PushStream { labels: Arc::new(labels), fingerprint, entries });
        }
        self.ingester.push(tenant, streams).await.unwrap();
    }

    /// Sub-queries that read log data or series (not the index statistics that size shards).
    fn subqueries(&self) -> u64 {
        ["query", "shard", "labels", "series"].iter().map(|k| self.frontend.subquery_count(k)).sum()
    }
}

fn range(start: i64, end: i64, step: i64) -> QueryParams {
    QueryParams { start, end, step, interval: 0, direction: Direction::Backward, limit: 100, instant: false }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_sharded_answers_equal_the_queriers() {
    let limits = Limits { reject_old_samples: false, split_queries_by_interval: Dur::mins(20), ..Default::default() };
    let cfg = QueryRangeConfig { shards: 4, cache_results: false, ..Default::default() };
    let f = fixture_with(limits, cfg, 4);
    let end = now_nanos() - HOUR;
    f.push("t", 7, 600, 10 * S, end).await;
    let start = end - 2 * HOUR;
    let queries = [
        "sum by (pod) (count_over_time({app=\"a\"}[5m]))",
        "avg(rate({app=\"a\"} |= \"error\" [2m]))",
        "topk(2, sum by (pod) (bytes_over_time({app=\"a\"}[3m])))",
        "max_over_time({app=\"a\"} | logfmt | unwrap i [10m]) - min_over_time({app=\"a\"} | logfmt | unwrap i [10m])",
        "sum(count_over_time({app=\"a\"}[1m])) / count(count_over_time({app=\"a\"}[1m]))",
        "quantile_over_time(0.9, {app=\"a\"} | logfmt | unwrap i [5m])",
        "count_over_time({app=\"a\"}[5m])",
        "{app=\"a\"} |= \"error\"",
    ];
    for q in queries {
        for params in [range(start, end, 60 * S), range(start + 7 * S, end - 3 * S, 130 * S)] {
            let want = f.querier.query(&tenants("t"), q, &params).await.unwrap().value;
            let before = f.frontend.subquery_count("shard");
            let got = f.frontend.query(&tenants("t"), q, &params).await.unwrap().value;
            assert_eq!(got, want, "{q}");
            if !q.contains("quantile") && !q.starts_with('{') {
                assert!(f.frontend.subquery_count("shard") > before, "{q} was not sharded");
            }
        }
        let instant = QueryParams { instant: true, start: end, end, ..range(end, end, 0) };
        if !q.starts_with('{') {
            let want = f.querier.query(&tenants("t"), q, &instant).await.unwrap().value;
            assert_eq!(f.frontend.query(&tenants("t"), q, &instant).await.unwrap().value, want, "instant {q}");
        }
    }
    assert!(f.frontend.split_count() > 0);
    // What the queriers read is reported with the answer: the sub-queries' reads add up to at
    // least the unsplit query's (splits of a range aggregation re-read their range's start).
    let params = range(start, end, 60 * S);
    let q = "sum by (pod) (count_over_time({app=\"a\"}[5m]))";
    let alone = f.querier.query(&tenants("t"), q, &params).await.unwrap().stats.snapshot();
    let through = f.frontend.query(&tenants("t"), q, &params).await.unwrap().stats.snapshot();
    assert!(alone.lines > 0 && alone.ingester_streams == 7, "{alone:?}");
    assert!(through.lines >= alone.lines && through.ingester_streams >= 7, "{through:?} vs {alone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_dashboard_query_computes_only_its_newest_split() {
    let f = fixture();
    let now = now_nanos();
    f.push("t", 3, 360, 30 * S, now).await;
    let q = "sum by (pod) (count_over_time({app=\"a\"}[5m]))";
    let step = 60 * S;
    let end = now - now.rem_euclid(step);
    let params = range(end - 3 * HOUR, end, step);
    let first = f.frontend.query(&tenants("t"), q, &params).await.unwrap().value;
    let ran = f.subqueries();
    assert!(ran >= 4, "a 3h range over 1h splits runs at least 4 sub-queries, ran {ran}");
    let again = f.frontend.query(&tenants("t"), q, &params).await.unwrap().value;
    assert_eq!(again, first);
    let repeat = f.subqueries() - ran;
    // The splits holding steps of the last 10 minutes (one, or two just after an hour
    // boundary) are computed again, and only those.
    let cutoff = now_nanos() - 10 * MIN;
    let fresh = split::metric_splits(&params, HOUR).iter().filter(|s| s.end > cutoff).count() as u64;
    assert!((1..=2).contains(&fresh));
    assert_eq!(repeat, fresh, "only the splits holding the last 10 minutes are computed again");
    // The same query for another tenant is its own entry: nothing of t is returned.
    let other = f.frontend.query(&tenants("u"), q, &params).await.unwrap().value;
    assert_eq!(other, Value::Matrix(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_query_stops_at_its_limit_and_empty_splits_are_cached() {
    let f = fixture();
    let end = now_nanos() - 30 * MIN;
    // Lines only in the last hour of a 12h window.
    f.push("t", 2, 200, 10 * S, end).await;
    let mut params = range(end - 12 * HOUR, end + 1, 0);
    params.limit = 50;
    let want = f.querier.query(&tenants("t"), "{app=\"a\"}", &params).await.unwrap().value;
    let got = f.frontend.query(&tenants("t"), "{app=\"a\"}", &params).await.unwrap().value;
    assert_eq!(got, want);
    let Value::Streams(s) = &got else { panic!("{got:?}") };
    assert_eq!(s.iter().map(|s| s.entries.len()).sum::<usize>(), 50);
    // Forward: the oldest splits are empty and cached as such; the second run asks only for
    // the splits that held lines.
    params.direction = Direction::Forward;
    let want = f.querier.query(&tenants("t"), "{app=\"a\"}", &params).await.unwrap().value;
    assert_eq!(f.frontend.query(&tenants("t"), "{app=\"a\"}", &params).await.unwrap().value, want);
    let ran = f.subqueries();
    assert_eq!(f.frontend.query(&tenants("t"), "{app=\"a\"}", &params).await.unwrap().value, want);
    let again = f.subqueries() - ran;
    assert!(again <= 2, "empty splits were asked again: {again} sub-queries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_series_and_stats_match_the_querier() {
    let f = fixture();
    let end = now_nanos() - 2 * HOUR;
    f.push("t", 3, 100, 60 * S, end).await;
    let (from, through) = (end - 30 * HOUR, end + 1);
    let sel = crate::logql::parse_matchers("{app=\"a\"}").unwrap();
    let t = tenants("t");
    assert_eq!(
        f.frontend.labels(&t, None, &sel, from, through).await.unwrap(),
        f.querier.labels(&t, None, &sel, from, through).await.unwrap()
    );
    assert_eq!(
        f.frontend.labels(&t, Some("pod"), &[], from, through).await.unwrap(),
        vec!["0".to_string(), "1".into(), "2".into()]
    );
    assert_eq!(
        f.frontend.series(&t, std::slice::from_ref(&sel), from, through).await.unwrap(),
        f.querier.series(&t, std::slice::from_ref(&sel), from, through).await.unwrap()
    );
    assert_eq!(
        f.frontend.index_stats(&t, &sel, from, through).await.unwrap(),
        f.querier.index_stats(&t, &sel, from, through).await.unwrap()
    );
    // Cached: asking again runs nothing.
    let ran = f.subqueries();
    f.frontend.index_stats(&t, &sel, from, through).await.unwrap();
    f.frontend.labels(&t, None, &sel, from, through).await.unwrap();
    assert_eq!(f.subqueries(), ran);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_queriers_a_query_waits_in_the_queue_until_its_timeout() {
    let limits = Limits { query_timeout: Dur::millis(300), ..Default::default() };
    let f = fixture_with(limits, QueryRangeConfig::default(), 0);
    let end = now_nanos();
    let err = f.frontend.query(&tenants("t"), "{app=\"a\"}", &range(end - MIN, end, 0)).await.unwrap_err();
    assert_eq!(crate::error::HasKind::kind(&err), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("0 queriers connected"), "{err}");
    assert!(f.frontend.queue().is_empty(), "the timed-out sub-query left the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_and_a_dropped_request_leaves_the_queue() {
    let unsharded = QueryRangeConfig { parallelise_shardable_queries: false, ..Default::default() };
    let f = fixture_with(Limits::default(), unsharded.clone(), 0);
    let end = now_nanos();
    let params = range(end - 6 * HOUR, end, 60 * S);
    let q = "sum(count_over_time({app=\"a\"}[1m]))";
    let frontend = f.frontend.clone();
    let waiting = tokio::spawn(async move { frontend.query(&tenants("t"), q, &params).await });
    crate::testing::wait_until("sub-queries queued", Duration::from_secs(10), || {
        (f.frontend.queue().len() >= 6).then_some(())
    });
    // Two outstanding sub-queries at most: the next request of the tenant is refused.
    let small = Frontend::new(
        FrontendConfig { max_outstanding_per_tenant: 2, ..Default::default() },
        unsharded,
        0,
        Arc::new(TenantLimits::new(Limits::default(), &HashMap::new()).unwrap()),
        None,
        &Metrics::new(),
    );
    let blocked = {
        let small = small.clone();
        tokio::spawn(async move { small.query(&tenants("t"), q, &params).await })
    };
    let err = blocked.await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "too many outstanding requests");
    assert_eq!(crate::error::HasKind::kind(&err), ErrorKind::RateLimited);
    // The client goes away: its sub-queries are dropped, and a querier never sees them.
    waiting.abort();
    let _ = waiting.await;
    let mut conn = f.frontend.queue().connect("late");
    let got = tokio::time::timeout(Duration::from_millis(100), conn.next()).await;
    assert!(got.is_err(), "a querier got a sub-query of a request that was gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_its_memory_budget_fails_alone() {
    let limits = Limits { reject_old_samples: false, ..Default::default() };
    let qcfg = QuerierConfig { max_query_memory: crate::config::units::ByteSize(256 << 10), ..Default::default() };
    let f = fixture_full(limits, QueryRangeConfig { cache_results: false, ..Default::default() }, 4, qcfg);
    let end = now_nanos() - HOUR;
    // About 1MB of lines in memory: four times the budget.
    f.push("big", 20, 4000, S / 2, end).await;
    f.push("small", 1, 10, S, end).await;
    let heavy = "sum by (pod) (count_over_time({app=\"a\"} |= \"error\" [1m]))";
    let params = range(end - HOUR, end, 60 * S);
    let (tb, ts) = (tenants("big"), tenants("small"));
    let (big, small) = tokio::join!(f.frontend.query(&tb, heavy, &params), f.frontend.query(&ts, heavy, &params));
    let Err(err) = big else { panic!("the heavy query succeeded") };
    assert_eq!(crate::error::HasKind::kind(&err), ErrorKind::Invalid, "{err}");
    assert!(err.to_string().contains("querier.max_query_memory (256KiB)"), "{err}");
    let Value::Matrix(m) = small.unwrap().value else { panic!("not a matrix") };
    assert_eq!(m.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_cached_in_a_real_memcached_and_a_dead_one_is_only_a_miss() {
    let mut mc = super::testing::MemcachedServer::start().unwrap_or_else(|e| panic!("{e}"));
    let backend = super::memcached::Memcached::new(
        vec![mc.addr().to_string()],
        Duration::from_millis(500),
        4,
        1 << 20,
        Duration::ZERO,
    );
    let metrics = Metrics::new();
    let cache = ResultsCache::new(Arc::new(backend), &metrics);
    let limits = Limits { reject_old_samples: false, ..Default::default() };
    let f = fixture_cache(limits, QueryRangeConfig::default(), 4, QuerierConfig::default(), cache);
    let now = now_nanos();
    f.push("t", 3, 360, 30 * S, now).await;
    let q = "sum by (pod) (rate({app=\"a\"}[5m]))";
    let end = now - now.rem_euclid(60 * S);
    let params = range(end - 3 * HOUR, end, 60 * S);
    let first = f.frontend.query(&tenants("t"), q, &params).await.unwrap().value;
    let ran = f.subqueries();
    assert_eq!(f.frontend.query(&tenants("t"), q, &params).await.unwrap().value, first);
    assert!(f.subqueries() - ran <= 2, "the old splits came from memcached");
    let hits: u64 = metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("norn_query_frontend_cache_hits_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(hits >= 3, "{hits} cache hits on the repeat of a query of four splits");
    // Tenant u asks the same query: its own key, nothing of t.
    assert_eq!(f.frontend.query(&tenants("u"), q, &params).await.unwrap().value, Value::Matrix(vec![]));
    // memcached goes away: the same query is computed again, with the same answer, no error.
    mc.kill();
    let ran = f.subqueries();
    assert_eq!(f.frontend.query(&tenants("t"), q, &params).await.unwrap().value, first);
    assert!(f.subqueries() - ran >= 4, "every split computed again without the cache");
}
