//! Per-tenant limits: the `limits` block of the configuration, with Loki's names and defaults,
//! and per-tenant `overrides` on top of it.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::units::{ByteSize, Dur};

/// How the per-tenant ingestion rate is enforced across distributors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateStrategy {
    /// Each distributor enforces the full limit.
    Local,
    /// The tenant limit is divided by the number of healthy distributors.
    #[default]
    Global,
}

/// What a tenant's delete requests do (`deletion_mode`, Loki's names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeletionMode {
    /// The delete API refuses the tenant's requests.
    Disabled,
    /// Deleted lines are hidden from queries; the chunks keep them.
    FilterOnly,
    /// Deleted lines are hidden from queries and the compactor rewrites the chunks without them.
    #[default]
    FilterAndDelete,
}

impl DeletionMode {
    /// The name as configured.
    pub fn name(self) -> &'static str {
        match self {
            DeletionMode::Disabled => "disabled",
            DeletionMode::FilterOnly => "filter-only",
            DeletionMode::FilterAndDelete => "filter-and-delete",
        }
    }
}

/// One `retention_stream` rule: streams matching `selector` are kept for `period`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRetention {
    /// A stream selector (`{namespace="dev"}`).
    pub selector: String,
    /// Among matching rules the highest priority wins; ties go to the shortest period.
    #[serde(default)]
    pub priority: u32,
    /// How long matching streams are kept.
    pub period: Dur,
}

/// Limits applied to one tenant. Field names and defaults follow Loki's `limits_config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Whether the ingestion rate is enforced per distributor or shared across them.
    pub ingestion_rate_strategy: RateStrategy,
    /// Sustained per-tenant ingestion rate, in MB (10^6 bytes) per second.
    pub ingestion_rate_mb: f64,
    /// Per-tenant burst allowance, in MB; at least the largest push expected.
    pub ingestion_burst_size_mb: f64,
    /// Longest accepted line; longer lines are dropped (or truncated, see below).
    pub max_line_size: ByteSize,
    /// Truncate over-long lines to `max_line_size` instead of dropping them.
    pub max_line_size_truncate: bool,
    /// Most label names a stream may have.
    pub max_label_names_per_series: usize,
    /// Longest accepted label name, in bytes.
    pub max_label_name_length: usize,
    /// Longest accepted label value, in bytes.
    pub max_label_value_length: usize,
    /// Reject entries older than `reject_old_samples_max_age`.
    pub reject_old_samples: bool,
    /// Oldest accepted entry, relative to now.
    pub reject_old_samples_max_age: Dur,
    /// How far in the future an entry's timestamp may be.
    pub creation_grace_period: Dur,
    /// Active streams per tenant on one ingester (0 = no limit).
    pub max_streams_per_user: usize,
    /// Active streams per tenant across the cluster (0 = no limit); divided by the number of
    /// ingesters and multiplied by the replication factor to get each ingester's share.
    pub max_global_streams_per_user: usize,
    /// Sustained rate of one stream, in bytes per second.
    pub per_stream_rate_limit: ByteSize,
    /// Burst allowance of one stream, in bytes.
    pub per_stream_rate_limit_burst: ByteSize,
    /// Accept entries out of timestamp order (within half of `max_chunk_age` of the newest).
    pub unordered_writes: bool,
    /// Accept structured metadata on entries.
    pub allow_structured_metadata: bool,
    /// Largest structured metadata of one entry (names + values).
    pub max_structured_metadata_size: ByteSize,
    /// Most structured metadata pairs on one entry.
    pub max_structured_metadata_entries_count: usize,
    /// Most entries a log query returns.
    pub max_entries_limit_per_query: usize,
    /// Most series a metric query or `/series` call may return.
    pub max_query_series: usize,
    /// Longest time range of one query (0 = no limit).
    pub max_query_length: Dur,
    /// Longest a query may run, including the time its sub-queries wait in the query
    /// frontend's queue.
    pub query_timeout: Dur,
    /// The query frontend cuts range queries into pieces of this length, aligned to multiples
    /// of it (0 = no splitting).
    pub split_queries_by_interval: Dur,
    /// The same for label and series lookups.
    pub split_metadata_queries_by_interval: Dur,
    /// Most sub-queries of one query in flight at once.
    pub max_query_parallelism: usize,
    /// Most shards a shardable query is cut into.
    pub tsdb_max_query_parallelism: usize,
    /// Shard a shardable query so that each shard of a split reads about this many
    /// uncompressed bytes (by the index statistics of its range).
    pub tsdb_max_bytes_per_shard: ByteSize,
    /// Queriers one tenant's sub-queries may use (0 = all): shuffle sharding, so one tenant
    /// cannot occupy every querier.
    pub max_queriers_per_tenant: usize,
    /// Results newer than this are never cached: late data may still change them.
    pub max_cache_freshness_per_query: Dur,
    /// How long the tenant's entries are kept (0 = forever); enforced by the compactor with
    /// `compactor.retention_enabled`.
    pub retention_period: Dur,
    /// Per-stream retention rules, taking precedence over `retention_period`.
    pub retention_stream: Vec<StreamRetention>,
    /// What the tenant's delete requests do.
    pub deletion_mode: DeletionMode,
    /// Labels whose value becomes `service_name` on a push whose stream has none, the first
    /// present in this order; `unknown_service` when none is. Empty: no discovery.
    pub discover_service_name: Vec<String>,
    /// Add `detected_level` structured metadata to entries, from a level label or metadata, or
    /// from the line.
    pub discover_log_levels: bool,
    /// How OTLP resource, scope and log attributes map onto labels and structured metadata.
    pub otlp_config: crate::otlp::OtlpConfig,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ingestion_rate_strategy: RateStrategy::Global,
            ingestion_rate_mb: 4.0,
            ingestion_burst_size_mb: 6.0,
            max_line_size: ByteSize(256_000),
            max_line_size_truncate: false,
            max_label_names_per_series: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            reject_old_samples: true,
            reject_old_samples_max_age: Dur::hours(24 * 7),
            creation_grace_period: Dur::mins(10),
            max_streams_per_user: 0,
            max_global_streams_per_user: 5000,
            per_stream_rate_limit: ByteSize(3_000_000),
            per_stream_rate_limit_burst: ByteSize(15_000_000),
            unordered_writes: true,
            allow_structured_metadata: true,
            max_structured_metadata_size: ByteSize(64_000),
            max_structured_metadata_entries_count: 128,
            max_entries_limit_per_query: 5000,
            max_query_series: 500,
            max_query_length: Dur::hours(721),
            query_timeout: Dur::mins(1),
            split_queries_by_interval: Dur::hours(1),
            split_metadata_queries_by_interval: Dur::hours(24),
            max_query_parallelism: 32,
            tsdb_max_query_parallelism: 128,
            tsdb_max_bytes_per_shard: ByteSize(600 << 20),
            max_queriers_per_tenant: 0,
            max_cache_freshness_per_query: Dur::mins(10),
            retention_period: Dur::secs(0),
            retention_stream: Vec::new(),
            deletion_mode: DeletionMode::FilterAndDelete,
            discover_service_name: crate::distributor::discover::DEFAULT_SERVICE_NAME_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            discover_log_levels: true,
            otlp_config: crate::otlp::OtlpConfig::default(),
        }
    }
}

impl Limits {
    /// Checks values that would make the limits meaningless; `path` is the YAML key of this block.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        let positive =
            [("ingestion_rate_mb", self.ingestion_rate_mb), ("ingestion_burst_size_mb", self.ingestion_burst_size_mb)];
        for (key, v) in positive {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{path}.{key} must be a non-negative number, got {v}"));
            }
        }
        if self.max_line_size.bytes() == 0 {
            return Err(format!("{path}.max_line_size must be greater than 0"));
        }
        self.otlp_config.validate(&format!("{path}.otlp_config"))?;
        if self.per_stream_rate_limit_burst < self.per_stream_rate_limit {
            return Err(format!("{path}.per_stream_rate_limit_burst must be at least per_stream_rate_limit"));
        }
        for (i, rule) in self.retention_stream.iter().enumerate() {
            if let Err(e) = crate::logql::parse_matchers(&rule.selector) {
                return Err(format!("{path}.retention_stream[{i}].selector: {e}"));
            }
            if rule.period.get().is_zero() {
                return Err(format!("{path}.retention_stream[{i}].period must be greater than 0"));
            }
        }
        Ok(())
    }

    /// Ingestion rate in bytes per second.
    pub fn ingestion_rate_bytes(&self) -> f64 {
        self.ingestion_rate_mb * 1e6
    }

    /// Ingestion burst in bytes.
    pub fn ingestion_burst_bytes(&self) -> f64 {
        self.ingestion_burst_size_mb * 1e6
    }
}

/// Limits per tenant: the defaults plus overrides, resolved once at startup.
#[derive(Clone, Debug, Default)]
pub struct TenantLimits {
    defaults: Arc<Limits>,
    overrides: HashMap<String, Arc<Limits>>,
}

impl TenantLimits {
    /// Builds the lookup from the default block and per-tenant override blocks. Each override is
    /// a partial `limits` block merged over the defaults; unknown keys are rejected.
    pub fn new(defaults: Limits, overrides: &HashMap<String, serde_json::Value>) -> Result<Self, String> {
        let base = serde_json::to_value(&defaults).map_err(|e| e.to_string())?;
        let mut out = HashMap::new();
        for (tenant, partial) in overrides {
            let mut merged = base.clone();
            crate::config::merge_json(&mut merged, partial.clone());
            let limits: Limits = serde_path_to_error::deserialize(merged)
                .map_err(|e| format!("overrides.{tenant}.{}: {}", e.path(), e.inner()))?;
            limits.validate(&format!("overrides.{tenant}"))?;
            out.insert(tenant.clone(), Arc::new(limits));
        }
        Ok(Self { defaults: Arc::new(defaults), overrides: out })
    }

    /// The limits that apply to `tenant`.
    pub fn get(&self, tenant: &str) -> &Arc<Limits> {
        self.overrides.get(tenant).unwrap_or(&self.defaults)
    }

    pub fn defaults(&self) -> &Arc<Limits> {
        &self.defaults
    }

    /// The strictest (smallest) of the tenants' values of a limit, for requests over several
    /// tenants; the default's value for none.
    pub fn strictest<T: Ord + Copy>(&self, tenants: &[String], f: impl Fn(&Limits) -> T) -> T {
        tenants.iter().map(|t| f(self.get(t))).min().unwrap_or_else(|| f(&self.defaults))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_merge_over_defaults() {
        let mut o = HashMap::new();
        o.insert("a".to_string(), serde_json::json!({"ingestion_rate_mb": 10, "max_line_size": "1KB"}));
        let l = TenantLimits::new(Limits::default(), &o).unwrap();
        assert_eq!(l.get("a").ingestion_rate_mb, 10.0);
        assert_eq!(l.get("a").max_line_size, ByteSize(1000));
        assert_eq!(l.get("a").max_label_names_per_series, 15);
        assert_eq!(l.get("b").ingestion_rate_mb, 4.0);
    }

    #[test]
    fn unknown_override_keys_are_named() {
        let mut o = HashMap::new();
        o.insert("a".to_string(), serde_json::json!({"ingestion_rate": 10}));
        let e = TenantLimits::new(Limits::default(), &o).unwrap_err();
        assert!(e.contains("overrides.a"), "{e}");
        assert!(e.contains("ingestion_rate"), "{e}");
    }
}
