//! Query-time filtering: what the querier hides before evaluation, so that nothing past
//! retention and nothing a delete request covers is ever returned, whether or not the compactor
//! got to it yet.
//!
//! The querier asks [`ReadFilter::for_tenant`] once per tenant and query, and passes every
//! stream's blocks (from ingester memory and from the store alike) through
//! [`TenantFilter::apply`]. Blocks no rule touches are passed on as they are, compressed; a
//! block that straddles the retention cutoff or overlaps a delete request is decoded and only
//! its surviving entries are handed on, as an uncompressed block.

use std::sync::Arc;

use crate::chunk::{BlockHandle, ChunkError, ChunkReader, Codec, DecodedBlock, MemChunk};
use crate::labels::{Labels, SharedLabels};
use crate::limits::{DeletionMode, TenantLimits};
use crate::ring::model::Clock;
use crate::storage::StorageError;

use super::deletes::{DeleteFilter, DeleteRequests, StreamDeletes};
use super::retention::TenantRetention;

/// Builds the per-query filters of the querier.
#[derive(Debug)]
pub struct ReadFilter {
    limits: Arc<TenantLimits>,
    deletes: Arc<DeleteRequests>,
    /// `compactor.retention_enabled`: retention is hidden only where it is enforced.
    retention_enabled: bool,
    clock: Arc<dyn Clock>,
    /// The last delete requests read per tenant: used while the object store is unavailable,
    /// where no new request can be stored either.
    last: parking_lot::Mutex<std::collections::HashMap<String, Vec<DeleteFilter>>>,
}

impl ReadFilter {
    pub fn new(
        limits: Arc<TenantLimits>,
        deletes: Arc<DeleteRequests>,
        retention_enabled: bool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { limits, deletes, retention_enabled, clock, last: Default::default() }
    }

    /// What to hide from one query of `tenant`: one listing of the tenant's delete requests.
    pub async fn for_tenant(&self, tenant: &str) -> Result<TenantFilter, StorageError> {
        let limits = self.limits.get(tenant);
        let retention = Some(TenantRetention::new(limits)).filter(|r| self.retention_enabled && !r.is_unlimited());
        let mut deletes = Vec::new();
        if limits.deletion_mode != DeletionMode::Disabled {
            deletes = match self.deletes.list(tenant).await {
                Ok(list) => {
                    let compiled = list
                        .iter()
                        .filter_map(|(req, _)| {
                            DeleteFilter::compile(req)
                                .inspect_err(|err| {
                                    tracing::warn!(tenant, id = %req.request_id, %err, "ignoring unreadable delete request")
                                })
                                .ok()
                        })
                        .collect::<Vec<_>>();
                    self.last.lock().insert(tenant.to_string(), compiled.clone());
                    compiled
                }
                Err(StorageError::Unavailable(err)) => match self.last.lock().get(tenant) {
                    Some(known) => {
                        tracing::warn!(tenant, %err, "object store unavailable; hiding the delete requests last read");
                        known.clone()
                    }
                    // Never read: nothing says what to hide, so nothing is shown.
                    None => return Err(StorageError::Unavailable(err)),
                },
                Err(e) => return Err(e),
            };
        }
        Ok(TenantFilter { retention, deletes, now: self.clock.now_ms().saturating_mul(1_000_000) })
    }
}

/// What one query of one tenant must not return.
#[derive(Debug, Clone)]
pub struct TenantFilter {
    retention: Option<TenantRetention>,
    deletes: Vec<DeleteFilter>,
    /// The query's notion of now (ns), which the retention cutoff counts back from.
    now: i64,
}

impl TenantFilter {
    /// Whether the filter hides nothing.
    pub fn is_noop(&self) -> bool {
        self.retention.is_none() && self.deletes.is_empty()
    }

    /// The oldest timestamp of the stream still inside retention.
    fn cutoff(&self, labels: &Labels) -> Option<i64> {
        self.retention.as_ref().and_then(|r| r.cutoff(labels, self.now))
    }

    /// Whether everything of a stream up to `through` is past retention (a chunk ending there
    /// need not be fetched).
    pub fn expired(&self, labels: &Labels, through: i64) -> bool {
        self.cutoff(labels).is_some_and(|c| through < c)
    }

    /// The blocks of the stream `labels` without expired and deleted entries.
    pub fn apply(&self, labels: &SharedLabels, blocks: Vec<BlockHandle>) -> Result<Vec<BlockHandle>, ChunkError> {
        let Some(lo) = blocks.iter().map(|b| b.meta().min_ts).min() else { return Ok(blocks) };
        let hi = blocks.iter().map(|b| b.meta().max_ts).max().unwrap_or(lo);
        let cutoff = self.cutoff(labels);
        let mut deletes = StreamDeletes::new(&self.deletes, labels, lo, hi);
        if cutoff.is_none_or(|c| lo >= c) && deletes.is_empty() {
            return Ok(blocks);
        }
        let mut out = Vec::with_capacity(blocks.len());
        for block in blocks {
            let m = *block.meta();
            if cutoff.is_some_and(|c| m.max_ts < c) {
                continue;
            }
            if cutoff.is_none_or(|c| m.min_ts >= c) && !deletes.overlaps(m.min_ts, m.max_ts) {
                out.push(block);
                continue;
            }
            let decoded = block.clone().decode()?;
            let mut kept = MemChunk::new(Codec::None, crate::chunk::MAX_BLOCK_SIZE);
            let dropped = copy_entries(&decoded, &mut kept, |ts, line, md| {
                cutoff.is_none_or(|c| ts >= c) && !deletes.deletes(ts, line, md)
            })?;
            if dropped == 0 {
                out.push(block);
            } else if !kept.is_empty() {
                out.extend(kept.block_handles(i64::MIN, i64::MAX)?);
            }
        }
        Ok(out)
    }
}

/// Appends the entries of `block` that `keep` accepts to `out`; returns how many it dropped.
pub(crate) fn copy_entries(
    block: &DecodedBlock,
    out: &mut MemChunk,
    mut keep: impl FnMut(i64, &[u8], &[(&str, &str)]) -> bool,
) -> Result<usize, ChunkError> {
    let mut dropped = 0;
    let mut md: Vec<(&str, &str)> = Vec::new();
    let ts = block.timestamps();
    let lines = block.lines_buf();
    for (i, &t) in ts.iter().enumerate() {
        md.clear();
        md.extend(block.metadata_pairs(i));
        let line = &lines[block.line_range(i)];
        if keep(t, line, &md) {
            out.append(t, line, &block.metadata(i))?;
        } else {
            dropped += 1;
        }
    }
    Ok(dropped)
}
