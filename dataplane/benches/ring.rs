//! Ring lookups, snapshot building, token generation, ring encoding, and etcd CAS latency.
//!
//! Run: `cargo bench --bench ring` (or `-- replicas` etc. for one group). The etcd group needs an
//! `etcd` binary (`NORN_ETCD` or on `PATH`; Debian `etcd-server`) and is skipped with a message
//! when there is none.
//!
//! - `replicas/<zones>/30x128/rf3`: one replication-set lookup (write) on a ring of 30 ACTIVE
//!   instances with 128 spread-minimizing tokens each, 3 zones when zone-aware.
//! - `snapshot/30x128`: building the lookup tables of that ring (done once per ring change).
//! - `spread_minimizing/ordinal_<n>`: the tokens of one StatefulSet ordinal (replays `0..n`).
//! - `codec/30x128`: protobuf encode and decode of that ring; the encoded size goes to stderr.
//! - `etcd_cas`: one compare-and-swap heartbeat of a 30x128 ring on a local etcd (read + txn).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use norn::ring::kv::{Codec, KvStore, ProtoCodec};
use norn::ring::model::{InstanceDesc, InstanceState, RingDesc};
use norn::ring::replication::{Operation, ReplicationConfig, RingSnapshot};
use norn::ring::tokens::SpreadMinimizing;
use norn::ring::{RingError, ring_kv};

const NOW: i64 = 1_700_000_000_000;

fn ring(instances: usize, zones: usize) -> RingDesc {
    let mut gens: Vec<SpreadMinimizing> =
        (0..zones).map(|z| SpreadMinimizing::new(&format!("zone-{z}"), 128)).collect();
    let mut ring = RingDesc::default();
    for i in 0..instances {
        let z = i % zones;
        let mut d = InstanceDesc {
            addr: format!("10.0.{z}.{i}:9095"),
            zone: format!("zone-{z}"),
            tokens: gens[z].next_ordinal(),
            heartbeat_ms: NOW,
            registered_ms: NOW,
            ..Default::default()
        };
        d.set_state(InstanceState::Active);
        ring.instances.insert(format!("ingester-zone-{z}-{}", i / zones), d);
    }
    ring
}

fn keys() -> Vec<u32> {
    let mut x = 0x9e37_79b9u32;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        })
        .collect()
}

fn bench_replicas(c: &mut Criterion) {
    let keys = keys();
    let mut g = c.benchmark_group("replicas");
    for (name, zones, aware) in [("no_zones", 1, false), ("zone_aware", 3, true)] {
        let cfg = ReplicationConfig {
            replication_factor: 3,
            zone_awareness: aware,
            heartbeat_timeout: Duration::from_secs(60),
        };
        let snap = RingSnapshot::new(&ring(30, zones), cfg);
        let mut i = 0usize;
        g.bench_function(format!("{name}/30x128/rf3"), |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                black_box(snap.replicas(keys[i], Operation::Write, NOW).expect("replicas"))
            })
        });
    }
    g.finish();
    let cfg =
        ReplicationConfig { replication_factor: 3, zone_awareness: true, heartbeat_timeout: Duration::from_secs(60) };
    let desc = ring(30, 3);
    c.bench_function("snapshot/30x128", |b| b.iter(|| black_box(RingSnapshot::new(&desc, cfg))));
}

fn bench_tokens(c: &mut Criterion) {
    let mut g = c.benchmark_group("spread_minimizing");
    g.sample_size(10);
    for n in [10u32, 100, 1000] {
        g.bench_function(format!("ordinal_{n}"), |b| {
            b.iter(|| black_box(norn::ring::tokens::spread_minimizing_tokens(n, "zone-a", 128)))
        });
    }
    g.finish();
}

fn bench_codec(c: &mut Criterion) {
    let desc = ring(30, 3);
    let codec = ProtoCodec::<RingDesc>::new();
    let bytes = codec.encode(&desc);
    let json = serde_json::to_vec(&norn::ring::model::view(&desc, NOW, Duration::from_secs(60), true)).expect("json");
    eprintln!("ring 30x128: protobuf {} bytes, JSON view with tokens {} bytes", bytes.len(), json.len());
    c.bench_function("codec/30x128/encode", |b| b.iter(|| black_box(codec.encode(&desc))));
    c.bench_function("codec/30x128/decode", |b| b.iter(|| black_box(codec.decode(&bytes).expect("decode"))));
}

fn bench_etcd(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let etcd = match rt.block_on(norn::ring::testing::EtcdServer::start()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("skipping etcd_cas: {e}");
            return;
        }
    };
    let kv: Arc<dyn KvStore> = Arc::new(rt.block_on(etcd.kv()).expect("client"));
    let typed = ring_kv(kv, 10);
    rt.block_on(typed.put("bench/ring", &ring(30, 3))).expect("seed");
    let mut beat = NOW;
    c.bench_function("etcd_cas/heartbeat_30x128", |b| {
        b.iter(|| {
            beat += 1;
            rt.block_on(typed.cas("bench/ring", |r: Option<RingDesc>| {
                let mut r = r.unwrap_or_default();
                if let Some(i) = r.instances.values_mut().next() {
                    i.heartbeat_ms = beat;
                }
                Ok::<_, RingError>(Some(r))
            }))
            .expect("cas")
        })
    });
    drop(etcd);
}

criterion_group!(benches, bench_replicas, bench_tokens, bench_codec, bench_etcd);
criterion_main!(benches);
