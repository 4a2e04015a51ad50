//! Prometheus metrics of the process, served as text on `/metrics`.
//!
//! Components get an `Arc<Metrics>` in their constructor and update the fields they own; values
//! that already live elsewhere (WAL counters, stream counts) are read at scrape time through
//! [`Metrics::register_sampled`] instead of being copied on every update.

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::validation::Reason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DiscardLabels {
    pub reason: String,
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngesterLabel {
    /// The ingester's address.
    pub ingester: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status_code: String,
}

/// Every metric Norn exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Lines accepted by the distributor, per tenant.
    pub lines_received: Family<TenantLabel, Counter>,
    /// Line bytes (plus structured metadata) accepted by the distributor, per tenant.
    pub bytes_received: Family<TenantLabel, Counter>,
    /// Lines dropped, by reason and tenant.
    pub discarded_samples: Family<DiscardLabels, Counter>,
    /// Bytes dropped, by reason and tenant.
    pub discarded_bytes: Family<DiscardLabels, Counter>,
    /// Entries dropped by the ingester as exact duplicates of stored ones.
    pub duplicate_entries: Counter,
    /// Chunks written to the object store, by why they were closed.
    pub chunks_flushed: Family<ReasonLabel, Counter>,
    /// Flush attempts that failed (and will be retried).
    pub chunk_flush_failures: Counter,
    /// Compressed bytes of flushed chunks.
    pub chunk_flushed_bytes: Counter,
    /// Chunks held in memory (open, closed awaiting flush, retained).
    pub memory_chunks: Gauge,
    /// HTTP request latency by route and status.
    pub request_duration: Family<RouteLabels, Histogram>,
    /// Pushes to one replica that failed, by ingester address.
    pub ingester_append_failures: Family<IngesterLabel, Counter>,
    /// Pushes refused because a stream could not reach its quorum.
    pub replication_failures: Counter,
    /// Writes to ingester replicas under way, including those a push no longer waits for.
    pub replica_writes_in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("norn")),
            lines_received: Family::default(),
            bytes_received: Family::default(),
            discarded_samples: Family::default(),
            discarded_bytes: Family::default(),
            duplicate_entries: Counter::default(),
            chunks_flushed: Family::default(),
            chunk_flush_failures: Counter::default(),
            chunk_flushed_bytes: Counter::default(),
            memory_chunks: Gauge::default(),
            request_duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))),
            ingester_append_failures: Family::default(),
            replication_failures: Counter::default(),
            replica_writes_in_flight: Gauge::default(),
        };
        {
            let mut r = m.registry.lock();
            r.register("distributor_lines_received", "Lines accepted by the distributor", m.lines_received.clone());
            r.register(
                "distributor_bytes_received",
                "Line and structured metadata bytes accepted by the distributor",
                m.bytes_received.clone(),
            );
            r.register("discarded_samples", "Lines discarded, by reason", m.discarded_samples.clone());
            r.register("discarded_bytes", "Bytes discarded, by reason", m.discarded_bytes.clone());
            r.register(
                "ingester_duplicate_entries",
                "Entries dropped as exact duplicates",
                m.duplicate_entries.clone(),
            );
            r.register(
                "ingester_chunks_flushed",
                "Chunks written to the object store, by close reason",
                m.chunks_flushed.clone(),
            );
            r.register(
                "ingester_chunk_flush_failures",
                "Chunk flush attempts that failed",
                m.chunk_flush_failures.clone(),
            );
            r.register(
                "ingester_chunk_flushed_bytes",
                "Compressed bytes of flushed chunks",
                m.chunk_flushed_bytes.clone(),
            );
            r.register("ingester_memory_chunks", "Chunks held in memory", m.memory_chunks.clone());
            r.register("request_duration_seconds", "HTTP request latency", m.request_duration.clone());
            r.register(
                "distributor_ingester_append_failures",
                "Pushes to one ingester replica that failed, by ingester",
                m.ingester_append_failures.clone(),
            );
            r.register(
                "distributor_replication_failures",
                "Pushes refused because a stream could not reach its replication quorum",
                m.replication_failures.clone(),
            );
            r.register(
                "distributor_replica_writes_in_flight",
                "Writes to ingester replicas under way, including those past their push's quorum",
                m.replica_writes_in_flight.clone(),
            );
        }
        m
    }

    /// Counts dropped lines and bytes for a tenant.
    pub fn discard(&self, tenant: &str, reason: Reason, lines: u64, bytes: u64) {
        let l = DiscardLabels { reason: reason.as_str().to_string(), tenant: tenant.to_string() };
        self.discarded_samples.get_or_create(&l).inc_by(lines);
        self.discarded_bytes.get_or_create(&l).inc_by(bytes);
    }

    /// Registers a metric a component owns (its own counters, gauges and families).
    pub fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        self.registry.lock().register(name, help, metric);
    }

    /// Registers a value read at scrape time.
    pub fn register_sampled(
        &self,
        name: &'static str,
        help: &'static str,
        kind: SampleKind,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.registry.lock().register_collector(Box::new(Sampled { name, help, kind, read: Arc::new(read) }));
    }

    /// Registers counters and gauges kept as `AtomicU64` fields of `owner`, read at scrape time.
    pub fn register_fields<T: Send + Sync + 'static>(&self, owner: &Arc<T>, series: &[Field<T>]) {
        for &(name, help, kind, field) in series {
            let owner = owner.clone();
            self.register_sampled(name, help, kind, move || {
                field(&owner).load(std::sync::atomic::Ordering::Relaxed) as f64
            });
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.push_str("# error encoding metrics\n");
        }
        out
    }
}

/// A value of [`Metrics::register_fields`]: name, help, kind and the field of its owner.
pub type Field<T> = (&'static str, &'static str, SampleKind, fn(&T) -> &std::sync::atomic::AtomicU64);

/// Whether a sampled value is a counter (monotonic, `_total`) or a gauge.
#[derive(Clone, Copy, Debug)]
pub enum SampleKind {
    Counter,
    Gauge,
}

struct Sampled {
    name: &'static str,
    help: &'static str,
    kind: SampleKind,
    read: Arc<dyn Fn() -> f64 + Send + Sync>,
}

impl std::fmt::Debug for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampled").field("name", &self.name).finish()
    }
}

impl Collector for Sampled {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let v = (self.read)();
        match self.kind {
            SampleKind::Counter => {
                let mut m = encoder.encode_descriptor(self.name, self.help, None, MetricType::Counter)?;
                m.encode_counter::<NoLabelSet, _, f64>(&v, None::<&Exemplar<NoLabelSet, f64>>)
            }
            SampleKind::Gauge => {
                let g = prometheus_client::metrics::gauge::ConstGauge::new(v);
                let m = encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
                g.encode(m)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_and_sampled_metrics() {
        let m = Metrics::new();
        m.lines_received.get_or_create(&TenantLabel { tenant: "t".into() }).inc_by(3);
        m.discard("t", Reason::LineTooLong, 2, 10);
        m.register_sampled("wal_bytes_written", "WAL bytes", SampleKind::Counter, || 42.0);
        m.register_sampled("ingester_memory_streams", "streams", SampleKind::Gauge, || 7.0);
        let text = m.render();
        assert!(text.contains(r#"norn_distributor_lines_received_total{tenant="t"} 3"#), "{text}");
        assert!(text.contains(r#"norn_discarded_samples_total{reason="line_too_long",tenant="t"} 2"#), "{text}");
        assert!(text.contains("norn_wal_bytes_written_total 42"), "{text}");
        assert!(text.contains("norn_ingester_memory_streams 7"), "{text}");
    }
}
