//! What the ingester writes into WAL records and checkpoints.
//!
//! Payload layout (all integers LEB128 varints, `zz` = zigzag-encoded signed):
//!
//! ```text
//! entries record:     0x01 tenant_len tenant stream_count
//!                       { labels_len labels entry_count
//!                         { zz(ts - prev_ts) line_len line meta_count { name_len name value_len value } } }
//! checkpoint stream:  0x02 tenant_len tenant labels_len labels zz(max_ts) chunk_count
//!                       { flags(bit 0 = closed) chunk_len chunk_bytes }
//! ```
//!
//! `labels` is the canonical `{a="b"}` string; lines decode as slices of the record buffer.

use bytes::{Buf, Bytes};

use crate::entry::Entry;
use crate::labels::{Label, Labels};

const KIND_ENTRIES: u8 = 1;
const KIND_CHECKPOINT_STREAM: u8 = 2;

/// A record that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("corrupt WAL record: {0}")]
pub struct RecordError(pub String);

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Writes `v` as a 5-byte varint (continuation bits on the first four), so a count can be
/// filled in after the items it counts without moving them.
fn patch_fixed_uvarint(slot: &mut [u8], mut v: u32) {
    for (i, b) in slot.iter_mut().enumerate() {
        let more = if i < 4 { 0x80 } else { 0 };
        *b = (v as u8 & 0x7f) | more;
        v >>= 7;
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Builds an entries record stream by stream while the push is applied.
#[derive(Debug)]
pub struct EntriesRecord {
    buf: Vec<u8>,
    streams: u32,
    /// The stream being written, if any.
    open: Option<OpenStream>,
    /// Offset of the fixed-width stream count placeholder.
    count_at: usize,
}

#[derive(Debug)]
struct OpenStream {
    /// Offset of the stream's labels, to drop the header again if no entry follows.
    header_at: usize,
    /// Offset of the fixed-width entry count placeholder.
    count_at: usize,
    count: u32,
    prev_ts: i64,
}

impl EntriesRecord {
    pub fn new(tenant: &str, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + tenant.len() + 16);
        buf.push(KIND_ENTRIES);
        put_bytes(&mut buf, tenant.as_bytes());
        let count_at = buf.len();
        buf.extend_from_slice(&[0; 5]);
        Self { buf, streams: 0, open: None, count_at }
    }

    /// Starts a stream; entries added next belong to it.
    pub fn begin_stream(&mut self, labels: &str) {
        self.end_stream();
        let header_at = self.buf.len();
        put_bytes(&mut self.buf, labels.as_bytes());
        let count_at = self.buf.len();
        self.buf.extend_from_slice(&[0; 5]);
        self.open = Some(OpenStream { header_at, count_at, count: 0, prev_ts: 0 });
    }

    pub fn add(&mut self, e: &Entry) {
        let Some(s) = self.open.as_mut() else { return };
        put_uvarint(&mut self.buf, zigzag(e.ts.wrapping_sub(s.prev_ts)));
        s.prev_ts = e.ts;
        s.count += 1;
        put_bytes(&mut self.buf, &e.line);
        put_uvarint(&mut self.buf, e.metadata.len() as u64);
        for l in &e.metadata {
            put_bytes(&mut self.buf, l.name.as_bytes());
            put_bytes(&mut self.buf, l.value.as_bytes());
        }
    }

    fn end_stream(&mut self) {
        let Some(s) = self.open.take() else { return };
        if s.count == 0 {
            self.buf.truncate(s.header_at);
            return;
        }
        patch_fixed_uvarint(&mut self.buf[s.count_at..s.count_at + 5], s.count);
        self.streams += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.streams == 0 && self.open.as_ref().is_none_or(|s| s.count == 0)
    }

    /// The payload.
    pub fn finish(mut self) -> Bytes {
        self.end_stream();
        let at = self.count_at;
        patch_fixed_uvarint(&mut self.buf[at..at + 5], self.streams);
        Bytes::from(self.buf)
    }
}

/// A stream's state in a checkpoint: its chunks, encoded.
#[derive(Debug, Clone)]
pub struct CheckpointStream {
    pub tenant: String,
    pub labels: String,
    pub max_ts: i64,
    /// Encoded chunks, oldest first, with whether each was closed.
    pub chunks: Vec<(bool, Bytes)>,
}

impl CheckpointStream {
    pub fn encode(&self) -> Bytes {
        let size: usize = self.chunks.iter().map(|(_, c)| c.len() + 6).sum();
        let mut out = Vec::with_capacity(size + self.labels.len() + self.tenant.len() + 32);
        out.push(KIND_CHECKPOINT_STREAM);
        put_bytes(&mut out, self.tenant.as_bytes());
        put_bytes(&mut out, self.labels.as_bytes());
        put_uvarint(&mut out, zigzag(self.max_ts));
        put_uvarint(&mut out, self.chunks.len() as u64);
        for (closed, c) in &self.chunks {
            out.push(u8::from(*closed));
            put_bytes(&mut out, c);
        }
        Bytes::from(out)
    }
}

/// A decoded record.
#[derive(Debug)]
pub enum Record {
    Entries { tenant: String, streams: Vec<(Labels, Vec<Entry>)> },
    Checkpoint(CheckpointStream),
}

fn get_uvarint(b: &mut impl Buf) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        if !b.has_remaining() {
            return None;
        }
        let byte = b.get_u8();
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn get_bytes(b: &mut Bytes) -> Result<Bytes, RecordError> {
    let len = get_uvarint(b).ok_or_else(|| RecordError("truncated length".into()))? as usize;
    if len > b.remaining() {
        return Err(RecordError(format!("length {len} beyond record end")));
    }
    Ok(b.split_to(len))
}

fn get_string(b: &mut Bytes) -> Result<String, RecordError> {
    let raw = get_bytes(b)?;
    String::from_utf8(raw.to_vec()).map_err(|_| RecordError("invalid UTF-8".into()))
}

fn get_count(b: &mut Bytes, what: &str) -> Result<usize, RecordError> {
    let n = get_uvarint(b).ok_or_else(|| RecordError(format!("truncated {what}")))?;
    // Every counted item takes at least one byte, so a count beyond the remaining bytes is corrupt.
    if n as usize > b.remaining() {
        return Err(RecordError(format!("{what} {n} beyond record end")));
    }
    Ok(n as usize)
}

impl Record {
    pub fn decode(mut b: Bytes) -> Result<Record, RecordError> {
        if !b.has_remaining() {
            return Err(RecordError("empty record".into()));
        }
        match b.get_u8() {
            KIND_ENTRIES => {
                let tenant = get_string(&mut b)?;
                let n = get_count(&mut b, "stream count")?;
                let mut streams = Vec::with_capacity(n);
                for _ in 0..n {
                    let text = get_string(&mut b)?;
                    let labels = Labels::parse(&text).map_err(|e| RecordError(format!("labels {text:?}: {e}")))?;
                    let m = get_count(&mut b, "entry count")?;
                    let mut entries = Vec::with_capacity(m);
                    let mut prev = 0i64;
                    for _ in 0..m {
                        let d = get_uvarint(&mut b).ok_or_else(|| RecordError("truncated timestamp".into()))?;
                        prev = prev.wrapping_add(unzigzag(d));
                        let line = get_bytes(&mut b)?;
                        let k = get_count(&mut b, "metadata count")?;
                        let mut metadata = Vec::with_capacity(k);
                        for _ in 0..k {
                            metadata.push(Label { name: get_string(&mut b)?, value: get_string(&mut b)? });
                        }
                        entries.push(Entry { ts: prev, line, metadata });
                    }
                    streams.push((labels.sorted(), entries));
                }
                Ok(Record::Entries { tenant, streams })
            }
            KIND_CHECKPOINT_STREAM => {
                let tenant = get_string(&mut b)?;
                let labels = get_string(&mut b)?;
                let max_ts = unzigzag(get_uvarint(&mut b).ok_or_else(|| RecordError("truncated max ts".into()))?);
                let n = get_count(&mut b, "chunk count")?;
                let mut chunks = Vec::with_capacity(n);
                for _ in 0..n {
                    if !b.has_remaining() {
                        return Err(RecordError("truncated chunk flags".into()));
                    }
                    let closed = b.get_u8() & 1 == 1;
                    chunks.push((closed, get_bytes(&mut b)?));
                }
                Ok(Record::Checkpoint(CheckpointStream { tenant, labels, max_ts, chunks }))
            }
            k => Err(RecordError(format!("unknown record kind {k}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts: i64, line: &str, meta: &[(&str, &str)]) -> Entry {
        Entry {
            ts,
            line: Bytes::from(line.to_string()),
            metadata: meta.iter().map(|(n, v)| Label::new(*n, *v)).collect(),
        }
    }

    #[test]
    fn entries_round_trip_and_empty_streams_vanish() {
        let mut r = EntriesRecord::new("tenant-1", 64);
        r.begin_stream(r#"{a="1"}"#);
        r.add(&entry(100, "one", &[]));
        r.add(&entry(50, "two", &[("trace", "x")]));
        r.begin_stream(r#"{a="2"}"#);
        r.begin_stream(r#"{a="3"}"#);
        r.add(&entry(-7, "three", &[]));
        let Record::Entries { tenant, streams } = Record::decode(r.finish()).unwrap() else { panic!() };
        assert_eq!(tenant, "tenant-1");
        assert_eq!(streams.len(), 2);
        assert_eq!(streams[0].0.to_string(), r#"{a="1"}"#);
        assert_eq!(streams[0].1, vec![entry(100, "one", &[]), entry(50, "two", &[("trace", "x")])]);
        assert_eq!(streams[1].1, vec![entry(-7, "three", &[])]);
    }

    #[test]
    fn checkpoint_streams_round_trip() {
        let c = CheckpointStream {
            tenant: "t".into(),
            labels: r#"{a="1"}"#.into(),
            max_ts: 123,
            chunks: vec![(true, Bytes::from_static(b"abc")), (false, Bytes::from_static(b"de"))],
        };
        let Record::Checkpoint(d) = Record::decode(c.encode()).unwrap() else { panic!() };
        assert_eq!((d.tenant, d.labels, d.max_ts), (c.tenant, c.labels, 123));
        assert_eq!(d.chunks, c.chunks);
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let mut r = EntriesRecord::new("t", 64);
        r.begin_stream(r#"{a="1"}"#);
        r.add(&entry(1, "line", &[("k", "v")]));
        let full = r.finish();
        for cut in 0..full.len() {
            assert!(Record::decode(full.slice(..cut)).is_err(), "cut {cut}");
        }
    }
}
