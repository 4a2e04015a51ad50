//! The operator's Prometheus metrics, served on `/metrics` by [`crate::http`].

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a reconciliation outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Which step failed (see [`crate::controller::Error::kind`]).
    pub error: String,
}

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Reconciliations run, successful or not.
    pub reconciliations: Counter,
    /// Reconciliations that failed, by the step that failed.
    pub failures: Family<ErrorLabels, Counter>,
    /// How long reconciliations take.
    pub duration: Histogram,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    /// Children deleted because the spec no longer asks for them.
    pub pruned: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the metrics and registers them under the `norn_operator` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("norn_operator");
        let reconciliations = Counter::default();
        registry.register("reconciliations", "LogCluster reconciliations run", reconciliations.clone());
        let failures = Family::<ErrorLabels, Counter>::default();
        registry.register("reconcile_failures", "LogCluster reconciliations that failed, by step", failures.clone());
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        registry.register("reconcile_duration_seconds", "time one reconciliation took", duration.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        let pruned = Counter::default();
        registry.register(
            "pruned_objects",
            "children deleted because the spec no longer asks for them",
            pruned.clone(),
        );
        Self { registry, reconciliations, failures, duration, leader, pruned }
    }

    /// Records one reconciliation: its duration and, if it failed, which step.
    pub fn observe(&self, elapsed: Duration, failure: Option<&'static str>) {
        self.reconciliations.inc();
        self.duration.observe(elapsed.as_secs_f64());
        if let Some(error) = failure {
            self.failures.get_or_create(&ErrorLabels { error: error.into() }).inc();
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_step() {
        let m = Metrics::new();
        m.observe(Duration::from_millis(5), None);
        m.observe(Duration::from_millis(5), Some("apply"));
        let text = m.encode().expect("encodes");
        assert!(text.contains("norn_operator_reconciliations_total 2"), "{text}");
        assert!(text.contains("norn_operator_reconcile_failures_total{error=\"apply\"} 1"), "{text}");
        assert!(text.contains("norn_operator_reconcile_duration_seconds_count 2"), "{text}");
    }
}
