//! One active compactor per cluster: a lease record in the ring's key-value store (etcd in a
//! cluster, memory in one process).
//!
//! The record names its holder, who rewrites it (compare-and-swap on its version) every third
//! of `lease_ttl`. Another instance takes the lease over only after it saw the record's
//! version stay the same for a whole `lease_ttl`, measured on its own monotonic clock: no
//! wall-clock comparison between machines is involved. A holder that fails to renew for a
//! whole `lease_ttl` (etcd unreachable, or the record taken over) stops working, so two
//! compactors overlap for at most the time the loser takes to notice.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::ring::kv::{CasOutcome, KvError, KvStore};

/// The key of the lease, below `ring.prefix`.
pub const LEASE_KEY: &str = "compactor/lease";

/// What the lease record holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The holder's id: instance id, process id and start time, unique per process.
    pub holder: String,
    /// When the holder last renewed (ms since the epoch; for people, not for the protocol).
    pub renewed_at_ms: i64,
}

/// This instance's side of the lease.
#[derive(Debug, Clone)]
pub struct Lease {
    kv: Arc<dyn KvStore>,
    key: String,
    holder: String,
    ttl: Duration,
}

/// Why the lease could not be renewed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseLost {
    /// Another instance holds it now.
    #[error("compactor lease taken over by {0}")]
    TakenOver(String),
    /// The store did not answer; the lease may still be ours.
    #[error("compactor lease not renewed: {0}")]
    Unavailable(String),
}

impl Lease {
    pub fn new(kv: Arc<dyn KvStore>, key: String, holder: String, ttl: Duration) -> Self {
        Self { kv, key, holder, ttl }
    }

    /// This instance's holder id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn record(&self) -> Bytes {
        let rec = LeaseRecord { holder: self.holder.clone(), renewed_at_ms: crate::timeutil::now_nanos() / 1_000_000 };
        Bytes::from(serde_json::to_vec(&rec).unwrap_or_default())
    }

    /// The current record, if any.
    pub async fn current(&self) -> Result<Option<LeaseRecord>, KvError> {
        Ok(self.kv.get(&self.key).await?.and_then(|v| serde_json::from_slice(&v.value).ok()))
    }

    /// Waits until this instance holds the lease; `None` if `stop` fired first. Returns the
    /// version of the record to renew against.
    pub async fn acquire(&self, stop: &CancellationToken) -> Option<u64> {
        // The other holder's record version, and since when it has not changed.
        let mut seen: Option<(u64, Instant)> = None;
        loop {
            match self.try_acquire(&mut seen).await {
                Ok(Some(version)) => {
                    tracing::info!(holder = %self.holder, "compactor lease acquired");
                    return Some(version);
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(%err, "cannot read the compactor lease"),
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(self.ttl / 3) => {}
            }
        }
    }

    async fn try_acquire(&self, seen: &mut Option<(u64, Instant)>) -> Result<Option<u64>, KvError> {
        let expected = match self.kv.get(&self.key).await? {
            None => None,
            Some(v) => {
                let holder = serde_json::from_slice::<LeaseRecord>(&v.value).map(|r| r.holder).unwrap_or_default();
                let expired = match seen {
                    Some((version, since)) if *version == v.version => since.elapsed() >= self.ttl,
                    _ => {
                        *seen = Some((v.version, Instant::now()));
                        false
                    }
                };
                // A released lease (an empty record) is free at once.
                if !holder.is_empty() && holder != self.holder && !expired {
                    return Ok(None);
                }
                if !holder.is_empty() && holder != self.holder {
                    tracing::info!(previous = %holder, "compactor lease not renewed in time; taking it over");
                }
                Some(v.version)
            }
        };
        match self.kv.put_if_version(&self.key, expected, self.record()).await? {
            CasOutcome::Written { version } => Ok(Some(version)),
            CasOutcome::Conflict { .. } => Ok(None),
        }
    }

    /// Renews the lease held at `version`; the new version to renew against next.
    pub async fn renew(&self, version: u64) -> Result<u64, LeaseLost> {
        match self.kv.put_if_version(&self.key, Some(version), self.record()).await {
            Ok(CasOutcome::Written { version }) => Ok(version),
            Ok(CasOutcome::Conflict { current }) => {
                let by = current
                    .and_then(|v| serde_json::from_slice::<LeaseRecord>(&v.value).ok())
                    .map_or_else(|| "nobody".to_string(), |r| r.holder);
                Err(LeaseLost::TakenOver(by))
            }
            Err(e) => Err(LeaseLost::Unavailable(e.to_string())),
        }
    }

    /// Keeps the lease held at `version` until `stop` fires (then releases it) or the lease is
    /// lost; cancels `lost` in the second case.
    pub async fn keep(&self, mut version: u64, stop: CancellationToken, lost: CancellationToken) {
        let mut last_renewal = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    self.release(version).await;
                    return;
                }
                _ = tokio::time::sleep(self.ttl / 3) => {}
            }
            match self.renew(version).await {
                Ok(v) => {
                    version = v;
                    last_renewal = Instant::now();
                }
                Err(err) if last_renewal.elapsed() >= self.ttl || matches!(err, LeaseLost::TakenOver(_)) => {
                    tracing::warn!(%err, "compactor stops");
                    lost.cancel();
                    return;
                }
                Err(err) => tracing::warn!(%err, "renewing the compactor lease failed; retrying"),
            }
        }
    }

    /// Gives the lease up so that another compactor need not wait for it to expire.
    async fn release(&self, version: u64) {
        let gone = Bytes::from_static(b"{}");
        // Overwrite rather than delete: a conditional delete is not in the store's interface,
        // and an unparsable record reads as free to everyone.
        match self.kv.put_if_version(&self.key, Some(version), gone).await {
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "releasing the compactor lease failed"),
        }
    }
}
