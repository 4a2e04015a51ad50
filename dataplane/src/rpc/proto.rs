//! The messages of the ingester service, declared with prost derives (no `.proto` build step,
//! like [`crate::logproto`] and the ring's [`crate::ring::RingDesc`]).
//!
//! Lines and block payloads are `bytes` fields decoded into [`Bytes`]: a decoded message views
//! the receive buffer, so neither an ingester taking a push nor a querier taking blocks copies
//! line bytes. Field numbers are the wire contract between versions of Norn during a rolling
//! upgrade: add fields, never renumber.

use bytes::Bytes;

/// A push to one ingester: the streams of a distributor's push whose replica set includes it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(string, tag = "1")]
    pub tenant: String,
    #[prost(message, repeated, tag = "2")]
    pub streams: Vec<StreamMsg>,
}

/// Field number of [`PushRequest::streams`]: a distributor encodes each stream once and
/// concatenates the encoded fields into each replica's request.
pub const PUSH_STREAMS_TAG: u32 = 2;
/// Field number of [`PushRequest::tenant`].
pub const PUSH_TENANT_TAG: u32 = 1;

/// One validated stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamMsg {
    /// The sorted labels in their canonical text form (`{a="b", c="d"}`).
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryMsg>,
}

/// One entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryMsg {
    /// Nanoseconds since the epoch.
    #[prost(int64, tag = "1")]
    pub ts: i64,
    #[prost(bytes = "bytes", tag = "2")]
    pub line: Bytes,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<LabelPair>,
}

/// A structured metadata pair.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// What an ingester dropped of a push (stream limits, per-stream rate limits, entries out of
/// order or too far behind); everything else is durable in its WAL.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushResponse {
    #[prost(message, repeated, tag = "1")]
    pub discards: Vec<StreamDiscardMsg>,
}

/// Drops of one stream of the request, for one reason.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamDiscardMsg {
    /// Position of the stream in the request.
    #[prost(uint32, tag = "1")]
    pub stream: u32,
    /// Loki's reason name (`per_stream_rate_limit`, ...).
    #[prost(string, tag = "2")]
    pub reason: String,
    #[prost(uint64, tag = "3")]
    pub lines: u64,
    #[prost(uint64, tag = "4")]
    pub bytes: u64,
    /// The message for the client; empty for none.
    #[prost(string, tag = "5")]
    pub message: String,
}

/// A label matcher of a stream selector.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MatcherMsg {
    #[prost(string, tag = "1")]
    pub name: String,
    /// 0 `=`, 1 `!=`, 2 `=~`, 3 `!~`.
    #[prost(int32, tag = "2")]
    pub op: i32,
    #[prost(string, tag = "3")]
    pub value: String,
}

/// Streams of a tenant matching a selector with data in `[from, through)`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SelectRequest {
    #[prost(string, tag = "1")]
    pub tenant: String,
    #[prost(message, repeated, tag = "2")]
    pub matchers: Vec<MatcherMsg>,
    #[prost(int64, tag = "3")]
    pub from: i64,
    #[prost(int64, tag = "4")]
    pub through: i64,
    /// Send block payloads; without, only their headers (for volume statistics).
    #[prost(bool, tag = "5")]
    pub with_data: bool,
    /// Include chunks already flushed to the object store (read while it is unavailable).
    #[prost(bool, tag = "6")]
    pub with_flushed: bool,
}

/// One message of the [`SelectRequest`] response stream: some streams' blocks. A stream with
/// many blocks may be split over several messages (same labels, more blocks).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SelectResponse {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamBlocksMsg>,
}

/// Blocks of one in-memory stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamBlocksMsg {
    /// Canonical label text.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(fixed64, tag = "2")]
    pub fingerprint: u64,
    #[prost(message, repeated, tag = "3")]
    pub blocks: Vec<BlockMsg>,
}

/// One block: its header, codec and (with `with_data`) payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockMsg {
    #[prost(uint32, tag = "1")]
    pub count: u32,
    #[prost(int64, tag = "2")]
    pub min_ts: i64,
    #[prost(int64, tag = "3")]
    pub max_ts: i64,
    #[prost(uint32, tag = "4")]
    pub uncompressed_len: u32,
    #[prost(uint32, tag = "5")]
    pub compressed_len: u32,
    #[prost(fixed32, tag = "6")]
    pub crc32c: u32,
    /// The chunk codec id (see `chunk/mod.rs`).
    #[prost(uint32, tag = "7")]
    pub codec: u32,
    #[prost(bytes = "bytes", tag = "8")]
    pub data: Bytes,
    /// Whether the block is a format-2 block and the section fields below apply (`false`, the
    /// default, is a single-payload block: format 1, or a head snapshot).
    #[prost(bool, tag = "9")]
    pub sectioned: bool,
    /// Format-2 block sections, see `chunk::BlockSections`.
    #[prost(uint32, tag = "10")]
    pub columns_len: u32,
    #[prost(uint32, tag = "11")]
    pub columns_uncompressed_len: u32,
    #[prost(fixed32, tag = "12")]
    pub columns_crc32c: u32,
    #[prost(uint32, tag = "13")]
    pub index_len: u32,
    #[prost(uint32, tag = "14")]
    pub flags: u32,
}

impl BlockMsg {
    /// The message of a block with header `meta` and codec `codec`; `data` is its stored bytes,
    /// or empty when the data is not asked for.
    pub fn new(meta: &crate::chunk::BlockMeta, codec: crate::chunk::Codec, data: Bytes) -> Self {
        let sections = meta.sections;
        BlockMsg {
            count: meta.count,
            min_ts: meta.min_ts,
            max_ts: meta.max_ts,
            uncompressed_len: meta.uncompressed_len,
            compressed_len: meta.compressed_len,
            crc32c: meta.crc32c,
            codec: u32::from(codec.id()),
            data,
            sectioned: sections.is_some(),
            columns_len: sections.map_or(0, |s| s.columns_len),
            columns_uncompressed_len: sections.map_or(0, |s| s.columns_uncompressed_len),
            columns_crc32c: sections.map_or(0, |s| s.columns_crc32c),
            index_len: sections.map_or(0, |s| s.index_len),
            flags: sections.map_or(0, |s| s.flags),
        }
    }
}

/// Label sets of a tenant's streams matching a selector with data in `[from, through)`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeriesRequest {
    #[prost(string, tag = "1")]
    pub tenant: String,
    #[prost(message, repeated, tag = "2")]
    pub matchers: Vec<MatcherMsg>,
    #[prost(int64, tag = "3")]
    pub from: i64,
    #[prost(int64, tag = "4")]
    pub through: i64,
}

/// The answer to a [`SeriesRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeriesResponse {
    /// Canonical label texts.
    #[prost(string, repeated, tag = "1")]
    pub series: Vec<String>,
}

/// `Patterns`: the pattern detector's templates of matching streams with lines in
/// `[from, through)` (the fields of a [`SeriesRequest`]).
pub type PatternsRequest = SeriesRequest;

/// The answer to a `Patterns` request: per stream and template, counts per bucket.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PatternsResponse {
    #[prost(message, repeated, tag = "1")]
    pub patterns: Vec<StreamPatternMsg>,
}

/// One template of one stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamPatternMsg {
    #[prost(uint64, tag = "1")]
    pub fingerprint: u64,
    #[prost(string, tag = "2")]
    pub pattern: String,
    /// `detected_level` of its lines; empty when they had none.
    #[prost(string, tag = "3")]
    pub level: String,
    /// Bucket starts (ns), ascending, and the lines of each.
    #[prost(int64, repeated, tag = "4")]
    pub bucket_ts: Vec<i64>,
    #[prost(uint64, repeated, tag = "5")]
    pub counts: Vec<u64>,
}

impl From<crate::pattern::StreamPattern> for StreamPatternMsg {
    fn from(p: crate::pattern::StreamPattern) -> Self {
        let (bucket_ts, counts) = p.buckets.into_iter().unzip();
        Self { fingerprint: p.fingerprint, pattern: p.pattern, level: p.level.unwrap_or_default(), bucket_ts, counts }
    }
}

impl From<StreamPatternMsg> for crate::pattern::StreamPattern {
    fn from(m: StreamPatternMsg) -> Self {
        Self {
            fingerprint: m.fingerprint,
            pattern: m.pattern,
            level: (!m.level.is_empty()).then_some(m.level),
            buckets: m.bucket_ts.into_iter().zip(m.counts).collect(),
        }
    }
}
