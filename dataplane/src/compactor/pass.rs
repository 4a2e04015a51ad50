//! One compaction pass over every tenant.
//!
//! For each tenant and index period, the pass reads the period's index objects, decides for each
//! chunk whether it stays, expired (past retention) or is rewritten (a processed delete
//! request), and replaces the period's objects with one. The order of writes is what makes a
//! pass safe to kill at any point:
//!
//! 1. rewritten chunks are written under their new (content-derived) keys;
//! 2. a deletion marker lists the chunks the period drops;
//! 3. the period's new index object is written, then its old objects are deleted;
//! 4. a marker older than `retention_delete_delay` is swept: each chunk it lists is deleted only
//!    if no index object references it any more, then the marker is deleted.
//!
//! A chunk object is therefore never deleted while the index lists it. Every decision is a
//! function of the chunk and the configuration, so a pass that starts over after a crash makes
//! the same decisions, writes the same objects, and finishes the work.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

use crate::chunk::{Chunk, DEFAULT_BLOCK_SIZE, MemChunk};
use crate::limits::DeletionMode;
use crate::storage::{ChunkRef, StorageError, chunk_key};

use super::deletes::{DeleteFilter, DeleteStatus, StreamDeletes};
use super::filter::copy_entries;
use super::retention::TenantRetention;
use super::{Compactor, CompactorError};

/// Chunk objects deleted in parallel by a sweep.
const DELETE_CONCURRENCY: usize = 16;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PassStats {
    /// Tenants visited.
    pub tenants: u64,
    /// Index periods whose objects were replaced.
    pub periods_compacted: u64,
    /// Index objects deleted after being merged.
    pub index_objects_removed: u64,
    /// Index objects written.
    pub index_objects_written: u64,
    /// Chunks dropped from the index as past retention.
    pub chunks_expired: u64,
    /// Chunks rewritten without the lines of delete requests (or dropped, when nothing was left).
    pub chunks_rewritten: u64,
    /// Lines removed by those rewrites.
    pub lines_deleted: u64,
    /// Chunk objects deleted from the store (swept markers).
    pub chunks_deleted: u64,
    /// Compressed bytes of those chunk objects.
    pub bytes_deleted: u64,
    /// Delete requests marked processed.
    pub requests_processed: u64,
    /// Delete requests of `filter-and-delete` tenants still inside their cancel period.
    pub requests_pending: u64,
}

/// A deletion marker: chunks dropped from the index, to delete from the store after the delay.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Marker {
    chunks: Vec<MarkedChunk>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MarkedChunk {
    key: String,
    from: i64,
    through: i64,
    size: u64,
}

/// What a delete rewrite made of one chunk.
#[derive(Debug, Clone)]
enum Rewrite {
    /// No entry was deleted.
    Unchanged,
    /// Every entry was deleted.
    Empty,
    /// The surviving entries, in a new chunk already in the store.
    New(ChunkRef),
}

fn markers_prefix(tenant: &str) -> String {
    format!("{tenant}/compactor/markers/")
}

impl Compactor {
    /// Runs one pass over every tenant. A tenant that fails is logged and skipped (the next pass
    /// retries it); the first error is returned after the others were done.
    pub async fn run_pass(&self) -> Result<PassStats, CompactorError> {
        let now = self.now_ns();
        let mut stats = PassStats::default();
        let mut first_err = None;
        for tenant in self.index.tenants().await? {
            stats.tenants += 1;
            if let Err(err) = self.compact_tenant(&tenant, now, &mut stats).await {
                tracing::warn!(%tenant, %err, "compacting tenant failed");
                first_err.get_or_insert(err);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    async fn compact_tenant(&self, tenant: &str, now: i64, stats: &mut PassStats) -> Result<(), CompactorError> {
        let limits = self.limits.get(tenant);
        let retention = Some(TenantRetention::new(limits)).filter(|r| self.cfg.retention_enabled && !r.is_unlimited());
        let cancel_period = self.cfg.delete_request_cancel_period.as_nanos_i64();
        let mut requests = Vec::new();
        if limits.deletion_mode == DeletionMode::FilterAndDelete {
            for (req, status) in self.deletes.list(tenant).await? {
                if status != DeleteStatus::Received {
                    continue;
                }
                if now.saturating_sub(req.created_at) >= cancel_period {
                    requests.push((req.request_id.clone(), DeleteFilter::compile(&req)?));
                } else {
                    stats.requests_pending += 1;
                }
            }
        }
        let filters: Vec<DeleteFilter> = requests.iter().map(|(_, f)| f.clone()).collect();
        // Decisions about chunks listed in several periods, made once per pass.
        let mut rewrites: HashMap<String, Rewrite> = HashMap::new();
        let mut expired: HashSet<String> = HashSet::new();
        for period in self.index.tenant_periods(tenant).await? {
            let keys = self.index.period_objects(tenant, period).await?;
            if keys.is_empty() {
                continue;
            }
            let refs = self.index.read_objects(tenant, &keys).await?;
            let (first, last) = self.index.period_bounds(period);
            let mut keep: Vec<ChunkRef> = Vec::with_capacity(refs.len());
            let mut removed: Vec<ChunkRef> = Vec::new();
            for r in refs {
                if retention.as_ref().and_then(|x| x.cutoff(&r.labels, now)).is_some_and(|c| r.through < c) {
                    if expired.insert(r.key.clone()) {
                        stats.chunks_expired += 1;
                    }
                    removed.push(r);
                    continue;
                }
                if !filters.iter().any(|f| f.applies(&r.labels, r.from, r.through)) {
                    keep.push(r);
                    continue;
                }
                let rewrite = match rewrites.get(&r.key) {
                    Some(done) => done.clone(),
                    None => {
                        let done = self.rewrite_chunk(tenant, &r, &filters, stats).await?;
                        rewrites.insert(r.key.clone(), done.clone());
                        done
                    }
                };
                match rewrite {
                    Rewrite::Unchanged => keep.push(r),
                    Rewrite::Empty => removed.push(r),
                    Rewrite::New(n) => {
                        if n.overlaps(first, last) {
                            keep.push(n);
                        }
                        removed.push(r);
                    }
                }
            }
            if removed.is_empty() && keys.len() < 2 {
                continue;
            }
            if !removed.is_empty() {
                self.write_marker(tenant, now, &removed).await?;
            }
            let merged = self.index.replace_period(tenant, period, &keep, &keys).await?;
            stats.periods_compacted += 1;
            stats.index_objects_written += u64::from(merged.is_some());
            stats.index_objects_removed += keys.iter().filter(|k| Some(*k) != merged.as_ref()).count() as u64;
        }
        for (id, _) in &requests {
            self.deletes.mark_processed(tenant, id).await?;
            stats.requests_processed += 1;
            tracing::info!(tenant, id = %id, "delete request processed");
        }
        self.sweep_markers(tenant, now, stats).await
    }

    /// Rewrites one chunk without the entries the filters delete.
    async fn rewrite_chunk(
        &self,
        tenant: &str,
        r: &ChunkRef,
        filters: &[DeleteFilter],
        stats: &mut PassStats,
    ) -> Result<Rewrite, CompactorError> {
        let data = match self.store.get(&r.key).await {
            Ok(d) => d,
            Err(StorageError::NotFound { .. }) => {
                tracing::warn!(tenant, key = %r.key, "indexed chunk is missing; dropping its index entry");
                return Ok(Rewrite::Empty);
            }
            Err(e) => return Err(e.into()),
        };
        if crc32c::crc32c(&data) != r.checksum {
            return Err(CompactorError::Chunk(format!("chunk {} does not match its checksum", r.key)));
        }
        let (labels, from, through, filters) = (r.labels.clone(), r.from, r.through, filters.to_vec());
        let rebuilt = tokio::task::spawn_blocking(move || -> Result<(MemChunk, usize), String> {
            let chunk = Chunk::decode(data).map_err(|e| e.to_string())?;
            let mut deletes = StreamDeletes::new(&filters, &labels, from, through);
            let mut out = MemChunk::new(chunk.codec(), DEFAULT_BLOCK_SIZE);
            let mut dropped = 0;
            for i in 0..chunk.blocks().len() {
                let block = chunk.decode_block(i).map_err(|e| e.to_string())?;
                dropped += copy_entries(&block, &mut out, |ts, line, md| !deletes.deletes(ts, line, md))
                    .map_err(|e| e.to_string())?;
            }
            out.close();
            Ok((out, dropped))
        })
        .await
        .map_err(|e| CompactorError::Chunk(format!("rewrite task failed: {e}")))?
        .map_err(|e| CompactorError::Chunk(format!("chunk {}: {e}", r.key)))?;
        let (chunk, dropped) = rebuilt;
        if dropped == 0 {
            return Ok(Rewrite::Unchanged);
        }
        stats.chunks_rewritten += 1;
        stats.lines_deleted += dropped as u64;
        let Some((from, through)) = chunk.bounds() else { return Ok(Rewrite::Empty) };
        let bytes = chunk.try_encode().map_err(|e| CompactorError::Chunk(e.to_string()))?;
        let checksum = crc32c::crc32c(&bytes);
        let key = chunk_key(tenant, r.fingerprint, from, through, checksum);
        let new = ChunkRef {
            fingerprint: r.fingerprint,
            labels: r.labels.clone(),
            from,
            through,
            key: key.clone(),
            size: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            entries: u32::try_from(chunk.len()).unwrap_or(u32::MAX),
            uncompressed: chunk.uncompressed_size() as u64,
            checksum,
        };
        self.store.put(&key, bytes).await?;
        Ok(Rewrite::New(new))
    }

    /// Records chunks dropped from the index, before the index drops them.
    async fn write_marker(&self, tenant: &str, now: i64, removed: &[ChunkRef]) -> Result<(), CompactorError> {
        let marker = Marker {
            chunks: removed
                .iter()
                .map(|r| MarkedChunk { key: r.key.clone(), from: r.from, through: r.through, size: u64::from(r.size) })
                .collect(),
        };
        let data = serde_json::to_vec(&marker).map_err(|e| CompactorError::Chunk(e.to_string()))?;
        let hash = xxhash_rust::xxh3::xxh3_64(&data);
        let key = format!("{}{:020}-{hash:016x}.json", markers_prefix(tenant), now.max(0));
        self.store.put(&key, Bytes::from(data)).await?;
        Ok(())
    }

    /// Deletes the chunks of markers older than `retention_delete_delay` that no index object
    /// references, then the markers.
    async fn sweep_markers(&self, tenant: &str, now: i64, stats: &mut PassStats) -> Result<(), CompactorError> {
        let delay = self.cfg.retention_delete_delay.as_nanos_i64();
        // Keys each period's index references, read at most once per sweep.
        let mut referenced: HashMap<i64, HashSet<String>> = HashMap::new();
        for meta in self.store.list(&markers_prefix(tenant)).await? {
            let name = meta.key.rsplit('/').next().unwrap_or_default();
            let Some(created) = name.split('-').next().and_then(|t| t.parse::<i64>().ok()) else { continue };
            if now.saturating_sub(created) < delay {
                // Names sort by creation time: every later marker is younger.
                break;
            }
            let data = match self.store.get(&meta.key).await {
                Ok(d) => d,
                Err(StorageError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let marker: Marker = serde_json::from_slice(&data)
                .map_err(|e| StorageError::Corrupt { key: meta.key.clone(), reason: e.to_string() })?;
            let mut unreferenced = Vec::with_capacity(marker.chunks.len());
            for c in marker.chunks {
                // Still listed: the pass that wrote the marker did not finish, and the one that
                // does writes a marker of its own.
                if !self.is_referenced(tenant, &c, &mut referenced).await? {
                    unreferenced.push(c);
                }
            }
            stats.chunks_deleted += unreferenced.len() as u64;
            stats.bytes_deleted += unreferenced.iter().map(|c| c.size).sum::<u64>();
            stream::iter(unreferenced)
                .map(|c| async move { self.store.delete(&c.key).await })
                .buffer_unordered(DELETE_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
            self.store.delete(&meta.key).await?;
        }
        Ok(())
    }

    async fn is_referenced(
        &self,
        tenant: &str,
        c: &MarkedChunk,
        referenced: &mut HashMap<i64, HashSet<String>>,
    ) -> Result<bool, CompactorError> {
        for p in self.index.period_of(c.from)..=self.index.period_of(c.through) {
            if let std::collections::hash_map::Entry::Vacant(slot) = referenced.entry(p) {
                let keys = self.index.period_objects(tenant, p).await?;
                let refs = self.index.read_objects(tenant, &keys).await?;
                slot.insert(refs.into_iter().map(|r| r.key).collect());
            }
            if referenced.get(&p).is_some_and(|set| set.contains(&c.key)) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
