//! Where queries read log data from.
//!
//! A [`LogSource`] is scoped to the tenant(s) of one request. It returns, per stream whose labels
//! match the selector, the blocks overlapping the time range: compressed blocks of flushed
//! chunks, cut blocks and head blocks of ingester memory alike, as detached [`BlockHandle`]s that
//! evaluation decodes on whichever thread it likes. Block-level access lets a line filter run
//! over a whole decompressed block and lets evaluation skip blocks outside the range.

use async_trait::async_trait;

use crate::chunk::{BlockHandle, ChunkReader, MemChunk};
use crate::entry::Entry;
use crate::labels::{Labels, SharedLabels};
use crate::logql::Matcher;
use crate::query::EvalError;
use crate::query::pipeline::NeedlePlan;

/// The blocks of one stream within a time range.
#[derive(Debug, Clone)]
pub struct StreamBlocks {
    /// The stream's labels (with `__tenant_id__` added for multi-tenant queries).
    pub labels: SharedLabels,
    /// Blocks overlapping the requested range, sorted by their minimum timestamp.
    pub blocks: Vec<BlockHandle>,
    /// Whether blocks may overlap in time or hold the same entry twice (replicas, a chunk both
    /// in memory and flushed, out-of-order appends). When true, entries must be merged in
    /// timestamp order and exact duplicates (same timestamp and line) dropped; when false each
    /// block can be processed on its own, in order.
    pub overlapping: bool,
}

/// Log data of the tenant(s) of one request.
#[async_trait]
pub trait LogSource: Send + Sync {
    /// Every stream matching all `matchers` with data in `[from, through)` (nanoseconds).
    async fn select(&self, matchers: &[Matcher], from: i64, through: i64) -> Result<Vec<StreamBlocks>, EvalError>;

    /// [`select`](Self::select) for a query whose leading line filters need the tokens of
    /// `needles`: the source may leave out blocks whose needle index rules them out, and whole
    /// chunks without fetching them when it knows their indexes. Evaluation skips such blocks
    /// anyway, so this changes no answer, only what is read.
    async fn select_needles(
        &self,
        matchers: &[Matcher],
        from: i64,
        through: i64,
        needles: Option<&NeedlePlan>,
    ) -> Result<Vec<StreamBlocks>, EvalError> {
        let _ = needles;
        self.select(matchers, from, through).await
    }

    /// The memory budget of the query reading this source, charged by evaluation for what it
    /// accumulates; `None` for no limit.
    fn budget(&self) -> Option<std::sync::Arc<crate::query::MemoryBudget>> {
        None
    }
}

/// A source over fixed in-memory streams: unit tests and the conformance runner's fixtures.
#[derive(Debug, Default)]
pub struct MemorySource {
    streams: Vec<(SharedLabels, MemChunk)>,
}

impl MemorySource {
    /// Builds one chunk per stream from its entries (any order).
    pub fn new(streams: Vec<(Labels, Vec<Entry>)>) -> Self {
        let streams = streams
            .into_iter()
            .map(|(labels, entries)| {
                let mut chunk = MemChunk::new(crate::chunk::Codec::None, 64 * 1024);
                for e in &entries {
                    // Test data is small; an append error would be a bug in the chunk module.
                    chunk.append(e.ts, &e.line, &e.metadata).expect("append to a test chunk");
                }
                (std::sync::Arc::new(labels.sorted()), chunk)
            })
            .collect();
        Self { streams }
    }
}

impl MemorySource {
    /// A source over chunks built elsewhere (the benchmarks' load-generator streams).
    pub fn from_chunks(streams: Vec<(SharedLabels, MemChunk)>) -> Self {
        Self { streams }
    }

    /// The streams and their chunks.
    pub fn chunks(&self) -> &[(SharedLabels, MemChunk)] {
        &self.streams
    }
}

/// Whether every matcher accepts the labels (an absent label has the empty value).
pub fn matches_all(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
}

#[async_trait]
impl LogSource for MemorySource {
    async fn select(&self, matchers: &[Matcher], from: i64, through: i64) -> Result<Vec<StreamBlocks>, EvalError> {
        let mut out = Vec::new();
        for (labels, chunk) in &self.streams {
            if !matches_all(labels, matchers) {
                continue;
            }
            let blocks = chunk.block_handles(from, through).map_err(|e| EvalError::Storage(e.to_string()))?;
            if blocks.is_empty() {
                continue;
            }
            let overlapping = blocks.windows(2).any(|w| w[0].meta().max_ts >= w[1].meta().min_ts);
            out.push(StreamBlocks { labels: labels.clone(), blocks, overlapping });
        }
        Ok(out)
    }
}
