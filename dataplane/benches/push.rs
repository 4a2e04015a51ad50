//! Push decoding and validation: snappy-compressed protobuf (and JSON) bodies shaped like the
//! load generator's (2000 lines over 8 streams, logfmt and JSON lines), decoded and validated
//! the way the distributor does per request.
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
    g.bench_function("json_validate", |b| {
        b.iter(|| {
            let raw = decode::decode(Bytes::from(json.clone()), Format::Json, 100 << 20).expect("decode");
            black_box(validation::validate("bench", raw, &limits, now))
        })
    });
    g.finish();
}

criterion_group!(benches, push_decode);
criterion_main!(benches);
