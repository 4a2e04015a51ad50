//! Recent data: what the ingesters hold in memory, from the ingester in this process or from
//! every ingester of the ring over gRPC.
//!
//! A read asks every instance that serves reads (ACTIVE and LEAVING) and merges their answers.
//! Replicas answer with the same streams: their blocks are put together under the stream, and
//! the query's merge drops the duplicate entries. A read is complete when the ingesters that did
//! not answer are few enough that every acknowledged write is still on one that did (at most
//! `⌊RF/2⌋` of them, or whole zones with zone awareness: [`ReadSet::tolerates`]); with more
//! missing the query fails instead of answering with silently partial data. Once the answers
//! in make a complete read, the ingesters still working get a grace period (as long again as
//! the answers took, at least 500 ms) and are then given up on: an ingester behind a network
//! partition, whose connections hear nothing, costs a query half a second instead of the whole
//! gRPC deadline.
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
use crate::ring::replication::{ReadSet, RingSnapshot};
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
        let set: ReadSet = match view.snapshot.read_set(self.ring.health_now_ms()) {
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
        let (results, stragglers) = gather(&set, &view.snapshot, calls).await;
        let mut errors: Vec<String> = Vec::new();
        if !stragglers.is_empty() {
            errors.push(format!(
                "{} ingester(s) still had not answered after the others, given a grace of at least {STRAGGLER_GRACE:?}",
                stragglers.len()
            ));
        }
        let mut failed = stragglers;
        let mut out = Vec::with_capacity(results.len());
        for (i, r) in results {
            match r {
                Ok(v) => out.push(v),
                Err(e) => {
                    failed.push(i);
                    errors.push(e.to_string());
                }
            }
        }
        if !set.tolerates(&view.snapshot, &failed) {
            let listed: Vec<&str> = errors.iter().take(3).map(String::as_str).collect();
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

/// How long a read waits for the ingesters still working once those that answered make the
/// answer complete ([`ReadSet::tolerates`] the rest): as long again as the answers took, and at
/// least this. An ingester that is partitioned away (connections that hear nothing) would
/// otherwise hold every query for the whole gRPC deadline.
const STRAGGLER_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs `calls` (one per instance of `set`) to the end, or until the answers so far make the
/// read complete and the others have had their grace: the finished results, and the instances
/// given up on.
async fn gather<T>(
    set: &ReadSet,
    snapshot: &RingSnapshot,
    calls: impl Iterator<Item = impl std::future::Future<Output = (usize, Result<T, RpcError>)>>,
) -> (Vec<(usize, Result<T, RpcError>)>, Vec<usize>) {
    use futures::StreamExt;
    let started = tokio::time::Instant::now();
    let mut running: futures::stream::FuturesUnordered<_> = calls.collect();
    let mut pending: BTreeSet<usize> = set.instances.iter().copied().collect();
    let mut done = Vec::with_capacity(pending.len());
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let next = match deadline {
            Some(at) => match tokio::time::timeout_at(at, running.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => running.next().await,
        };
        let Some((i, r)) = next else { break };
        pending.remove(&i);
        let ok = r.is_ok();
        done.push((i, r));
        // Once the ones still running could all fail without the answer being incomplete,
        // they get a grace period and no more.
        if ok && deadline.is_none() && !pending.is_empty() {
            let mut missing: Vec<usize> = pending.iter().copied().collect();
            missing.extend(done.iter().filter(|(_, r)| r.is_err()).map(|(i, _)| *i));
            if set.tolerates(snapshot, &missing) {
                deadline = Some(tokio::time::Instant::now() + started.elapsed().max(STRAGGLER_GRACE));
            }
        }
    }
    (done, pending.into_iter().collect())
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

/// A block an ingester sent, checked as far as its header goes (its payload when decoded).
pub(crate) fn block_from_msg(b: BlockMsg) -> Result<BlockHandle, EvalError> {
    let codec = u8::try_from(b.codec)
        .ok()
        .and_then(Codec::from_id)
        .ok_or_else(|| EvalError::Internal(format!("an ingester sent a block with unknown codec {}", b.codec)))?;
    BlockHandle::from_wire(meta_of(&b), codec, b.data)
        .map_err(|e| EvalError::Storage(format!("a block from an ingester: {e}")))
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
                entry.blocks.push(block_from_msg(b)?);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ring::RingDesc;
    use crate::ring::replication::ReplicationConfig;

    fn rf3() -> (ReadSet, RingSnapshot) {
        let cfg = ReplicationConfig { replication_factor: 3, zone_awareness: false, heartbeat_timeout: Duration::ZERO };
        let set = ReadSet { instances: vec![0, 1, 2], max_errors: 1, max_unavailable_zones: 0, zone_aware: false };
        (set, RingSnapshot::new(&RingDesc::default(), cfg))
    }

    fn refused(i: usize) -> (usize, Result<u32, RpcError>) {
        let e =
            RpcError { addr: format!("i{i}"), kind: crate::error::ErrorKind::Unavailable, message: "refused".into() };
        (i, Err(e))
    }

    /// A call that answers after `after`, or never.
    fn answer(
        i: usize,
        after: Option<Duration>,
    ) -> futures::future::BoxFuture<'static, (usize, Result<u32, RpcError>)> {
        Box::pin(async move {
            match after {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
            (i, Ok(i as u32))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_ingester_is_given_up_on_once_the_others_make_the_read_complete() {
        let (set, snapshot) = rf3();
        let started = tokio::time::Instant::now();
        let calls = vec![
            answer(0, Some(Duration::from_millis(10))),
            answer(1, Some(Duration::from_millis(30))),
            answer(2, None),
        ];
        let (done, stragglers) = gather(&set, &snapshot, calls.into_iter()).await;
        assert_eq!(stragglers, vec![2]);
        assert_eq!(done.iter().map(|(i, r)| (*i, r.is_ok())).collect::<Vec<_>>(), vec![(0, true), (1, true)]);
        // The grace starts when the second answer makes the read complete.
        assert_eq!(started.elapsed(), Duration::from_millis(30) + STRAGGLER_GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_ingesters_within_the_grace_are_waited_for() {
        let (set, snapshot) = rf3();
        let slow = STRAGGLER_GRACE + Duration::from_millis(100);
        // Complete after 10 ms and 600 ms: the grace is as long again, so the third (at 1100 ms,
        // within 600 + 600) is still waited for.
        let calls = vec![
            answer(0, Some(Duration::from_millis(10))),
            answer(1, Some(slow)),
            answer(2, Some(slow + Duration::from_millis(500))),
        ];
        let (done, stragglers) = gather(&set, &snapshot, calls.into_iter()).await;
        assert!(stragglers.is_empty());
        assert_eq!(done.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_do_not_start_the_grace() {
        let (set, snapshot) = rf3();
        // One refused and one answering late: both others are needed, nothing is given up on.
        let calls: Vec<futures::future::BoxFuture<'static, _>> = vec![
            Box::pin(async { refused(0) }),
            answer(1, Some(Duration::from_secs(5))),
            answer(2, Some(Duration::from_secs(9))),
        ];
        let (done, stragglers) = gather(&set, &snapshot, calls.into_iter()).await;
        assert!(stragglers.is_empty());
        assert_eq!(done.iter().filter(|(_, r)| r.is_ok()).count(), 2);
    }
}
