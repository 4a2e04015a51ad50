//! The compactor over the in-memory store: retention, delete requests, index compaction, the
//! lease, and a pass interrupted at every write.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::testing::{CountingStore, dangling_refs, write_chunk};
use super::*;
use crate::config::units::Dur;
use crate::entry::Direction;
use crate::labels::Labels;
use crate::limits::{DeletionMode, Limits, StreamRetention};
use crate::querier::{Querier, QuerierConfig};
use crate::query::{QueryParams, Value};
use crate::ring::kv::MemoryKv;
use crate::ring::model::ManualClock;
use crate::storage::{IndexConfig, MemoryStore};

/// One hour in ns: the index period of these tests.
const H: i64 = 3_600_000_000_000;
/// The clock starts at day 100.
const NOW: i64 = 100 * 24 * H;
const T: &str = "tenant";

struct Fixture {
    raw: Arc<MemoryStore>,
    store: Arc<CountingStore>,
    index: Arc<Index>,
    clock: Arc<ManualClock>,
    compactor: Arc<Compactor>,
    querier: Querier,
}

fn cfg() -> CompactorConfig {
    CompactorConfig {
        retention_enabled: true,
        retention_delete_delay: Dur::hours(2),
        delete_request_cancel_period: Dur::hours(24),
        ..CompactorConfig::default()
    }
}

fn fixture(cfg: CompactorConfig, limits: Limits) -> Fixture {
    let raw = Arc::new(MemoryStore::new());
    let store = Arc::new(CountingStore::new(raw.clone()));
    fixture_on(raw, store, cfg, limits)
}

fn fixture_on(raw: Arc<MemoryStore>, store: Arc<CountingStore>, cfg: CompactorConfig, limits: Limits) -> Fixture {
    let index_cfg = IndexConfig { period: Dur(Duration::from_secs(3600)), ..IndexConfig::default() };
    let index = Arc::new(Index::with_config(store.clone(), &index_cfg));
    let clock = Arc::new(ManualClock::new(NOW / 1_000_000));
    let limits = Arc::new(TenantLimits::new(limits, &Default::default()).unwrap());
    let deletes = Arc::new(DeleteRequests::new(store.clone()));
    let filter = ReadFilter::new(limits.clone(), deletes.clone(), cfg.retention_enabled, clock.clone());
    let compactor = Arc::new(Compactor::new(cfg, store.clone(), index.clone(), limits.clone(), deletes, clock.clone()));
    let querier = Querier::new(QuerierConfig::default(), None, store.clone(), index.clone(), limits)
        .with_read_filter(Arc::new(filter));
    Fixture { raw, store, index, clock, compactor, querier }
}

fn stream(app: &str) -> Arc<Labels> {
    Arc::new(Labels::from_pairs([("app", app)]).sorted())
}

/// `n` lines from `from`, one a minute, alternating "secret i" and "public i".
fn lines(from: i64, n: usize) -> Vec<(i64, String)> {
    (0..n)
        .map(|i| {
            let kind = if i % 2 == 0 { "secret" } else { "public" };
            (from + i as i64 * 60_000_000_000, format!("{kind} {i}"))
        })
        .collect()
}

impl Fixture {
    async fn write(&self, app: &str, entries: &[(i64, String)]) -> crate::storage::ChunkRef {
        write_chunk(&*self.store, &self.index, T, &stream(app), entries).await.unwrap()
    }

    /// The lines a log query returns from 3 days before the start of the clock to 3 days after.
    async fn query(&self, q: &str) -> Vec<String> {
        let params = QueryParams {
            start: NOW - 72 * H,
            end: NOW + 72 * H,
            step: 0,
            interval: 0,
            direction: Direction::Forward,
            limit: 5000,
            instant: false,
        };
        let out = self.querier.query(&[T.to_string()], q, &params).await.unwrap();
        let Value::Streams(streams) = out.value else { panic!("not streams") };
        streams.iter().flat_map(|s| s.entries.iter().map(|e| String::from_utf8_lossy(&e.line).into_owned())).collect()
    }

    async fn keys(&self, prefix: &str) -> BTreeSet<String> {
        self.raw.list(prefix).await.unwrap().into_iter().map(|m| m.key).collect()
    }

    fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
}

fn retention_limits() -> Limits {
    Limits {
        retention_period: Dur::hours(24),
        retention_stream: vec![StreamRetention {
            selector: r#"{app="short"}"#.into(),
            priority: 1,
            period: Dur::hours(2),
        }],
        ..Limits::default()
    }
}

#[tokio::test]
async fn retention_drops_expired_chunks_from_the_index_then_from_the_store_after_the_delay() {
    let f = fixture(cfg(), retention_limits());
    let old = f.write("a", &lines(NOW - 48 * H, 10)).await;
    // From 25h ago to 21h ago: straddles the 24h boundary now and 2h later.
    let straddling = f.write("a", &lines(NOW - 25 * H, 241)).await;
    let recent = f.write("a", &lines(NOW - H, 10)).await;
    let short = f.write("short", &lines(NOW - 3 * H, 10)).await;
    // Before any pass, queries already hide what is past retention: the straddling chunk's
    // first 60 minutes are older than 24h.
    let expect_a = 181 + 10;
    assert_eq!(f.query(r#"{app="a"}"#).await.len(), expect_a);
    assert_eq!(f.query(r#"{app="short"}"#).await.len(), 0);

    let stats = f.compactor.run_pass().await.unwrap();
    assert_eq!(stats.chunks_expired, 2, "{stats:?}");
    assert_eq!(stats.chunks_deleted, 0, "the delay has not passed");
    let live: BTreeSet<String> = f.index.chunks(T, 0, NOW).await.unwrap().into_iter().map(|r| r.key).collect();
    assert_eq!(live, BTreeSet::from([straddling.key.clone(), recent.key.clone()]));
    let objects = f.keys(&format!("{T}/chunks/")).await;
    assert!(objects.contains(&old.key) && objects.contains(&short.key), "deleted before the delay");
    assert_eq!(f.query(r#"{app="a"}"#).await.len(), expect_a);

    f.advance(Duration::from_secs(2 * 3600));
    let stats = f.compactor.run_pass().await.unwrap();
    assert_eq!(stats.chunks_deleted, 2, "{stats:?}");
    assert_eq!(stats.bytes_deleted, u64::from(old.size + short.size));
    let objects = f.keys(&format!("{T}/chunks/")).await;
    assert_eq!(objects, BTreeSet::from([straddling.key, recent.key]));
    assert!(f.keys(&format!("{T}/compactor/markers/")).await.is_empty());
    // The cutoff moved by 2h: another 120 minutes of the straddling chunk are hidden.
    assert_eq!(f.query(r#"{app="a"}"#).await.len(), 61 + 10);
    assert!(dangling_refs(&*f.store, &f.index, T).await.unwrap().is_empty());
}

#[tokio::test]
async fn index_stats_stop_counting_expired_chunks() {
    let f = fixture(cfg(), retention_limits());
    f.write("a", &lines(NOW - 48 * H, 10)).await;
    f.write("a", &lines(NOW - H, 10)).await;
    let selector = crate::logql::parse_matchers(r#"{app="a"}"#).unwrap();
    let stats = f.querier.index_stats(&[T.to_string()], &selector, 0, NOW).await.unwrap();
    assert_eq!((stats.chunks, stats.entries), (1, 10));
    f.compactor.run_pass().await.unwrap();
    let stats = f.querier.index_stats(&[T.to_string()], &selector, 0, NOW).await.unwrap();
    assert_eq!((stats.chunks, stats.entries), (1, 10));
}

#[tokio::test]
async fn retention_disabled_keeps_everything() {
    let f = fixture(CompactorConfig { retention_enabled: false, ..cfg() }, retention_limits());
    let old = f.write("a", &lines(NOW - 48 * H, 10)).await;
    assert_eq!(f.query(r#"{app="a"}"#).await.len(), 10);
    let stats = f.compactor.run_pass().await.unwrap();
    assert_eq!(stats.chunks_expired, 0);
    assert!(f.keys(&format!("{T}/chunks/")).await.contains(&old.key));
}

#[tokio::test]
async fn a_delete_request_removes_exactly_the_matching_lines_before_and_after_the_rewrite() {
    let f = fixture(cfg(), Limits::default());
    // Stream a: 20 lines from 10h ago; stream b: the same lines.
    let a = f.write("a", &lines(NOW - 10 * H, 20)).await;
    f.write("b", &lines(NOW - 10 * H, 20)).await;
    assert_eq!(f.query(r#"{app=~"a|b"}"#).await.len(), 40);
    // Delete "secret" lines of stream a among its first 10 minutes (entries 0..=9: 5 secrets).
    let start = NOW - 10 * H;
    let end = start + 9 * 60_000_000_000;
    let req = f.compactor.deletes().add(T, r#"{app="a"} |= "secret""#, start, end, NOW).await.unwrap();
    let visible_a = f.query(r#"{app="a"}"#).await;
    assert_eq!(visible_a.len(), 15, "{visible_a:?}");
    assert!(
        !visible_a.iter().any(|l| ["secret 0", "secret 2", "secret 4", "secret 6", "secret 8"].contains(&l.as_str()))
    );
    assert!(visible_a.contains(&"secret 10".to_string()));
    assert_eq!(f.query(r#"{app="b"}"#).await.len(), 20);

    // Inside the cancel period nothing is rewritten.
    let stats = f.compactor.run_pass().await.unwrap();
    assert_eq!((stats.chunks_rewritten, stats.requests_pending), (0, 1), "{stats:?}");

    f.advance(Duration::from_secs(24 * 3600));
    let stats = f.compactor.run_pass().await.unwrap();
    assert_eq!((stats.chunks_rewritten, stats.lines_deleted, stats.requests_processed), (1, 5, 1), "{stats:?}");
    let listed = f.compactor.deletes().list(T).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].0.request_id.as_str(), listed[0].1), (req.request_id.as_str(), DeleteStatus::Processed));
    let refs = f.index.chunks(T, 0, NOW + 48 * H).await.unwrap();
    let rewritten: Vec<_> = refs.iter().filter(|r| *r.labels == *stream("a")).collect();
    assert_eq!(rewritten.len(), 1);
    assert_eq!(rewritten[0].entries, 15);
    assert_ne!(rewritten[0].key, a.key);
    assert_eq!(f.query(r#"{app="a"}"#).await.len(), 15);
    assert_eq!(f.query(r#"{app="b"}"#).await.len(), 20);
    // The old chunk goes after the delay; the new one stays.
    f.advance(Duration::from_secs(2 * 3600));
    let stats = f.compactor.run_pass().await.unwrap();
    assert_eq!(stats.chunks_deleted, 1);
    let objects = f.keys(&format!("{T}/chunks/")).await;
    assert!(!objects.contains(&a.key) && objects.contains(&rewritten[0].key));
    assert_eq!(f.query(r#"{app="a"}"#).await.len(), 15);
}

#[tokio::test]
async fn cancelling_in_time_restores_the_lines_and_late_cancels_are_refused() {
    let f = fixture(cfg(), Limits::default());
    f.write("a", &lines(NOW - 10 * H, 20)).await;
    let req = f.compactor.deletes().add(T, r#"{app="a"}"#, 0, NOW, NOW).await.unwrap();
    assert_eq!(f.query(r#"{app="a"}"#).await.len(), 0);
    let period = 24 * H;
    f.compactor.deletes().cancel(T, &req.request_id, NOW + H, period).await.unwrap();
    assert_eq!(f.query(r#"{app="a"}"#).await.len(), 20);
    assert!(f.compactor.deletes().list(T).await.unwrap().is_empty());

    let late = f.compactor.deletes().add(T, r#"{app="a"}"#, 0, NOW, NOW).await.unwrap();
    let err = f.compactor.deletes().cancel(T, &late.request_id, NOW + period, period).await.unwrap_err();
    assert!(matches!(err, DeleteError::Invalid(_)), "{err}");
    assert!(matches!(f.compactor.deletes().cancel(T, "nope", NOW, period).await, Err(DeleteError::NotFound)));
}

#[tokio::test]
async fn filter_only_hides_lines_but_never_rewrites() {
    let limits = Limits { deletion_mode: DeletionMode::FilterOnly, ..Limits::default() };
    let f = fixture(cfg(), limits);
    let a = f.write("a", &lines(NOW - 10 * H, 20)).await;
    f.compactor.deletes().add(T, r#"{app="a"} |= "public""#, 0, NOW, NOW).await.unwrap();
    f.advance(Duration::from_secs(48 * 3600));
    let stats = f.compactor.run_pass().await.unwrap();
    assert_eq!(stats.chunks_rewritten, 0);
    assert!(f.keys(&format!("{T}/chunks/")).await.contains(&a.key));
    assert_eq!(f.query(r#"{app="a"}"#).await.len(), 10);
}

#[tokio::test]
async fn delete_queries_take_line_filters_only() {
    let f = fixture(cfg(), Limits::default());
    let d = f.compactor.deletes();
    assert!(matches!(d.add(T, r#"{app="a"} | json"#, 0, 1, NOW).await, Err(DeleteError::Invalid(_))));
    assert!(matches!(d.add(T, r#"sum(rate({app="a"}[1m]))"#, 0, 1, NOW).await, Err(DeleteError::Invalid(_))));
    assert!(matches!(d.add(T, r#"{app="a"}"#, 2, 1, NOW).await, Err(DeleteError::Invalid(_))));
    d.add(T, r#"{app="a"} |~ "x.*" != "y""#, 0, 1, NOW).await.unwrap();
}

#[tokio::test]
async fn index_compaction_leaves_one_object_per_period_and_a_query_reads_one_per_period() {
    let f = fixture(cfg(), Limits::default());
    // 6 periods, 4 flushes each (one index object per flush).
    for p in 0..6 {
        for i in 0..4 {
            f.write(&format!("app{i}"), &lines(NOW - (10 - p) * H, 3)).await;
        }
    }
    assert_eq!(f.keys(&format!("{T}/index/")).await.len(), 24);
    let stats = f.compactor.run_pass().await.unwrap();
    assert_eq!((stats.periods_compacted, stats.index_objects_written, stats.index_objects_removed), (6, 6, 24));
    assert_eq!(f.keys(&format!("{T}/index/")).await.len(), 6);
    // A cold querier (empty index cache) reads exactly one index object per period.
    let cold = fixture_on(f.raw.clone(), Arc::new(CountingStore::new(f.raw.clone())), cfg(), Limits::default());
    assert_eq!(cold.query(r#"{app=~"app.*"}"#).await.len(), 72);
    assert_eq!(cold.store.index_gets.load(std::sync::atomic::Ordering::Relaxed), 6);
    // A second pass has nothing to do.
    let again = f.compactor.run_pass().await.unwrap();
    assert_eq!(again.periods_compacted, 0);
}

/// The state a pass leaves: every chunk object and every indexed chunk key.
async fn state(f: &Fixture) -> (BTreeSet<String>, BTreeSet<String>) {
    let objects = f.keys(&format!("{T}/chunks/")).await;
    let indexed = f.index.chunks(T, i64::MIN / 2, i64::MAX / 2).await.unwrap().into_iter().map(|r| r.key).collect();
    (objects, indexed)
}

async fn crash_fixture() -> Fixture {
    let f = fixture(CompactorConfig { retention_delete_delay: Dur::secs(0), ..cfg() }, retention_limits());
    f.write("a", &lines(NOW - 48 * H, 10)).await;
    f.write("a", &lines(NOW - 30 * H, 200)).await;
    f.write("a", &lines(NOW - 10 * H, 20)).await;
    f.write("b", &lines(NOW - 10 * H, 20)).await;
    f.write("short", &lines(NOW - 5 * H, 10)).await;
    f.compactor.deletes().add(T, r#"{app="a"} |= "secret""#, NOW - 11 * H, NOW - 9 * H, NOW - 25 * H).await.unwrap();
    f.compactor.deletes().add(T, r#"{app="b"}"#, NOW - 11 * H, NOW - 9 * H, NOW - 25 * H).await.unwrap();
    f
}

#[tokio::test]
async fn a_pass_cut_at_any_write_leaves_no_dangling_index_entry_and_the_next_pass_converges() {
    let reference = crash_fixture().await;
    let writes_before = reference.store.calls.put.load(std::sync::atomic::Ordering::Relaxed)
        + reference.store.calls.delete.load(std::sync::atomic::Ordering::Relaxed);
    reference.compactor.run_pass().await.unwrap();
    let writes = reference.store.calls.put.load(std::sync::atomic::Ordering::Relaxed)
        + reference.store.calls.delete.load(std::sync::atomic::Ordering::Relaxed)
        - writes_before;
    let expected = state(&reference).await;
    assert!(writes > 10, "the pass should do real work ({writes} writes)");
    assert_eq!(expected.0, expected.1, "an uninterrupted pass leaves exactly the indexed chunks");
    let expected_lines = reference.query(r#"{app=~".+"}"#).await;
    for cut in 0..writes {
        let f = crash_fixture().await;
        f.store.fail_writes_after(cut);
        assert!(f.compactor.run_pass().await.is_err(), "cut {cut} should fail the pass");
        assert_eq!(dangling_refs(&*f.store, &f.index, T).await.unwrap(), Vec::<String>::new(), "cut at write {cut}");
        assert_eq!(f.query(r#"{app=~".+"}"#).await, expected_lines, "cut at write {cut}: queries changed");
        f.store.heal();
        f.compactor.run_pass().await.unwrap();
        assert_eq!(state(&f).await, expected, "cut at write {cut}: the next pass did not converge");
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_compactor_waits_until_the_first_stops_renewing() {
    let kv: Arc<dyn crate::ring::kv::KvStore> = Arc::new(MemoryKv::new());
    let ttl = Duration::from_secs(30);
    let first = Lease::new(kv.clone(), "lease".into(), "first".into(), ttl);
    let second = Lease::new(kv.clone(), "lease".into(), "second".into(), ttl);
    let never = CancellationToken::new();
    let v = first.acquire(&never).await.unwrap();
    let (stop, lost) = (CancellationToken::new(), CancellationToken::new());
    let keeper = tokio::spawn({
        let (first, stop, lost) = (first.clone(), stop.clone(), lost.clone());
        async move { first.keep(v, stop, lost).await }
    });
    let waiter = tokio::spawn({
        let never = never.clone();
        async move { second.acquire(&never).await }
    });
    tokio::time::sleep(ttl * 5).await;
    assert!(!waiter.is_finished(), "the second took a lease that is being renewed");
    // The first dies without releasing: the second takes over within about two ttls.
    keeper.abort();
    let started = tokio::time::Instant::now();
    assert!(waiter.await.unwrap().is_some());
    assert!(started.elapsed() <= ttl * 2, "took {:?}", started.elapsed());
    assert_eq!(first.current().await.unwrap().unwrap().holder, "second");
    // The first notices on its next renewal.
    assert!(matches!(first.renew(v).await, Err(lease::LeaseLost::TakenOver(_))));
    let _ = (stop, lost);
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_once() {
    let kv: Arc<dyn crate::ring::kv::KvStore> = Arc::new(MemoryKv::new());
    let ttl = Duration::from_secs(30);
    let first = Lease::new(kv.clone(), "lease".into(), "first".into(), ttl);
    let second = Lease::new(kv, "lease".into(), "second".into(), ttl);
    let never = CancellationToken::new();
    let v = first.acquire(&never).await.unwrap();
    let stop = CancellationToken::new();
    stop.cancel();
    first.keep(v, stop, CancellationToken::new()).await;
    let started = tokio::time::Instant::now();
    assert!(second.acquire(&never).await.is_some());
    assert!(started.elapsed() < ttl, "took {:?}", started.elapsed());
}
