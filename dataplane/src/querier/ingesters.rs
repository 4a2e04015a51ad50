//! Recent data: what the ingesters hold in memory, from the ingester in this process or from
//! every ingester of the ring over gRPC.
//!
//! A read asks every instance that serves reads (ACTIVE and LEAVING) and merges their answers.
//! Replicas answer with the same streams: their blocks are put together under the stream, and
//! the query's merge drops the duplicate entries. A read is complete when the ingesters that did
//! not answer are few enough that every acknowledged write is still on one that did (at most
//! `⌊RF/2⌋` of them, or whole zones with zone awareness: [`ReadSet::tolerates`]); with more
//! missing the query fails instead of answering with silently partial data.
//!
//! [`ReadSet::tolerates`]: crate::ring::replication::ReadSet::tolerates

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;

use crate::chunk::{BlockHandle, BlockMeta, BlockSections, Codec};
use crate::ingester::Ingester;
use crate::ingester::read::MemoryStream;
use crate::labels::{Labels, SharedLabels};
use crate::logql::Matcher;
use crate::pattern::StreamPattern;
use crate::query::{EvalError, MemoryBudget};
use crate::ring::replication::ReadSet;
use crate::ring::{RingClient, RingError};
use crate::rpc::proto::{BlockMsg, SelectRequest, SeriesRequest};
use crate::rpc::{IngesterClient, IngesterPool, RpcError, matcher_to_msg};

/// Block headers of one stream, for volume statistics.
pub type StreamMetas = (SharedLabels, u64, Vec<BlockMeta>);

/// Where a querier finds the data still in ingester memory.
#[async_trait]
pub trait IngesterData: Send + Sync {
    /// Blocks of the tenant's streams matching `matchers` with entries in `[from, through)`,
    /// one [`MemoryStream`] per stream (replicas' blocks together), charged to `budget` as they
    /// arrive. Chunks already flushed only `with_flushed` (see [`Ingester::stream_blocks`]).
    async fn streams(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        (from, through): (i64, i64),
        with_flushed: bool,
        budget: &MemoryBudget,
    ) -> Result<Vec<MemoryStream>, EvalError>;

    /// Label sets of matching streams with data in `[from, through)`.
    async fn series(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<SharedLabels>, EvalError>;

    /// Block headers (labels, fingerprint, blocks) of matching streams, one replica's view per
    /// stream: for statistics, which must not count a replicated entry once per replica.
    async fn metas(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<StreamMetas>, EvalError>;

    /// The pattern detectors' templates of matching streams with lines in `[from, through)`,
    /// per stream and replica ([`crate::pattern::merge`] makes the `patterns` answer).
    async fn patterns(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<StreamPattern>, EvalError>;
}

#[async_trait]
impl IngesterData for Ingester {
    async fn streams(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        (from, through): (i64, i64),
        with_flushed: bool,
        budget: &MemoryBudget,
    ) -> Result<Vec<MemoryStream>, EvalError> {
        let streams = self.stream_blocks(tenant, matchers, from, through, with_flushed);
        let bytes: u64 = streams.iter().flat_map(|s| &s.blocks).map(|b| b.held_bytes() as u64).sum();
        budget.charge(bytes, "blocks from ingester memory")?;
        Ok(streams)
    }

    async fn series(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<SharedLabels>, EvalError> {
        Ok(Ingester::series(self, tenant, matchers, from, through))
    }

    async fn metas(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<StreamMetas>, EvalError> {
        Ok(self
            .stream_blocks(tenant, matchers, from, through, false)
            .into_iter()
            .map(|s| (s.labels, s.fingerprint, s.blocks.iter().map(|b| *b.meta()).collect()))
            .collect())
    }

    async fn patterns(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<StreamPattern>, EvalError> {
        Ok(Ingester::patterns(self).map(|d| d.stream_patterns(tenant, matchers, from, through)).unwrap_or_default())
    }
}

/// Every ingester of the ring, over gRPC.
#[derive(Debug)]
pub struct RingIngesters {
    ring: Arc<RingClient>,
    pool: Arc<IngesterPool>,
}

impl RingIngesters {
    pub fn new(ring: Arc<RingClient>, pool: Arc<IngesterPool>) -> Self {
        Self { ring, pool }
    }

    /// Calls every instance of the read set; the answers of those that answered, or an error
    /// when too many did not.
    async fn fan_out<T, F, Fut>(&self, what: &str, call: F) -> Result<Vec<T>, EvalError>
    where
        F: Fn(IngesterClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, RpcError>>,
    {
        let view = self.ring.view();
        self.pool.prune(&view);
        let set: ReadSet = match view.snapshot.read_set(self.ring.now_ms()) {
            Ok(set) => set,
            // Never read: the ring store has been unreachable since this process started, and
            // answering from the object store alone would silently miss recent data.
            Err(RingError::EmptyRing) if view.version == 0 && !self.ring.is_connected() => {
                return Err(EvalError::Storage(format!(
                    "{what}: the ingester ring has not been read yet (ring store unreachable)"
                )));
            }
            // No ingester at all holds nothing in memory: the object store has everything.
            Err(RingError::EmptyRing) => return Ok(Vec::new()),
            Err(e) => return Err(EvalError::Storage(format!("cannot query the ingesters: {e}"))),
        };
        let calls = set.instances.iter().map(|&i| {
            let addr = view.snapshot.member(i).map(|m| m.addr.to_string()).unwrap_or_default();
            let client = self.pool.get(&addr);
            let call = &call;
            async move {
                match client {
                    Ok(c) => (i, call(c).await),
                    Err(e) => (i, Err(e)),
                }
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        let mut out = Vec::with_capacity(results.len());
        for (i, r) in results {
            match r {
                Ok(v) => out.push(v),
                Err(e) => {
                    failed.push(i);
                    errors.push(e);
                }
            }
        }
        if !set.tolerates(&view.snapshot, &failed) {
            let listed: Vec<String> = errors.iter().take(3).map(ToString::to_string).collect();
            return Err(EvalError::Storage(format!(
                "{what}: {} of {} ingesters failed, more than the replication factor allows for a complete answer: {}",
                failed.len(),
                set.instances.len(),
                listed.join("; ")
            )));
        }
        for e in &errors {
            tracing::warn!(err = %e, what, "an ingester did not answer; the other replicas cover it");
        }
        Ok(out)
    }

    /// One ingester's matching streams, read to the end of its response stream, each message
    /// charged to `budget` (when given) before the next is read.
    async fn select(
        client: IngesterClient,
        req: SelectRequest,
        budget: Option<&MemoryBudget>,
    ) -> Result<Vec<WireStream>, RpcError> {
        let mut stream = client.select(req).await?;
        let mut out = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(msg)) => {
                    if let Some(b) = budget {
                        let bytes: u64 =
                            msg.streams.iter().flat_map(|s| &s.blocks).map(|b| b.data.len() as u64 + 64).sum();
                        b.charge(bytes, "blocks from ingester memory").map_err(|e| RpcError {
                            addr: client.addr().to_string(),
                            kind: crate::error::ErrorKind::Invalid,
                            message: e.to_string(),
                        })?;
                    }
                    out.extend(msg.streams.into_iter().map(|s| WireStream {
                        labels: s.labels,
                        fingerprint: s.fingerprint,
                        blocks: s.blocks,
                    }))
                }
                Ok(None) => return Ok(out),
                Err(status) => return Err(client.stream_error(&status)),
            }
        }
    }

    async fn select_all(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        (from, through): (i64, i64),
        (with_data, with_flushed): (bool, bool),
        budget: Option<&MemoryBudget>,
    ) -> Result<Vec<Vec<WireStream>>, EvalError> {
        let req = SelectRequest {
            tenant: tenant.to_string(),
            matchers: matchers.iter().map(matcher_to_msg).collect(),
            from,
            through,
            with_data,
            with_flushed,
        };
        self.fan_out("reading ingester memory", |c| Self::select(c, req.clone(), budget)).await
    }
}

/// A stream as one ingester sent it (possibly in several parts).
struct WireStream {
    labels: String,
    fingerprint: u64,
    blocks: Vec<BlockMsg>,
}

/// A request about the tenant's streams matching `matchers` in `[from, through)` (`Series`,
/// `Patterns`).
fn series_request(tenant: &str, matchers: &[Matcher], from: i64, through: i64) -> SeriesRequest {
    SeriesRequest { tenant: tenant.to_string(), matchers: matchers.iter().map(matcher_to_msg).collect(), from, through }
}

fn parse_labels(text: &str) -> Result<SharedLabels, EvalError> {
    Labels::parse(text)
        .map(|l| Arc::new(l.sorted()))
        .map_err(|e| EvalError::Internal(format!("an ingester sent invalid labels {text:?}: {e}")))
}

fn meta_of(b: &BlockMsg) -> BlockMeta {
    BlockMeta {
        count: b.count,
        min_ts: b.min_ts,
        max_ts: b.max_ts,
        uncompressed_len: b.uncompressed_len,
        compressed_len: b.compressed_len,
        crc32c: b.crc32c,
        offset: 0,
        sections: b.sectioned.then_some(BlockSections {
            columns_len: b.columns_len,
            columns_uncompressed_len: b.columns_uncompressed_len,
            columns_crc32c: b.columns_crc32c,
            index_len: b.index_len,
            flags: b.flags,
        }),
    }
}

#[async_trait]
impl IngesterData for RingIngesters {
    async fn streams(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        (from, through): (i64, i64),
        with_flushed: bool,
        budget: &MemoryBudget,
    ) -> Result<Vec<MemoryStream>, EvalError> {
        let answers = self.select_all(tenant, matchers, (from, through), (true, with_flushed), Some(budget)).await;
        // An ingester that stopped at the budget counts as failed, and the others may have
        // answered, or not: the query is over its budget either way, and that is the answer
        // (a 4xx naming the limit), not an ingester failure.
        budget.charge(0, "blocks from ingester memory")?;
        let answers = answers?;
        let mut merged: HashMap<u64, MemoryStream> = HashMap::new();
        for s in answers.into_iter().flatten() {
            let entry = match merged.entry(s.fingerprint) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(MemoryStream {
                    labels: parse_labels(&s.labels)?,
                    fingerprint: s.fingerprint,
                    blocks: Vec::new(),
                }),
            };
            for b in s.blocks {
                let codec = u8::try_from(b.codec).ok().and_then(Codec::from_id).ok_or_else(|| {
                    EvalError::Internal(format!("an ingester sent a block with unknown codec {}", b.codec))
                })?;
                let handle = BlockHandle::from_wire(meta_of(&b), codec, b.data)
                    .map_err(|e| EvalError::Storage(format!("a block from an ingester: {e}")))?;
                entry.blocks.push(handle);
            }
        }
        let mut out: Vec<MemoryStream> = merged.into_values().collect();
        for s in &mut out {
            s.blocks.sort_by_key(|b| b.meta().min_ts);
        }
        Ok(out)
    }

    async fn series(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<SharedLabels>, EvalError> {
        let req = series_request(tenant, matchers, from, through);
        let answers = self.fan_out("reading ingester series", |c| {
            let req = req.clone();
            async move { c.series(req).await }
        });
        let texts: BTreeSet<String> = answers.await?.into_iter().flat_map(|r| r.series).collect();
        texts.iter().map(|t| parse_labels(t)).collect()
    }

    async fn metas(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<StreamMetas>, EvalError> {
        let answers = self.select_all(tenant, matchers, (from, through), (false, false), None).await?;
        // Per stream, the replica holding the most entries: replicas hold the same entries, so
        // counting each would multiply the statistics by the replication factor.
        let mut best: HashMap<u64, (String, Vec<BlockMeta>)> = HashMap::new();
        for answer in answers {
            let mut mine: HashMap<u64, (String, Vec<BlockMeta>)> = HashMap::new();
            for s in answer {
                mine.entry(s.fingerprint)
                    .or_insert_with(|| (s.labels, Vec::new()))
                    .1
                    .extend(s.blocks.iter().map(meta_of));
            }
            for (fp, (labels, metas)) in mine {
                let count = |m: &[BlockMeta]| m.iter().map(|b| u64::from(b.count)).sum::<u64>();
                match best.get(&fp) {
                    Some((_, have)) if count(have) >= count(&metas) => {}
                    _ => {
                        best.insert(fp, (labels, metas));
                    }
                }
            }
        }
        best.into_iter().map(|(fp, (labels, metas))| Ok((parse_labels(&labels)?, fp, metas))).collect()
    }

    async fn patterns(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<StreamPattern>, EvalError> {
        let req = series_request(tenant, matchers, from, through);
        let answers = self.fan_out("reading ingester patterns", |c| {
            let req = req.clone();
            async move { c.patterns(req).await }
        });
        Ok(answers.await?.into_iter().flat_map(|r| r.patterns).map(StreamPattern::from).collect())
    }
}
