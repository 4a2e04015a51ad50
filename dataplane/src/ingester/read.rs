//! Reading ingester memory: the querier's view of recent data.

use std::collections::BTreeSet;

use super::Ingester;
use crate::chunk::{BlockHandle, ChunkReader};
use crate::labels::SharedLabels;
use crate::logql::Matcher;
use crate::query::source::matches_all;

/// The blocks of one in-memory stream overlapping a time range.
#[derive(Debug, Clone)]
pub struct MemoryStream {
    pub labels: SharedLabels,
    pub fingerprint: u64,
    /// Cut blocks (shared, compressed) and copies of head blocks, sorted by minimum timestamp.
    pub blocks: Vec<BlockHandle>,
}

impl Ingester {
    /// Blocks of every stream of `tenant` matching `matchers` with entries in `[from, through)`.
    /// Chunks already flushed are left out unless `with_flushed`: the object store serves them,
    /// so a querier reads ingesters first and the index second and never misses a chunk flushed
    /// in between. While the store is unavailable, the querier asks for them too.
    pub fn stream_blocks(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        from: i64,
        through: i64,
        with_flushed: bool,
    ) -> Vec<MemoryStream> {
        let Some(t) = self.tenants.read().get(tenant).cloned() else { return Vec::new() };
        let streams: Vec<_> = t.streams.read().values().cloned().collect();
        let mut out = Vec::new();
        for stream in streams {
            let s = stream.lock();
            if !matches_all(&s.labels, matchers) {
                continue;
            }
            let mut blocks = Vec::new();
            for c in s.closed.iter().filter(|c| with_flushed || c.flushed_at.is_none()) {
                if let Ok(mut b) = c.chunk.block_handles(from, through) {
                    blocks.append(&mut b);
                }
            }
            if let Some(h) = &s.head
                && let Ok(mut b) = h.chunk.block_handles(from, through)
            {
                blocks.append(&mut b);
            }
            if blocks.is_empty() {
                continue;
            }
            blocks.sort_by_key(|b| b.meta().min_ts);
            out.push(MemoryStream { labels: s.labels.clone(), fingerprint: s.fingerprint, blocks });
        }
        out
    }

    /// Label names of the tenant's streams in memory (optionally only streams matching
    /// `matchers`) with data in `[from, through)`.
    pub fn label_names(&self, tenant: &str, matchers: &[Matcher], from: i64, through: i64) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for s in self.series(tenant, matchers, from, through) {
            out.extend(s.iter().map(|l| l.name.clone()));
        }
        out
    }

    /// Label sets of the tenant's streams in memory matching `matchers` with data in
    /// `[from, through)`.
    pub fn series(&self, tenant: &str, matchers: &[Matcher], from: i64, through: i64) -> Vec<SharedLabels> {
        let Some(t) = self.tenants.read().get(tenant).cloned() else { return Vec::new() };
        let streams: Vec<_> = t.streams.read().values().cloned().collect();
        let mut out = Vec::new();
        for stream in streams {
            let s = stream.lock();
            if !matches_all(&s.labels, matchers) {
                continue;
            }
            let overlaps = |b: Option<(i64, i64)>| b.is_some_and(|(lo, hi)| lo < through && hi >= from);
            let has_data = s.head.as_ref().is_some_and(|h| overlaps(h.chunk.bounds()))
                || s.closed.iter().any(|c| overlaps(c.chunk.bounds()));
            if has_data {
                out.push(s.labels.clone());
            }
        }
        out
    }
}
