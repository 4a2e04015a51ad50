use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::*;
use crate::ring::kv::{KvStore, MemoryKv};
use crate::ring::lifecycler::{Lifecycler, LifecyclerConfig};
use crate::ring::model::ManualClock;
use crate::ring::testing::EtcdServer;
use crate::ring::{InstanceState, ring_kv};

const KEY: &str = "norn/ring";
const WAIT: Duration = Duration::from_secs(30);

fn repl() -> ReplicationConfig {
    ReplicationConfig { replication_factor: 3, zone_awareness: false, heartbeat_timeout: Duration::from_secs(60) }
}

async fn join(kv: &Arc<dyn KvStore>, id: &str, clock: &Arc<ManualClock>) -> Arc<Lifecycler> {
    let cfg = LifecyclerConfig {
        ring_key: KEY.into(),
        id: id.into(),
        addr: format!("{id}:9095"),
        zone: String::new(),
        num_tokens: 32,
        tokens_file: None,
        heartbeat_period: Duration::from_secs(5),
    };
    let l = Lifecycler::new(cfg, ring_kv(Arc::clone(kv), 100), Arc::clone(clock) as Arc<dyn Clock>);
    l.register().await.unwrap();
    l.set_state(InstanceState::Active).await.unwrap();
    l
}

fn has(view: &RingView, id: &str) -> bool {
    view.desc.instances.get(id).is_some_and(|i| i.state() == InstanceState::Active)
}

#[tokio::test]
async fn the_client_follows_the_ring() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
    let clock = Arc::new(ManualClock::new(1_000_000));
    let client = RingClient::new(ring_kv(Arc::clone(&kv), 10), KEY, repl(), clock.clone());
    assert!(matches!(client.replicas(1, Operation::Write), Err(RingError::EmptyRing)), "empty before anything arrives");
    let shutdown = CancellationToken::new();
    let task = client.start(shutdown.clone());
    let a = join(&kv, "a", &clock).await;
    let (view, ok) = client.wait_for(WAIT, |v| has(v, "a")).await;
    assert!(ok, "the client saw the first instance");
    assert!(client.is_connected());
    assert_eq!(view.snapshot.effective_replication_factor(), 1);
    join(&kv, "b", &clock).await;
    join(&kv, "c", &clock).await;
    let (_, ok) = client.wait_for(WAIT, |v| has(v, "b") && has(v, "c")).await;
    assert!(ok);
    let (view, set) = client.replicas(12345, Operation::Write).unwrap();
    assert_eq!((set.instances.len(), set.quorum), (3, 2));
    assert_eq!(view.snapshot.effective_replication_factor(), 3);
    assert_eq!(client.healthy_active(), 3);
    let (_, reads) = client.read_set().unwrap();
    assert_eq!(reads.instances.len(), 3);

    a.leave(Duration::from_secs(5)).await.unwrap();
    let (_, ok) = client.wait_for(WAIT, |v| !v.desc.instances.contains_key("a")).await;
    assert!(ok, "a departure shows up");
    kv.delete(KEY).await.unwrap();
    let (_, ok) = client.wait_for(WAIT, |v| v.desc.instances.is_empty()).await;
    assert!(ok, "a deleted ring key reads as an empty ring");
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn only_unhealthy_instances_can_be_forgotten() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
    let clock = Arc::new(ManualClock::new(1_000_000));
    let client = RingClient::new(ring_kv(Arc::clone(&kv), 10), KEY, repl(), clock.clone());
    let old = join(&kv, "old", &clock).await;
    old.stop();
    clock.advance(Duration::from_secs(61));
    let fresh = join(&kv, "fresh", &clock).await;
    match client.forget("fresh").await {
        Err(RingError::Invalid(m)) => assert!(m.contains("healthy"), "{m}"),
        other => panic!("forgetting a healthy instance must be refused: {other:?}"),
    }
    assert!(matches!(client.forget("nobody").await, Err(RingError::NotFound(_))));
    client.forget("old").await.unwrap();
    let view = client.view();
    assert!(
        !view.desc.instances.contains_key("old") && view.desc.instances.contains_key("fresh"),
        "the view shows it at once"
    );
    fresh.heartbeat().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_keeps_its_last_view_while_etcd_is_down() {
    let mut etcd = EtcdServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let kv: Arc<dyn KvStore> = Arc::new(etcd.kv().await.unwrap());
    let clock = Arc::new(ManualClock::new(crate::ring::lifecycler::now_ms()));
    for id in ["ingester-0", "ingester-1", "ingester-2"] {
        join(&kv, id, &clock).await;
    }
    let client = RingClient::new(ring_kv(Arc::clone(&kv), 10), KEY, repl(), clock.clone());
    let shutdown = CancellationToken::new();
    let task = client.start(shutdown.clone());
    let (before, ok) = client.wait_for(WAIT, |v| v.desc.instances.len() == 3).await;
    assert!(ok, "the client saw the ring");
    let (_, set_before) = client.replicas(777, Operation::Write).unwrap();

    etcd.kill();
    let deadline = Instant::now() + WAIT;
    while client.is_connected() || client.watch_failures() == 0 {
        assert!(Instant::now() < deadline, "the client never noticed that etcd is gone");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Writes keep routing with the last ring.
    let during = client.view();
    assert_eq!(during.version, before.version, "the view is kept");
    assert_eq!(during.desc, before.desc);
    let (_, set_during) = client.replicas(777, Operation::Write).unwrap();
    assert_eq!(set_during, set_before, "the same replicas as before the outage");
    // An outage longer than the heartbeat timeout does not age the heartbeats the store could
    // not refresh: health is judged at the moment etcd was lost.
    clock.advance(repl().heartbeat_timeout * 2);
    let (_, set_later) = client.replicas(777, Operation::Write).expect("still routable after the timeout");
    assert_eq!(set_later, set_before, "the same replicas two heartbeat timeouts into the outage");
    assert!(client.refresh().await.is_err(), "a refresh fails");
    assert_eq!(client.view().version, before.version, "and changes nothing");

    etcd.restart().await.unwrap_or_else(|e| panic!("{e}"));
    join(&kv, "ingester-3", &clock).await;
    let (_, ok) = client.wait_for(WAIT, |v| v.desc.instances.len() == 4).await;
    assert!(ok, "after etcd is back the client follows changes again");
    assert!(client.is_connected());
    // For one heartbeat timeout after etcd is back the old heartbeats still count (the live
    // instances heartbeat again within it); after that, those that did not are UNHEALTHY.
    let (_, set_back) = client.replicas(777, Operation::Write).expect("routable right after etcd is back");
    assert_eq!(set_back.instances.len(), 3);
    clock.advance(repl().heartbeat_timeout + Duration::from_secs(1));
    assert!(
        client.replicas(777, Operation::Write).is_err(),
        "nobody heartbeated for a heartbeat timeout after etcd came back: no healthy replicas"
    );
    shutdown.cancel();
    task.await.unwrap();
}
