//! The results cache: answers of sub-queries by key, in an in-process LRU with a byte budget
//! or in memcached.
//!
//! A key is the full text of what decides the answer — the kind of request, the tenants, the
//! normalized query, the step and the split — so tenant A can never read tenant B's answer.
//! Backends see a fixed-length hash of it (memcached keys are limited to 250 bytes), and every
//! stored value begins with the full key, checked on the way out: a hash collision is a miss,
//! never somebody else's answer. A backend that fails is a miss, never an error.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;

use super::job::SubResponse;
use super::proto::{decode_response, encode_response};
use crate::lru::Lru;
use crate::metrics::Metrics;

/// Where cached answers are kept.
#[async_trait]
pub trait CacheBackend: Send + Sync + std::fmt::Debug {
    /// The value stored under `key`, if any (and still valid).
    async fn get(&self, key: &str) -> Option<Bytes>;
    /// Stores `value` under `key`; failures are dropped.
    async fn set(&self, key: &str, value: Bytes);
}

/// The time range (`[start, end]`, nanoseconds) a cached answer covers.
pub type Extent = (i64, i64);

/// Typed access to a backend, with hit and miss counters.
#[derive(Debug, Clone)]
pub struct ResultsCache {
    backend: Arc<dyn CacheBackend>,
    hits: Counter,
    misses: Counter,
}

impl ResultsCache {
    pub fn new(backend: Arc<dyn CacheBackend>, metrics: &Metrics) -> Self {
        let (hits, misses) = (Counter::default(), Counter::default());
        metrics.register("query_frontend_cache_hits", "Sub-query answers served from the results cache", hits.clone());
        metrics.register(
            "query_frontend_cache_misses",
            "Sub-query lookups the results cache could not answer",
            misses.clone(),
        );
        Self { backend, hits, misses }
    }

    fn backend_key(key: &str) -> String {
        format!("norn-rc-{:032x}", xxhash_rust::xxh3::xxh3_128(key.as_bytes()))
    }

    /// The answer cached under `key`, with the extent (`[start, end]`, nanoseconds) it covers.
    pub async fn get(&self, key: &str) -> Option<(Extent, SubResponse)> {
        let found = self.backend.get(&Self::backend_key(key)).await.and_then(|mut v| {
            if v.len() < 4 {
                return None;
            }
            let n = v.get_u32() as usize;
            if v.len() < n + 16 || &v[..n] != key.as_bytes() {
                return None;
            }
            v.advance(n);
            let extent = (v.get_i64(), v.get_i64());
            decode_response(&v).map(|r| (extent, r))
        });
        if found.is_some() {
            self.hits.inc()
        } else {
            self.misses.inc()
        };
        found
    }

    /// Caches `answer`, covering `extent`, under `key`.
    pub async fn put(&self, key: &str, extent: Extent, answer: &SubResponse) {
        let payload = encode_response(answer);
        let mut v = BytesMut::with_capacity(20 + key.len() + payload.len());
        v.put_u32(key.len() as u32);
        v.put_slice(key.as_bytes());
        v.put_i64(extent.0);
        v.put_i64(extent.1);
        v.put_slice(&payload);
        self.backend.set(&Self::backend_key(key), v.freeze()).await;
    }
}

/// An LRU cache in this process, bounded in bytes, entries expiring after a TTL.
#[derive(Debug)]
pub struct EmbeddedCache {
    lru: Lru<Bytes>,
}

impl EmbeddedCache {
    pub fn new(max_bytes: usize, ttl: Duration) -> Self {
        Self { lru: Lru::new(max_bytes as u64, Some(ttl)) }
    }

    /// Bytes held (keys and values).
    pub fn bytes(&self) -> usize {
        self.lru.stats().bytes as usize
    }
}

#[async_trait]
impl CacheBackend for EmbeddedCache {
    async fn get(&self, key: &str) -> Option<Bytes> {
        self.lru.get(key)
    }

    async fn set(&self, key: &str, value: Bytes) {
        let size = value.len() as u64;
        self.lru.insert(key, value, size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Value;

    #[tokio::test]
    async fn a_value_is_only_returned_for_its_own_key() {
        let metrics = Metrics::new();
        let backend = Arc::new(EmbeddedCache::new(1 << 20, Duration::from_secs(60)));
        let cache = ResultsCache::new(backend.clone(), &metrics);
        let answer = SubResponse::Value(Value::Scalar { ts: 1, value: 2.0 });
        cache.put("tenant-a:q", (1, 2), &answer).await;
        assert_eq!(cache.get("tenant-a:q").await, Some(((1, 2), answer.clone())));
        assert_eq!(cache.get("tenant-b:q").await, None);
        // A value planted under another key's hash (a collision) is not handed out.
        let stolen = backend.get(&ResultsCache::backend_key("tenant-a:q")).await.unwrap();
        backend.set(&ResultsCache::backend_key("tenant-b:q"), stolen).await;
        assert_eq!(cache.get("tenant-b:q").await, None);
    }
}
