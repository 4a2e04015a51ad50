//! Test and benchmark support for the compactor: a store that counts (and can fail) calls,
//! writing real chunks the way an ingester flushes them, and the index consistency check that
//! the crash tests assert.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::chunk::{Codec, DEFAULT_BLOCK_SIZE, MemChunk};
use crate::labels::Labels;
use crate::storage::{ChunkRef, Index, ObjectMeta, ObjectStore, StorageError, chunk_key};

/// Object-store calls by kind.
#[derive(Debug, Default)]
pub struct CallCounts {
    pub get: AtomicU64,
    pub get_range: AtomicU64,
    pub put: AtomicU64,
    pub head: AtomicU64,
    pub list: AtomicU64,
    pub delete: AtomicU64,
}

impl CallCounts {
    /// Every call so far.
    pub fn total(&self) -> u64 {
        [&self.get, &self.get_range, &self.put, &self.head, &self.list, &self.delete]
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }
}

/// Wraps a store, counting its calls; with [`CountingStore::fail_writes_after`] every put and
/// delete after the n-th fails, which leaves the store as a process killed at that point would.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    pub calls: CallCounts,
    /// GETs of index objects (keys containing `/index/`).
    pub index_gets: AtomicU64,
    /// Writes (puts and deletes) allowed before they start failing.
    writes_left: AtomicU64,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            calls: CallCounts::default(),
            index_gets: AtomicU64::new(0),
            writes_left: AtomicU64::new(u64::MAX),
        }
    }

    /// Lets `n` more writes succeed, then fails every write.
    pub fn fail_writes_after(&self, n: u64) {
        self.writes_left.store(n, Ordering::SeqCst);
    }

    /// Lets every write succeed again.
    pub fn heal(&self) {
        self.writes_left.store(u64::MAX, Ordering::SeqCst);
    }

    fn write_allowed(&self) -> Result<(), StorageError> {
        let left = self.writes_left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(StorageError::Unavailable("injected failure".into()));
        }
        if left != u64::MAX {
            self.writes_left.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.calls.put.fetch_add(1, Ordering::Relaxed);
        self.write_allowed()?;
        self.inner.put(key, data).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        self.calls.get.fetch_add(1, Ordering::Relaxed);
        if key.contains("/index/") {
            self.index_gets.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        self.calls.get_range.fetch_add(1, Ordering::Relaxed);
        self.inner.get_range(key, range).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        self.calls.head.fetch_add(1, Ordering::Relaxed);
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.calls.list.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix).await
    }

    async fn list_prefixes(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.calls.list.fetch_add(1, Ordering::Relaxed);
        self.inner.list_prefixes(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.calls.delete.fetch_add(1, Ordering::Relaxed);
        self.write_allowed()?;
        self.inner.delete(key).await
    }
}

/// Writes one chunk of `labels` holding `entries` (ts, line) and its index entry, the way an
/// ingester flushes: the object first, then the index.
pub async fn write_chunk(
    store: &dyn ObjectStore,
    index: &Index,
    tenant: &str,
    labels: &Arc<Labels>,
    entries: &[(i64, String)],
) -> Result<ChunkRef, StorageError> {
    let cref = put_chunk(store, tenant, labels, entries).await?;
    index.write(tenant, std::slice::from_ref(&cref)).await?;
    Ok(cref)
}

/// Writes one chunk object (no index entry) and returns its reference.
pub async fn put_chunk(
    store: &dyn ObjectStore,
    tenant: &str,
    labels: &Arc<Labels>,
    entries: &[(i64, String)],
) -> Result<ChunkRef, StorageError> {
    let mut chunk = MemChunk::new(Codec::default(), DEFAULT_BLOCK_SIZE);
    for (ts, line) in entries {
        chunk.append(*ts, line.as_bytes(), &[]).map_err(|e| StorageError::Invalid(e.to_string()))?;
    }
    chunk.close();
    let (from, through) = chunk.bounds().ok_or_else(|| StorageError::Invalid("empty chunk".into()))?;
    let bytes = chunk.encode();
    let checksum = crc32c::crc32c(&bytes);
    let fingerprint = labels.fingerprint(tenant);
    let key = chunk_key(tenant, fingerprint, from, through, checksum);
    let cref = ChunkRef {
        fingerprint,
        labels: labels.clone(),
        from,
        through,
        key: key.clone(),
        size: bytes.len() as u32,
        entries: chunk.len() as u32,
        uncompressed: chunk.uncompressed_size() as u64,
        checksum,
    };
    store.put(&key, bytes).await?;
    Ok(cref)
}

/// Index entries of `tenant` whose chunk object does not exist: what must always be empty.
pub async fn dangling_refs(store: &dyn ObjectStore, index: &Index, tenant: &str) -> Result<Vec<String>, StorageError> {
    let existing: HashSet<String> =
        store.list(&format!("{tenant}/chunks/")).await?.into_iter().map(|m| m.key).collect();
    let mut out = Vec::new();
    for p in index.tenant_periods(tenant).await? {
        let keys = index.period_objects(tenant, p).await?;
        for r in index.read_objects(tenant, &keys).await? {
            if !existing.contains(&r.key) {
                out.push(r.key);
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
