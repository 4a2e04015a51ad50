//! Writing a push to the replicas the ring picks, with a quorum per stream.
//!
//! Each stream's token (from its fingerprint) gives a replica set: `replication_factor` distinct
//! ACTIVE ingesters (distinct zones with zone awareness). Every ingester gets one request with
//! all of its streams, sent in parallel. A stream is stored once `quorum = ⌊n/2⌋ + 1` of its
//! replicas acknowledged it (each acknowledgement means "in that ingester's WAL"); the push
//! succeeds when every stream is, without waiting for the slowest replica — the remaining
//! requests still complete in the background. When a stream can no longer reach its quorum the
//! push fails with 503 naming how many replicas acknowledged and why the others did not; the
//! client retries, and replicas that did store the entries drop the retried copies as exact
//! duplicates, as queriers drop replicas' copies in their merge.
//!
//! Each stream is encoded once and its bytes are concatenated into every request that carries
//! it: with 3 replicas the push is encoded once, not three times.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{PushError, PushTarget};
use crate::entry::PushStream;
use crate::ring::RingClient;
use crate::ring::replication::Operation;
use crate::rpc::proto::{EntryMsg, LabelPair, PUSH_STREAMS_TAG, PUSH_TENANT_TAG, PushResponse, StreamMsg};
use crate::rpc::{IngesterPool, RpcError};
use crate::validation::{Discards, Reason};

/// The ring token of a stream: its fingerprint folded to 32 bits.
pub fn stream_token(fingerprint: u64) -> u32 {
    (fingerprint ^ (fingerprint >> 32)) as u32
}

/// A [`PushTarget`] that replicates to the ingesters of the ring over gRPC.
#[derive(Debug)]
pub struct Replicator {
    ring: Arc<RingClient>,
    pool: Arc<IngesterPool>,
}

impl Replicator {
    pub fn new(ring: Arc<RingClient>, pool: Arc<IngesterPool>) -> Self {
        Self { ring, pool }
    }
}

/// What a stream needs and has.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    quorum: usize,
    max_errors: usize,
    acks: usize,
    errors: usize,
    /// Its drops (if any) were taken from an acknowledging replica already.
    reported: bool,
}

#[async_trait]
impl PushTarget for Replicator {
    async fn push(&self, tenant: &str, streams: Vec<PushStream>) -> Result<Discards, PushError> {
        let view = self.ring.view();
        self.pool.prune(&view);
        let now = self.ring.now_ms();
        let mut tally = vec![Tally::default(); streams.len()];
        // Ring member index → positions of its streams in `streams`.
        let mut targets: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, s) in streams.iter().enumerate() {
            let set = view
                .snapshot
                .replicas(stream_token(s.fingerprint), Operation::Write, now)
                .map_err(|e| PushError::Unavailable(format!("cannot replicate stream {}: {e}", s.labels)))?;
            tally[i].quorum = set.quorum;
            tally[i].max_errors = set.max_errors;
            for m in set.instances {
                targets.entry(m).or_default().push(i);
            }
        }
        let encoded: Vec<Bytes> = streams.iter().map(encode_stream).collect();
        let head = encode_tenant(tenant);
        // Instances that get the same streams (every instance, when RF equals the ring's size)
        // share one request body.
        let mut bodies: HashMap<&[usize], Bytes> = HashMap::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Vec<usize>, Result<PushResponse, RpcError>)>();
        for (member, positions) in &targets {
            let body = bodies
                .entry(positions.as_slice())
                .or_insert_with(|| request_body(&head, positions.iter().map(|&i| &encoded[i])))
                .clone();
            let addr = view.snapshot.member(*member).map(|m| m.addr.to_string()).unwrap_or_default();
            let positions = positions.clone();
            let tx = tx.clone();
            let client = self.pool.get(&addr);
            tokio::spawn(async move {
                let result = match client {
                    Ok(c) => c.push(body).await,
                    Err(e) => Err(e),
                };
                // The push may have been decided already; then nobody listens.
                let _ = tx.send((positions, result));
            });
        }
        drop(tx);
        let mut discards = Discards::default();
        let mut stored = 0usize;
        let mut failures: Vec<RpcError> = Vec::new();
        while let Some((positions, result)) = rx.recv().await {
            match result {
                Ok(resp) => {
                    for d in resp.discards {
                        let Some(&i) = positions.get(d.stream as usize) else { continue };
                        if tally[i].reported {
                            continue;
                        }
                        let reason = Reason::from_name(&d.reason).unwrap_or(Reason::RateLimited);
                        let message = (!d.message.is_empty()).then_some(d.message);
                        discards.add(reason, d.lines, d.bytes, message);
                    }
                    for &i in &positions {
                        let t = &mut tally[i];
                        t.reported = true;
                        t.acks += 1;
                        if t.acks == t.quorum {
                            stored += 1;
                        }
                    }
                    if stored == streams.len() {
                        return Ok(discards);
                    }
                }
                Err(err) => {
                    tracing::debug!(%err, tenant, "push to an ingester failed");
                    for &i in &positions {
                        let t = &mut tally[i];
                        t.errors += 1;
                        if t.errors > t.max_errors {
                            failures.push(err);
                            return Err(quorum_error(&streams[i], t, &failures));
                        }
                    }
                    failures.push(err);
                }
            }
        }
        // Every reply arrived without deciding: only when some stream had no replica at all.
        Err(PushError::Unavailable("no ingester acknowledged the push".into()))
    }
}

/// The 503 of a stream that cannot reach its quorum.
fn quorum_error(stream: &PushStream, t: &Tally, failures: &[RpcError]) -> PushError {
    let live = t.quorum + t.max_errors - t.errors;
    let mut msg =
        format!("at least {} live replicas required, could only find {live} for stream {}", t.quorum, stream.labels);
    for f in failures.iter().take(3) {
        msg.push_str("; ");
        msg.push_str(&f.to_string());
    }
    PushError::Unavailable(msg)
}

/// The `tenant` field of a push request.
fn encode_tenant(tenant: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(tenant.len() + 4);
    prost::encoding::string::encode(PUSH_TENANT_TAG, &tenant.to_string(), &mut buf);
    buf.freeze()
}

/// One `streams` field of a push request: a stream, encoded once for all its replicas.
fn encode_stream(s: &PushStream) -> Bytes {
    let msg = StreamMsg {
        labels: s.labels.to_string(),
        entries: s
            .entries
            .iter()
            .map(|e| EntryMsg {
                ts: e.ts,
                line: e.line.clone(),
                metadata: e
                    .metadata
                    .iter()
                    .map(|l| LabelPair { name: l.name.clone(), value: l.value.clone() })
                    .collect(),
            })
            .collect(),
    };
    let mut buf = BytesMut::with_capacity(prost::Message::encoded_len(&msg) + 8);
    prost::encoding::message::encode(PUSH_STREAMS_TAG, &msg, &mut buf);
    buf.freeze()
}

/// A whole request: the tenant field and the stream fields, concatenated.
fn request_body<'a>(head: &Bytes, streams: impl Iterator<Item = &'a Bytes> + Clone) -> Bytes {
    let len = head.len() + streams.clone().map(Bytes::len).sum::<usize>();
    let mut buf = BytesMut::with_capacity(len);
    buf.extend_from_slice(head);
    for s in streams {
        buf.extend_from_slice(s);
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::entry::Entry;
    use crate::labels::{Label, Labels};
    use crate::rpc::proto::PushRequest;

    #[test]
    fn concatenated_stream_fields_decode_as_one_request() {
        let stream = |job: &str, n: i64| {
            let labels = Arc::new(Labels::from_pairs([("job", job)]).sorted());
            let mut e = Entry::new(n, format!("line {n}"));
            e.metadata = vec![Label::new("trace", "abc")];
            PushStream { fingerprint: labels.fingerprint("t"), labels, entries: vec![e, Entry::new(n + 1, "x")] }
        };
        let streams = [stream("a", 1), stream("b", 5)];
        let encoded: Vec<Bytes> = streams.iter().map(encode_stream).collect();
        let body = request_body(&encode_tenant("t"), encoded.iter());
        let req = PushRequest::decode(body).unwrap();
        assert_eq!(req.tenant, "t");
        assert_eq!(req.streams.len(), 2);
        assert_eq!(req.streams[1].labels, r#"{job="b"}"#);
        assert_eq!(req.streams[0].entries[0].line, Bytes::from("line 1"));
        assert_eq!(req.streams[0].entries[0].metadata, vec![LabelPair { name: "trace".into(), value: "abc".into() }]);
        assert_eq!(req.streams[1].entries[1].ts, 6);
    }

    #[test]
    fn tokens_use_both_halves_of_the_fingerprint() {
        assert_ne!(stream_token(1), stream_token(1 << 32 | 1));
        assert_eq!(stream_token(0xdead_beef), 0xdead_beef);
    }
}
