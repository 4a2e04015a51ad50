//! The in-process least-recently-used cache every embedded cache is built on (the index
//! objects of the store, the querier's chunks, the query frontend's results), and the settings
//! of an embedded cache (`embedded_cache` blocks, as in Loki).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::config::units::Dur;

/// An embedded cache's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedCacheConfig {
    pub enabled: bool,
    /// Budget of keys and values, in MB.
    pub max_size_mb: u64,
    /// How long an entry is kept.
    pub ttl: Dur,
}

impl Default for EmbeddedCacheConfig {
    fn default() -> Self {
        Self { enabled: true, max_size_mb: 100, ttl: Dur::hours(1) }
    }
}

impl EmbeddedCacheConfig {
    /// The byte budget.
    pub fn max_bytes(&self) -> u64 {
        self.max_size_mb.saturating_mul(1 << 20)
    }
}

/// How well a cache works, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LruStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that found nothing (or an expired entry).
    pub misses: u64,
    /// Entries held.
    pub entries: u64,
    /// Bytes held, as the sizes given to [`Lru::insert`] add up.
    pub bytes: u64,
}

/// Key → value, evicting the least recently used beyond `capacity` bytes and, with a TTL,
/// forgetting entries older than it. Values are cloned out (use `Arc`s or `Bytes`).
#[derive(Debug)]
pub struct Lru<V> {
    capacity: u64,
    ttl: Option<Duration>,
    inner: Mutex<Inner<V>>,
}

#[derive(Debug)]
struct Inner<V> {
    map: HashMap<String, Slot<V>>,
    /// Last use → key: the eviction order.
    order: BTreeMap<u64, String>,
    /// Monotonic use counter.
    tick: u64,
    stats: LruStats,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    size: u64,
    tick: u64,
    expires: Option<Instant>,
}

impl<V> Inner<V> {
    fn remove(&mut self, key: &str) {
        if let Some(slot) = self.map.remove(key) {
            self.order.remove(&slot.tick);
            self.stats.bytes -= slot.size;
        }
    }
}

impl<V: Clone> Lru<V> {
    /// A cache of at most `capacity` bytes whose entries live `ttl` (forever when `None`).
    pub fn new(capacity: u64, ttl: Option<Duration>) -> Self {
        let inner = Inner { map: HashMap::new(), order: BTreeMap::new(), tick: 0, stats: LruStats::default() };
        Self { capacity, ttl, inner: Mutex::new(inner) }
    }

    /// The value under `key`, now the most recently used.
    pub fn get(&self, key: &str) -> Option<V> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let expired = match inner.map.get(key) {
            None => {
                inner.stats.misses += 1;
                return None;
            }
            Some(slot) => slot.expires.is_some_and(|at| at <= Instant::now()),
        };
        if expired {
            inner.remove(key);
            inner.stats.misses += 1;
            return None;
        }
        inner.tick += 1;
        let tick = inner.tick;
        let slot = inner.map.get_mut(key)?;
        let old = std::mem::replace(&mut slot.tick, tick);
        let value = slot.value.clone();
        inner.order.remove(&old);
        inner.order.insert(tick, key.to_string());
        inner.stats.hits += 1;
        Some(value)
    }

    /// Stores `value` under `key`, accounted as `size` bytes plus the key; evicts the least
    /// recently used entries to make room. A value larger than the whole budget is not kept.
    pub fn insert(&self, key: &str, value: V, size: u64) {
        let size = size + key.len() as u64;
        if size > self.capacity {
            return;
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        inner.remove(key);
        while inner.stats.bytes + size > self.capacity {
            let Some((_, victim)) = inner.order.pop_first() else {
                break;
            };
            if let Some(slot) = inner.map.remove(&victim) {
                inner.stats.bytes -= slot.size;
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.order.insert(tick, key.to_string());
        let expires = self.ttl.map(|ttl| Instant::now() + ttl);
        inner.map.insert(key.to_string(), Slot { value, size, tick, expires });
        inner.stats.bytes += size;
    }

    /// Whether a live entry is under `key`, without counting a lookup or refreshing its use.
    pub fn contains(&self, key: &str) -> bool {
        let inner = self.inner.lock();
        inner.map.get(key).is_some_and(|slot| slot.expires.is_none_or(|at| at > Instant::now()))
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> LruStats {
        let inner = self.inner.lock();
        LruStats { entries: inner.map.len() as u64, ..inner.stats }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_within_its_budget_and_evicts_the_least_recently_used() {
        let c: Lru<u32> = Lru::new(100, None);
        c.insert("a", 1, 29);
        c.insert("b", 2, 29);
        c.insert("c", 3, 29);
        assert_eq!(c.get("a"), Some(1)); // a is now the most recent
        c.insert("d", 4, 29);
        assert_eq!(c.get("b"), None, "the least recently used entry goes");
        assert_eq!((c.get("a"), c.get("c"), c.get("d")), (Some(1), Some(3), Some(4)));
        assert!(c.stats().bytes <= 100);
        c.insert("huge", 5, 200);
        assert_eq!(c.get("huge"), None);
        c.insert("a", 6, 9);
        assert_eq!(c.get("a"), Some(6), "a new value replaces the old one");
        assert!(c.contains("a") && !c.contains("b"));
        let s = c.stats();
        assert_eq!((s.entries, s.bytes), (3, 30 + 30 + 10));
    }

    #[test]
    fn entries_expire() {
        let c: Lru<u32> = Lru::new(100, Some(Duration::ZERO));
        c.insert("a", 1, 1);
        assert_eq!(c.get("a"), None);
        assert_eq!(c.stats().entries, 0);
    }
}
