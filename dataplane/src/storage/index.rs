//! The chunk index: which chunks hold a tenant's data for a time range.
//!
//! Ingesters call [`Index::write`] after their chunks are in the store; queriers call
//! [`Index::chunks`] and [`Index::series`]. The index lives in the same object store as the
//! chunks (layout in the [module documentation](super)), as immutable objects: one per period per
//! write, named by content hash. [`Index::compact`] merges a period's objects into one so that a
//! cold querier fetches a few objects per period instead of one per flush.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use tracing::debug;
use xxhash_rust::xxh3::xxh3_64;

use crate::labels::Labels;

use super::IndexCacheStats;
use super::index_codec::{self, IndexObject, encode_index_object};
use super::{IndexConfig, ObjectStore, StorageError, validate_key};
use crate::lru::Lru;

/// Index objects fetched in parallel by one query.
const FETCH_CONCURRENCY: usize = 16;
/// Periods listed (and index objects written) in parallel.
const PERIOD_CONCURRENCY: usize = 8;
/// Above this many periods in a query range, the existing periods are listed instead of probing
/// each one.
const ENUMERATE_PERIODS_MAX: i128 = 64;
/// A chunk spanning more periods than this is a bug upstream, not something to index.
const MAX_PERIODS_PER_CHUNK: i128 = 10_000;
/// How often a period is re-listed when an object vanished (compacted) while being read.
const RELIST_ATTEMPTS: usize = 3;
/// Index objects larger than this are decoded on the blocking pool.
const DECODE_INLINE_MAX: usize = 256 << 10;
/// Suffix of index object names; other names in an index directory are ignored.
const INDEX_SUFFIX: &str = ".idx";

/// The object key of a chunk: derived from the tenant, the stream, its time range and the
/// checksum of its content, so that replicas flushing the same chunk write the same object.
///
/// `{tenant}/chunks/{fingerprint:016x}/{from:x}-{through:x}-{checksum:08x}`
pub fn chunk_key(tenant: &str, fingerprint: u64, from: i64, through: i64, checksum: u32) -> String {
    format!("{tenant}/chunks/{fingerprint:016x}/{from:x}-{through:x}-{checksum:08x}")
}

/// Where a chunk is and what it holds: what the index maps a series and time range to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    /// The stream's fingerprint ([`Labels::fingerprint`] with the tenant).
    pub fingerprint: u64,
    /// The stream's labels, sorted by name: queriers match selectors against them without
    /// opening the chunk.
    pub labels: Arc<Labels>,
    /// Timestamp of the first entry, in nanoseconds since the epoch.
    pub from: i64,
    /// Timestamp of the last entry (inclusive), in nanoseconds since the epoch.
    pub through: i64,
    /// The chunk's object key, normally [`chunk_key`] of the fields above.
    pub key: String,
    /// Size of the chunk object in bytes, for query planning and memory budgets.
    pub size: u32,
    /// Number of entries, for stats queries without reading the chunk.
    pub entries: u32,
    /// Bytes of lines and structured metadata before compression, for `index/stats` and
    /// `index/volume` without reading the chunk.
    pub uncompressed: u64,
    /// Checksum of the chunk's content (part of the key; lets a reader verify what it fetched).
    pub checksum: u32,
}

impl ChunkRef {
    /// The order index objects store references in: by stream, then time, key and labels.
    pub fn storage_order(&self, other: &ChunkRef) -> std::cmp::Ordering {
        (self.fingerprint, self.from, self.through, &self.key, &self.labels).cmp(&(
            other.fingerprint,
            other.from,
            other.through,
            &other.key,
            &other.labels,
        ))
    }

    /// Whether the chunk has entries in `[from, through]`.
    pub fn overlaps(&self, from: i64, through: i64) -> bool {
        self.from <= through && self.through >= from
    }
}

/// What [`Index::compact`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Periods whose objects were merged.
    pub periods: u64,
    /// Index objects merged and removed.
    pub objects_removed: u64,
    /// Index objects written (one per compacted period).
    pub objects_written: u64,
}

/// The chunk index of every tenant, over an object store.
#[derive(Debug)]
pub struct Index {
    /// Where index objects are read and written (the chunk store).
    store: Arc<dyn ObjectStore>,
    /// The time span of one period in nanoseconds, at least 1.
    period_ns: i64,
    /// Decoded index objects, which never change once written.
    /// Decoded index objects: they never change once written (their name is their content
    /// hash), so a cached object is never stale.
    cache: Lru<Arc<IndexObject>>,
}

impl Index {
    /// An index over `store` with periods of `period` (rounded to whole nanoseconds, at least
    /// 1ns) and the default cache size. The period is part of the storage layout: every process
    /// must use the same one, forever.
    pub fn new(store: Arc<dyn ObjectStore>, period: Duration) -> Self {
        Self::with_config(store, &IndexConfig { period: crate::config::units::Dur(period), ..IndexConfig::default() })
    }

    /// An index over `store` with the period and cache size of `storage.index`.
    pub fn with_config(store: Arc<dyn ObjectStore>, cfg: &IndexConfig) -> Self {
        let period_ns = i64::try_from(cfg.period.get().as_nanos()).unwrap_or(i64::MAX).max(1);
        Self { store, period_ns, cache: Lru::new(cfg.cache_bytes.bytes(), None) }
    }

    /// The time span one period covers.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns as u64)
    }

    /// The period a timestamp (ns) falls in.
    pub fn period_of(&self, ts: i64) -> i64 {
        ts.div_euclid(self.period_ns)
    }

    /// Hit/miss counters and size of the cache of decoded index objects.
    pub fn cache_stats(&self) -> IndexCacheStats {
        self.cache.stats()
    }

    /// Records `refs` (chunks already in the store) for `tenant`: one index object for each
    /// period the refs overlap. Writing the same refs again writes the same objects.
    pub async fn write(&self, tenant: &str, refs: &[ChunkRef]) -> Result<(), StorageError> {
        check_tenant(tenant)?;
        let mut by_period: BTreeMap<i64, Vec<&ChunkRef>> = BTreeMap::new();
        for r in refs {
            if r.from > r.through {
                return Err(StorageError::Invalid(format!(
                    "chunk {} ends ({}) before it starts ({})",
                    r.key, r.through, r.from
                )));
            }
            validate_key(&r.key)?;
            let (first, last) = (self.period_of(r.from), self.period_of(r.through));
            if i128::from(last) - i128::from(first) >= MAX_PERIODS_PER_CHUNK {
                return Err(StorageError::Invalid(format!(
                    "chunk {} spans more than {MAX_PERIODS_PER_CHUNK} index periods",
                    r.key
                )));
            }
            for p in first..=last {
                by_period.entry(p).or_default().push(r);
            }
        }
        let objects: Vec<(String, Bytes)> = by_period
            .into_iter()
            .map(|(p, refs)| {
                let data = encode_index_object(tenant, refs);
                (object_key(tenant, p, &data), Bytes::from(data))
            })
            .collect();
        debug!(tenant, refs = refs.len(), objects = objects.len(), "writing index objects");
        stream::iter(objects)
            .map(|(key, data)| async move { self.store.put(&key, data).await })
            .buffer_unordered(PERIOD_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// The chunks of `tenant` with entries in `[from, through]` (ns, inclusive), each once,
    /// sorted by (fingerprint, from).
    pub async fn chunks(&self, tenant: &str, from: i64, through: i64) -> Result<Vec<ChunkRef>, StorageError> {
        check_tenant(tenant)?;
        if from > through {
            return Ok(Vec::new());
        }
        let periods = self.periods(tenant, from, through).await?;
        let objects: Vec<Vec<Arc<IndexObject>>> = stream::iter(periods)
            .map(|p| self.load_period(tenant, p))
            .buffer_unordered(PERIOD_CONCURRENCY)
            .try_collect()
            .await?;
        let mut seen: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        for object in objects.iter().flatten() {
            for r in &object.refs {
                if r.overlaps(from, through) && seen.insert(r.key.as_str()) {
                    out.push(r.clone());
                }
            }
        }
        out.sort_by(|a, b| (a.fingerprint, a.from, a.through, &a.key).cmp(&(b.fingerprint, b.from, b.through, &b.key)));
        Ok(out)
    }

    /// The series of `tenant` with entries in `[from, through]`, sorted by fingerprint.
    pub async fn series(&self, tenant: &str, from: i64, through: i64) -> Result<Vec<(u64, Arc<Labels>)>, StorageError> {
        let mut out: Vec<(u64, Arc<Labels>)> =
            self.chunks(tenant, from, through).await?.into_iter().map(|r| (r.fingerprint, r.labels)).collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Every tenant with data in the store.
    pub async fn tenants(&self) -> Result<Vec<String>, StorageError> {
        Ok(self
            .store
            .list_prefixes("")
            .await?
            .into_iter()
            .filter_map(|p| p.strip_suffix('/').map(str::to_string))
            .collect())
    }

    /// Merges the index objects of each period of `tenant` overlapping `[from, through]` into one
    /// object per period and deletes the merged ones. Safe to run while ingesters write and
    /// queriers read (a merged object is written before its inputs are deleted, and readers
    /// re-list a period whose object vanished); meant for periods no longer written to.
    pub async fn compact(&self, tenant: &str, from: i64, through: i64) -> Result<CompactionStats, StorageError> {
        check_tenant(tenant)?;
        let mut stats = CompactionStats::default();
        if from > through {
            return Ok(stats);
        }
        for p in self.periods(tenant, from, through).await? {
            let keys = self.period_objects(tenant, p).await?;
            if keys.len() < 2 {
                continue;
            }
            let refs = match self.read_objects(tenant, &keys).await {
                Ok(r) => r,
                // A concurrent compaction got there first.
                Err(StorageError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let merged = self.replace_period(tenant, p, &refs, &keys).await?;
            stats.periods += 1;
            stats.objects_written += 1;
            stats.objects_removed += keys.iter().filter(|k| Some(*k) != merged.as_ref()).count() as u64;
            debug!(tenant, period = p, objects = keys.len(), "compacted index period");
        }
        Ok(stats)
    }

    /// Every period of `tenant` that has index objects, sorted.
    pub async fn tenant_periods(&self, tenant: &str) -> Result<Vec<i64>, StorageError> {
        check_tenant(tenant)?;
        self.periods(tenant, i64::MIN, i64::MAX).await
    }

    /// The first and last timestamp (ns) of `period`.
    pub fn period_bounds(&self, period: i64) -> (i64, i64) {
        let start = period.saturating_mul(self.period_ns);
        (start, start.saturating_add(self.period_ns - 1))
    }

    /// The keys of the index objects of one period, sorted.
    pub async fn period_objects(&self, tenant: &str, period: i64) -> Result<Vec<String>, StorageError> {
        check_tenant(tenant)?;
        self.list_period(tenant, period).await
    }

    /// The chunk references held by the index objects `keys` of `tenant`, each chunk once.
    pub async fn read_objects(&self, tenant: &str, keys: &[String]) -> Result<Vec<ChunkRef>, StorageError> {
        let objects = self.fetch_all(tenant, keys).await?;
        let mut seen: HashSet<&str> = HashSet::new();
        Ok(objects.iter().flat_map(|o| o.refs.iter()).filter(|r| seen.insert(r.key.as_str())).cloned().collect())
    }

    /// Replaces the index objects `old` of `period` with one object holding `refs` (no object
    /// when `refs` is empty): the new object is written before the old ones are deleted, so a
    /// reader (or a crash) in between sees every reference at least once. Returns the new key.
    pub async fn replace_period(
        &self,
        tenant: &str,
        period: i64,
        refs: &[ChunkRef],
        old: &[String],
    ) -> Result<Option<String>, StorageError> {
        check_tenant(tenant)?;
        let merged = if refs.is_empty() {
            None
        } else {
            let data = encode_index_object(tenant, refs);
            let key = object_key(tenant, period, &data);
            self.store.put(&key, Bytes::from(data)).await?;
            Some(key)
        };
        let stale: Vec<String> = old.iter().filter(|k| Some(*k) != merged.as_ref()).cloned().collect();
        stream::iter(stale)
            .map(|key| async move { self.store.delete(&key).await })
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(merged)
    }

    /// Whether an index object of `tenant` lists the chunk `key`, whose entries are in
    /// `[from, through]`: what must be false before the chunk's object may be deleted.
    pub async fn references(&self, tenant: &str, key: &str, from: i64, through: i64) -> Result<bool, StorageError> {
        check_tenant(tenant)?;
        for p in self.period_of(from)..=self.period_of(through) {
            let objects = self.load_period(tenant, p).await?;
            if objects.iter().any(|o| o.refs.iter().any(|r| r.key == key)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The periods to read for a query range: every period in it when there are few, otherwise
    /// the ones that exist.
    async fn periods(&self, tenant: &str, from: i64, through: i64) -> Result<Vec<i64>, StorageError> {
        let (first, last) = (self.period_of(from), self.period_of(through));
        if i128::from(last) - i128::from(first) < ENUMERATE_PERIODS_MAX {
            return Ok((first..=last).collect());
        }
        let dir = format!("{tenant}/index/");
        let mut periods: Vec<i64> = self
            .store
            .list_prefixes(&dir)
            .await?
            .iter()
            .filter_map(|p| p.strip_prefix(&dir)?.strip_suffix('/')?.parse().ok())
            .filter(|p| (first..=last).contains(p))
            .collect();
        periods.sort_unstable();
        Ok(periods)
    }

    /// Keys of the index objects of one period.
    async fn list_period(&self, tenant: &str, period: i64) -> Result<Vec<String>, StorageError> {
        Ok(self
            .store
            .list(&format!("{tenant}/index/{period}/"))
            .await?
            .into_iter()
            .map(|m| m.key)
            .filter(|k| k.ends_with(INDEX_SUFFIX))
            .collect())
    }

    /// The decoded index objects of one period.
    async fn load_period(&self, tenant: &str, period: i64) -> Result<Vec<Arc<IndexObject>>, StorageError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let keys = self.list_period(tenant, period).await?;
            match self.fetch_all(tenant, &keys).await {
                // Listed, then deleted: a compaction replaced it with a merged object.
                Err(StorageError::NotFound { key }) if attempt < RELIST_ATTEMPTS => {
                    debug!(tenant, period, key, "index object vanished, listing again");
                }
                result => return result,
            }
        }
    }

    async fn fetch_all(&self, tenant: &str, keys: &[String]) -> Result<Vec<Arc<IndexObject>>, StorageError> {
        // Owned keys: a closure over borrowed ones makes the future not `Send` for every
        // lifetime, which axum handlers need.
        stream::iter(keys.to_vec())
            .map(|key| async move { self.fetch(tenant, &key).await })
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect()
            .await
    }

    /// One decoded index object, from the cache or the store.
    async fn fetch(&self, tenant: &str, key: &str) -> Result<Arc<IndexObject>, StorageError> {
        if let Some(object) = self.cache.get(key) {
            return Ok(object);
        }
        let data = self.store.get(key).await?;
        let object = if data.len() <= DECODE_INLINE_MAX {
            index_codec::decode(tenant, key, &data)?
        } else {
            let (tenant, key_owned) = (tenant.to_string(), key.to_string());
            tokio::task::spawn_blocking(move || index_codec::decode(&tenant, &key_owned, &data)).await.map_err(
                |e| StorageError::Corrupt { key: key.to_string(), reason: format!("decoder task failed: {e}") },
            )??
        };
        let object = Arc::new(object);
        self.cache.insert(key, Arc::clone(&object), object.mem_bytes + 64);
        Ok(object)
    }
}

/// The key of an index object: named by a hash of its content.
fn object_key(tenant: &str, period: i64, data: &[u8]) -> String {
    format!("{tenant}/index/{period}/{:016x}{INDEX_SUFFIX}", xxh3_64(data))
}

/// A tenant is one key segment.
fn check_tenant(tenant: &str) -> Result<(), StorageError> {
    if tenant.contains('/') {
        return Err(StorageError::Invalid(format!("tenant {tenant:?} must not contain '/'")));
    }
    validate_key(tenant).map_err(|_| StorageError::Invalid(format!("invalid tenant {tenant:?}")))
}
