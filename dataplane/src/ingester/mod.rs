//! The ingester: streams in memory, the WAL that makes them durable, and flushing closed chunks
//! to the object store.
//!
//! A push is applied under the read side of `checkpoint_lock` together with its WAL submit, then
//! acknowledged once the WAL says it is durable. A checkpoint takes the write side for an instant
//! to rotate the WAL and snapshot memory, so the snapshot holds exactly what the segments before
//! the rotation hold, and those segments can go once the checkpoint is written.

mod flush;
pub mod lifecycle;
pub mod read;
mod replay;
pub mod stream;
pub mod walrec;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use crate::config::{IngesterConfig, SyncMode};
use crate::distributor::{PushError, PushTarget};
use crate::entry::{Direction, Entry, PushStream};
use crate::error::{ErrorKind, HasKind};
use crate::labels::SharedLabels;
use crate::limits::TenantLimits;
use crate::metrics::{Metrics, SampleKind};
use crate::ratelimit::TokenBucket;
use crate::storage::{Index, ObjectStore};
use crate::timeutil::format_rfc3339;
use crate::validation::{Discards, Reason};
use crate::wal::{SyncPolicy, Wal, WalConfig, WalError};
use stream::{ChunkSettings, CloseReason, Refusal, Stream};
use walrec::EntriesRecord;

/// Most refused entries listed per stream in an error message, as Loki does.
const MAX_LISTED_REFUSALS: usize = 10;

/// Why the ingester could not take or serve a request.
#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error("ingester is not accepting writes: {0}")]
    NotAccepting(&'static str),
    #[error("writing to the WAL: {0}")]
    Wal(#[from] WalError),
    #[error("flushing chunks: {0}")]
    Flush(String),
    #[error("replaying the WAL: {0}")]
    Replay(String),
}

impl HasKind for IngesterError {
    fn kind(&self) -> ErrorKind {
        match self {
            IngesterError::NotAccepting(_) => ErrorKind::Unavailable,
            IngesterError::Wal(_) | IngesterError::Flush(_) | IngesterError::Replay(_) => ErrorKind::Internal,
        }
    }
}

/// Counts the cluster around this ingester, for the share of a tenant's global stream limit.
pub trait RingShare: Send + Sync + std::fmt::Debug {
    /// (healthy ingesters, replication factor).
    fn ingesters_and_rf(&self) -> (usize, usize);
}

/// The ingester ring: its healthy ACTIVE ingesters and the replication factor after clipping.
impl RingShare for crate::ring::RingClient {
    fn ingesters_and_rf(&self) -> (usize, usize) {
        let rf = self.view().snapshot.effective_replication_factor();
        (self.healthy_active().max(1), rf.max(1))
    }
}

/// A single process: one ingester, no replication.
#[derive(Debug)]
pub struct SingleProcess;

impl RingShare for SingleProcess {
    fn ingesters_and_rf(&self) -> (usize, usize) {
        (1, 1)
    }
}

/// How a push becomes durable.
enum Durable {
    Ticket(crate::wal::WalTicket),
    Wait(Wal, bytes::Bytes),
}

/// A tenant's streams.
#[derive(Debug, Default)]
struct Tenant {
    streams: RwLock<HashMap<u64, Arc<Mutex<Stream>>>>,
}

pub struct Ingester {
    cfg: IngesterConfig,
    settings: ChunkSettings,
    limits: Arc<TenantLimits>,
    ring: Arc<dyn RingShare>,
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    /// Pushes hold it shared while they apply + submit; a checkpoint holds it exclusively while
    /// it rotates the WAL and snapshots memory.
    checkpoint_lock: RwLock<()>,
    wal: Option<Wal>,
    store: Arc<dyn ObjectStore>,
    index: Arc<Index>,
    metrics: Arc<Metrics>,
    accepting: AtomicBool,
    streams_total: Arc<AtomicUsize>,
    /// Flush cycles are serialized: the periodic loop, `/flush` and shutdown take turns.
    flush_lock: tokio::sync::Mutex<()>,
    flushed_chunks: AtomicU64,
    /// The pattern detector fed with every push, when enabled.
    patterns: std::sync::OnceLock<Arc<crate::pattern::PatternIngester>>,
}

impl std::fmt::Debug for Ingester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingester").field("streams", &self.streams_total.load(Ordering::Relaxed)).finish()
    }
}

impl Ingester {
    /// Replays the WAL at `wal_dir` (if enabled), opens it for writing and checkpoints the
    /// replayed state so the next start does not replay it again.
    pub fn open(
        cfg: IngesterConfig,
        wal_dir: std::path::PathBuf,
        limits: Arc<TenantLimits>,
        ring: Arc<dyn RingShare>,
        store: Arc<dyn ObjectStore>,
        index: Arc<Index>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Ingester>, IngesterError> {
        let defaults = limits.defaults().clone();
        let settings = ChunkSettings {
            codec: cfg.chunk_encoding,
            block_size: cfg.chunk_block_size.as_usize(),
            target_size: cfg.chunk_target_size.as_usize(),
            ooo_window: cfg.max_chunk_age.as_nanos_i64() / 2,
            unordered_writes: defaults.unordered_writes,
        };
        let mut ing = Ingester {
            settings,
            limits,
            ring,
            tenants: RwLock::new(HashMap::new()),
            checkpoint_lock: RwLock::new(()),
            wal: None,
            store,
            index,
            metrics,
            accepting: AtomicBool::new(false),
            streams_total: Arc::new(AtomicUsize::new(0)),
            flush_lock: tokio::sync::Mutex::new(()),
            flushed_chunks: AtomicU64::new(0),
            patterns: std::sync::OnceLock::new(),
            cfg,
        };
        if ing.cfg.wal.enabled {
            let started = Instant::now();
            let report = replay::replay(&ing, &wal_dir)?;
            tracing::info!(
                records = report.records,
                entries = report.entries,
                streams = ing.streams_total.load(Ordering::Relaxed),
                corrupt = report.problems,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "wal replayed"
            );
            let (problems, took) = (report.problems as f64, started.elapsed().as_secs_f64());
            let what = "Damaged WAL records, segments and checkpoints skipped by the replay at start";
            ing.metrics.register_sampled("ingester_wal_corruptions", what, SampleKind::Counter, move || problems);
            let what = "Seconds the WAL replay at start took";
            ing.metrics.register_sampled("ingester_wal_replay_duration_seconds", what, SampleKind::Gauge, move || took);
            let sync = match ing.cfg.wal.sync {
                SyncMode::Batch => SyncPolicy::Batch,
                SyncMode::Interval => SyncPolicy::Interval(ing.cfg.wal.sync_interval.get()),
                SyncMode::Never => SyncPolicy::Never,
            };
            let wal = Wal::open(WalConfig {
                segment_size: ing.cfg.wal.segment_size.bytes(),
                sync,
                ..WalConfig::new(wal_dir)
            })?;
            ing.wal = Some(wal);
        }
        let ing = Arc::new(ing);
        ing.register_metrics();
        if ing.wal.is_some() {
            ing.checkpoint()?;
        }
        ing.accepting.store(true, Ordering::SeqCst);
        Ok(ing)
    }

    fn register_metrics(self: &Arc<Self>) {
        let streams = self.streams_total.clone();
        self.metrics.register_sampled(
            "ingester_memory_streams",
            "Streams held in memory",
            SampleKind::Gauge,
            move || streams.load(Ordering::Relaxed) as f64,
        );
        if let Some(wal) = &self.wal {
            type Read = fn(&crate::wal::WalStats) -> f64;
            let sampled: [(&'static str, &'static str, SampleKind, Read); 5] = [
                ("ingester_wal_bytes_written", "Bytes written to the WAL", SampleKind::Counter, |s| {
                    s.bytes_written as f64
                }),
                ("ingester_wal_records_written", "Records written to the WAL", SampleKind::Counter, |s| {
                    s.records_written as f64
                }),
                ("ingester_wal_fsyncs", "fsync calls made by the WAL", SampleKind::Counter, |s| s.fsyncs as f64),
                ("ingester_wal_segment_bytes", "Bytes of WAL segment files on disk", SampleKind::Gauge, |s| {
                    s.segment_bytes_on_disk as f64
                }),
                ("ingester_wal_write_errors", "Failed WAL writes and fsyncs", SampleKind::Counter, |s| {
                    (s.write_errors + s.sync_errors) as f64
                }),
            ];
            for (name, help, kind, read) in sampled {
                let w = wal.clone();
                self.metrics.register_sampled(name, help, kind, move || read(&w.stats()));
            }
        }
    }

    /// Feeds every push from now on to `patterns` as well (once; later calls are ignored).
    pub fn attach_patterns(&self, patterns: Arc<crate::pattern::PatternIngester>) {
        let _ = self.patterns.set(patterns);
    }

    /// The pattern detector, when one is attached.
    pub fn patterns(&self) -> Option<&Arc<crate::pattern::PatternIngester>> {
        self.patterns.get()
    }

    /// Whether the ingester takes writes (replay done, not shutting down).
    pub fn is_ready(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// Closes every open chunk without flushing it: later appends start new chunks.
    pub fn close_open_chunks(&self) {
        let tenants: Vec<_> = self.tenants.read().values().cloned().collect();
        for t in tenants {
            for stream in t.streams.read().values() {
                stream.lock().close_head(CloseReason::Forced);
            }
        }
    }

    /// Refuses new pushes from now on (graceful shutdown has begun).
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Waits until pushes that were accepted before [`Ingester::stop_accepting`] have been
    /// applied and submitted to the WAL (blocking).
    pub fn drain_writes(&self) {
        drop(self.checkpoint_lock.write());
    }

    pub fn stream_count(&self) -> usize {
        self.streams_total.load(Ordering::Relaxed)
    }

    fn tenant(&self, name: &str) -> Arc<Tenant> {
        if let Some(t) = self.tenants.read().get(name) {
            return t.clone();
        }
        self.tenants.write().entry(name.to_string()).or_default().clone()
    }

    /// The most streams this ingester holds for a tenant (0 = unlimited).
    fn stream_limit(&self, tenant: &str) -> usize {
        let l = self.limits.get(tenant);
        let (ingesters, rf) = self.ring.ingesters_and_rf();
        let global = if l.max_global_streams_per_user > 0 {
            (l.max_global_streams_per_user * rf.max(1)).div_ceil(ingesters.max(1))
        } else {
            0
        };
        match (l.max_streams_per_user, global) {
            (0, g) => g,
            (local, 0) => local,
            (local, g) => local.min(g),
        }
    }

    /// Finds or creates a stream; `None` when the tenant's stream limit forbids a new one
    /// (only checked with `enforce_limits`, which replay does not).
    fn stream(
        &self,
        tenant_name: &str,
        tenant: &Tenant,
        labels: &SharedLabels,
        fingerprint: u64,
        now: Instant,
        enforce_limits: bool,
    ) -> Option<Arc<Mutex<Stream>>> {
        if let Some(s) = tenant.streams.read().get(&fingerprint) {
            return Some(s.clone());
        }
        let limit = if enforce_limits { self.stream_limit(tenant_name) } else { 0 };
        let mut streams = tenant.streams.write();
        if let Some(s) = streams.get(&fingerprint) {
            return Some(s.clone());
        }
        if limit > 0 && streams.len() >= limit {
            return None;
        }
        let l = self.limits.get(tenant_name);
        let limiter =
            TokenBucket::new(l.per_stream_rate_limit.bytes() as f64, l.per_stream_rate_limit_burst.bytes() as f64, now);
        let s = Arc::new(Mutex::new(Stream::new(labels.clone(), fingerprint, limiter, now)));
        streams.insert(fingerprint, s.clone());
        self.streams_total.fetch_add(1, Ordering::Relaxed);
        Some(s)
    }

    /// Applies a push and waits until it is durable. Returns what was refused.
    pub async fn push(&self, tenant: &str, streams: Vec<PushStream>) -> Result<Discards, IngesterError> {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(IngesterError::NotAccepting("shutting down"));
        }
        if let Some(p) = self.patterns.get() {
            p.observe(tenant, &streams);
        }
        let (durable, discards) = {
            let _applying = self.checkpoint_lock.read();
            let (record, discards) = self.apply(tenant, streams, self.wal.is_some(), true);
            let durable = match (record, &self.wal) {
                (Some(r), Some(wal)) if !r.is_empty() => {
                    let payload = r.finish();
                    Some(match wal.submit(payload.clone()) {
                        Ok(ticket) => Durable::Ticket(ticket),
                        Err(WalError::QueueFull) => Durable::Wait(wal.clone(), payload),
                        Err(e) => return Err(e.into()),
                    })
                }
                _ => None,
            };
            (durable, discards)
        };
        match durable {
            None => {}
            Some(Durable::Ticket(t)) => t.await?,
            // The disk is behind: wait for room outside the lock. A checkpoint may rotate in
            // between, so the record can land after a snapshot that already holds its entries;
            // replay drops such exact duplicates.
            Some(Durable::Wait(wal, payload)) => wal.submit_async(payload).await?.await?,
        }
        Ok(discards)
    }

    /// Appends the streams to memory; with `record`, also builds the WAL record of what was
    /// accepted. Replay passes `enforce_limits = false`: what it replays was accepted before.
    fn apply(
        &self,
        tenant_name: &str,
        streams: Vec<PushStream>,
        record: bool,
        enforce_limits: bool,
    ) -> (Option<EntriesRecord>, Discards) {
        let now = Instant::now();
        let tenant = self.tenant(tenant_name);
        let size: usize = streams.iter().flat_map(|s| s.entries.iter()).map(|e| e.line.len() + 12).sum();
        let mut rec = record.then(|| EntriesRecord::new(tenant_name, size));
        let mut discards = Discards::default();
        let limits = self.limits.get(tenant_name).clone();
        for (index, push) in streams.into_iter().enumerate() {
            let Some(mut s) = self.locked_stream(tenant_name, &tenant, &push, now, enforce_limits) else {
                let bytes = push.entries.iter().map(|e| e.size() as u64).sum();
                discards.add_stream(
                    index,
                    Reason::StreamLimit,
                    push.entries.len() as u64,
                    bytes,
                    Some(format!(
                        "Maximum active stream limit exceeded when trying to create stream {}, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: '{tenant_name}'",
                        push.labels
                    )),
                );
                continue;
            };
            if let Some(r) = rec.as_mut() {
                r.begin_stream(&s.labels_text);
            }
            let mut refused: Vec<(i64, Refusal)> = Vec::new();
            let (mut limited_lines, mut limited_bytes) = (0u64, 0u64);
            let total = push.entries.len();
            for e in &push.entries {
                match s.check(e, &self.settings) {
                    Ok(()) => {}
                    Err(Refusal::Duplicate) => {
                        self.metrics.duplicate_entries.inc();
                        continue;
                    }
                    Err(r) => {
                        refused.push((e.ts, r));
                        continue;
                    }
                }
                if enforce_limits && !s.limiter.allow(e.line.len() as f64, now) {
                    limited_lines += 1;
                    limited_bytes += e.size() as u64;
                    continue;
                }
                s.append(e, &self.settings, now);
                if let Some(r) = rec.as_mut() {
                    r.add(e);
                }
            }
            if limited_lines > 0 {
                discards.add_stream(
                    index,
                    Reason::PerStreamRateLimit,
                    limited_lines,
                    limited_bytes,
                    Some(format!(
                        "Per stream rate limit exceeded (limit: {}/sec) while attempting to ingest for stream '{}' totaling {}B, consider splitting a stream via additional labels or contact your Loki administrator to see if the limit can be increased",
                        limits.per_stream_rate_limit, s.labels_text, limited_bytes
                    )),
                );
            }
            if !refused.is_empty() {
                let mut msg = String::new();
                for (ts, r) in refused.iter().take(MAX_LISTED_REFUSALS) {
                    msg.push_str(&format!(
                        "entry with timestamp {} ignored, reason: '{}',\n",
                        format_rfc3339(*ts),
                        r.message(*ts)
                    ));
                }
                msg.push_str(&format!(
                    "user '{tenant_name}', total ignored: {} out of {total} for stream: {}",
                    refused.len(),
                    s.labels_text
                ));
                let reason = match refused[0].1 {
                    Refusal::OutOfOrder => Reason::OutOfOrder,
                    _ => Reason::TooFarBehind,
                };
                let bytes = push
                    .entries
                    .iter()
                    .filter(|e| refused.iter().any(|(ts, _)| *ts == e.ts))
                    .map(|e| e.size() as u64)
                    .sum();
                discards.add_stream(index, reason, refused.len() as u64, bytes, Some(msg));
            }
        }
        (rec, discards)
    }

    /// The stream locked, skipping one that a flush cycle just removed from the map.
    fn locked_stream(
        &self,
        tenant_name: &str,
        tenant: &Tenant,
        push: &PushStream,
        now: Instant,
        enforce_limits: bool,
    ) -> Option<parking_lot::ArcMutexGuard<parking_lot::RawMutex, Stream>> {
        loop {
            let stream = self.stream(tenant_name, tenant, &push.labels, push.fingerprint, now, enforce_limits)?;
            let guard = stream.lock_arc();
            if !guard.removed {
                return Some(guard);
            }
        }
    }

    /// Rotates the WAL, snapshots every unflushed chunk and writes the checkpoint; segments it
    /// covers are deleted.
    pub fn checkpoint(&self) -> Result<(), IngesterError> {
        let Some(wal) = &self.wal else { return Ok(()) };
        let started = Instant::now();
        let (n, snapshot) = {
            let _exclusive = self.checkpoint_lock.write();
            let n = wal.rotate()?;
            (n, self.snapshot())
        };
        let records = snapshot.into_iter().map(|s| s.encode());
        let stats = wal.write_checkpoint(n, records)?;
        tracing::info!(
            segment = n,
            ?stats,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "wal checkpoint written"
        );
        Ok(())
    }

    /// Unflushed chunks of every stream, cloned so they can be encoded outside the lock.
    fn snapshot(&self) -> Vec<walrec::CheckpointStream> {
        let mut out = Vec::new();
        for (tenant_name, tenant) in self.tenants.read().iter() {
            for stream in tenant.streams.read().values() {
                let s = stream.lock();
                let mut chunks: Vec<(bool, bytes::Bytes)> =
                    s.closed.iter().filter(|c| c.flushed_at.is_none()).map(|c| (true, c.chunk.encode())).collect();
                if let Some(h) = s.head.as_ref().filter(|h| !h.chunk.is_empty()) {
                    chunks.push((false, h.chunk.encode()));
                }
                if chunks.is_empty() {
                    continue;
                }
                out.push(walrec::CheckpointStream {
                    tenant: tenant_name.clone(),
                    labels: s.labels_text.to_string(),
                    max_ts: s.max_ts,
                    chunks,
                });
            }
        }
        out
    }

    /// Entries of the tenant's streams accepted by `select` within `[from, through)`. The
    /// querier's view of ingester memory.
    pub fn select(
        &self,
        tenant: &str,
        select: impl Fn(&SharedLabels) -> bool,
        from: i64,
        through: i64,
        direction: Direction,
    ) -> Vec<(SharedLabels, Vec<Entry>)> {
        let Some(t) = self.tenants.read().get(tenant).cloned() else { return Vec::new() };
        let streams: Vec<_> = t.streams.read().values().cloned().collect();
        let mut out = Vec::new();
        for stream in streams {
            let s = stream.lock();
            if !select(&s.labels) {
                continue;
            }
            let entries = s.entries(from, through, direction);
            if !entries.is_empty() {
                out.push((s.labels.clone(), entries));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Runs the periodic flush and checkpoint loops until `shutdown` fires.
    pub async fn run_background(self: Arc<Self>, shutdown: CancellationToken) {
        let mut flush_tick = tokio::time::interval(self.cfg.flush_check_period.get());
        let mut checkpoint_tick = tokio::time::interval(self.cfg.wal.checkpoint_interval.get());
        flush_tick.tick().await;
        checkpoint_tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = flush_tick.tick() => {
                    if let Err(err) = self.flush(false).await {
                        tracing::warn!(%err, "flush cycle failed; chunks stay in memory and are retried");
                    }
                }
                _ = checkpoint_tick.tick() => {
                    let me = self.clone();
                    match tokio::task::spawn_blocking(move || me.checkpoint()).await {
                        Ok(Err(err)) => tracing::error!(%err, "wal checkpoint failed"),
                        Err(err) => tracing::error!(%err, "wal checkpoint task failed"),
                        Ok(Ok(())) => {}
                    }
                }
            }
        }
    }

    /// Stops taking writes, then flushes everything (`flush = true`) or checkpoints so the WAL
    /// carries memory into the next start, and closes the WAL.
    pub async fn shutdown(self: &Arc<Self>, flush: bool) -> Result<(), IngesterError> {
        self.accepting.store(false, Ordering::SeqCst);
        // Wait for pushes that are between apply and WAL submit.
        drop(self.checkpoint_lock.write());
        if flush {
            self.flush(true).await?;
        }
        if self.wal.is_some() {
            let me = self.clone();
            tokio::task::spawn_blocking(move || -> Result<(), IngesterError> {
                me.checkpoint()?;
                if let Some(w) = &me.wal {
                    w.close()?;
                }
                Ok(())
            })
            .await
            .map_err(|e| IngesterError::Flush(format!("shutdown task failed: {e}")))??;
        }
        Ok(())
    }

    /// Total chunks written to the object store since start.
    pub fn flushed_chunks(&self) -> u64 {
        self.flushed_chunks.load(Ordering::Relaxed)
    }

    fn flush_timeout(&self) -> Duration {
        self.cfg.flush_op_timeout.get()
    }

    fn close_reason(&self, s: &Stream, now: Instant, force: bool) -> Option<CloseReason> {
        let h = s.head.as_ref().filter(|h| !h.chunk.is_empty())?;
        if force {
            return Some(CloseReason::Forced);
        }
        if now.duration_since(s.last_append) >= self.cfg.chunk_idle_period.get() {
            return Some(CloseReason::Idle);
        }
        let age = self.cfg.max_chunk_age.get();
        let span_ns = h.chunk.bounds().map_or(0, |(lo, hi)| hi.saturating_sub(lo));
        if span_ns >= self.cfg.max_chunk_age.as_nanos_i64() || now.duration_since(h.created) >= age {
            return Some(CloseReason::MaxAge);
        }
        None
    }
}

#[async_trait]
impl PushTarget for Ingester {
    async fn push(&self, tenant: &str, streams: Vec<PushStream>) -> Result<Discards, PushError> {
        Ingester::push(self, tenant, streams).await.map_err(|e| match e.kind() {
            ErrorKind::Unavailable => PushError::Unavailable(e.to_string()),
            _ => PushError::Internal(e.to_string()),
        })
    }
}

#[cfg(test)]
mod tests;
