//! Decoding push request bodies: `Content-Encoding` (gzip, deflate), then JSON or
//! snappy-compressed protobuf `logproto.PushRequest`.
//!
//! Every decompression is bounded by `max_size` before anything is allocated, so a small body
//! that claims a huge size (or a zip bomb) is refused instead of exhausting memory.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use bytes::Bytes;
use prost::Message;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};

use crate::entry::Entry;
use crate::labels::Label;
use crate::logproto;
use crate::timeutil::parse_rfc3339;

/// A push as it arrived, before validation.
#[derive(Debug, Default)]
pub struct RawPush {
    pub streams: Vec<RawStream>,
}

/// One stream of a push, before its labels are parsed and validated.
#[derive(Debug)]
pub struct RawStream {
    pub labels: RawLabels,
    pub entries: Vec<Entry>,
}

/// Labels as the client sent them.
#[derive(Debug)]
pub enum RawLabels {
    /// `{a="b", ...}` text (protobuf and the legacy JSON shape); may be invalid UTF-8.
    Text(Bytes),
    /// A JSON object of label names to values.
    Map(Vec<(String, String)>),
}

/// Why a body could not be decoded; all of these reject the whole request.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("request body too large: {size} bytes, limit: {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("Content-Encoding {0:?} not supported")]
    UnsupportedEncoding(String),
    #[error("decompressing request body: {0}")]
    Decompress(String),
    #[error("decoding snappy-compressed protobuf: {0}")]
    Snappy(String),
    #[error("decoding protobuf push request: {0}")]
    Protobuf(String),
    #[error("decoding JSON push request: {0}")]
    Json(String),
}

/// The body format, from `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Protobuf,
}

impl Format {
    /// JSON for `application/json` (any parameters); snappy protobuf otherwise, including when
    /// the header is absent, as Loki does.
    pub fn from_content_type(ct: Option<&str>) -> Self {
        match ct {
            Some(ct) if ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")) => {
                Format::Json
            }
            _ => Format::Protobuf,
        }
    }
}

/// Undoes `Content-Encoding` (none, `gzip`, `deflate`; `snappy` is accepted as a no-op since
/// protobuf bodies are snappy-framed anyway).
pub fn decode_content_encoding(body: Bytes, encoding: Option<&str>, max_size: usize) -> Result<Bytes, DecodeError> {
    if body.len() > max_size {
        return Err(DecodeError::TooLarge { size: body.len(), limit: max_size });
    }
    let enc = encoding.map(|e| e.trim().to_ascii_lowercase()).unwrap_or_default();
    match enc.as_str() {
        "" | "identity" | "snappy" => Ok(body),
        "gzip" | "x-gzip" => read_bounded(flate2::read::MultiGzDecoder::new(&body[..]), max_size),
        "deflate" => {
            // HTTP's "deflate" is zlib-wrapped; some clients send raw deflate. Try zlib first.
            read_bounded(flate2::read::ZlibDecoder::new(&body[..]), max_size)
                .or_else(|_| read_bounded(flate2::read::DeflateDecoder::new(&body[..]), max_size))
        }
        other => Err(DecodeError::UnsupportedEncoding(other.to_string())),
    }
}

fn read_bounded(reader: impl Read, max_size: usize) -> Result<Bytes, DecodeError> {
    let mut out = Vec::new();
    let n =
        reader.take(max_size as u64 + 1).read_to_end(&mut out).map_err(|e| DecodeError::Decompress(e.to_string()))?;
    if n > max_size {
        return Err(DecodeError::TooLarge { size: n, limit: max_size });
    }
    Ok(Bytes::from(out))
}

/// Decodes a body in the given format.
pub fn decode(body: Bytes, format: Format, max_size: usize) -> Result<RawPush, DecodeError> {
    match format {
        Format::Protobuf => decode_protobuf(&body, max_size),
        Format::Json => decode_json(&body),
    }
}

/// Decodes a snappy (raw block format) compressed `logproto.PushRequest`. Lines come out as
/// slices of the decompressed buffer.
pub fn decode_protobuf(body: &[u8], max_size: usize) -> Result<RawPush, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if len > max_size {
        return Err(DecodeError::TooLarge { size: len, limit: max_size });
    }
    let mut buf = vec![0u8; len];
    let n = snap::raw::Decoder::new().decompress(body, &mut buf).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    buf.truncate(n);
    let req = logproto::PushRequest::decode(Bytes::from(buf)).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    let streams = req
        .streams
        .into_iter()
        .map(|s| RawStream {
            labels: RawLabels::Text(s.labels),
            entries: s
                .entries
                .into_iter()
                .map(|e| Entry {
                    ts: e.timestamp.unwrap_or_default().to_nanos(),
                    line: e.line,
                    metadata: e
                        .structured_metadata
                        .into_iter()
                        .map(|p| Label::new(String::from_utf8_lossy(&p.name), String::from_utf8_lossy(&p.value)))
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Ok(RawPush { streams })
}

#[derive(Deserialize)]
struct JsonPush {
    #[serde(default)]
    streams: Vec<JsonStream>,
}

/// A JSON stream in either shape: `{stream: {..}, values: [[ts, line, {meta}?], ..]}` (v1), or
/// the legacy `{labels: "{..}", entries: [{ts: RFC3339, line}, ..]}`.
#[derive(Deserialize)]
struct JsonStream {
    stream: Option<BTreeMap<String, String>>,
    labels: Option<String>,
    #[serde(default)]
    values: Vec<JsonValue>,
    #[serde(default)]
    entries: Vec<LegacyEntry>,
}

#[derive(Deserialize)]
struct LegacyEntry {
    #[serde(alias = "timestamp")]
    ts: String,
    line: String,
}

/// `[ "<unix ns>", "<line>", {"name": "value", ...}? ]`.
struct JsonValue(Entry);

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = JsonValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array [\"<unix epoch in nanoseconds>\", \"<log line>\", {structured metadata}]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonValue, A::Error> {
        let ts: JsonTs = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let line: String = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let meta: Option<BTreeMap<String, String>> = seq.next_element()?.flatten();
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        let metadata = meta.unwrap_or_default().into_iter().map(|(n, v)| Label { name: n, value: v }).collect();
        Ok(JsonValue(Entry { ts: ts.0, line: Bytes::from(line), metadata }))
    }
}

/// A timestamp given as a string of nanoseconds (or, leniently, as a JSON integer).
struct JsonTs(i64);

impl<'de> Deserialize<'de> for JsonTs {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JsonTs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a unix epoch timestamp in nanoseconds, as a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<JsonTs, E> {
                s.parse::<i64>()
                    .map(JsonTs)
                    .map_err(|_| E::custom(format!("invalid timestamp {s:?}: expected unix epoch nanoseconds")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<JsonTs, E> {
                i64::try_from(n).map(JsonTs).map_err(|_| E::custom(format!("timestamp {n} out of range")))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<JsonTs, E> {
                Ok(JsonTs(n))
            }
        }
        d.deserialize_any(V)
    }
}

/// Decodes a JSON push body.
pub fn decode_json(body: &[u8]) -> Result<RawPush, DecodeError> {
    let req: JsonPush = serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    let mut streams = Vec::with_capacity(req.streams.len());
    for s in req.streams {
        let labels = match (s.stream, s.labels) {
            (Some(map), _) => RawLabels::Map(map.into_iter().collect()),
            (None, Some(text)) => RawLabels::Text(Bytes::from(text)),
            (None, None) => RawLabels::Map(Vec::new()),
        };
        let mut entries: Vec<Entry> = s.values.into_iter().map(|v| v.0).collect();
        for e in s.entries {
            let ts = parse_rfc3339(&e.ts)
                .ok_or_else(|| DecodeError::Json(format!("invalid timestamp {:?}: expected RFC3339", e.ts)))?;
            entries.push(Entry::new(ts, e.line));
        }
        streams.push(RawStream { labels, entries });
    }
    Ok(RawPush { streams })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto_body(streams: Vec<logproto::StreamAdapter>) -> Vec<u8> {
        let raw = logproto::PushRequest { streams }.encode_to_vec();
        snap::raw::Encoder::new().compress_vec(&raw).unwrap()
    }

    fn entry(ts: i64, line: &str) -> logproto::EntryAdapter {
        logproto::EntryAdapter {
            timestamp: Some(logproto::Timestamp::from_nanos(ts)),
            line: Bytes::from(line.to_string()),
            structured_metadata: vec![],
            parsed: vec![],
        }
    }

    #[test]
    fn protobuf_round_trip_with_metadata() {
        let mut e = entry(1_700_000_000_123_456_789, "hello");
        e.structured_metadata.push(logproto::LabelPairAdapter { name: "trace_id".into(), value: "abc".into() });
        let body = proto_body(vec![logproto::StreamAdapter { labels: r#"{a="b"}"#.into(), entries: vec![e], hash: 0 }]);
        let push = decode(Bytes::from(body), Format::Protobuf, 1 << 20).unwrap();
        assert_eq!(push.streams.len(), 1);
        let s = &push.streams[0];
        assert!(matches!(&s.labels, RawLabels::Text(t) if &t[..] == br#"{a="b"}"#));
        assert_eq!(s.entries[0].ts, 1_700_000_000_123_456_789);
        assert_eq!(&s.entries[0].line[..], b"hello");
        assert_eq!(s.entries[0].metadata, vec![Label::new("trace_id", "abc")]);
    }

    #[test]
    fn truncated_snappy_and_garbage_protobuf_are_errors() {
        let body = proto_body(vec![logproto::StreamAdapter {
            labels: r#"{a="b"}"#.into(),
            entries: vec![entry(1, "x")],
            hash: 0,
        }]);
        for cut in 1..body.len() {
            assert!(decode_protobuf(&body[..cut], 1 << 20).is_err(), "cut at {cut}");
        }
        let garbage = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
        assert!(matches!(decode_protobuf(&garbage, 1 << 20), Err(DecodeError::Protobuf(_))));
    }

    #[test]
    fn snappy_size_claims_are_checked_before_allocating() {
        // A varint claiming 2^40 bytes of output.
        let body = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0x00];
        assert!(matches!(decode_protobuf(&body, 1 << 20), Err(DecodeError::TooLarge { .. } | DecodeError::Snappy(_))));
    }

    #[test]
    fn json_v1_and_legacy_shapes() {
        let body = br#"{"streams":[
            {"stream":{"job":"a"},"values":[["1700000000000000000","one"],["1700000000000000001","two",{"trace_id":"x"}]]},
            {"labels":"{job=\"b\"}","entries":[{"ts":"2023-11-14T22:13:20Z","line":"three"}]}]}"#;
        let push = decode_json(body).unwrap();
        assert_eq!(push.streams.len(), 2);
        assert!(
            matches!(&push.streams[0].labels, RawLabels::Map(m) if m == &vec![("job".to_string(), "a".to_string())])
        );
        assert_eq!(push.streams[0].entries[1].metadata, vec![Label::new("trace_id", "x")]);
        assert_eq!(push.streams[1].entries[0].ts, 1_700_000_000_000_000_000);
    }

    #[test]
    fn malformed_json_is_an_error_naming_the_problem() {
        assert!(matches!(decode_json(b"{\"streams\":[{"), Err(DecodeError::Json(_))));
        let e = decode_json(br#"{"streams":[{"stream":{"a":"b"},"values":[["yesterday","x"]]}]}"#).unwrap_err();
        assert!(e.to_string().contains("invalid timestamp"), "{e}");
        let e = decode_json(br#"{"streams":[{"stream":{"a":1},"values":[]}]}"#).unwrap_err();
        assert!(matches!(e, DecodeError::Json(_)));
    }

    #[test]
    fn gzip_and_deflate_bodies_are_bounded() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vec![b'a'; 10_000]).unwrap();
        let gz = Bytes::from(gz.finish().unwrap());
        assert_eq!(decode_content_encoding(gz.clone(), Some("gzip"), 20_000).unwrap().len(), 10_000);
        assert!(matches!(decode_content_encoding(gz, Some("gzip"), 5_000), Err(DecodeError::TooLarge { .. })));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(b"hello").unwrap();
        assert_eq!(
            &decode_content_encoding(Bytes::from(z.finish().unwrap()), Some("deflate"), 100).unwrap()[..],
            b"hello"
        );
        assert!(matches!(
            decode_content_encoding(Bytes::from_static(b"x"), Some("br"), 100),
            Err(DecodeError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn content_type_selects_the_format() {
        assert_eq!(Format::from_content_type(None), Format::Protobuf);
        assert_eq!(Format::from_content_type(Some("application/x-protobuf")), Format::Protobuf);
        assert_eq!(Format::from_content_type(Some("application/json; charset=utf-8")), Format::Json);
    }
}
