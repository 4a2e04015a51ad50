//! Push decoding and validation: snappy-compressed protobuf (and JSON) bodies shaped like the
//! load generator's (2000 lines over 8 streams, logfmt and JSON lines), decoded and validated
//! the way the distributor does per request — with Loki's default `service_name` and
//! `detected_level` discovery, and without it (`_no_discovery`). `otlp_8192` is an OTLP export
//! of 8192 such records (8 resources, the Collector's batch size), protobuf and gzip,
//! decompressed, decoded, mapped and validated, next to the same lines as a snappy push.
//!
//! Run: `cargo bench --bench push` (figures are per raw line byte).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use norn::distributor::decode::{self, Format};
use norn::limits::Limits;
use norn::logproto;
use norn::validation;
use prost::Message;

mod common;
use common::{Format as LineFormat, Rng, line_for};

/// (protobuf body, JSON body, raw line bytes) of one 2000-line push.
fn bodies(now: i64) -> (Bytes, Vec<u8>, usize) {
    let mut rng = Rng(7);
    let mut raw = 0;
    let mut streams = Vec::new();
    let mut json_streams = Vec::new();
    for s in 0..8 {
        let labels = format!(r#"{{app="app{s}", cluster="east", namespace="prod", pod="app{s}-0"}}"#);
        let mut entries = Vec::new();
        let mut values = Vec::new();
        for i in 0..250 {
            let l = line_for(&mut rng, if s % 4 == 2 { LineFormat::Json } else { LineFormat::Logfmt });
            raw += l.len();
            let ts = now - 1_000_000_000 + i * 180_000_000;
            values.push(serde_json::json!([ts.to_string(), l]));
            entries.push(logproto::EntryAdapter {
                timestamp: Some(logproto::Timestamp::from_nanos(ts)),
                line: Bytes::from(l),
                structured_metadata: vec![],
                parsed: vec![],
            });
        }
        json_streams.push(serde_json::json!({
            "stream": {"app": format!("app{s}"), "cluster": "east", "namespace": "prod", "pod": format!("app{s}-0")},
            "values": values,
        }));
        streams.push(logproto::StreamAdapter { labels: Bytes::from(labels), entries, hash: 0 });
    }
    let proto = logproto::PushRequest { streams }.encode_to_vec();
    let proto = Bytes::from(snap::raw::Encoder::new().compress_vec(&proto).expect("snappy"));
    let json = serde_json::to_vec(&serde_json::json!({ "streams": json_streams })).expect("json");
    (proto, json, raw)
}

fn push_decode(c: &mut Criterion) {
    let now = norn::timeutil::now_nanos();
    let (proto, json, raw) = bodies(now);
    let limits = Limits::default();
    let mut g = c.benchmark_group("push_decode");
    g.throughput(Throughput::Bytes(raw as u64));
    g.bench_function("protobuf_snappy", |b| {
        b.iter(|| black_box(decode::decode(proto.clone(), Format::Protobuf, 100 << 20).expect("decode")))
    });
    g.bench_function("protobuf_snappy_validate", |b| {
        b.iter(|| {
            let raw = decode::decode(proto.clone(), Format::Protobuf, 100 << 20).expect("decode");
            black_box(validation::validate("bench", raw, &limits, now))
        })
    });
    let plain = Limits { discover_service_name: vec![], discover_log_levels: false, ..Limits::default() };
    g.bench_function("protobuf_snappy_validate_no_discovery", |b| {
        b.iter(|| {
            let raw = decode::decode(proto.clone(), Format::Protobuf, 100 << 20).expect("decode");
            black_box(validation::validate("bench", raw, &plain, now))
        })
    });
    g.bench_function("json_validate", |b| {
        b.iter(|| {
            let raw = decode::decode(Bytes::from(json.clone()), Format::Json, 100 << 20).expect("decode");
            black_box(validation::validate("bench", raw, &limits, now))
        })
    });
    g.finish();
}

/// An OTLP export (gzip protobuf) and the same lines as a snappy push: 8192 records over 8
/// resources.
fn otlp_bodies(now: i64) -> (Bytes, Bytes, usize) {
    use norn::otlp::proto::{
        AnyValue, ExportLogsServiceRequest, KeyValue, LogRecord, Resource, ResourceLogs, ScopeLogs,
    };
    use std::io::Write;
    let mut rng = Rng(11);
    let (mut raw, mut resources, mut streams) = (0, Vec::new(), Vec::new());
    for s in 0..8 {
        let (mut records, mut entries) = (Vec::new(), Vec::new());
        for i in 0..1024 {
            let l = line_for(&mut rng, if s % 4 == 2 { LineFormat::Json } else { LineFormat::Logfmt });
            raw += l.len();
            let ts = now - 1_000_000_000 + i * 180_000;
            entries.push(logproto::EntryAdapter {
                timestamp: Some(logproto::Timestamp::from_nanos(ts)),
                line: Bytes::from(l.clone()),
                structured_metadata: vec![],
                parsed: vec![],
            });
            records.push(LogRecord {
                time_unix_nano: ts as u64,
                body: Some(AnyValue::string(l)),
                ..Default::default()
            });
        }
        let attrs = vec![
            KeyValue::string("service.name", format!("app{s}")),
            KeyValue::string("k8s.cluster.name", "east"),
            KeyValue::string("k8s.namespace.name", "prod"),
            KeyValue::string("k8s.pod.name", format!("app{s}-0")),
        ];
        resources.push(ResourceLogs {
            resource: Some(Resource { attributes: attrs, dropped_attributes_count: 0 }),
            scope_logs: vec![ScopeLogs { scope: None, log_records: records, schema_url: String::new() }],
            schema_url: String::new(),
        });
        let labels = format!(
            r#"{{k8s_cluster_name="east", k8s_namespace_name="prod", k8s_pod_name="app{s}-0", service_name="app{s}"}}"#
        );
        streams.push(logproto::StreamAdapter { labels: Bytes::from(labels), entries, hash: 0 });
    }
    let export = ExportLogsServiceRequest { resource_logs: resources }.encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&export).expect("gzip");
    let push = logproto::PushRequest { streams }.encode_to_vec();
    let push = snap::raw::Encoder::new().compress_vec(&push).expect("snappy");
    (Bytes::from(gz.finish().expect("gzip")), Bytes::from(push), raw)
}

fn otlp_decode(c: &mut Criterion) {
    let now = norn::timeutil::now_nanos();
    let (otlp, proto, raw) = otlp_bodies(now);
    let limits = Limits::default();
    let mut g = c.benchmark_group("otlp_8192");
    g.throughput(Throughput::Bytes(raw as u64));
    g.bench_function("otlp_gzip_map_validate", |b| {
        b.iter(|| {
            let body = decode::decode_content_encoding(otlp.clone(), Some("gzip"), 100 << 20).expect("gunzip");
            let export = norn::otlp::decode_request(&body, norn::otlp::Encoding::Protobuf).expect("decode");
            let (push, _) = norn::otlp::mapping::to_push(export, &limits.otlp_config, now);
            black_box(validation::validate("bench", push, &limits, now))
        })
    });
    g.bench_function("protobuf_snappy_validate", |b| {
        b.iter(|| {
            let raw = decode::decode(proto.clone(), Format::Protobuf, 100 << 20).expect("decode");
            black_box(validation::validate("bench", raw, &limits, now))
        })
    });
    g.finish();
}

criterion_group!(benches, push_decode, otlp_decode);
criterion_main!(benches);
