//! A least-recently-used cache of decoded index objects, bounded by memory.
//!
//! Index objects never change once written (their name is their content hash), so a cached
//! object is never stale: the cache only has to decide what to forget.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use super::index_codec::IndexObject;

/// Counters describing how well the cache works, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexCacheStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that had to fetch the object.
    pub misses: u64,
    /// Objects currently cached.
    pub entries: u64,
    /// Approximate memory held by cached objects.
    pub bytes: u64,
}

/// Object key → decoded object, evicting the least recently used beyond `capacity` bytes.
#[derive(Debug)]
pub(crate) struct IndexCache {
    /// Memory budget in bytes; an object larger than this is never cached.
    capacity: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Key → (object, its size, its last use).
    map: HashMap<String, (Arc<IndexObject>, u64, u64)>,
    /// Last use → key: the eviction order.
    order: BTreeMap<u64, String>,
    /// Monotonic use counter.
    tick: u64,
    stats: IndexCacheStats,
}

impl IndexCache {
    pub(crate) fn new(capacity: u64) -> Self {
        Self { capacity, inner: Mutex::new(Inner::default()) }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<IndexObject>> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        inner.tick += 1;
        let tick = inner.tick;
        match inner.map.get_mut(key) {
            Some((object, _, last_use)) => {
                inner.order.remove(last_use);
                *last_use = tick;
                inner.order.insert(tick, key.to_string());
                inner.stats.hits += 1;
                Some(Arc::clone(object))
            }
            None => {
                inner.stats.misses += 1;
                None
            }
        }
    }

    pub(crate) fn insert(&self, key: &str, object: Arc<IndexObject>) {
        let size = object.mem_bytes + key.len() as u64 + 64;
        if size > self.capacity {
            return;
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        if let Some((_, old_size, last_use)) = inner.map.remove(key) {
            inner.order.remove(&last_use);
            inner.stats.bytes -= old_size;
        }
        while inner.stats.bytes + size > self.capacity {
            let Some((_, victim)) = inner.order.pop_first() else {
                break;
            };
            if let Some((_, victim_size, _)) = inner.map.remove(&victim) {
                inner.stats.bytes -= victim_size;
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.order.insert(tick, key.to_string());
        inner.map.insert(key.to_string(), (object, size, tick));
        inner.stats.bytes += size;
    }

    pub(crate) fn stats(&self) -> IndexCacheStats {
        let inner = self.inner.lock();
        IndexCacheStats { entries: inner.map.len() as u64, ..inner.stats }
    }
}
