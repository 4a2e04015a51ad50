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
use crate::metrics::{IngesterLabel, Metrics};
use crate::ring::RingClient;
use crate::ring::replication::Operation;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::entry::Entry;
use crate::labels::Label;
use crate::rpc::proto::{PUSH_STREAMS_TAG, PUSH_TENANT_TAG, PushResponse};
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
    metrics: Arc<Metrics>,
}

impl Replicator {
    pub fn new(ring: Arc<RingClient>, pool: Arc<IngesterPool>, metrics: Arc<Metrics>) -> Self {
        Self { ring, pool, metrics }
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
        let now = self.ring.health_now_ms();
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
        // Instances that get the same streams share one request body: with RF equal to the
        // ring's size (or one ingester) that is every instance, and the push is encoded once,
        // straight into the body. Otherwise each stream is encoded once and the bodies are
        // concatenations of their streams' bytes.
        let mut groups: HashMap<Vec<usize>, Vec<usize>> = HashMap::new();
        for (member, positions) in targets {
            groups.entry(positions).or_default().push(member);
        }
        let head = encode_tenant(tenant);
        let bodies: Vec<(Vec<usize>, Vec<usize>, Bytes)> = if groups.len() == 1 {
            groups
                .into_iter()
                .map(|(positions, members)| {
                    let body = request_body(&head, positions.iter().map(|&i| &streams[i]));
                    (positions, members, body)
                })
                .collect()
        } else {
            let encoded: Vec<Bytes> = streams
                .iter()
                .map(|s| {
                    let mut buf = BytesMut::with_capacity(encoded_stream_len(s) + 16);
                    encode_stream(s, &mut buf);
                    buf.freeze()
                })
                .collect();
            groups
                .into_iter()
                .map(|(positions, members)| {
                    let len = head.len() + positions.iter().map(|&i| encoded[i].len()).sum::<usize>();
                    let mut buf = BytesMut::with_capacity(len);
                    buf.extend_from_slice(&head);
                    for &i in &positions {
                        buf.extend_from_slice(&encoded[i]);
                    }
                    (positions, members, buf.freeze())
                })
                .collect()
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Vec<usize>, Result<PushResponse, RpcError>)>();
        for (positions, members, body) in bodies {
            for member in members {
                let addr = view.snapshot.member(member).map(|m| m.addr.to_string()).unwrap_or_default();
                let (positions, body, tx) = (positions.clone(), body.clone(), tx.clone());
                let client = self.pool.get(&addr);
                let in_flight = self.metrics.replica_writes_in_flight.clone();
                in_flight.inc();
                tokio::spawn(async move {
                    let result = match client {
                        Ok(c) => c.push(body).await,
                        Err(e) => Err(e),
                    };
                    in_flight.dec();
                    // The push may have been decided already; then nobody listens.
                    let _ = tx.send((positions, result));
                });
            }
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
                    self.metrics
                        .ingester_append_failures
                        .get_or_create(&IngesterLabel { ingester: err.addr.clone() })
                        .inc();
                    for &i in &positions {
                        let t = &mut tally[i];
                        t.errors += 1;
                        if t.errors > t.max_errors {
                            self.metrics.replication_failures.inc();
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

/// Bytes of `s` as a `streams` field of a push request (see [`encode_stream`]).
fn encoded_stream_len(s: &PushStream) -> usize {
    let body = stream_body_len(s, &s.labels.to_string());
    key_len(PUSH_STREAMS_TAG) + encoded_len_varint(body as u64) + body
}

/// Writes `s` as one `streams` field (a `StreamMsg`) of a push request, straight from the
/// stream: no intermediate message, lines copied once.
fn encode_stream(s: &PushStream, buf: &mut BytesMut) {
    let labels = s.labels.to_string();
    encode_key(PUSH_STREAMS_TAG, WireType::LengthDelimited, buf);
    encode_varint(stream_body_len(s, &labels) as u64, buf);
    put_str(1, &labels, buf);
    for e in &s.entries {
        encode_key(2, WireType::LengthDelimited, buf);
        encode_varint(entry_len(e) as u64, buf);
        if e.ts != 0 {
            encode_key(1, WireType::Varint, buf);
            encode_varint(e.ts as u64, buf);
        }
        if !e.line.is_empty() {
            encode_key(2, WireType::LengthDelimited, buf);
            encode_varint(e.line.len() as u64, buf);
            buf.extend_from_slice(&e.line);
        }
        for m in &e.metadata {
            encode_key(3, WireType::LengthDelimited, buf);
            encode_varint(pair_len(m) as u64, buf);
            put_str(1, &m.name, buf);
            put_str(2, &m.value, buf);
        }
    }
}

/// A whole request with every stream encoded straight into it.
fn request_body<'a>(head: &Bytes, streams: impl Iterator<Item = &'a PushStream> + Clone) -> Bytes {
    let len = head.len() + streams.clone().map(encoded_stream_len).sum::<usize>();
    let mut buf = BytesMut::with_capacity(len);
    buf.extend_from_slice(head);
    for s in streams {
        encode_stream(s, &mut buf);
    }
    buf.freeze()
}

/// A string field, omitted when empty (proto3).
fn put_str(tag: u32, s: &str, buf: &mut BytesMut) {
    if s.is_empty() {
        return;
    }
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(s.len() as u64, buf);
    buf.extend_from_slice(s.as_bytes());
}

fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() { 0 } else { key_len(tag) + encoded_len_varint(s.len() as u64) + s.len() }
}

fn pair_len(l: &Label) -> usize {
    str_len(1, &l.name) + str_len(2, &l.value)
}

fn entry_len(e: &Entry) -> usize {
    let mut n = 0;
    if e.ts != 0 {
        n += key_len(1) + encoded_len_varint(e.ts as u64);
    }
    if !e.line.is_empty() {
        n += key_len(2) + encoded_len_varint(e.line.len() as u64) + e.line.len();
    }
    for m in &e.metadata {
        let l = pair_len(m);
        n += key_len(3) + encoded_len_varint(l as u64) + l;
    }
    n
}

fn stream_body_len(s: &PushStream, labels: &str) -> usize {
    str_len(1, labels)
        + s.entries
            .iter()
            .map(|e| {
                let l = entry_len(e);
                key_len(2) + encoded_len_varint(l as u64) + l
            })
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::labels::Labels;
    use crate::rpc::proto::{LabelPair, PushRequest};

    #[test]
    fn concatenated_stream_fields_decode_as_one_request() {
        let stream = |job: &str, n: i64| {
            let labels = Arc::new(Labels::from_pairs([("job", job)]).sorted());
            let mut e = Entry::new(n, format!("line {n}"));
            e.metadata = vec![Label::new("trace", "abc")];
            PushStream { fingerprint: labels.fingerprint("t"), labels, entries: vec![e, Entry::new(n + 1, "x")] }
        };
        let streams = [stream("a", 1), stream("b", 5)];
        let body = request_body(&encode_tenant("t"), streams.iter());
        let req = PushRequest::decode(body.clone()).unwrap();
        // Encoded straight from the streams, exactly as prost encodes the same message.
        let expected = PushRequest { tenant: "t".into(), streams: req.streams.clone() };
        assert_eq!(body, Bytes::from(expected.encode_to_vec()));
        let mut one = BytesMut::new();
        encode_stream(&streams[0], &mut one);
        assert_eq!(one.len(), encoded_stream_len(&streams[0]));
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
