use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::*;
use crate::ring::kv::{KvStore, MemoryKv};
use crate::ring::model::ManualClock;
use crate::ring::testing::EtcdServer;
use crate::ring::tokens::spread_minimizing_tokens;
use crate::ring::{InstanceState, ring_kv};

const KEY: &str = "norn/ring";

fn config(id: &str, tokens_file: Option<PathBuf>) -> LifecyclerConfig {
    LifecyclerConfig {
        ring_key: KEY.into(),
        id: id.into(),
        addr: format!("{id}.ingesters:9095"),
        zone: String::new(),
        num_tokens: 128,
        tokens_file,
        heartbeat_period: Duration::from_secs(5),
    }
}

fn lifecycler(kv: Arc<dyn KvStore>, cfg: LifecyclerConfig, clock: Arc<ManualClock>) -> Arc<Lifecycler> {
    Lifecycler::new(cfg, ring_kv(kv, 100), clock)
}

async fn ring(kv: &Arc<dyn KvStore>) -> RingDesc {
    ring_kv(Arc::clone(kv), 1).get(KEY).await.expect("read ring").map(|(r, _)| r).unwrap_or_default()
}

/// Waits until the ring satisfies `pred`, or fails after `timeout`.
async fn wait_ring(kv: &Arc<dyn KvStore>, timeout: Duration, what: &str, pred: impl Fn(&RingDesc) -> bool) -> RingDesc {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some((r, _))) = ring_kv(Arc::clone(kv), 1).get(KEY).await
            && pred(&r)
        {
            return r;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_instance_joins_becomes_active_and_leaves() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let l = lifecycler(Arc::clone(&kv), config("node-a", Some(file.clone())), Arc::clone(&clock));
    assert!(matches!(l.set_state(InstanceState::Active).await, Err(RingError::Invalid(_))), "not registered yet");
    assert_eq!(l.register().await.unwrap(), TokenSource::Random, "no ordinal in the ID: random tokens");
    assert_eq!(l.state(), InstanceState::Joining);
    assert!(!l.is_ready(), "JOINING is not ready");
    let r = ring(&kv).await;
    let me = &r.instances["node-a"];
    assert_eq!((me.state(), me.addr.as_str(), me.tokens.len()), (InstanceState::Joining, "node-a.ingesters:9095", 128));
    assert!(me.tokens.windows(2).all(|w| w[0] < w[1]));
    assert_eq!((me.heartbeat_ms, me.registered_ms), (1_000_000, 1_000_000));
    assert_eq!(crate::ring::tokens::load_tokens_file(&file).unwrap(), Some(me.tokens.clone()), "tokens are persisted");

    l.set_state(InstanceState::Active).await.unwrap();
    assert!(l.is_ready());
    assert_eq!(ring(&kv).await.instances["node-a"].state(), InstanceState::Active);

    clock.advance(Duration::from_secs(5));
    l.heartbeat().await.unwrap();
    let me = ring(&kv).await.instances["node-a"].clone();
    assert_eq!((me.heartbeat_ms, me.registered_ms), (1_005_000, 1_000_000), "a heartbeat moves only the heartbeat");

    l.leave(Duration::from_secs(5)).await.unwrap();
    assert_eq!(l.state(), InstanceState::Leaving);
    assert!(ring(&kv).await.instances.is_empty(), "a left instance is gone from the ring");
    l.heartbeat().await.unwrap();
    assert!(ring(&kv).await.instances.is_empty(), "a heartbeat after leaving does not add the entry back");
    assert!(l.set_state(InstanceState::Active).await.is_err(), "a left lifecycler is done");
}

#[tokio::test]
async fn a_statefulset_pod_gets_its_ordinals_tokens_and_keeps_them_across_restarts() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let clock = Arc::new(ManualClock::new(1));
    let mut cfg = config("ingester-3", Some(file.clone()));
    cfg.zone = "zone-b".into();
    let l = lifecycler(Arc::clone(&kv), cfg.clone(), Arc::clone(&clock));
    assert_eq!(l.register().await.unwrap(), TokenSource::Ordinal(3));
    let expected = spread_minimizing_tokens(3, "zone-b", 128);
    assert_eq!(l.tokens(), expected);
    l.stop();

    // A restart with its disk: the file wins, even over what the ring holds.
    let mut r = ring(&kv).await;
    r.instances.get_mut("ingester-3").unwrap().tokens = vec![1, 2, 3];
    ring_kv(Arc::clone(&kv), 1).put(KEY, &r).await.unwrap();
    let again = lifecycler(Arc::clone(&kv), cfg.clone(), Arc::clone(&clock));
    assert_eq!(again.register().await.unwrap(), TokenSource::File);
    assert_eq!(again.tokens(), expected);
    assert_eq!(ring(&kv).await.instances["ingester-3"].tokens, expected, "and the ring is corrected");
}

#[tokio::test]
async fn tokens_reserved_in_the_ring_are_adopted() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
    let mut r = RingDesc::default();
    r.instances.insert("node-b".into(), reserved_entry("", "", vec![30, 10, 20]));
    ring_kv(Arc::clone(&kv), 1).put(KEY, &r).await.unwrap();
    let l = lifecycler(Arc::clone(&kv), config("node-b", None), Arc::new(ManualClock::new(5)));
    assert_eq!(l.register().await.unwrap(), TokenSource::Ring);
    assert_eq!(l.tokens(), vec![10, 20, 30]);
    let me = &ring(&kv).await.instances["node-b"];
    assert_eq!((me.state(), me.addr.as_str()), (InstanceState::Joining, "node-b.ingesters:9095"));
}

#[tokio::test]
async fn random_tokens_avoid_the_rings_tokens_and_tokenless_rings_write_none() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
    let clock = Arc::new(ManualClock::new(5));
    let mut cfg_a = config("node-a", None);
    cfg_a.num_tokens = 4000;
    lifecycler(Arc::clone(&kv), cfg_a, Arc::clone(&clock)).register().await.unwrap();
    let b = lifecycler(Arc::clone(&kv), config("node-b", None), Arc::clone(&clock));
    b.register().await.unwrap();
    let r = ring(&kv).await;
    let a_tokens: HashSet<u32> = r.instances["node-a"].tokens.iter().copied().collect();
    assert!(r.instances["node-b"].tokens.iter().all(|t| !a_tokens.contains(t)));
    assert!(r.token_conflicts().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let mut dist = config("distributor-0", Some(dir.path().join("tokens.json")));
    dist.num_tokens = 0;
    let d = lifecycler(Arc::clone(&kv), dist, clock);
    assert_eq!(d.register().await.unwrap(), TokenSource::None);
    d.set_state(InstanceState::Active).await.unwrap();
    assert!(ring(&kv).await.instances["distributor-0"].tokens.is_empty());
    assert!(!dir.path().join("tokens.json").exists(), "no tokens, no file");
}

#[tokio::test]
async fn a_heartbeat_puts_a_forgotten_entry_back() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
    let l = lifecycler(Arc::clone(&kv), config("node-a", None), Arc::new(ManualClock::new(5)));
    l.register().await.unwrap();
    l.set_state(InstanceState::Active).await.unwrap();
    let tokens = l.tokens();
    ring_kv(Arc::clone(&kv), 1).put(KEY, &RingDesc::default()).await.unwrap();
    l.heartbeat().await.unwrap();
    let me = &ring(&kv).await.instances["node-a"];
    assert_eq!((me.state(), &me.tokens), (InstanceState::Active, &tokens));
}

#[tokio::test(start_paused = true)]
async fn the_heartbeat_loop_writes_every_period_until_stopped() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
    let clock = Arc::new(ManualClock::new(0));
    let l = lifecycler(Arc::clone(&kv), config("node-a", None), Arc::clone(&clock));
    l.register().await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Arc::clone(&l).run_heartbeat(shutdown.clone()));
    for beat in 1..=3i64 {
        clock.set(beat * 5000);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let r =
            wait_ring(&kv, Duration::from_secs(60), "heartbeat", |r| r.instances["node-a"].heartbeat_ms == beat * 5000)
                .await;
        assert_eq!(r.instances["node-a"].state(), InstanceState::Joining);
    }
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(l.consecutive_heartbeat_failures(), 0);
}

#[tokio::test]
async fn concurrent_registrations_all_land() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
    contend(kv, 12).await;
}

/// `n` lifecyclers register, activate and heartbeat at once; every entry must be there.
async fn contend(kv: Arc<dyn KvStore>, n: usize) {
    let clock = Arc::new(ManualClock::new(10));
    let mut tasks = Vec::new();
    for i in 0..n {
        let l = lifecycler(Arc::clone(&kv), config(&format!("ingester-{i}"), None), Arc::clone(&clock));
        tasks.push(tokio::spawn(async move {
            l.register().await.unwrap();
            l.set_state(InstanceState::Active).await.unwrap();
            for _ in 0..3 {
                l.heartbeat().await.unwrap();
            }
            l
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.expect("lifecycler task"));
    }
    let r = ring(&kv).await;
    assert_eq!(r.instances.len(), n, "every registration survived the races");
    for (i, l) in all.iter().enumerate() {
        let me = &r.instances[&format!("ingester-{i}")];
        assert_eq!(me.state(), InstanceState::Active);
        assert_eq!(me.tokens, l.tokens());
    }
    assert!(r.token_conflicts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_all_land_in_etcd() {
    let etcd = EtcdServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let kv: Arc<dyn KvStore> = Arc::new(etcd.kv().await.unwrap());
    contend(kv, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifecycler_rides_out_an_etcd_outage() {
    let mut etcd = EtcdServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let kv: Arc<dyn KvStore> = Arc::new(etcd.kv().await.unwrap());
    let clock = Arc::new(ManualClock::new(1_000));
    let mut cfg = config("ingester-0", None);
    cfg.heartbeat_period = Duration::from_millis(100);
    let l = lifecycler(Arc::clone(&kv), cfg, Arc::clone(&clock));
    l.register().await.unwrap();
    l.set_state(InstanceState::Active).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Arc::clone(&l).run_heartbeat(shutdown.clone()));

    etcd.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while l.consecutive_heartbeat_failures() < 2 {
        assert!(Instant::now() < deadline, "heartbeats never failed with etcd down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(l.is_ready(), "the instance keeps serving while the ring store is down");

    clock.set(9_000);
    etcd.restart().await.unwrap_or_else(|e| panic!("{e}"));
    let r = wait_ring(&kv, Duration::from_secs(30), "heartbeat after etcd came back", |r| {
        r.instances.get("ingester-0").is_some_and(|i| i.heartbeat_ms == 9_000)
    })
    .await;
    assert_eq!(r.instances["ingester-0"].state(), InstanceState::Active);
    let deadline = Instant::now() + Duration::from_secs(10);
    while l.consecutive_heartbeat_failures() != 0 {
        assert!(Instant::now() < deadline, "the failure count never reset");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    l.leave(Duration::from_secs(10)).await.unwrap();
    assert!(ring(&kv).await.instances.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_waits_for_etcd_to_come_up() {
    let mut etcd = EtcdServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let kv: Arc<dyn KvStore> = Arc::new(etcd.kv().await.unwrap());
    etcd.kill();
    let l = lifecycler(Arc::clone(&kv), config("ingester-1", None), Arc::new(ManualClock::new(1)));
    let joining = tokio::spawn({
        let l = Arc::clone(&l);
        async move { l.register().await }
    });
    // The registration keeps retrying; bring etcd back and it completes.
    etcd.restart().await.unwrap_or_else(|e| panic!("{e}"));
    let source =
        tokio::time::timeout(Duration::from_secs(60), joining).await.expect("registered in time").unwrap().unwrap();
    assert_eq!(source, TokenSource::Ordinal(1));
    assert_eq!(ring(&kv).await.instances["ingester-1"].state(), InstanceState::Joining);

    // Stopping a registration that cannot reach etcd ends it.
    etcd.kill();
    let stuck = lifecycler(Arc::clone(&kv), config("ingester-2", None), Arc::new(ManualClock::new(1)));
    let pending = tokio::spawn({
        let l = Arc::clone(&stuck);
        async move { l.register().await }
    });
    stuck.stop();
    let r = tokio::time::timeout(Duration::from_secs(30), pending).await.expect("stopped in time").unwrap();
    assert!(matches!(r, Err(RingError::Stopped)), "{r:?}");
}
