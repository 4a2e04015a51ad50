//! The querier's chunk cache (`chunk_store_config.chunk_cache_config`, as in Loki): chunks
//! fetched from the object store, verified and opened, kept in an in-process LRU so the time
//! splits of one query — which the query frontend hands to the same queriers — and the queries
//! that follow read each chunk from the store once. Chunks never change once written (their key
//! holds their checksum), so a cached chunk is never stale.
//!
//! Fetches are single-flight: splits running at once that need the same chunk wait for one
//! fetch instead of each starting their own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::chunk::{Chunk, ChunkNeedles};
use crate::lru::{EmbeddedCacheConfig, Lru, LruStats};
use crate::query::EvalError;

/// `chunk_store_config`: how the querier reads chunks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkStoreConfig {
    pub chunk_cache_config: ChunkCacheConfig,
    /// Norn's own: the needle indexes of chunks read before.
    pub needle_cache_config: NeedleCacheConfig,
}

/// `chunk_store_config.chunk_cache_config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkCacheConfig {
    /// The in-process cache: on by default (100 MB per querier; entries live an hour).
    pub embedded_cache: EmbeddedCacheConfig,
}

/// `chunk_store_config.needle_cache_config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeedleCacheConfig {
    /// The in-process cache: on by default (100 MB per querier, the indexes of about 3 GB of
    /// chunks; entries live an hour, like every embedded cache's).
    pub embedded_cache: EmbeddedCacheConfig,
}

/// The needle indexes of chunks the querier has read ([`Chunk::needles`]), by object key: a
/// search whose line filter needs a token ([`crate::query::pipeline::NeedlePlan`]) does not
/// fetch a chunk whose every block's index rules the token out. A few kilobytes per chunk
/// (about 3% of its size), so it holds far more chunks than the chunk cache can.
#[derive(Debug)]
pub struct NeedleCache {
    lru: Lru<Arc<ChunkNeedles>>,
}

impl NeedleCache {
    /// The cache `cfg` describes, `None` when it is disabled.
    pub fn from_config(cfg: &NeedleCacheConfig) -> Option<Arc<NeedleCache>> {
        let e = &cfg.embedded_cache;
        (e.enabled && e.max_size_mb > 0).then(|| Arc::new(Self::new(e.max_bytes(), e.ttl.get())))
    }

    pub fn new(max_bytes: u64, ttl: std::time::Duration) -> Self {
        Self { lru: Lru::new(max_bytes, Some(ttl)) }
    }

    /// The indexes of the chunk under `key`, when it was read before.
    pub fn get(&self, key: &str) -> Option<Arc<ChunkNeedles>> {
        self.lru.get(key)
    }

    /// Remembers the indexes of `chunk`, read under `key`, unless they are known.
    pub fn remember(&self, key: &str, chunk: &Chunk) {
        if self.lru.contains(key) {
            return;
        }
        let needles = chunk.needles();
        let size = needles.held_bytes() as u64;
        self.lru.insert(key, Arc::new(needles), size);
    }

    /// Hits, misses and occupancy.
    pub fn stats(&self) -> LruStats {
        self.lru.stats()
    }
}

type Slot = Arc<OnceCell<Arc<Chunk>>>;

/// Verified, opened chunks by object key.
#[derive(Debug)]
pub struct ChunkCache {
    lru: Lru<Arc<Chunk>>,
    /// Fetches in flight, so concurrent readers of one chunk share one.
    inflight: Mutex<HashMap<String, Slot>>,
}

impl ChunkCache {
    /// The cache `cfg` describes, `None` when it is disabled.
    pub fn from_config(cfg: &ChunkCacheConfig) -> Option<Arc<ChunkCache>> {
        let e = &cfg.embedded_cache;
        (e.enabled && e.max_size_mb > 0).then(|| Arc::new(Self::new(e.max_bytes(), e.ttl.get())))
    }

    pub fn new(max_bytes: u64, ttl: std::time::Duration) -> Self {
        Self { lru: Lru::new(max_bytes, Some(ttl)), inflight: Mutex::new(HashMap::new()) }
    }

    /// The chunk under `key`: from memory, from a fetch another reader has in flight, or from
    /// `fetch` (which downloads, verifies and opens it). The flag tells whether this call
    /// fetched. A failed fetch is not remembered: the next reader tries again.
    pub async fn get_or_fetch<F, Fut>(&self, key: &str, fetch: F) -> Result<(Arc<Chunk>, bool), EvalError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Chunk, EvalError>>,
    {
        if let Some(chunk) = self.lru.get(key) {
            return Ok((chunk, false));
        }
        let slot = self.inflight.lock().entry(key.to_string()).or_default().clone();
        // The first reader done with the slot retires it, also when its query is cancelled
        // mid-fetch: later readers find the chunk in the LRU, or fetch again.
        let _retire = Retire { cache: self, key, slot: &slot };
        let mut fetched = false;
        let chunk = slot
            .get_or_try_init(|| async {
                fetched = true;
                let chunk = Arc::new(fetch().await?);
                self.lru.insert(key, chunk.clone(), chunk.compressed_size() as u64);
                Ok::<_, EvalError>(chunk)
            })
            .await?;
        Ok((chunk.clone(), fetched))
    }

    /// Hits, misses and occupancy.
    pub fn stats(&self) -> LruStats {
        self.lru.stats()
    }
}

/// Removes a fetch's slot from the in-flight map when the reader that made it is done with it.
struct Retire<'a> {
    cache: &'a ChunkCache,
    key: &'a str,
    slot: &'a Slot,
}

impl Drop for Retire<'_> {
    fn drop(&mut self) {
        let mut inflight = self.cache.inflight.lock();
        if inflight.get(self.key).is_some_and(|s| Arc::ptr_eq(s, self.slot)) {
            inflight.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::chunk::{Codec, DEFAULT_BLOCK_SIZE, MemChunk};

    fn chunk() -> Chunk {
        let mut c = MemChunk::new(Codec::default(), DEFAULT_BLOCK_SIZE);
        c.append(1, b"line", &[]).unwrap();
        Chunk::decode(c.encode()).unwrap()
    }

    #[tokio::test]
    async fn readers_at_once_share_one_fetch_and_later_ones_hit() {
        let cache = ChunkCache::new(1 << 20, Duration::from_secs(60));
        let fetches = AtomicUsize::new(0);
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let fetches = &fetches;
        let read = || {
            let mut gate = gate_rx.clone();
            cache.get_or_fetch("k", move || async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                // Held open until every reader is waiting on it.
                gate.wait_for(|open| *open).await.unwrap();
                Ok(chunk())
            })
        };
        let all = futures::future::join_all((0..8).map(|_| read()));
        let opener = async {
            tokio::task::yield_now().await;
            gate_tx.send(true).unwrap();
        };
        let (results, ()) = tokio::join!(all, opener);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        let fetched: Vec<bool> = results.into_iter().map(|r| r.unwrap().1).collect();
        assert_eq!(fetched.iter().filter(|f| **f).count(), 1, "{fetched:?}");
        let (_, fetched) = cache.get_or_fetch("k", || async { panic!("cached") }).await.unwrap();
        assert!(!fetched);
        assert_eq!(cache.stats().entries, 1);
    }

    #[tokio::test]
    async fn a_failed_fetch_is_not_remembered() {
        let cache = ChunkCache::new(1 << 20, Duration::from_secs(60));
        let err = cache.get_or_fetch("k", || async { Err(EvalError::Storage("store down".into())) }).await;
        assert!(matches!(err, Err(EvalError::Storage(m)) if m == "store down"));
        let (_, fetched) = cache.get_or_fetch("k", || async { Ok(chunk()) }).await.unwrap();
        assert!(fetched, "the second reader fetches again");
    }

    #[tokio::test]
    async fn a_fetch_cancelled_midway_leaves_nothing_behind() {
        let cache = ChunkCache::new(1 << 20, Duration::from_secs(60));
        let stuck = cache.get_or_fetch("k", futures::future::pending);
        assert!(tokio::time::timeout(Duration::from_millis(10), stuck).await.is_err());
        assert!(cache.inflight.lock().is_empty());
        let (_, fetched) = cache.get_or_fetch("k", || async { Ok(chunk()) }).await.unwrap();
        assert!(fetched);
    }

    #[test]
    fn disabled_by_config() {
        let mut cfg = ChunkCacheConfig::default();
        assert!(ChunkCache::from_config(&cfg).is_some(), "on by default");
        cfg.embedded_cache.enabled = false;
        assert!(ChunkCache::from_config(&cfg).is_none());
    }
}
