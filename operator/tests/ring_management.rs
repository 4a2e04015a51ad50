//! The operator's ring management against a real etcd, through the data plane's ring code:
//! reservations hold exactly the tokens a Norn ingester of that ordinal takes, and only stale
//! entries of pods that are gone and no longer wanted are forgotten.
//!
//! etcd is `NORN_ETCD`, or `etcd` on `PATH` (Debian's `etcd-server`, which `scripts/test.sh`
//! installs); [`EtcdServer`] starts it on ports it picks itself.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use norn::ring::kv::KvStore;
use norn::ring::lifecycler::{Lifecycler, LifecyclerConfig, TokenSource};
use norn::ring::model::{ManualClock, SystemClock};
use norn::ring::testing::EtcdServer;
use norn::ring::tokens::spread_minimizing_tokens;
use norn::ring::{InstanceState, ring_kv};
use norn_operator::ring::{ClusterRing, Slot};
use norn_operator::rollout::{RingState, RingView};

const PREFIX: &str = "norn/observability/logs/";

async fn etcd() -> (EtcdServer, Arc<dyn KvStore>) {
    let server = EtcdServer::start().await.expect("etcd starts");
    let kv: Arc<dyn KvStore> = Arc::new(server.kv().await.expect("etcd client"));
    (server, kv)
}

fn lifecycler(store: &Arc<dyn KvStore>, id: &str, zone: &str, dir: &std::path::Path) -> Arc<Lifecycler> {
    let cfg = LifecyclerConfig {
        ring_key: format!("{PREFIX}ring"),
        id: id.into(),
        addr: format!("{id}:9095"),
        zone: zone.into(),
        num_tokens: 128,
        tokens_file: Some(dir.join(id).join("tokens.json")),
        heartbeat_period: Duration::from_secs(5),
    };
    Lifecycler::new(cfg, ring_kv(Arc::clone(store), 10), Arc::new(SystemClock))
}

#[tokio::test]
async fn an_ingester_takes_over_the_tokens_the_operator_reserved() {
    let (_etcd, store) = etcd().await;
    let ring = ClusterRing::new(Arc::clone(&store), PREFIX);
    let slots: Vec<Slot> = (0..3).map(|o| Slot::new("logs-ingester-zone-a", o, Some("zone-a"))).collect();
    let added = ring.reserve(&slots).await.expect("reserve");
    assert_eq!(added.len(), 3);
    let desc = ring.read().await.expect("read");
    for slot in &slots {
        let e = &desc.instances[&slot.id];
        assert_eq!(e.state(), InstanceState::Pending, "{}", slot.id);
        assert_eq!(e.zone, "zone-a");
        assert_eq!(e.tokens, spread_minimizing_tokens(slot.ordinal, "zone-a", 128), "{}", slot.id);
    }
    // Reserving again changes nothing.
    assert!(ring.reserve(&slots).await.expect("again").is_empty());

    // A Norn ingester of ordinal 1 starts: it finds its entry and keeps those tokens.
    let dir = tempfile::tempdir().expect("tempdir");
    let ingester = lifecycler(&store, "logs-ingester-zone-a-1", "zone-a", dir.path());
    let source = ingester.register().await.expect("register");
    assert_eq!(source, TokenSource::Ring, "the tokens came from the operator's reservation");
    assert_eq!(ingester.tokens(), spread_minimizing_tokens(1, "zone-a", 128));
    ingester.set_state(InstanceState::Active).await.expect("active");

    // A reservation never rewrites an entry an ingester owns.
    assert!(ring.reserve(&slots).await.expect("again").is_empty());
    let members = ring.members().await.expect("members");
    let one = members.iter().find(|m| m.id == "logs-ingester-zone-a-1").expect("registered");
    assert_eq!(one.state, RingState::Active);
    assert!(one.heartbeat_ms > 0);
    let zero = members.iter().find(|m| m.id == "logs-ingester-zone-a-0").expect("reserved");
    assert_eq!(zero.state, RingState::Unhealthy, "a reservation has no heartbeat");
}

#[tokio::test]
async fn only_stale_entries_of_pods_that_are_gone_and_unwanted_are_forgotten() {
    let (_etcd, store) = etcd().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Four ingesters registered an hour ago and stopped heartbeating, one heartbeats now.
    for id in ["logs-ingester-0", "logs-ingester-1", "logs-ingester-2", "logs-ingester-3"] {
        let l = lifecycler(&store, id, "", dir.path());
        l.register().await.expect("register");
        l.set_state(InstanceState::Active).await.expect("active");
    }
    let clock = Arc::new(ManualClock::new(norn::ring::lifecycler::now_ms()));
    clock.advance(Duration::from_secs(3600));
    let fresh = Lifecycler::new(
        LifecyclerConfig {
            ring_key: format!("{PREFIX}ring"),
            id: "logs-ingester-4".into(),
            addr: "x:9095".into(),
            zone: String::new(),
            num_tokens: 128,
            tokens_file: None,
            heartbeat_period: Duration::from_secs(5),
        },
        ring_kv(Arc::clone(&store), 10),
        clock.clone(),
    );
    fresh.register().await.expect("register");
    let ring = ClusterRing::new(Arc::clone(&store), PREFIX).with_health(clock.clone(), Duration::from_secs(60));

    // Spec: 3 replicas (ordinals 0..2 wanted). Pods: 0 and 4 exist; 1 is being recreated.
    let wanted: BTreeSet<String> = (0..3).map(|i| format!("logs-ingester-{i}")).collect();
    let live: BTreeSet<String> = ["logs-ingester-0", "logs-ingester-4"].map(String::from).into();
    let forgotten = ring.forget_dead(&live, &wanted).await.expect("forget");
    // 3: stale, no pod, not wanted. 0: has a pod. 1, 2: wanted (their tokens stay reserved).
    // 4: healthy, whatever the pods say.
    assert_eq!(forgotten, vec!["logs-ingester-3".to_string()]);
    let left: Vec<String> = ring.read().await.expect("read").instances.keys().cloned().collect();
    assert_eq!(left, ["logs-ingester-0", "logs-ingester-1", "logs-ingester-2", "logs-ingester-4"].map(String::from));
    // Nothing more to forget: a second pass is a no-op.
    assert!(ring.forget_dead(&live, &wanted).await.expect("again").is_empty());
}
