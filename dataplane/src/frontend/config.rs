//! Settings of the query frontend (`frontend`, `query_range`) and of the querier's workers
//! that pull from it (`frontend_worker`), with Loki's names. The per-tenant ones (split
//! intervals, parallelism, shuffle sharding, cache freshness) are in `limits`.

use serde::{Deserialize, Serialize};

use crate::config::units::{ByteSize, Dur};
pub use crate::lru::EmbeddedCacheConfig;

/// `frontend:` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrontendConfig {
    /// Sub-queries of one tenant waiting in the queue at most; beyond, requests get 429
    /// `too many outstanding requests`.
    pub max_outstanding_per_tenant: usize,
    /// Log queries slower than this are logged with their parameters (0 = none).
    pub log_queries_longer_than: Dur,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        Self { max_outstanding_per_tenant: 2048, log_queries_longer_than: Dur::secs(0) }
    }
}

/// `frontend_worker:` settings: how a querier finds frontends and pulls work from them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrontendWorkerConfig {
    /// `host:port` of the frontends' gRPC servers; a DNS name resolving to several addresses
    /// connects to each. Empty: the querier pulls from no frontend (it still answers HTTP).
    pub frontend_address: String,
    /// How often `frontend_address` is resolved again, so frontends can come and go.
    pub dns_lookup_duration: Dur,
    /// TLS to the frontends' gRPC servers (Loki's `frontend_worker.grpc_client_config`).
    pub grpc_client_config: crate::tls::ClientTlsConfig,
}

impl Default for FrontendWorkerConfig {
    fn default() -> Self {
        Self {
            frontend_address: String::new(),
            dns_lookup_duration: Dur::secs(10),
            grpc_client_config: Default::default(),
        }
    }
}

/// `query_range:` settings: splitting, sharding, retries and the results cache.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryRangeConfig {
    /// Move `start` and `end` of range queries to multiples of `step`, so repeated queries of a
    /// moving window hit the cache.
    pub align_queries_with_step: bool,
    /// Cache results of metric queries per split (and empty log splits).
    pub cache_results: bool,
    /// Times a sub-query is retried after its querier failed or went away.
    pub max_retries: u32,
    /// Shard shardable metric queries by stream fingerprint.
    pub parallelise_shardable_queries: bool,
    /// Shards of every shardable query (0: from the index statistics of its range and
    /// `limits.tsdb_max_bytes_per_shard`). A fixed count is for tests and benchmarks.
    pub shards: u32,
    /// Cache `index/stats` answers.
    pub cache_index_stats_results: bool,
    /// Cache `index/volume` and `index/volume_range` answers.
    pub cache_volume_results: bool,
    /// Cache `series` answers.
    pub cache_series_results: bool,
    /// Cache `labels` and `label/<name>/values` answers.
    pub cache_label_results: bool,
    pub results_cache: ResultsCacheConfig,
}

impl Default for QueryRangeConfig {
    fn default() -> Self {
        Self {
            align_queries_with_step: false,
            cache_results: true,
            max_retries: 5,
            parallelise_shardable_queries: true,
            shards: 0,
            cache_index_stats_results: true,
            cache_volume_results: true,
            cache_series_results: true,
            cache_label_results: true,
            results_cache: ResultsCacheConfig::default(),
        }
    }
}

/// `query_range.results_cache:`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResultsCacheConfig {
    pub cache: CacheConfig,
}

/// Which cache holds results: memcached when `memcached_client.addresses` is set, otherwise the
/// embedded cache when enabled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub embedded_cache: EmbeddedCacheConfig,
    pub memcached: MemcachedConfig,
    pub memcached_client: MemcachedClientConfig,
}

/// How values are stored in memcached.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemcachedConfig {
    /// Expiry of stored values (0: until memcached evicts them).
    pub expiration: Dur,
}

/// How to reach memcached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemcachedClientConfig {
    /// Comma-separated `host:port` of the memcached servers; keys are spread over them.
    pub addresses: String,
    /// Deadline of connecting and of one command; a slower server counts as a miss.
    pub timeout: Dur,
    /// Idle connections kept per server.
    pub max_idle_conns: usize,
    /// Largest value stored (memcached's `-I`, 1MB by default).
    pub max_item_size: ByteSize,
}

impl Default for MemcachedClientConfig {
    fn default() -> Self {
        Self {
            addresses: String::new(),
            timeout: Dur::millis(500),
            max_idle_conns: 16,
            max_item_size: ByteSize::mib(1),
        }
    }
}

impl MemcachedClientConfig {
    /// The servers named by `addresses`.
    pub fn servers(&self) -> Vec<String> {
        self.addresses.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
    }
}

impl QueryRangeConfig {
    /// Checks the section; messages name the key.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.results_cache.cache;
        if c.embedded_cache.enabled && c.embedded_cache.max_size_mb == 0 {
            return Err("query_range.results_cache.cache.embedded_cache.max_size_mb must be greater than 0".into());
        }
        if !c.memcached_client.servers().is_empty() && c.memcached_client.timeout.get().is_zero() {
            return Err("query_range.results_cache.cache.memcached_client.timeout must be greater than 0".into());
        }
        Ok(())
    }
}

impl FrontendWorkerConfig {
    /// Checks the section; messages name the key.
    pub fn validate(&self) -> Result<(), String> {
        if !self.frontend_address.is_empty() && !self.frontend_address.contains(':') {
            return Err(format!(
                "frontend_worker.frontend_address {:?} must be host:port (the frontends' gRPC port)",
                self.frontend_address
            ));
        }
        if self.dns_lookup_duration.get().is_zero() {
            return Err("frontend_worker.dns_lookup_duration must be greater than 0".into());
        }
        Ok(())
    }
}
