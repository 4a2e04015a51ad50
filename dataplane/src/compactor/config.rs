//! `compactor:` settings, with Loki's names and defaults.

use serde::{Deserialize, Serialize};

use crate::config::units::Dur;

/// The compactor: retention, delete requests, index compaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactorConfig {
    /// Enforce `limits.retention_period` and `limits.retention_stream`: remove expired chunks
    /// from the index and the object store, and hide expired entries from queries.
    pub retention_enabled: bool,
    /// Time between two compaction passes (the first starts when the lease is taken).
    pub compaction_interval: Dur,
    /// How long a chunk removed from the index stays in the object store, so that queriers
    /// holding an older index never miss it.
    pub retention_delete_delay: Dur,
    /// How long a delete request can be cancelled; the compactor rewrites chunks only for
    /// requests older than this.
    pub delete_request_cancel_period: Dur,
    /// A compactor that has not renewed its lease for this long is presumed dead and another
    /// one takes over; the holder renews every third of it.
    pub lease_ttl: Dur,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            retention_enabled: false,
            compaction_interval: Dur::mins(10),
            retention_delete_delay: Dur::hours(2),
            delete_request_cancel_period: Dur::hours(24),
            lease_ttl: Dur::secs(30),
        }
    }
}

impl CompactorConfig {
    /// Checks the section; messages name the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.compaction_interval.get().is_zero() {
            return Err("compactor.compaction_interval must be greater than 0".into());
        }
        if self.lease_ttl.get() < std::time::Duration::from_millis(30) {
            return Err("compactor.lease_ttl must be at least 30ms".into());
        }
        Ok(())
    }
}
