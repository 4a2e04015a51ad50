use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::*;
use crate::config::units::{ByteSize, Dur};
use crate::labels::Labels;
use crate::limits::Limits;
use crate::storage::{IndexConfig, MemoryStore, ObjectMeta, StorageError};

const MIN: i64 = 60_000_000_000;

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<FlakyStore>,
    index: Arc<Index>,
    limits: Limits,
    cfg: IngesterConfig,
}

impl Fixture {
    fn new() -> Self {
        let store = Arc::new(FlakyStore::default());
        let index = Arc::new(Index::with_config(store.clone(), &IndexConfig::default()));
        let mut cfg = IngesterConfig::default();
        cfg.wal.sync = SyncMode::Never;
        Self { dir: tempfile::tempdir().unwrap(), store, index, limits: Limits::default(), cfg }
    }

    fn open(&self) -> Arc<Ingester> {
        let limits = Arc::new(TenantLimits::new(self.limits.clone(), &HashMap::new()).unwrap());
        Ingester::open(
            self.cfg.clone(),
            self.dir.path().join("wal"),
            limits,
            Arc::new(SingleProcess),
            self.store.clone(),
            self.index.clone(),
            Arc::new(Metrics::new()),
        )
        .unwrap()
    }
}

fn stream(tenant: &str, labels: &str, entries: &[(i64, &str)]) -> PushStream {
    let labels = Labels::parse(labels).unwrap().sorted();
    let fingerprint = labels.fingerprint(tenant);
    PushStream {
        labels: Arc::new(labels),
        fingerprint,
        entries: entries.iter().map(|(ts, l)| Entry::new(*ts, l.to_string())).collect(),
    }
}

fn all(ing: &Ingester, tenant: &str) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for (labels, entries) in ing.select(tenant, |_| true, i64::MIN, i64::MAX, Direction::Forward) {
        for e in entries {
            out.push((labels.to_string(), e.ts, String::from_utf8_lossy(&e.line).into_owned()));
        }
    }
    out
}

/// A memory store whose writes can be made to fail.
#[derive(Debug, Default)]
struct FlakyStore {
    inner: MemoryStore,
    failing: AtomicBool,
}

#[async_trait]
impl ObjectStore for FlakyStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StorageError::Unavailable("injected outage".into()));
        }
        self.inner.put(key, data).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }
}

#[tokio::test]
async fn pushes_are_readable_in_timestamp_order() {
    let f = Fixture::new();
    let ing = f.open();
    let t = 1_000 * MIN;
    let d = ing.push("t", vec![stream("t", r#"{a="1"}"#, &[(t + 2, "c"), (t, "a"), (t + 1, "b")])]).await.unwrap();
    assert!(d.is_empty());
    assert_eq!(
        all(&ing, "t"),
        vec![
            (r#"{a="1"}"#.into(), t, "a".into()),
            (r#"{a="1"}"#.into(), t + 1, "b".into()),
            (r#"{a="1"}"#.into(), t + 2, "c".into())
        ]
    );
    assert!(all(&ing, "other").is_empty(), "tenants are separate");
}

#[tokio::test]
async fn a_crash_loses_nothing_that_was_pushed() {
    let f = Fixture::new();
    let t = 1_000 * MIN;
    {
        let ing = f.open();
        for i in 0..50 {
            ing.push("t", vec![stream("t", &format!(r#"{{a="{}"}}"#, i % 5), &[(t + i, "x")])]).await.unwrap();
        }
        // Dropped without shutdown: no checkpoint, no flush.
    }
    let ing = f.open();
    assert_eq!(all(&ing, "t").len(), 50);
    assert_eq!(ing.stream_count(), 5);
}

#[tokio::test]
async fn checkpoint_then_more_pushes_replay_exactly_once() {
    let f = Fixture::new();
    let t = 1_000 * MIN;
    {
        let ing = f.open();
        ing.push("t", vec![stream("t", r#"{a="1"}"#, &[(t, "before")])]).await.unwrap();
        ing.checkpoint().unwrap();
        ing.push("t", vec![stream("t", r#"{a="1"}"#, &[(t + 1, "after")])]).await.unwrap();
    }
    let ing = f.open();
    let lines: Vec<String> = all(&ing, "t").into_iter().map(|(_, _, l)| l).collect();
    assert_eq!(lines, vec!["before", "after"]);
    // Reopening again replays the checkpoint written at the previous start.
    drop(ing);
    let ing = f.open();
    assert_eq!(all(&ing, "t").len(), 2);
}

#[tokio::test]
async fn flush_writes_chunks_and_index_then_frees_memory() {
    let f = Fixture::new();
    let ing = f.open();
    let t = 1_000 * MIN;
    ing.push("t", vec![stream("t", r#"{a="1"}"#, &[(t, "x"), (t + 1, "y")])]).await.unwrap();
    let stats = ing.flush(true).await.unwrap();
    assert_eq!(stats.flushed, 1);
    assert_eq!(stats.streams_removed, 1);
    assert_eq!(ing.stream_count(), 0);
    let refs = f.index.chunks("t", t, t + 1).await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].labels.to_string(), r#"{a="1"}"#);
    assert_eq!((refs[0].from, refs[0].through, refs[0].entries), (t, t + 1, 2));
    let chunk = crate::chunk::Chunk::decode(f.store.get(&refs[0].key).await.unwrap()).unwrap();
    assert_eq!(chunk.len(), 2);
}

#[tokio::test]
async fn failed_flushes_keep_chunks_and_retry() {
    let f = Fixture::new();
    let ing = f.open();
    let t = 1_000 * MIN;
    ing.push("t", vec![stream("t", r#"{a="1"}"#, &[(t, "x")])]).await.unwrap();
    f.store.failing.store(true, Ordering::SeqCst);
    assert!(ing.flush(true).await.is_err());
    assert_eq!(all(&ing, "t").len(), 1, "still served from memory");
    assert!(f.index.chunks("t", t, t).await.unwrap().is_empty());
    f.store.failing.store(false, Ordering::SeqCst);
    assert_eq!(ing.flush(false).await.unwrap().flushed, 0, "the failed chunk backs off before its next attempt");
    assert_eq!(ing.flush(true).await.unwrap().flushed, 1, "a forced flush does not wait");
    assert_eq!(f.index.chunks("t", t, t).await.unwrap().len(), 1);
}

#[test]
fn failed_flushes_back_off_from_one_second_to_thirty() {
    use super::stream::retry_delay;
    let secs: Vec<u64> = (1..=8).map(|n| retry_delay(n).as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    assert_eq!(retry_delay(u32::MAX).as_secs(), 30);
}

#[tokio::test]
async fn full_chunks_are_cut_at_the_target_size() {
    let mut f = Fixture::new();
    f.cfg.chunk_block_size = ByteSize(4096);
    f.cfg.chunk_target_size = ByteSize(8192);
    let ing = f.open();
    let t = 1_000 * MIN;
    // Lines that do not compress away: an xorshift sequence rendered as hex.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let lines: Vec<String> = (0..400)
        .map(|_| {
            (0..16)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("{x:016x}")
                })
                .collect()
        })
        .collect();
    let entries: Vec<(i64, &str)> = lines.iter().enumerate().map(|(i, l)| (t + i as i64, l.as_str())).collect();
    ing.push("t", vec![stream("t", r#"{a="1"}"#, &entries)]).await.unwrap();
    let stats = ing.flush(false).await.unwrap();
    assert!(stats.flushed >= 2, "{stats:?}");
    ing.flush(true).await.unwrap();
    let refs = f.index.chunks("t", t, t + 400).await.unwrap();
    assert_eq!(refs.iter().map(|r| r.entries).sum::<u32>(), 400);
    assert!(refs.iter().all(|r| (r.size as usize) < 8192 + 4096), "{refs:?}");
}

#[tokio::test]
async fn idle_chunks_are_closed_by_the_flush_loop() {
    let mut f = Fixture::new();
    f.cfg.chunk_idle_period = Dur(std::time::Duration::from_millis(1));
    let ing = f.open();
    let t = 1_000 * MIN;
    ing.push("t", vec![stream("t", r#"{a="1"}"#, &[(t, "x")])]).await.unwrap();
    let start = Instant::now();
    loop {
        if ing.flush(false).await.unwrap().flushed == 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "idle chunk never flushed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        ing.metrics.chunks_flushed.get_or_create(&crate::metrics::ReasonLabel { reason: "idle".into() }).get(),
        1
    );
}

#[tokio::test]
async fn stream_limit_refuses_new_streams_only() {
    let mut f = Fixture::new();
    f.limits.max_global_streams_per_user = 2;
    let ing = f.open();
    let t = 1_000 * MIN;
    let push: Vec<PushStream> = (0..3).map(|i| stream("t", &format!(r#"{{a="{i}"}}"#), &[(t, "x")])).collect();
    let d = ing.push("t", push).await.unwrap();
    assert_eq!(d.by_reason.len(), 1);
    assert_eq!(d.by_reason[0].0, Reason::StreamLimit);
    assert!(d.messages[0].contains(r#"when trying to create stream {a="2"}"#), "{}", d.messages[0]);
    let d = ing.push("t", vec![stream("t", r#"{a="0"}"#, &[(t + 1, "y")])]).await.unwrap();
    assert!(d.is_empty());
    assert!(ing.push("u", vec![stream("u", r#"{a="9"}"#, &[(t, "x")])]).await.unwrap().is_empty(), "per tenant");
}

#[tokio::test]
async fn ordering_rules_follow_unordered_writes() {
    let mut f = Fixture::new();
    f.cfg.max_chunk_age = Dur::hours(1);
    let ing = f.open();
    let t = 1_000 * MIN;
    ing.push("t", vec![stream("t", r#"{a="1"}"#, &[(t, "newest")])]).await.unwrap();
    let d = ing
        .push("t", vec![stream("t", r#"{a="1"}"#, &[(t - 29 * MIN, "in window"), (t - 31 * MIN, "behind")])])
        .await
        .unwrap();
    assert_eq!(d.by_reason[0].0, Reason::TooFarBehind);
    assert_eq!(d.by_reason[0].1.lines, 1);

    let mut f = Fixture::new();
    f.limits.unordered_writes = false;
    let ing = f.open();
    ing.push("t", vec![stream("t", r#"{a="1"}"#, &[(t, "newest")])]).await.unwrap();
    let d = ing.push("t", vec![stream("t", r#"{a="1"}"#, &[(t - 1, "older")])]).await.unwrap();
    assert_eq!(d.by_reason[0].0, Reason::OutOfOrder);
    assert!(d.messages[0].contains("entry out of order"), "{}", d.messages[0]);
}

#[tokio::test]
async fn shutdown_refuses_pushes_and_checkpoints() {
    let f = Fixture::new();
    let ing = f.open();
    let t = 1_000 * MIN;
    ing.push("t", vec![stream("t", r#"{a="1"}"#, &[(t, "x")])]).await.unwrap();
    ing.shutdown(false).await.unwrap();
    let e = ing.push("t", vec![stream("t", r#"{a="1"}"#, &[(t + 1, "y")])]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    drop(ing);
    let ing = f.open();
    assert_eq!(all(&ing, "t").len(), 1);
}

#[tokio::test]
async fn same_line_with_other_metadata_is_not_a_duplicate() {
    let f = Fixture::new();
    let ing = f.open();
    let t = 1_000 * MIN;
    let with = |md: &[(&str, &str)]| {
        let mut s = stream("t", r#"{a="1"}"#, &[(t, "x")]);
        s.entries[0].metadata = md.iter().map(|(n, v)| crate::labels::Label::new(*n, *v)).collect();
        s
    };
    ing.push("t", vec![with(&[("name", "alpha")])]).await.unwrap();
    ing.push("t", vec![with(&[])]).await.unwrap();
    ing.push("t", vec![with(&[("name", "")])]).await.unwrap();
    ing.push("t", vec![with(&[("name", "alpha")])]).await.unwrap();
    assert_eq!(all(&ing, "t").len(), 3, "three distinct entries, one exact duplicate");
    assert_eq!(ing.metrics.duplicate_entries.get(), 1);
}
