//! The seed corpora of the fuzz targets, made with Norn's own encoders.
//!
//! `seeds_are_accepted_by_their_decoders` checks on every test run that each seed still decodes,
//! so the committed corpora stay real examples as formats change. To rewrite them:
//!
//! ```text
//! cargo test -p norn --lib fuzzing::seeds::write_seed_corpora -- --ignored
//! ```
//!
//! (or `scripts/fuzz.sh seeds`), which replaces `fuzz/corpus/<target>/seed-*`.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use crate::chunk::{Chunk, ChunkReader, Codec, MemChunk};
use crate::entry::Direction;
use crate::frontend::job::{Job, SubRequest, SubResponse};
use crate::frontend::proto::{FrontendToQuerier, JobMsg, QuerierToFrontend, ResultMsg};
use crate::ingester::walrec::{CheckpointStream, EntriesRecord, Record};
use crate::labels::{Label, Labels};
use crate::logproto;
use crate::query::QueryParams;
use crate::ring::{InstanceDesc, InstanceState, RingDesc};
use crate::rpc::proto as rpc;
use crate::storage::{ChunkRef, chunk_key};

const NOW_NS: i64 = 1_700_000_000_000_000_000;

/// LogQL queries covering the grammar: selectors, every filter and parser, formatting stages,
/// range and vector aggregations, binary operations with matching, literals and functions.
const QUERIES: &[&str] = &[
    r#"{app="a"}"#,
    r#"{app="a", env!="dev", pod=~"web-.*", ns!~"kube-.+"}"#,
    r#"{app="a"} |= "error" != "timeout" |~ "(?i)fail" !~ "ok$""#,
    r#"{app="a"} |= "a" or "b" |> "<_> GET <_>" !> "health""#,
    r#"{app="a"} |= ip("10.0.0.0/8") != ip("192.168.1.1-192.168.1.9")"#,
    r#"{app="a"} | json | status >= 500 and duration > 1.5s or bytes < 10KB"#,
    r#"{app="a"} | json first_ip="ips[0]", ua=`headers["User-Agent"]`"#,
    r#"{app="a"} | logfmt --strict --keep-empty level, msg | level="error""#,
    r#"{app="a"} | regexp `(?P<method>\w+) (?P<path>\S+)` | path=~"/api/.*""#,
    r#"{app="a"} | pattern `<ip> - - [<_>] "<method> <path> <_>" <status>`"#,
    r#"{app="a"} | unpack | line_format "{{.level | upper}} {{.msg}}""#,
    r#"{app="a"} | label_format lvl=level, short=`{{ trunc 5 .msg }}` | drop pod, env="dev" | keep app"#,
    r#"{app="a"} | decolorize | logfmt | __error__="" | (status="200" or status="204")"#,
    r#"{app="a"} | json | addr = ip("10.0.0.0/8") | level != "debug""#,
    r#"count_over_time({app="a"}[5m])"#,
    r#"rate({app="a"} |= "error" [1m] offset 1h)"#,
    r#"sum by (status) (rate({app="a"} | json [5m]))"#,
    r#"sum_over_time({app="a"} | logfmt | unwrap bytes(size) | __error__="" [1m])"#,
    r#"quantile_over_time(0.99, {app="a"} | json | unwrap duration(latency) [5m]) by (path)"#,
    r#"avg_over_time({app="a"} | logfmt | unwrap latency [1m]) without (pod)"#,
    r#"topk(5, sum by (path) (count_over_time({app="a"} | json [1h])))"#,
    r#"sort_desc(sum(bytes_over_time({app="a"}[1m])))"#,
    r#"sum(rate({app="a"}[1m])) / on (app) group_left (team) sum(rate({app="b"}[1m]))"#,
    r#"sum(rate({app="a"}[1m])) > bool 10 and ignoring (pod) count_over_time({app="b"}[1m]) unless vector(1)"#,
    r#"-2 ^ 3 ^ 2 * 4 % 5 + 1 - 0.5e3 / 16 + (vector(1) > bool 0)"#,
    r#"label_replace(rate({app="a"}[1m]), "dst", "$1", "src", "(.*)-.*")"#,
    r#"absent_over_time({app="a"}[5m])"#,
    r#"first_over_time({app="a"} | logfmt | unwrap ts [1m]) or last_over_time({app="b"} | logfmt | unwrap ts [1m])"#,
    r#"max by (level) (rate({app="a"} | logfmt | level=~"warn|error" [30s])) == 0"#,
    r#"count(count by (pod) (rate({app="a"}[1m])))"#,
    r#"stddev_over_time({app="a"} | json | unwrap bytes [1m]) >= 3"#,
    r#"rate_counter({app="a"} | logfmt | unwrap count [1m])"#,
    r#"bottomk(2, max_over_time({app="a"} | json | unwrap n [1m]) by (app))"#,
    r#"vector(0)"#,
    r#"sum by (a) (count_over_time({app="a"} |~ `\d{3}` | json | line_format `{{ __line__ }}` [1m]))"#,
];

/// Every seed: (target, file name, bytes).
pub(super) fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, data: Vec<u8>| out.push((target, format!("seed-{name}"), data));

    // Push bodies.
    let json = [
        (
            "v1",
            r#"{"streams":[{"stream":{"app":"a","env":"prod"},"values":[["1700000000000000000","GET /index.html 200"],["1700000000000000001","line two"]]}]}"#,
        ),
        (
            "metadata",
            r#"{"streams":[{"stream":{"job":"a"},"values":[["1700000000000000000","one",{"trace_id":"abc","user":"u1"}]]}]}"#,
        ),
        (
            "legacy",
            r#"{"streams":[{"labels":"{job=\"b\", env=\"dev\"}","entries":[{"ts":"2023-11-14T22:13:20.123456789Z","line":"three"}]}]}"#,
        ),
        (
            "escapes",
            r#"{"streams":[{"stream":{"app":"\u00e9t\u00e9"},"values":[["1700000000000000000","tab\tquote\" backslash\\ \ud83d\ude00"]]},{"stream":{},"values":[]}]}"#,
        ),
    ];
    for (name, body) in json {
        add("push_json", name, body.as_bytes().to_vec());
    }
    let proto = |streams: Vec<logproto::StreamAdapter>| {
        snap::raw::Encoder::new().compress_vec(&logproto::PushRequest { streams }.encode_to_vec()).unwrap()
    };
    let entry = |ts: i64, line: &str, meta: &[(&str, &str)]| logproto::EntryAdapter {
        timestamp: Some(logproto::Timestamp::from_nanos(ts)),
        line: Bytes::from(line.to_string()),
        structured_metadata: meta
            .iter()
            .map(|(n, v)| logproto::LabelPairAdapter { name: n.to_string().into(), value: v.to_string().into() })
            .collect(),
        parsed: vec![],
    };
    let push = proto(vec![
        logproto::StreamAdapter {
            labels: r#"{app="a", env="prod"}"#.into(),
            entries: vec![
                entry(NOW_NS, "GET /index.html 200", &[]),
                entry(NOW_NS + 1, "line two", &[("trace_id", "x")]),
            ],
            hash: 0,
        },
        logproto::StreamAdapter {
            labels: r#"{job="b"}"#.into(),
            entries: vec![entry(NOW_NS - 5, "three", &[])],
            hash: 7,
        },
    ]);
    add("push_protobuf", "two-streams", push.clone());
    add(
        "push_protobuf",
        "bad-labels",
        proto(vec![logproto::StreamAdapter {
            labels: r#"{a="1",,}"#.into(),
            entries: vec![entry(NOW_NS, "x", &[])],
            hash: 0,
        }]),
    );

    // Compressed bodies: byte 0 bits 0-2 pick gzip (0), deflate (1); bit 3 protobuf.
    let gzip = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let zlib = |b: &[u8]| {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let raw_deflate = |b: &[u8]| {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let prefixed = |selector: u8, body: Vec<u8>| [vec![selector], body].concat();
    add("push_compressed", "gzip-json", prefixed(0, gzip(json[0].1.as_bytes())));
    add("push_compressed", "gzip-protobuf", prefixed(8, gzip(&push)));
    add("push_compressed", "zlib-json", prefixed(1, zlib(json[1].1.as_bytes())));
    add("push_compressed", "deflate-protobuf", prefixed(9, raw_deflate(&push)));
    add("push_compressed", "gzip-two-members", prefixed(0, [gzip(b"{\"streams\":"), gzip(b"[]}")].concat()));

    for (i, q) in QUERIES.iter().enumerate() {
        add("logql_roundtrip", &format!("{i:02}"), q.as_bytes().to_vec());
    }

    // Chunks of each codec, and a WAL holding them.
    let mut chunks = Vec::new();
    for codec in Codec::ALL {
        let mut c = MemChunk::new(codec, 256);
        for i in 0..40i64 {
            let meta = if i % 3 == 0 { vec![Label::new("trace_id", format!("t{i}"))] } else { vec![] };
            let ts = NOW_NS + i * 1_000_000 - (i % 4) * 10;
            c.append(ts, format!("level=info msg=\"request {i}\" status=200").as_bytes(), &meta).unwrap();
        }
        let encoded = c.encode();
        add("chunk_decode", &format!("{codec}"), [vec![0], encoded.to_vec()].concat());
        add("chunk_decode", &format!("{codec}-fixed-crc"), [vec![1], encoded.to_vec()].concat());
        let decoded = Chunk::decode(encoded.clone()).unwrap();
        let handle = decoded.block_handles(i64::MIN, i64::MAX).unwrap().remove(0);
        let (meta, codec, data) = handle.wire();
        add("chunk_block", &format!("{codec}"), super::wire_block_bytes(&meta, codec, &data));
        chunks.push((codec, encoded, meta, data));
    }
    // A format-1 chunk, as written before format 2 (readers keep reading it).
    let v1 = include_bytes!("../chunk/testdata/v1_zstd.chunk");
    add("chunk_decode", "v1-zstd", [vec![0], v1.to_vec()].concat());

    let mut entries = EntriesRecord::new("tenant-1", 256);
    entries.begin_stream(r#"{app="a", env="prod"}"#);
    for i in 0..5 {
        let meta = if i == 2 { vec![Label::new("trace_id", "abc")] } else { vec![] };
        entries.add(&crate::entry::Entry { ts: NOW_NS + i, line: Bytes::from(format!("line {i}")), metadata: meta });
    }
    entries.begin_stream(r#"{app="b"}"#);
    entries.add(&crate::entry::Entry { ts: NOW_NS - 1, line: Bytes::from_static(b"other"), metadata: vec![] });
    let entries = entries.finish();
    let checkpoint = CheckpointStream {
        tenant: "tenant-1".into(),
        labels: r#"{app="a", env="prod"}"#.into(),
        max_ts: NOW_NS + 40_000_000,
        chunks: chunks.iter().take(2).enumerate().map(|(i, (_, c, ..))| (i == 0, c.clone())).collect(),
    }
    .encode();
    add("wal_record", "entries", entries.to_vec());
    add("wal_record", "checkpoint-stream", checkpoint.to_vec());
    let segment = super::wal_segment(&[entries.clone(), entries.slice(..entries.len() / 2)]);
    add("wal_replay", "segment", [vec![0], segment.clone()].concat());
    add("wal_replay", "segment-torn", [vec![0], segment[..segment.len() - 3].to_vec()].concat());
    add("wal_replay", "checkpoint", [vec![1], super::wal_checkpoint(1, &[checkpoint.clone(), checkpoint])].concat());

    // Index objects.
    let labels = |s: &str| Arc::new(Labels::parse(s).unwrap().sorted());
    let reference = |fp: u64, l: &Arc<Labels>, from: i64, key: Option<&str>| ChunkRef {
        fingerprint: fp,
        labels: Arc::clone(l),
        from,
        through: from + 60_000_000_000,
        key: key.map_or_else(|| chunk_key("tenant-1", fp, from, from + 60_000_000_000, 0xdead_beef), str::to_string),
        size: 1234,
        entries: 40,
        uncompressed: 4096,
        checksum: 0xdead_beef,
    };
    let (a, b) = (labels(r#"{app="a", env="prod"}"#), labels(r#"{app="b"}"#));
    let refs = [
        reference(1, &a, NOW_NS, None),
        reference(1, &a, NOW_NS + 120_000_000_000, None),
        reference(2, &b, NOW_NS - 5, Some("custom/key")),
    ];
    let index = super::encode_index_object("fuzz", &refs);
    add("index_object", "three-refs", [vec![0], index.clone()].concat());
    add("index_object", "three-refs-fixed-crc", [vec![1], index].concat());

    // The ring.
    let mut ring = RingDesc::default();
    for (i, zone) in ["zone-a", "zone-b", "zone-c", "zone-a"].iter().enumerate() {
        let mut inst = InstanceDesc {
            addr: format!("10.0.0.{i}:9095"),
            zone: zone.to_string(),
            tokens: (0..8u32).map(|t| t.wrapping_mul(0x1000_0001).wrapping_add(i as u32 * 7919)).collect(),
            heartbeat_ms: NOW_NS / 1_000_000 - i as i64 * 30_000,
            registered_ms: NOW_NS / 1_000_000 - 3_600_000,
            ..Default::default()
        };
        inst.tokens.sort_unstable();
        inst.set_state(if i == 3 { InstanceState::Leaving } else { InstanceState::Active });
        ring.instances.insert(format!("ingester-{i}"), inst);
    }
    add("ring_desc", "four-instances", ring.encode_to_vec());

    // gRPC messages: byte 0 picks the type (see the target).
    let stream = rpc::StreamMsg {
        labels: r#"{app="a", env="prod"}"#.into(),
        entries: vec![rpc::EntryMsg {
            ts: NOW_NS,
            line: Bytes::from_static(b"hello"),
            metadata: vec![rpc::LabelPair { name: "trace_id".into(), value: "abc".into() }],
        }],
    };
    let msg = |kind: u8, m: Vec<u8>| [vec![kind], m].concat();
    add("rpc_messages", "push", msg(0, rpc::PushRequest { tenant: "t".into(), streams: vec![stream] }.encode_to_vec()));
    let matchers = vec![
        rpc::MatcherMsg { name: "app".into(), op: 0, value: "a".into() },
        rpc::MatcherMsg { name: "pod".into(), op: 2, value: "web-.*".into() },
    ];
    let select = rpc::SelectRequest {
        tenant: "t".into(),
        matchers: matchers.clone(),
        from: 0,
        through: NOW_NS,
        with_data: true,
        with_flushed: false,
    };
    add("rpc_messages", "select", msg(1, select.encode_to_vec()));
    let blocks = chunks.iter().map(|(codec, _, meta, data)| rpc::BlockMsg::new(meta, *codec, data.clone())).collect();
    let select_response = rpc::SelectResponse {
        streams: vec![rpc::StreamBlocksMsg { labels: r#"{app="a"}"#.into(), fingerprint: 1, blocks }],
    };
    add("rpc_messages", "select-response", msg(2, select_response.encode_to_vec()));
    let series = rpc::SeriesRequest { tenant: "t".into(), matchers, from: 0, through: NOW_NS };
    add("rpc_messages", "series", msg(3, series.encode_to_vec()));
    let series = rpc::SeriesResponse { series: vec![r#"{app="a"}"#.into(), r#"{app="b", x="y"}"#.into()] };
    add("rpc_messages", "series-response", msg(4, series.encode_to_vec()));
    let patterns = rpc::PatternsResponse {
        patterns: vec![rpc::StreamPatternMsg {
            fingerprint: 1,
            pattern: "GET <_> 200".into(),
            level: "info".into(),
            bucket_ts: vec![NOW_NS, NOW_NS + 10],
            counts: vec![3, 4],
        }],
    };
    add("rpc_messages", "patterns-response", msg(5, patterns.encode_to_vec()));
    let params = QueryParams {
        start: NOW_NS - 3_600_000_000_000,
        end: NOW_NS,
        step: 60_000_000_000,
        interval: 0,
        direction: Direction::Backward,
        limit: 100,
        instant: false,
    };
    let job = Job {
        tenants: vec!["t".into()],
        request: SubRequest::Query { query: r#"sum(rate({app="a"}[1m]))"#.into(), params },
    };
    let to_querier = FrontendToQuerier { id: 7, job: Some(JobMsg::from(&job)), cancel: false };
    add("rpc_messages", "job", msg(6, to_querier.encode_to_vec()));
    let result = SubResponse::Series(vec![labels(r#"{app="a"}"#)]);
    let answer = QuerierToFrontend { id: 7, result: Some(ResultMsg::from(&result)), ..Default::default() };
    add("rpc_messages", "answer", msg(7, answer.encode_to_vec()));
    add(
        "rpc_messages",
        "cached-response",
        msg(8, super::super::frontend::proto::encode_response(&SubResponse::Strings(vec!["app".into()])).to_vec()),
    );
    let watch = crate::etcd::proto::WatchResponse {
        header: Some(crate::etcd::proto::ResponseHeader { revision: 42, ..Default::default() }),
        events: vec![crate::etcd::proto::Event {
            kv: Some(crate::etcd::proto::KeyValue {
                key: b"collectors/ring".to_vec(),
                value: ring.encode_to_vec().into(),
                mod_revision: 42,
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    add("rpc_messages", "etcd-watch", msg(9, watch.encode_to_vec()));
    out
}

#[test]
fn seeds_are_accepted_by_their_decoders() {
    use crate::distributor::decode::{Format, decode, decode_content_encoding, decode_json, decode_protobuf};
    for (target, name, data) in seeds() {
        let what = format!("{target}/{name}");
        match target {
            "push_json" => assert!(decode_json(&data).is_ok(), "{what}"),
            "push_protobuf" => assert!(decode_protobuf(&data, 1 << 20).is_ok(), "{what}"),
            "push_compressed" => {
                let (enc, format) = match data[0] {
                    0 => ("gzip", Format::Json),
                    1 => ("deflate", Format::Json),
                    8 => ("gzip", Format::Protobuf),
                    _ => ("deflate", Format::Protobuf),
                };
                let plain = decode_content_encoding(Bytes::copy_from_slice(&data[1..]), Some(enc), 1 << 20).unwrap();
                assert!(decode(plain, format, 1 << 20).is_ok(), "{what}");
            }
            "logql_roundtrip" => {
                let q = std::str::from_utf8(&data).unwrap();
                if let Err(e) = crate::logql::parse_expr(q) {
                    panic!("{what}: {q}: {e}");
                }
            }
            "chunk_decode" => {
                let c = Chunk::decode(Bytes::copy_from_slice(&data[1..])).unwrap();
                let n = c.iter(i64::MIN, i64::MAX, Direction::Forward).count();
                if name.starts_with("v1") { assert!(n > 0, "{what}") } else { assert_eq!(n, 40, "{what}") }
            }
            "chunk_block" => {
                let (meta, codec, payload) = super::wire_block(&data).unwrap();
                assert!(meta.sections.is_some(), "{what}: seeds are format-2 blocks");
                let handle = crate::chunk::BlockHandle::from_wire(meta, codec, payload).unwrap();
                let n = meta.count as usize;
                assert!(n > 0, "{what}");
                assert_eq!(handle.clone().decode_columns().unwrap().len(), n, "{what}");
                assert_eq!(handle.decode().unwrap().len(), n, "{what}");
            }
            "wal_record" => assert!(Record::decode(Bytes::from(data)).is_ok(), "{what}"),
            "wal_replay" => {
                let dir = tempfile::tempdir().unwrap();
                let file = if data[0] == 0 { "00000000000000000000.wal" } else { "checkpoint.00000000000000000001" };
                std::fs::write(dir.path().join(file), &data[1..]).unwrap();
                let mut records = 0;
                let report = crate::wal::replay(dir.path(), |_, p| {
                    records += 1;
                    // The segment seed's second record is a valid frame around a torn payload.
                    drop(Record::decode(p));
                    Ok::<(), std::convert::Infallible>(())
                })
                .unwrap();
                assert!(records > 0, "{what}: {report:?}");
            }
            "index_object" => assert_eq!(super::decode_index_object("fuzz", &data[1..]).unwrap().len(), 3, "{what}"),
            "ring_desc" => assert_eq!(crate::ring::ring_codec().decode(&data).unwrap().instances.len(), 4, "{what}"),
            "rpc_messages" => {
                let m = &data[1..];
                let ok = match data[0] {
                    0 => super::rpc_push_streams("t", rpc::PushRequest::decode(m).unwrap()).is_ok(),
                    1 => rpc::SelectRequest::decode(m).is_ok(),
                    2 => rpc::SelectResponse::decode(m).unwrap().streams[0]
                        .blocks
                        .iter()
                        .all(|b| super::rpc_block(b.clone()).unwrap().decode().is_ok()),
                    3 => rpc::SeriesRequest::decode(m).is_ok(),
                    4 => rpc::SeriesResponse::decode(m).is_ok(),
                    5 => rpc::PatternsResponse::decode(m).is_ok(),
                    6 => Job::try_from(FrontendToQuerier::decode(m).unwrap().job.unwrap()).is_ok(),
                    7 => crate::frontend::proto::outcome(QuerierToFrontend::decode(m).unwrap()).is_ok(),
                    8 => crate::frontend::proto::decode_response(m).is_some(),
                    _ => crate::etcd::proto::WatchResponse::decode(m).is_ok(),
                };
                assert!(ok, "{what}");
            }
            other => panic!("seed for unknown target {other}"),
        }
    }
}

/// Rewrites `fuzz/corpus/<target>/seed-*` (run with `--ignored`; see the module docs).
#[test]
#[ignore = "writes the committed seed corpora"]
fn write_seed_corpora() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let all = seeds();
    let mut targets: Vec<&str> = all.iter().map(|(t, ..)| *t).collect();
    targets.dedup();
    for target in targets {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for old in std::fs::read_dir(&dir).unwrap() {
            let path = old.unwrap().path();
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("seed-")) {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    for (target, name, data) in all {
        std::fs::write(root.join(target).join(name), data).unwrap();
    }
}
