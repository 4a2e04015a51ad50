//! Flushing: closing chunks that are due, writing them and their index entries to the object
//! store, and letting go of what is flushed.
//!
//! Order matters for queriers: the chunk object is written before the index entry that points
//! to it. Chunk keys derive from content, so a retried flush (or a replica flushing the same
//! chunk) rewrites the same object instead of adding a duplicate.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::StreamExt;
use parking_lot::Mutex;

use super::stream::{CloseReason, Stream};
use super::{Ingester, IngesterError};
use crate::chunk::MemChunk;
use crate::labels::SharedLabels;
use crate::metrics::ReasonLabel;
use crate::storage::{ChunkRef, chunk_key};

/// A closed chunk on its way to the object store.
struct Job {
    tenant: String,
    stream: Arc<Mutex<Stream>>,
    labels: SharedLabels,
    fingerprint: u64,
    chunk: Arc<MemChunk>,
    reason: CloseReason,
}

/// What one flush cycle did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    pub flushed: usize,
    pub failed: usize,
    pub streams_removed: usize,
}

impl Ingester {
    /// One flush cycle. With `force`, every open chunk is closed and flushed (`/flush`,
    /// shutdown); otherwise only chunks that are full, idle or too old. An error means some
    /// chunks stay in memory for the next cycle; nothing is lost.
    pub async fn flush(&self, force: bool) -> Result<FlushStats, IngesterError> {
        let _one_at_a_time = self.flush_lock.lock().await;
        let now = Instant::now();
        let jobs = self.collect_jobs(now, force);
        let mut stats = FlushStats::default();
        let timeout = self.flush_timeout();
        let results: Vec<(Job, Result<ChunkRef, String>)> = futures::stream::iter(jobs)
            .map(|job| async move {
                let r = tokio::time::timeout(timeout, self.write_chunk(&job)).await;
                let r = r.unwrap_or_else(|_| Err(format!("chunk write timed out after {timeout:?}")));
                (job, r)
            })
            .buffer_unordered(self.cfg.concurrent_flushes)
            .collect()
            .await;
        let mut by_tenant: HashMap<String, Vec<(Job, ChunkRef)>> = HashMap::new();
        let mut first_err = None;
        for (job, r) in results {
            match r {
                Ok(cref) => by_tenant.entry(job.tenant.clone()).or_default().push((job, cref)),
                Err(err) => {
                    tracing::warn!(tenant = %job.tenant, stream = %job.labels, %err, "chunk flush failed");
                    self.mark_failed(&job);
                    self.metrics.chunk_flush_failures.inc();
                    stats.failed += 1;
                    first_err.get_or_insert(err);
                }
            }
        }
        for (tenant, done) in by_tenant {
            let refs: Vec<ChunkRef> = done.iter().map(|(_, r)| r.clone()).collect();
            let written = tokio::time::timeout(timeout, self.index.write(&tenant, &refs)).await;
            match written {
                Ok(Ok(())) => {
                    let at = Instant::now();
                    for (job, cref) in done {
                        self.mark_flushed(&job, at);
                        self.metrics
                            .chunks_flushed
                            .get_or_create(&ReasonLabel { reason: job.reason.as_str().into() })
                            .inc();
                        self.metrics.chunk_flushed_bytes.inc_by(u64::from(cref.size));
                        stats.flushed += 1;
                    }
                }
                Ok(Err(e)) => {
                    let err = format!("writing index for tenant {tenant}: {e}");
                    tracing::warn!(%err, chunks = done.len(), "index write failed");
                    done.iter().for_each(|(job, _)| self.mark_failed(job));
                    self.metrics.chunk_flush_failures.inc_by(done.len() as u64);
                    stats.failed += done.len();
                    first_err.get_or_insert(err);
                }
                Err(_) => {
                    let err = format!("writing index for tenant {tenant} timed out after {timeout:?}");
                    tracing::warn!(%err, "index write failed");
                    done.iter().for_each(|(job, _)| self.mark_failed(job));
                    stats.failed += done.len();
                    first_err.get_or_insert(err);
                }
            }
        }
        self.flushed_chunks.fetch_add(stats.flushed as u64, Ordering::Relaxed);
        stats.streams_removed = self.release(Instant::now());
        if stats.flushed > 0 || stats.failed > 0 {
            tracing::debug!(?stats, "flush cycle done");
        }
        match first_err {
            Some(e) => Err(IngesterError::Flush(e)),
            None => Ok(stats),
        }
    }

    /// Closes due chunks and lists every closed chunk not yet flushed.
    fn collect_jobs(&self, now: Instant, force: bool) -> Vec<Job> {
        let mut jobs = Vec::new();
        let tenants: Vec<_> = self.tenants.read().iter().map(|(n, t)| (n.clone(), t.clone())).collect();
        for (tenant, t) in tenants {
            let streams: Vec<_> = t.streams.read().values().cloned().collect();
            for stream in streams {
                let mut s = stream.lock();
                if let Some(reason) = self.close_reason(&s, now, force) {
                    s.close_head(reason);
                }
                // A chunk whose last flush failed waits out its backoff, unless forced (`/flush`,
                // shutdown).
                let due = |c: &&super::stream::ClosedChunk| force || c.retry_at.is_none_or(|at| at <= now);
                for c in s.closed.iter().filter(|c| c.flushed_at.is_none()).filter(due) {
                    jobs.push(Job {
                        tenant: tenant.clone(),
                        stream: stream.clone(),
                        labels: s.labels.clone(),
                        fingerprint: s.fingerprint,
                        chunk: c.chunk.clone(),
                        reason: c.reason,
                    });
                }
            }
        }
        jobs
    }

    async fn write_chunk(&self, job: &Job) -> Result<ChunkRef, String> {
        let chunk = job.chunk.clone();
        let bytes =
            tokio::task::spawn_blocking(move || chunk.encode()).await.map_err(|e| format!("encoding chunk: {e}"))?;
        let (from, through) = job.chunk.bounds().ok_or("empty chunk")?;
        let checksum = crc32c::crc32c(&bytes);
        let key = chunk_key(&job.tenant, job.fingerprint, from, through, checksum);
        let cref = ChunkRef {
            fingerprint: job.fingerprint,
            labels: job.labels.clone(),
            from,
            through,
            key: key.clone(),
            size: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            entries: u32::try_from(job.chunk.len()).unwrap_or(u32::MAX),
            uncompressed: job.chunk.uncompressed_size() as u64,
            checksum,
        };
        self.store.put(&key, bytes).await.map_err(|e| format!("writing {key}: {e}"))?;
        Ok(cref)
    }

    fn mark_flushed(&self, job: &Job, at: Instant) {
        let mut s = job.stream.lock();
        if let Some(c) = s.closed.iter_mut().find(|c| Arc::ptr_eq(&c.chunk, &job.chunk)) {
            c.flushed_at = Some(at);
            c.retry_at = None;
        }
    }

    /// Backs a chunk whose flush failed off ([`super::stream::retry_delay`]).
    fn mark_failed(&self, job: &Job) {
        let mut s = job.stream.lock();
        if let Some(c) = s.closed.iter_mut().find(|c| Arc::ptr_eq(&c.chunk, &job.chunk)) {
            c.failures = c.failures.saturating_add(1);
            c.retry_at = Some(Instant::now() + super::stream::retry_delay(c.failures));
        }
    }

    /// Drops flushed chunks past the retain period and streams left with nothing in memory.
    /// Returns how many streams were removed.
    fn release(&self, now: Instant) -> usize {
        let retain = self.cfg.chunk_retain_period.get();
        let mut removed = 0;
        let mut chunks = 0;
        let tenants: Vec<_> = self.tenants.read().values().cloned().collect();
        for t in tenants {
            let mut streams = t.streams.write();
            streams.retain(|_, stream| {
                let mut s = stream.lock();
                s.closed.retain(|c| c.flushed_at.is_none_or(|at| now.duration_since(at) < retain));
                let empty = s.closed.is_empty() && s.head.as_ref().is_none_or(|h| h.chunk.is_empty());
                if empty {
                    s.removed = true;
                    removed += 1;
                } else {
                    chunks += s.chunk_count();
                }
                !empty
            });
        }
        self.streams_total.fetch_sub(removed, Ordering::Relaxed);
        self.metrics.memory_chunks.set(chunks as i64);
        removed
    }
}
