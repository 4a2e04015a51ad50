//! The querier's [`LogSource`]: ingester memory first, then the object store through the index,
//! merged per stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;

use super::{NeedleCache, Querier};
use crate::chunk::{BlockHandle, Chunk, ChunkReader};
use crate::compactor::TenantFilter;
use crate::labels::{Label, Labels, SharedLabels};
use crate::logql::Matcher;
use crate::query::pipeline::NeedlePlan;
use crate::query::source::matches_all;
use crate::query::{EvalError, LogSource, MemoryBudget, StreamBlocks};
use crate::storage::ChunkRef;

/// The label that names the tenant of each result in a multi-tenant query.
pub const TENANT_LABEL: &str = "__tenant_id__";

/// Chunk fetches in flight per query.
const FETCH_CONCURRENCY: usize = 16;

/// What a query read, for the `stats` block of responses.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Chunks referenced by the index for the query.
    pub chunks_ref: AtomicU64,
    /// Chunks fetched from the object store (not those the chunk cache held).
    pub chunks_downloaded: AtomicU64,
    /// Compressed bytes fetched from the object store.
    pub bytes_downloaded: AtomicU64,
    /// Nanoseconds spent fetching chunks.
    pub download_nanos: AtomicU64,
    /// Blocks handed to evaluation, from memory and from the store.
    pub blocks: AtomicU64,
    /// Entries and uncompressed bytes of those blocks: what evaluation had to look at.
    pub lines: AtomicU64,
    pub bytes: AtomicU64,
    /// Streams and blocks that came from ingester memory.
    pub ingester_streams: AtomicU64,
    pub ingester_blocks: AtomicU64,
    /// Tenant reads answered from ingester memory alone because the object store was
    /// unavailable: the answer may miss older data (a warning in the response).
    pub store_failures: AtomicU64,
    /// Sub-queries, time splits and shards the query frontend cut the query into.
    pub subqueries: AtomicU64,
    pub splits: AtomicU64,
    pub shards: AtomicU64,
}

/// The read counters of [`SourceStats`] as plain numbers: what a querier reports to the query
/// frontend with each sub-query's answer, summed into the request's statistics there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub chunks_ref: u64,
    pub chunks_downloaded: u64,
    pub bytes_downloaded: u64,
    pub download_nanos: u64,
    pub blocks: u64,
    pub lines: u64,
    pub bytes: u64,
    pub ingester_streams: u64,
    pub ingester_blocks: u64,
    pub store_failures: u64,
}

impl SourceStats {
    /// The read counters now.
    pub fn snapshot(&self) -> ReadStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ReadStats {
            chunks_ref: get(&self.chunks_ref),
            chunks_downloaded: get(&self.chunks_downloaded),
            bytes_downloaded: get(&self.bytes_downloaded),
            download_nanos: get(&self.download_nanos),
            blocks: get(&self.blocks),
            lines: get(&self.lines),
            bytes: get(&self.bytes),
            ingester_streams: get(&self.ingester_streams),
            ingester_blocks: get(&self.ingester_blocks),
            store_failures: get(&self.store_failures),
        }
    }

    /// Adds what a sub-query read.
    pub fn add(&self, r: &ReadStats) {
        let add = |a: &AtomicU64, n: u64| a.fetch_add(n, Ordering::Relaxed);
        add(&self.chunks_ref, r.chunks_ref);
        add(&self.chunks_downloaded, r.chunks_downloaded);
        add(&self.bytes_downloaded, r.bytes_downloaded);
        add(&self.download_nanos, r.download_nanos);
        add(&self.blocks, r.blocks);
        add(&self.lines, r.lines);
        add(&self.bytes, r.bytes);
        add(&self.ingester_streams, r.ingester_streams);
        add(&self.ingester_blocks, r.ingester_blocks);
        add(&self.store_failures, r.store_failures);
    }

    /// The warning of an answer some of whose reads could not reach the object store.
    pub fn warnings(&self) -> Vec<String> {
        match self.store_failures.load(Ordering::Relaxed) {
            0 => Vec::new(),
            n => vec![format!(
                "the object store was unavailable: {n} read(s) answered from ingester memory only; data already flushed and released from memory is missing"
            )],
        }
    }
}

/// One of `of` disjoint parts of a tenant's streams, by stream fingerprint: the query frontend
/// runs a shardable query once per shard, on different queriers, and joins the results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..of`.
    pub index: u32,
    /// Number of shards.
    pub of: u32,
}

impl Shard {
    /// Whether the stream with `fingerprint` belongs to this shard. Fingerprints are hashes of
    /// the tenant and labels, so streams spread evenly.
    pub fn owns(&self, fingerprint: u64) -> bool {
        self.of <= 1 || fingerprint % u64::from(self.of) == u64::from(self.index)
    }

    /// Checks the shard names a part of a split into at least one.
    pub fn validate(&self) -> Result<(), String> {
        if self.of == 0 || self.index >= self.of {
            return Err(format!("invalid shard {} of {}", self.index, self.of));
        }
        Ok(())
    }
}

/// A chunk's blocks for the query's range, and whether they were downloaded (not cached).
type Fetched = (ChunkRef, Vec<BlockHandle>, bool);

/// A [`LogSource`] over the tenant(s) of one request.
pub struct QuerierSource {
    pub(super) querier: Querier,
    pub(super) tenants: Vec<String>,
    pub(super) stats: Arc<SourceStats>,
    /// Only the streams of this shard (all streams when `None`).
    pub(super) shard: Option<Shard>,
    /// What the query may hold (`querier.max_query_memory`).
    pub(super) budget: Arc<MemoryBudget>,
}

impl QuerierSource {
    fn owns(&self, fingerprint: u64) -> bool {
        self.shard.is_none_or(|s| s.owns(fingerprint))
    }

    /// Whether `tenant` passes the query's matchers on `__tenant_id__` (multi-tenant queries).
    fn tenant_selected(&self, tenant: &str, matchers: &[Matcher]) -> bool {
        matchers.iter().filter(|m| m.name == TENANT_LABEL).all(|m| m.matches(tenant))
    }

    fn with_tenant(&self, labels: &SharedLabels, tenant: &str) -> SharedLabels {
        if self.tenants.len() < 2 {
            return labels.clone();
        }
        let mut v: Vec<Label> = labels.iter().cloned().collect();
        v.push(Label::new(TENANT_LABEL, tenant));
        Arc::new(Labels::from_vec(v).sorted())
    }

    async fn select_tenant(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        (from, through): (i64, i64),
        needles: Option<&NeedlePlan>,
    ) -> Result<Vec<StreamBlocks>, EvalError> {
        let matchers: Vec<Matcher> = matchers.iter().filter(|m| m.name != TENANT_LABEL).cloned().collect();
        // Memory before the index: a chunk flushed in between is then in the index; the other
        // order could miss it.
        let mut streams = self.memory_streams(tenant, &matchers, (from, through), false).await?;
        let hidden = self.querier.tenant_filter(tenant).await?;
        let fetched = match self.store_blocks(tenant, &matchers, hidden.as_ref(), (from, through), needles).await {
            Ok(f) => f,
            // The store is away: what ingesters hold, flushed chunks included, is still an
            // answer, marked as partial.
            Err(EvalError::StoreUnavailable(err)) if self.querier.ingesters.is_some() => {
                tracing::warn!(tenant, %err, "object store unavailable; answering from ingester memory only");
                self.stats.store_failures.fetch_add(1, Ordering::Relaxed);
                streams = self.memory_streams(tenant, &matchers, (from, through), true).await?;
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        for (r, mut blocks) in fetched {
            streams.entry(r.fingerprint).or_insert_with(|| (r.labels.clone(), Vec::new())).1.append(&mut blocks);
        }
        let mut out = Vec::with_capacity(streams.len());
        for (_, (labels, mut blocks)) in streams {
            if let Some(f) = &hidden {
                blocks = f
                    .apply(&labels, blocks)
                    .map_err(|e| EvalError::Storage(format!("filtering deleted entries: {e}")))?;
            }
            if blocks.is_empty() {
                continue;
            }
            blocks.sort_by_key(|b| b.meta().min_ts);
            let overlapping = blocks.windows(2).any(|w| w[0].meta().max_ts >= w[1].meta().min_ts);
            for b in &blocks {
                self.stats.lines.fetch_add(u64::from(b.meta().count), Ordering::Relaxed);
                self.stats.bytes.fetch_add(u64::from(b.meta().uncompressed_len), Ordering::Relaxed);
            }
            self.stats.blocks.fetch_add(blocks.len() as u64, Ordering::Relaxed);
            out.push(StreamBlocks { labels: self.with_tenant(&labels, tenant), blocks, overlapping });
        }
        Ok(out)
    }

    /// The blocks of the tenant's streams in ingester memory, by stream fingerprint.
    async fn memory_streams(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        range: (i64, i64),
        with_flushed: bool,
    ) -> Result<HashMap<u64, (SharedLabels, Vec<BlockHandle>)>, EvalError> {
        let mut streams = HashMap::new();
        let Some(ing) = &self.querier.ingesters else { return Ok(streams) };
        for s in ing.streams(tenant, matchers, range, with_flushed, &self.budget).await? {
            if !self.owns(s.fingerprint) {
                continue;
            }
            self.stats.ingester_streams.fetch_add(1, Ordering::Relaxed);
            self.stats.ingester_blocks.fetch_add(s.blocks.len() as u64, Ordering::Relaxed);
            streams.insert(s.fingerprint, (s.labels, s.blocks));
        }
        Ok(streams)
    }

    /// The blocks of the tenant's chunks in the object store that the query selects.
    async fn store_blocks(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        hidden: Option<&TenantFilter>,
        (from, through): (i64, i64),
        needles: Option<&NeedlePlan>,
    ) -> Result<Vec<(ChunkRef, Vec<BlockHandle>)>, EvalError> {
        let refs: Vec<ChunkRef> = self
            .querier
            .index
            .chunks(tenant, from, through.saturating_sub(1))
            .await
            .map_err(|e| store_error("reading the index", e))?
            .into_iter()
            .filter(|r| self.owns(r.fingerprint) && matches_all(&r.labels, matchers))
            .filter(|r| !hidden.is_some_and(|f| f.expired(&r.labels, r.through)))
            .collect();
        self.stats.chunks_ref.fetch_add(refs.len() as u64, Ordering::Relaxed);
        let refs = match (needles, &self.querier.needle_cache) {
            (Some(plan), Some(cache)) => {
                refs.into_iter().filter(|r| may_match(cache, r, plan, from, through)).collect()
            }
            _ => refs,
        };
        self.fetch(refs, from, through).await
    }

    /// Fetches and opens the chunks, within the per-query byte budget.
    async fn fetch(
        &self,
        refs: Vec<ChunkRef>,
        from: i64,
        through: i64,
    ) -> Result<Vec<(ChunkRef, Vec<BlockHandle>)>, EvalError> {
        let budget = self.querier.cfg.max_fetched_chunk_bytes.bytes();
        let total: u64 = refs.iter().map(|r| u64::from(r.size)).sum();
        if budget > 0 && total > budget {
            return Err(EvalError::Limit(format!(
                "the query would fetch {total} bytes of chunks, more than querier.max_fetched_chunk_bytes ({budget}); narrow the time range or use more specific stream selectors"
            )));
        }
        // Charged before anything is fetched: a query that cannot hold its chunks fetches none.
        self.budget.charge(total, "chunks from the object store")?;
        let started = Instant::now();
        let results: Vec<Result<Fetched, EvalError>> = futures::stream::iter(refs)
            .map(|r| async move {
                let download = || self.download(&r);
                let (chunk, fetched) = match &self.querier.chunk_cache {
                    Some(cache) => cache.get_or_fetch(&r.key, download).await?,
                    None => (Arc::new(download().await?), true),
                };
                if let Some(needles) = &self.querier.needle_cache {
                    needles.remember(&r.key, &chunk);
                }
                let blocks = chunk
                    .block_handles(from, through)
                    .map_err(|e| EvalError::Storage(format!("chunk {}: {e}", r.key)))?;
                Ok((r, blocks, fetched))
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await;
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            let (cref, blocks, fetched) = r?;
            if fetched {
                self.stats.chunks_downloaded.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes_downloaded.fetch_add(u64::from(cref.size), Ordering::Relaxed);
            }
            out.push((cref, blocks));
        }
        self.stats.download_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(out)
    }
}

impl QuerierSource {
    /// Downloads a chunk, checks it against the index's checksum and opens it.
    async fn download(&self, r: &ChunkRef) -> Result<Chunk, EvalError> {
        let bytes =
            self.querier.store.get(&r.key).await.map_err(|e| store_error(&format!("fetching chunk {}", r.key), e))?;
        if crc32c::crc32c(&bytes) != r.checksum {
            return Err(EvalError::Storage(format!("chunk {} does not match its checksum", r.key)));
        }
        Chunk::decode(bytes).map_err(|e| EvalError::Storage(format!("chunk {}: {e}", r.key)))
    }
}

#[async_trait]
impl LogSource for QuerierSource {
    async fn select(&self, matchers: &[Matcher], from: i64, through: i64) -> Result<Vec<StreamBlocks>, EvalError> {
        self.select_needles(matchers, from, through, None).await
    }

    async fn select_needles(
        &self,
        matchers: &[Matcher],
        from: i64,
        through: i64,
        needles: Option<&NeedlePlan>,
    ) -> Result<Vec<StreamBlocks>, EvalError> {
        let mut out = Vec::new();
        for tenant in &self.tenants {
            if self.tenant_selected(tenant, matchers) {
                out.extend(self.select_tenant(tenant, matchers, (from, through), needles).await?);
            }
        }
        Ok(out)
    }

    fn budget(&self) -> Option<Arc<MemoryBudget>> {
        Some(self.budget.clone())
    }
}

/// Whether the chunk of `r` may hold a line the search of `plan` looks for in `[from, through)`:
/// unless the needle cache knows its indexes and every block in range rules the plan's tokens
/// out, it must be fetched.
fn may_match(cache: &NeedleCache, r: &ChunkRef, plan: &NeedlePlan, from: i64, through: i64) -> bool {
    cache.get(&r.key).is_none_or(|needles| needles.any_block(from, through, |index| !plan.skips_index(index)))
}

/// A failed read of the object store: [`EvalError::StoreUnavailable`] when it could not be
/// reached, so the caller can answer from memory; any other failure fails the query.
fn store_error(what: &str, e: crate::storage::StorageError) -> EvalError {
    match e {
        crate::storage::StorageError::Unavailable(_) => EvalError::StoreUnavailable(format!("{what}: {e}")),
        e => EvalError::Storage(format!("{what}: {e}")),
    }
}
