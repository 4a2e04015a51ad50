//! Tests of the chunk index and its object encoding.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use proptest::prelude::*;

use super::index_codec::{decode, encode_index_object};
use super::testing::MotoServer;
use super::*;
use crate::labels::Labels;

/// One hour in nanoseconds: the period of the test indexes.
const H: i64 = 3_600_000_000_000;

fn config() -> IndexConfig {
    IndexConfig {
        period: crate::config::units::Dur(Duration::from_secs(3600)),
        cache_bytes: crate::config::units::ByteSize(1 << 20),
    }
}

fn labels(app: &str, pod: &str) -> Arc<Labels> {
    Arc::new(Labels::from_pairs([("pod", pod), ("app", app)]).sorted())
}

fn chunk(tenant: &str, labels: &Arc<Labels>, from: i64, through: i64, checksum: u32) -> ChunkRef {
    let fingerprint = labels.fingerprint(tenant);
    ChunkRef {
        fingerprint,
        labels: Arc::clone(labels),
        from,
        through,
        key: chunk_key(tenant, fingerprint, from, through, checksum),
        size: 1000 + checksum,
        entries: 10,
        uncompressed: 4000 + u64::from(checksum),
        checksum,
    }
}

fn sorted(mut refs: Vec<ChunkRef>) -> Vec<ChunkRef> {
    refs.sort_by(|a, b| (a.fingerprint, a.from, &a.key).cmp(&(b.fingerprint, b.from, &b.key)));
    refs
}

async fn object_count(store: &dyn ObjectStore, prefix: &str) -> usize {
    store.list(prefix).await.expect("list").len()
}

/// The index's behaviour on any store; `store` must be empty.
async fn index_behaviour(store: Arc<dyn ObjectStore>) {
    let index = Index::with_config(Arc::clone(&store), &config());
    let (api, web1, web2) = (labels("api", "1"), labels("web", "1"), labels("web", "2"));
    let a = chunk("t1", &api, H / 2, H * 9 / 10, 1);
    // Crosses from period 0 into period 1.
    let b = chunk("t1", &api, H * 95 / 100, H * 12 / 10, 2);
    let c = chunk("t1", &web1, H * 15 / 10, H * 16 / 10, 3);
    let d = chunk("t1", &web2, H * 55 / 10, H * 56 / 10, 4);
    let all = sorted(vec![a.clone(), b.clone(), c.clone(), d.clone()]);

    index.write("t1", &[d.clone(), a.clone(), b.clone(), c.clone()]).await.expect("write");
    assert_eq!(
        store.list_prefixes("t1/index/").await.expect("list periods"),
        vec!["t1/index/0/", "t1/index/1/", "t1/index/5/"]
    );
    assert_eq!(object_count(&*store, "t1/index/").await, 3, "one object per period");
    // A retry (in any order) writes the same objects again.
    index.write("t1", &[c.clone(), b.clone(), a.clone(), d.clone()]).await.expect("rewrite");
    assert_eq!(object_count(&*store, "t1/index/").await, 3, "idempotent");

    assert_eq!(index.chunks("t1", 0, 10 * H).await.expect("chunks"), all, "each chunk once, sorted");
    assert_eq!(index.chunks("t1", H, H * 155 / 100).await.expect("chunks"), sorted(vec![b.clone(), c.clone()]));
    // Both ends are inclusive.
    assert_eq!(index.chunks("t1", a.through, a.through).await.expect("chunks"), vec![a.clone()]);
    assert_eq!(index.chunks("t1", c.through + 1, d.from - 1).await.expect("chunks"), vec![]);
    assert_eq!(index.chunks("t1", 10 * H, 0).await.expect("chunks"), vec![]);
    // A range with more periods than are probed one by one.
    assert_eq!(index.chunks("t1", i64::MIN, i64::MAX).await.expect("chunks"), all);
    assert_eq!(index.chunks("t1", -1000 * H, 1000 * H).await.expect("chunks"), all);

    let mut want_series = vec![(api.fingerprint("t1"), Arc::clone(&api)), (web1.fingerprint("t1"), Arc::clone(&web1))];
    want_series.sort();
    assert_eq!(index.series("t1", 0, 2 * H).await.expect("series"), want_series);

    // Another tenant is separate.
    let e = chunk("t2", &api, 0, 10, 5);
    index.write("t2", std::slice::from_ref(&e)).await.expect("write t2");
    assert_eq!(index.chunks("t2", 0, 10 * H).await.expect("chunks"), vec![e.clone()]);
    assert_eq!(index.chunks("t1", 0, 10 * H).await.expect("chunks"), all);
    assert_eq!(index.tenants().await.expect("tenants"), vec!["t1", "t2"]);

    // A later flush adds an object to a period; then compaction merges them.
    let f = chunk("t1", &web2, H / 10, H / 5, 6);
    index.write("t1", std::slice::from_ref(&f)).await.expect("write f");
    assert_eq!(object_count(&*store, "t1/index/0/").await, 2);
    let mut with_f = all.clone();
    with_f.push(f.clone());
    let with_f = sorted(with_f);
    assert_eq!(index.chunks("t1", 0, 10 * H).await.expect("chunks"), with_f);
    let stats = index.compact("t1", 0, 10 * H).await.expect("compact");
    assert_eq!(stats, CompactionStats { periods: 1, objects_removed: 2, objects_written: 1 });
    assert_eq!(object_count(&*store, "t1/index/0/").await, 1);
    assert_eq!(index.chunks("t1", 0, 10 * H).await.expect("chunks"), with_f);
    let fresh = Index::new(Arc::clone(&store), Duration::from_secs(3600));
    assert_eq!(fresh.period(), Duration::from_secs(3600));
    assert_eq!(fresh.chunks("t1", 0, 10 * H).await.expect("chunks"), with_f);
    assert_eq!(index.compact("t1", 0, 10 * H).await.expect("compact again"), CompactionStats::default());

    // A damaged index object is an error, not a panic or silently missing data; files that are
    // not index objects are ignored.
    store.put("t3/index/0/notes.txt", Bytes::from_static(b"hello")).await.expect("put");
    assert_eq!(index.chunks("t3", 0, H).await.expect("chunks"), vec![]);
    store.put("t3/index/0/00000000deadbeef.idx", Bytes::from_static(b"NIDX garbage")).await.expect("put");
    let err = index.chunks("t3", 0, H).await;
    assert!(matches!(err, Err(StorageError::Corrupt { .. })), "{err:?}");

    for bad in ["", "a/b", "..", "."] {
        assert!(matches!(index.write(bad, &[]).await, Err(StorageError::Invalid(_))), "tenant {bad:?}");
        assert!(matches!(index.chunks(bad, 0, 1).await, Err(StorageError::Invalid(_))));
    }
    let mut backwards = chunk("t1", &api, 10, 20, 7);
    backwards.through = 5;
    assert!(matches!(index.write("t1", &[backwards]).await, Err(StorageError::Invalid(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_on_memory_store() {
    index_behaviour(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_on_filesystem_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    index_behaviour(Arc::new(FilesystemStore::new(dir.path()).expect("store"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_on_s3_store() {
    let moto = MotoServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let store = moto.store("norn-index").await.unwrap_or_else(|e| panic!("{e}"));
    index_behaviour(Arc::new(store)).await;
}

#[tokio::test]
async fn queries_are_served_from_the_cache() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let index = Index::with_config(Arc::clone(&store), &config());
    let api = labels("api", "1");
    for i in 0..5 {
        let r = chunk("t", &api, i * H, i * H + 10, i as u32);
        index.write("t", &[r]).await.expect("write");
    }
    assert_eq!(index.chunks("t", 0, 5 * H).await.expect("chunks").len(), 5);
    let first = index.cache_stats();
    assert_eq!((first.misses, first.hits, first.entries), (5, 0, 5));
    assert_eq!(index.chunks("t", 0, 5 * H).await.expect("chunks").len(), 5);
    let second = index.cache_stats();
    assert_eq!((second.misses, second.hits), (5, 5));

    // A cache too small for everything keeps the most recent objects within its budget.
    let tiny = Index::with_config(
        store,
        &IndexConfig { cache_bytes: crate::config::units::ByteSize(first.bytes / 2), ..config() },
    );
    assert_eq!(tiny.chunks("t", 0, 5 * H).await.expect("chunks").len(), 5);
    let stats = tiny.cache_stats();
    assert!(stats.bytes <= first.bytes / 2 && stats.entries < 5, "{stats:?}");
}

/// A store whose next listing is one taken earlier: what a querier sees when a compaction runs
/// between its `list` and its `get`s.
#[derive(Debug)]
struct StaleListing {
    inner: Arc<dyn ObjectStore>,
    stale: Mutex<Option<Vec<ObjectMeta>>>,
}

#[async_trait]
impl ObjectStore for StaleListing {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.inner.put(key, data).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, r: std::ops::Range<u64>) -> Result<Bytes, StorageError> {
        self.inner.get_range(key, r).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        if let Some(stale) = self.stale.lock().take() {
            return Ok(stale);
        }
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }
}

#[tokio::test]
async fn a_reader_racing_a_compaction_lists_again() {
    let inner: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let store = Arc::new(StaleListing { inner: Arc::clone(&inner), stale: Mutex::new(None) });
    let writer = Index::with_config(Arc::clone(&inner), &config());
    let api = labels("api", "1");
    let refs: Vec<ChunkRef> = (0..3).map(|i| chunk("t", &api, i, i + 1, i as u32)).collect();
    for r in &refs {
        writer.write("t", std::slice::from_ref(r)).await.expect("write");
    }
    let before = inner.list("t/index/0/").await.expect("list");
    assert_eq!(before.len(), 3);
    writer.compact("t", 0, H).await.expect("compact");
    *store.stale.lock() = Some(before);

    let reader = Index::with_config(store, &config());
    assert_eq!(reader.chunks("t", 0, H).await.expect("chunks"), refs);
}

#[test]
fn chunk_keys_are_derived_from_stream_and_content() {
    assert_eq!(chunk_key("tenant-1", 0xabc, 0x10, 0x20, 0xdead), "tenant-1/chunks/0000000000000abc/10-20-0000dead");
    assert!(validate_key(&chunk_key("t", u64::MAX, -1, i64::MAX, u32::MAX)).is_ok());
}

#[test]
fn labels_are_stored_once_per_object() {
    let l = Arc::new(Labels::from_pairs([("app", "a-rather-long-application-name"), ("namespace", "production")]));
    let refs: Vec<ChunkRef> =
        (0..1000).map(|i| chunk("t", &l, i * 1_000_000_000, i * 1_000_000_000 + 999, i as u32)).collect();
    let data = encode_index_object("t", &refs);
    let needle = b"a-rather-long-application-name";
    let occurrences = data.windows(needle.len()).filter(|w| w == needle).count();
    assert_eq!(occurrences, 1);
    assert!(data.len() < 1000 * 24, "{} bytes for 1000 refs", data.len());
    let back = decode("t", "k", &data).expect("decode");
    assert_eq!(back.refs, refs);
    assert!(
        back.refs.iter().all(|r| Arc::ptr_eq(&r.labels, &back.refs[0].labels)),
        "decoded refs of a series share one label set"
    );
}

#[test]
fn unsupported_version_is_reported() {
    let mut data = encode_index_object("t", &[chunk("t", &labels("a", "b"), 0, 1, 1)]);
    data[4] = 2;
    let n = data.len();
    let crc = crc32c::crc32c(&data[..n - 4]);
    data[n - 4..].copy_from_slice(&crc.to_le_bytes());
    let e = decode("t", "k", &data).expect_err("version 2");
    assert!(e.to_string().contains("unsupported version 2"), "{e}");
}

fn arb_refs() -> impl Strategy<Value = Vec<ChunkRef>> {
    let label_set = prop::collection::vec(("[a-c_]{1,3}", "[a-z0-9 é\"]{0,6}"), 0..4)
        .prop_map(|pairs| Arc::new(Labels::from_pairs(pairs).sorted()));
    let one = (
        label_set,
        -1_000_000_000_000_000_000i64..1_000_000_000_000_000_000,
        0i64..10_000_000_000_000,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        prop::option::weighted(0.2, "[a-z]{1,8}(/[a-z0-9]{1,8}){0,3}"),
    )
        .prop_map(|(labels, from, span, size, entries, checksum, explicit)| {
            let fingerprint = labels.fingerprint("tenant");
            let through = from + span;
            ChunkRef {
                key: explicit.unwrap_or_else(|| chunk_key("tenant", fingerprint, from, through, checksum)),
                fingerprint,
                labels,
                from,
                through,
                size,
                entries,
                uncompressed: u64::from(size) * 3,
                checksum,
            }
        });
    prop::collection::vec(one, 0..40)
}

fn canonical(mut refs: Vec<ChunkRef>) -> Vec<ChunkRef> {
    refs.sort_by(ChunkRef::storage_order);
    refs.dedup();
    refs
}

proptest! {
    #[test]
    fn index_objects_round_trip(refs in arb_refs()) {
        let data = encode_index_object("tenant", &refs);
        let back = decode("tenant", "k", &data).expect("decode");
        prop_assert_eq!(back.refs, canonical(refs));
    }

    #[test]
    fn encoding_ignores_order_and_duplicates(
        (refs, shuffled) in arb_refs().prop_flat_map(|r| (Just(r.clone()), Just(r).prop_shuffle()))
    ) {
        let mut doubled = shuffled.clone();
        doubled.extend(shuffled);
        prop_assert_eq!(
            encode_index_object("tenant", &refs),
            encode_index_object("tenant", &doubled)
        );
    }

    #[test]
    fn a_damaged_byte_is_detected(refs in arb_refs(), pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut data = encode_index_object("tenant", &refs);
        let i = pos.index(data.len());
        data[i] ^= flip;
        prop_assert!(decode("tenant", "k", &data).is_err());
    }

    #[test]
    fn truncation_is_detected(refs in arb_refs(), cut in any::<prop::sample::Index>()) {
        let data = encode_index_object("tenant", &refs);
        let n = cut.index(data.len());
        prop_assert!(decode("tenant", "k", &data[..n]).is_err());
    }

    #[test]
    fn damage_behind_a_valid_checksum_never_panics(
        refs in arb_refs(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut data = encode_index_object("tenant", &refs);
        let body = data.len() - 4;
        for (pos, byte) in edits {
            data[pos.index(body)] = byte;
        }
        let crc = crc32c::crc32c(&data[..body]);
        data[body..].copy_from_slice(&crc.to_le_bytes());
        // Either outcome is fine; what matters is an answer instead of a panic.
        let _ = decode("tenant", "k", &data);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode("tenant", "k", &data);
        let mut with_magic = b"NIDX\x01\x00".to_vec();
        with_magic.extend_from_slice(&data);
        let crc = crc32c::crc32c(&with_magic);
        with_magic.extend_from_slice(&crc.to_le_bytes());
        let _ = decode("tenant", "k", &with_magic);
    }
}
