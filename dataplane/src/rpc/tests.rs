//! The ingester service over real gRPC on 127.0.0.1: in-process ingesters behind it, the
//! distributor's replication and the querier's fan-out in front of it, a ring in memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{IngesterConfig, SyncMode};
use crate::distributor::replicate::Replicator;
use crate::distributor::{PushError, PushTarget};
use crate::entry::{Entry, PushStream};
use crate::ingester::{Ingester, SingleProcess};
use crate::labels::{Labels, SharedLabels};
use crate::limits::{Limits, TenantLimits};
use crate::logql::{MatchOp, Matcher};
use crate::metrics::Metrics;
use crate::querier::{IngesterData, RingIngesters};
use crate::ring::lifecycler::{now_ms, reserved_entry};
use crate::ring::model::SystemClock;
use crate::ring::replication::ReplicationConfig;
use crate::ring::tokens::spread_minimizing_tokens;
use crate::ring::{InstanceState, RingClient, RingDesc};
use crate::storage::{Index, IndexConfig, MemoryStore};
use crate::validation::Reason;

const MIN: i64 = 60_000_000_000;

/// An ingester serving gRPC on 127.0.0.1.
struct Node {
    ingester: Arc<Ingester>,
    addr: String,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let index = Arc::new(Index::with_config(store.clone(), &IndexConfig::default()));
    let mut cfg = IngesterConfig::default();
    cfg.wal.sync = SyncMode::Never;
    let limits = Arc::new(TenantLimits::new(Limits::default(), &HashMap::new()).unwrap());
    let ingester = Ingester::open(
        cfg,
        dir.path().join("wal"),
        limits,
        Arc::new(SingleProcess),
        store,
        index,
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let server = tonic::transport::Server::builder()
        .add_service(IngesterService::new(ingester.clone(), 64 << 20))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            stop.clone().cancelled_owned(),
        );
    tokio::spawn(server);
    Node { ingester, addr, stop, _dir: dir }
}

/// An address nothing listens on.
async fn dead_addr() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().to_string()
}

/// A ring of ACTIVE ingesters at `addrs` (ordinal tokens), RF 3.
async fn ring(addrs: &[String]) -> Arc<RingClient> {
    let kv = crate::ring::ring_kv(Arc::new(crate::ring::kv::MemoryKv::new()), 10);
    let mut desc = RingDesc::default();
    for (i, addr) in addrs.iter().enumerate() {
        let mut e = reserved_entry(addr, "", spread_minimizing_tokens(i as u32, "", 64));
        e.set_state(InstanceState::Active);
        e.heartbeat_ms = now_ms();
        desc.instances.insert(format!("ingester-{i}"), e);
    }
    kv.put("ring", &desc).await.unwrap();
    let cfg =
        ReplicationConfig { replication_factor: 3, zone_awareness: false, heartbeat_timeout: Duration::from_secs(60) };
    let client = RingClient::new(kv, "ring", cfg, Arc::new(SystemClock));
    client.refresh().await.unwrap();
    client
}

fn stream(labels: &str, entries: &[(i64, &str)]) -> PushStream {
    let labels = Labels::parse(labels).unwrap().sorted();
    PushStream {
        fingerprint: labels.fingerprint("t"),
        labels: Arc::new(labels),
        entries: entries.iter().map(|(ts, l)| Entry::new(*ts, l.to_string())).collect(),
    }
}

fn pool() -> Arc<IngesterPool> {
    IngesterPool::new(ClientConfig { remote_timeout: crate::config::units::Dur::secs(5), ..ClientConfig::default() })
}

fn app_matcher() -> Vec<Matcher> {
    vec![Matcher::new("app", MatchOp::Re, "a|b").unwrap()]
}

/// Every (labels, ts, line) the querier side sees, de-duplicated the way a query merges.
async fn read_all(reader: &dyn IngesterData) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for s in
        reader.streams("t", &app_matcher(), (0, i64::MAX), false, &crate::query::MemoryBudget::default()).await.unwrap()
    {
        for b in s.blocks {
            let d = b.decode().unwrap();
            for i in 0..d.len() {
                let e = d.entry(i);
                out.push((s.labels.to_string(), e.ts, String::from_utf8_lossy(&e.line).into_owned()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[tokio::test]
async fn push_select_and_series_cross_the_wire() {
    let n = node().await;
    let ring = ring(std::slice::from_ref(&n.addr)).await;
    let pool = pool();
    let replicator = Replicator::new(ring.clone(), pool.clone(), Arc::new(Metrics::new()));
    let discards = replicator
        .push(
            "t",
            vec![stream(r#"{app="a"}"#, &[(MIN, "one"), (MIN + 1, "two")]), stream(r#"{app="b"}"#, &[(MIN, "x")])],
        )
        .await
        .unwrap();
    assert!(discards.is_empty());
    assert_eq!(n.ingester.stream_count(), 2);
    let reader = RingIngesters::new(ring, pool);
    // Head blocks travel uncompressed; cut blocks as stored.
    n.ingester.close_open_chunks();
    let got = read_all(&reader).await;
    assert_eq!(
        got,
        vec![
            (r#"{app="a"}"#.to_string(), MIN, "one".to_string()),
            (r#"{app="a"}"#.to_string(), MIN + 1, "two".to_string()),
            (r#"{app="b"}"#.to_string(), MIN, "x".to_string()),
        ]
    );
    let series: Vec<SharedLabels> = reader.series("t", &[], 0, i64::MAX).await.unwrap();
    assert_eq!(series.iter().map(|l| l.to_string()).collect::<Vec<_>>(), [r#"{app="a"}"#, r#"{app="b"}"#]);
    let metas = reader.metas("t", &app_matcher(), 0, i64::MAX).await.unwrap();
    assert_eq!(metas.iter().map(|(_, _, m)| m.iter().map(|b| b.count).sum::<u32>()).sum::<u32>(), 3);
    // Another tenant sees nothing; a bad regex is refused by the ingester, not panicked on.
    assert!(
        reader
            .streams("u", &app_matcher(), (0, i64::MAX), false, &crate::query::MemoryBudget::default())
            .await
            .unwrap()
            .is_empty()
    );
    let bad = crate::rpc::proto::SeriesRequest {
        tenant: "t".into(),
        matchers: vec![crate::rpc::proto::MatcherMsg { name: "a".into(), op: 2, value: "(".into() }],
        from: 0,
        through: 1,
    };
    let err = IngesterClient::new(&n.addr, &ClientConfig::default()).unwrap().series(bad).await.unwrap_err();
    assert_eq!(err.kind, crate::error::ErrorKind::Invalid, "{err}");
}

#[tokio::test]
async fn quorum_of_three_replicas_with_one_and_two_down() {
    let nodes = [node().await, node().await, node().await];
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let ring = ring(&addrs).await;
    let pool = pool();
    let replicator = Replicator::new(ring.clone(), pool.clone(), Arc::new(Metrics::new()));
    let reader = RingIngesters::new(ring.clone(), pool.clone());
    replicator.push("t", vec![stream(r#"{app="a"}"#, &[(100 * MIN, "first")])]).await.unwrap();
    for n in &nodes {
        assert_eq!(n.ingester.stream_count(), 1, "every replica has the stream");
    }
    // An entry far behind is refused by every replica, and reported once.
    let d = replicator.push("t", vec![stream(r#"{app="a"}"#, &[(MIN, "too old")])]).await.unwrap();
    assert_eq!(d.by_reason.len(), 1);
    assert_eq!(d.by_reason[0].0, Reason::TooFarBehind);
    assert_eq!(d.by_reason[0].1.lines, 1);
    assert_eq!(d.messages.len(), 1, "{:?}", d.messages);

    // One replica refusing writes: the other two are a quorum.
    nodes[2].ingester.stop_accepting();
    replicator.push("t", vec![stream(r#"{app="a"}"#, &[(100 * MIN + 1, "second")])]).await.unwrap();
    // Two refusing: 503 naming the live replicas; the one that stored it keeps it.
    nodes[1].ingester.stop_accepting();
    let err = replicator.push("t", vec![stream(r#"{app="a"}"#, &[(100 * MIN + 2, "third")])]).await.unwrap_err();
    assert!(matches!(err, PushError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("at least 2 live replicas required, could only find 1"), "{err}");
    assert!(err.to_string().contains("not accepting writes"), "{err}");

    // Reads: every replica's copy, merged once.
    let lines: Vec<String> = read_all(&reader).await.into_iter().map(|(_, _, l)| l).collect();
    assert_eq!(lines, ["first", "second", "third"]);
}

#[tokio::test]
async fn reads_tolerate_one_unreachable_replica_but_not_two() {
    let (a, b) = (node().await, node().await);
    let pool = pool();
    let one_down = ring(&[a.addr.clone(), b.addr.clone(), dead_addr().await]).await;
    let reader = RingIngesters::new(one_down, pool.clone());
    reader.series("t", &[], 0, i64::MAX).await.expect("one of three unreachable is complete");
    let two_down = ring(&[a.addr.clone(), dead_addr().await, dead_addr().await]).await;
    let reader = RingIngesters::new(two_down, pool);
    let err = reader.series("t", &[], 0, i64::MAX).await.unwrap_err();
    assert!(err.to_string().contains("2 of 3 ingesters failed"), "{err}");
}

#[tokio::test]
async fn each_stream_goes_to_its_own_three_of_four_ingesters() {
    let nodes = [node().await, node().await, node().await, node().await];
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let ring = ring(&addrs).await;
    let pool = pool();
    let replicator = Replicator::new(ring.clone(), pool.clone(), Arc::new(Metrics::new()));
    let labels: Vec<String> = (0..20).map(|i| format!(r#"{{app="a", n="{i}"}}"#)).collect();
    let streams = labels.iter().map(|l| stream(l, &[(MIN, "x"), (MIN + 1, "y")])).collect();
    replicator.push("t", streams).await.unwrap();
    // Every stream on exactly three ingesters, and not all on the same three.
    let held: Vec<usize> = nodes.iter().map(|n| n.ingester.stream_count()).collect();
    assert_eq!(held.iter().sum::<usize>(), 60, "{held:?}");
    assert!(held.iter().all(|&h| h < 20), "{held:?}");
    let got = read_all(&RingIngesters::new(ring, pool)).await;
    assert_eq!(got.len(), 40);
}
