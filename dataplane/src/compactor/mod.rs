//! The compactor: retention, delete requests and index compaction on the object store
//! (`--target=compactor`, part of `all`).
//!
//! - [`retention`]: which entries `limits.retention_period` and `limits.retention_stream` expire.
//! - [`deletes`]: delete requests (Loki's `/loki/api/v1/delete`), kept in the object store.
//! - [`filter`]: the querier's hook that hides expired and deleted entries at query time.
//! - [`pass`]: one pass: merge each period's index objects into one, drop expired chunks,
//!   rewrite chunks without deleted lines, and delete dropped chunks after
//!   `compactor.retention_delete_delay`; safe to kill at any point.
//! - [`lease`]: one active compactor per cluster.
//! - [`http`]: the delete API and the status page.
//!
//! Objects the compactor keeps live below the tenant, next to its chunks and index:
//!
//! ```text
//! {tenant}/compactor/deletes/{request_id}.json         a delete request
//! {tenant}/compactor/deletes/{request_id}.processed    ... once the chunks were rewritten
//! {tenant}/compactor/markers/{created_ns:020}-{hash}.json   chunks to delete after the delay
//! ```

pub mod config;
pub mod deletes;
pub mod filter;
pub mod http;
pub mod lease;
pub mod pass;
pub mod retention;
pub mod testing;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::limits::TenantLimits;
use crate::metrics::{Metrics, SampleKind};
use crate::ring::model::Clock;
use crate::storage::{Index, ObjectStore, StorageError};

pub use config::CompactorConfig;
pub use deletes::{DeleteError, DeleteRequest, DeleteRequests, DeleteStatus};
pub use filter::{ReadFilter, TenantFilter};
pub use lease::Lease;
pub use pass::PassStats;

/// Why a pass failed. Every failure is retried by the next pass.
#[derive(Debug, thiserror::Error)]
pub enum CompactorError {
    #[error("object store: {0}")]
    Storage(#[from] StorageError),
    /// A chunk could not be read or rewritten.
    #[error("{0}")]
    Chunk(String),
    #[error("delete request: {0}")]
    Delete(#[from] DeleteError),
}

/// Totals since the process started, for `/metrics`.
#[derive(Debug, Default)]
struct Totals {
    passes: AtomicU64,
    pass_failures: AtomicU64,
    last_pass_seconds_bits: AtomicU64,
    chunks_expired: AtomicU64,
    chunks_rewritten: AtomicU64,
    lines_deleted: AtomicU64,
    chunks_deleted: AtomicU64,
    bytes_deleted: AtomicU64,
    index_objects_removed: AtomicU64,
    requests_processed: AtomicU64,
    requests_pending: AtomicU64,
}

/// What the status page shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// `waiting for the lease`, `active` or `stopped`.
    pub state: String,
    /// This instance's lease holder id.
    pub holder: String,
    /// Passes run by this instance.
    pub passes: u64,
    /// The last pass, once one finished.
    pub last_pass: Option<LastPass>,
}

/// One finished pass.
#[derive(Debug, Clone, Serialize)]
pub struct LastPass {
    /// Start, ms since the epoch.
    pub started_at_ms: i64,
    pub duration_seconds: f64,
    pub stats: Option<PassStats>,
    pub error: Option<String>,
}

/// The compactor of one process.
#[derive(Debug)]
pub struct Compactor {
    cfg: CompactorConfig,
    store: Arc<dyn ObjectStore>,
    index: Arc<Index>,
    limits: Arc<TenantLimits>,
    deletes: Arc<DeleteRequests>,
    /// Where retention and the delays count from.
    clock: Arc<dyn Clock>,
    totals: Totals,
    status: Mutex<Status>,
}

impl Compactor {
    pub fn new(
        cfg: CompactorConfig,
        store: Arc<dyn ObjectStore>,
        index: Arc<Index>,
        limits: Arc<TenantLimits>,
        deletes: Arc<DeleteRequests>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let status = Mutex::new(Status { state: "waiting for the lease".into(), ..Status::default() });
        Self { cfg, store, index, limits, deletes, clock, totals: Totals::default(), status }
    }

    pub fn config(&self) -> &CompactorConfig {
        &self.cfg
    }

    /// The delete requests this compactor serves and processes.
    pub fn deletes(&self) -> &Arc<DeleteRequests> {
        &self.deletes
    }

    pub fn limits(&self) -> &Arc<TenantLimits> {
        &self.limits
    }

    /// Now, in ns since the epoch.
    pub fn now_ns(&self) -> i64 {
        self.clock.now_ms().saturating_mul(1_000_000)
    }

    /// A snapshot of the status page.
    pub fn status(&self) -> Status {
        self.status.lock().clone()
    }

    fn set_state(&self, state: &str) {
        self.status.lock().state = state.to_string();
    }

    /// Runs a pass and records its outcome in the metrics and the status page.
    pub async fn run_recorded_pass(&self) -> Result<PassStats, CompactorError> {
        let started_at_ms = self.clock.now_ms();
        let started = Instant::now();
        let result = self.run_pass().await;
        let secs = started.elapsed().as_secs_f64();
        let t = &self.totals;
        t.passes.fetch_add(1, Ordering::Relaxed);
        t.last_pass_seconds_bits.store(secs.to_bits(), Ordering::Relaxed);
        match &result {
            Ok(s) => {
                t.chunks_expired.fetch_add(s.chunks_expired, Ordering::Relaxed);
                t.chunks_rewritten.fetch_add(s.chunks_rewritten, Ordering::Relaxed);
                t.lines_deleted.fetch_add(s.lines_deleted, Ordering::Relaxed);
                t.chunks_deleted.fetch_add(s.chunks_deleted, Ordering::Relaxed);
                t.bytes_deleted.fetch_add(s.bytes_deleted, Ordering::Relaxed);
                t.index_objects_removed.fetch_add(s.index_objects_removed, Ordering::Relaxed);
                t.requests_processed.fetch_add(s.requests_processed, Ordering::Relaxed);
                t.requests_pending.store(s.requests_pending, Ordering::Relaxed);
                tracing::info!(seconds = secs, stats = ?s, "compaction pass done");
            }
            Err(err) => {
                t.pass_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(seconds = secs, %err, "compaction pass failed");
            }
        }
        let mut st = self.status.lock();
        st.passes += 1;
        st.last_pass = Some(LastPass {
            started_at_ms,
            duration_seconds: secs,
            stats: result.as_ref().ok().copied(),
            error: result.as_ref().err().map(|e| e.to_string()),
        });
        result
    }

    /// Exports the totals on `/metrics`.
    pub fn register_metrics(self: &Arc<Self>, metrics: &Metrics) {
        type Field = fn(&Totals) -> &AtomicU64;
        let series: [(&'static str, &'static str, SampleKind, Field); 10] = [
            ("compactor_passes", "Compaction passes run", SampleKind::Counter, |t| &t.passes),
            ("compactor_pass_failures", "Compaction passes that failed", SampleKind::Counter, |t| &t.pass_failures),
            ("compactor_chunks_expired", "Chunks dropped from the index as past retention", SampleKind::Counter, |t| {
                &t.chunks_expired
            }),
            ("compactor_chunks_rewritten", "Chunks rewritten without deleted lines", SampleKind::Counter, |t| {
                &t.chunks_rewritten
            }),
            ("compactor_lines_deleted", "Lines removed from chunks by delete requests", SampleKind::Counter, |t| {
                &t.lines_deleted
            }),
            ("compactor_chunks_deleted", "Chunk objects deleted from the object store", SampleKind::Counter, |t| {
                &t.chunks_deleted
            }),
            ("compactor_bytes_deleted", "Bytes of chunk objects deleted from the store", SampleKind::Counter, |t| {
                &t.bytes_deleted
            }),
            ("compactor_index_objects_removed", "Index objects merged away", SampleKind::Counter, |t| {
                &t.index_objects_removed
            }),
            ("compactor_delete_requests_processed", "Delete requests processed", SampleKind::Counter, |t| {
                &t.requests_processed
            }),
            ("compactor_pending_delete_requests", "Delete requests waiting to be processed", SampleKind::Gauge, |t| {
                &t.requests_pending
            }),
        ];
        for (name, help, kind, field) in series {
            let me = Arc::clone(self);
            metrics.register_sampled(name, help, kind, move || field(&me.totals).load(Ordering::Relaxed) as f64);
        }
        let me = Arc::clone(self);
        metrics.register_sampled(
            "compactor_last_pass_duration_seconds",
            "Duration of the last compaction pass",
            SampleKind::Gauge,
            move || f64::from_bits(me.totals.last_pass_seconds_bits.load(Ordering::Relaxed)),
        );
    }

    /// Holds the lease and runs a pass every `compaction_interval` until `shutdown`; waits for
    /// the lease again when it is lost. A pass cut short (shutdown, lost lease) is left as a
    /// crash would leave it, which the next pass finishes.
    pub async fn run(self: Arc<Self>, lease: Lease, shutdown: CancellationToken) {
        self.status.lock().holder = lease.holder().to_string();
        loop {
            self.set_state("waiting for the lease");
            let Some(version) = lease.acquire(&shutdown).await else { break };
            self.set_state("active");
            let (stop_keeping, lost) = (CancellationToken::new(), CancellationToken::new());
            let keeper = {
                let (lease, stop, lost) = (lease.clone(), stop_keeping.clone(), lost.clone());
                tokio::spawn(async move { lease.keep(version, stop, lost).await })
            };
            loop {
                tokio::select! {
                    _ = self.run_recorded_pass() => {}
                    _ = lost.cancelled() => break,
                    _ = shutdown.cancelled() => break,
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.cfg.compaction_interval.get()) => {}
                    _ = lost.cancelled() => break,
                    _ = shutdown.cancelled() => break,
                }
            }
            stop_keeping.cancel();
            let _ = keeper.await;
            if shutdown.is_cancelled() {
                break;
            }
        }
        self.set_state("stopped");
    }
}

/// Builds the compactor of a process and starts it: it waits for the lease (`lease_kv`, the
/// ring's store) and then runs passes until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub fn start(
    cfg: &crate::config::Config,
    store: Arc<dyn ObjectStore>,
    index: Arc<Index>,
    limits: Arc<TenantLimits>,
    deletes: Arc<DeleteRequests>,
    lease_kv: Arc<dyn crate::ring::kv::KvStore>,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> (Arc<Compactor>, tokio::task::JoinHandle<()>) {
    let clock: Arc<dyn Clock> = Arc::new(crate::ring::model::SystemClock);
    let c = Arc::new(Compactor::new(cfg.compactor.clone(), store, index, limits, deletes, clock));
    c.register_metrics(metrics);
    let holder = format!("{}-{}-{:x}", cfg.instance.id, std::process::id(), crate::timeutil::now_nanos());
    let lease = Lease::new(lease_kv, cfg.ring.key(lease::LEASE_KEY), holder, cfg.compactor.lease_ttl.get());
    let task = tokio::spawn(c.clone().run(lease, shutdown));
    (c, task)
}
