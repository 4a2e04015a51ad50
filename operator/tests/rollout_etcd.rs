//! The rollout driver against a real etcd and real ring members: each "pod" is a Norn ring
//! [`Lifecycler`] (the data plane's own registration, tokens file and leave), and [`SimPods`]
//! plays the kubelet and the StatefulSet controller — deleting a pod makes its ingester go
//! LEAVING and leave the ring (what SIGTERM does after `/ingester/prepare_shutdown`), then the
//! pod comes back from the current revision with the same ID and tokens file and goes ACTIVE.
//!
//! A monitor watches the ring in etcd for the whole run and records the fewest ACTIVE
//! ingesters it ever saw, so the quorum guarantee is checked on what the ring really went
//! through, not on the driver's own view.
//!
//! The same driver against real `norn` processes under continuous pushes is in
//! `rollout_processes.rs`; this file covers what is cheaper to check on lifecyclers (scaling, the
//! exact order of events, the ring's fewest ACTIVE members).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use norn::ring::kv::KvStore;
use norn::ring::lifecycler::{Lifecycler, LifecyclerConfig};
use norn::ring::model::SystemClock;
use norn::ring::testing::EtcdServer;
use norn::ring::{InstanceState, ring_kv};
use norn_operator::crd::{RolloutPhase, RolloutStatus};
use norn_operator::ring::ClusterRing;
use norn_operator::rollout::{
    Action, IngesterApi, IngesterPod, IngesterSet, Pass, Plan, PodApi, RingView, RolloutError, SetPlan, drive,
};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

const PREFIX: &str = "norn/test/logs/";
const SET: &str = "logs-ingester";

/// One simulated pod.
struct SimPod {
    revision: String,
    ready: bool,
    terminating: bool,
    prepared: bool,
    lifecycler: Arc<Lifecycler>,
}

/// What happened, in order, for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Prepared(String),
    Deleted(String),
    Gone(String),
    Started(String, String),
}

struct SimState {
    replicas: i32,
    revision: String,
    pods: BTreeMap<u32, SimPod>,
    log: Vec<Event>,
}

/// The kubelet and StatefulSet controller of one ingester StatefulSet, over real lifecyclers.
#[derive(Clone)]
struct SimPods {
    store: Arc<dyn KvStore>,
    dir: Arc<tempfile::TempDir>,
    state: Arc<Mutex<SimState>>,
}

impl SimPods {
    async fn new(store: Arc<dyn KvStore>, replicas: i32) -> Self {
        let sim = Self {
            store,
            dir: Arc::new(tempfile::tempdir().expect("tempdir")),
            state: Arc::new(Mutex::new(SimState {
                replicas: 0,
                revision: "rev-1".into(),
                pods: BTreeMap::new(),
                log: Vec::new(),
            })),
        };
        sim.scale(replicas).await;
        sim
    }

    fn lifecycler(&self, ordinal: u32) -> Arc<Lifecycler> {
        let id = format!("{SET}-{ordinal}");
        let cfg = LifecyclerConfig {
            ring_key: format!("{PREFIX}ring"),
            id: id.clone(),
            addr: format!("{id}:9095"),
            zone: String::new(),
            num_tokens: 128,
            // The pod's volume: the same file across replacements.
            tokens_file: Some(self.dir.path().join(&id).join("tokens.json")),
            heartbeat_period: Duration::from_secs(5),
        };
        Lifecycler::new(cfg, ring_kv(Arc::clone(&self.store), 10), Arc::new(SystemClock))
    }

    /// Starts the pod of `ordinal` from the current revision: register, replay, ACTIVE, ready.
    async fn start(&self, ordinal: u32) {
        let lifecycler = self.lifecycler(ordinal);
        let revision = self.state.lock().revision.clone();
        self.state.lock().pods.insert(
            ordinal,
            SimPod {
                revision: revision.clone(),
                ready: false,
                terminating: false,
                prepared: false,
                lifecycler: lifecycler.clone(),
            },
        );
        lifecycler.register().await.expect("register");
        lifecycler.set_state(InstanceState::Active).await.expect("active");
        let mut st = self.state.lock();
        if let Some(p) = st.pods.get_mut(&ordinal) {
            p.ready = true;
        }
        st.log.push(Event::Started(format!("{SET}-{ordinal}"), revision));
    }

    /// The pod stops: LEAVING, (flush), leave the ring, gone.
    async fn stop(&self, ordinal: u32) {
        let lifecycler = {
            let mut st = self.state.lock();
            let Some(p) = st.pods.get_mut(&ordinal) else { return };
            p.terminating = true;
            p.ready = false;
            p.lifecycler.clone()
        };
        lifecycler.set_state(InstanceState::Leaving).await.expect("leaving");
        // The flush of a real ingester takes a while; the driver must wait for it.
        tokio::time::sleep(Duration::from_millis(150)).await;
        lifecycler.leave(Duration::from_secs(10)).await.expect("leave");
        let mut st = self.state.lock();
        st.pods.remove(&ordinal);
        st.log.push(Event::Gone(format!("{SET}-{ordinal}")));
    }

    /// The controller applies a replica count: extra pods stop, missing pods start.
    async fn scale(&self, replicas: i32) {
        let (stop, start): (Vec<u32>, Vec<u32>) = {
            let mut st = self.state.lock();
            st.replicas = replicas;
            let n = u32::try_from(replicas).unwrap_or(0);
            (
                st.pods.keys().copied().filter(|o| *o >= n).collect(),
                (0..n).filter(|o| !st.pods.contains_key(o)).collect(),
            )
        };
        for o in stop {
            let sim = self.clone();
            tokio::spawn(async move { sim.stop(o).await });
        }
        for o in start {
            self.start(o).await;
        }
    }

    fn change_template(&self, revision: &str) {
        self.state.lock().revision = revision.into();
    }

    fn log(&self) -> Vec<Event> {
        self.state.lock().log.clone()
    }
}

#[async_trait]
impl PodApi for SimPods {
    async fn sets(&self) -> Result<Vec<IngesterSet>, RolloutError> {
        let st = self.state.lock();
        Ok(vec![IngesterSet {
            name: SET.into(),
            zone: None,
            replicas: st.replicas,
            update_revision: Some(st.revision.clone()),
        }])
    }

    async fn ingesters(&self) -> Result<Vec<IngesterPod>, RolloutError> {
        let st = self.state.lock();
        Ok(st
            .pods
            .iter()
            .map(|(o, p)| IngesterPod {
                name: format!("{SET}-{o}"),
                set: SET.into(),
                ordinal: *o,
                zone: None,
                revision: p.revision.clone(),
                ready: p.ready,
                terminating: p.terminating,
                http_addr: Some(format!("{SET}-{o}:3100")),
                tls_server_name: None,
            })
            .collect())
    }

    async fn delete_pod(&self, name: &str) -> Result<(), RolloutError> {
        let ordinal: u32 = name.rsplit('-').next().and_then(|o| o.parse().ok()).expect("ordinal");
        {
            let mut st = self.state.lock();
            match st.pods.get(&ordinal) {
                Some(p) if !p.terminating => {}
                _ => return Ok(()),
            }
            st.log.push(Event::Deleted(name.to_string()));
        }
        // Kubelet: SIGTERM, the ingester leaves; the StatefulSet controller recreates the pod.
        let sim = self.clone();
        tokio::spawn(async move {
            sim.stop(ordinal).await;
            let wanted = sim.state.lock().replicas;
            if i64::from(ordinal) < i64::from(wanted) {
                sim.start(ordinal).await;
            }
        });
        Ok(())
    }
}

#[async_trait]
impl IngesterApi for SimPods {
    async fn prepare_shutdown(&self, pod: &IngesterPod) -> Result<(), RolloutError> {
        let mut st = self.state.lock();
        if let Some(p) = st.pods.get_mut(&pod.ordinal) {
            p.prepared = true;
        }
        st.log.push(Event::Prepared(pod.name.clone()));
        Ok(())
    }
}

/// Polls the ring in etcd until stopped and returns the fewest ACTIVE instances it saw.
fn monitor(ring: ClusterRing, stop: CancellationToken) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut fewest = usize::MAX;
        while !stop.is_cancelled() {
            if let Ok(desc) = ring.read().await {
                let active = desc.instances.values().filter(|i| i.state() == InstanceState::Active).count();
                fewest = fewest.min(active);
            }
            tokio::task::yield_now().await;
        }
        fewest
    })
}

fn plan(wanted: i32) -> Plan {
    Plan { sets: vec![SetPlan { name: SET.into(), zone: None, wanted }], replication_factor: 3, zone_aware: false }
}

/// One operator: passes of the driver, applying each pass's replicas, until `until` says stop
/// or the deadline passes. Returns the last status.
async fn operate(
    sim: &SimPods,
    ring: &dyn RingView,
    plan: &Plan,
    mut status: Option<RolloutStatus>,
    until: impl Fn(&Pass) -> bool,
) -> (Option<RolloutStatus>, Vec<Action>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut actions = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "the driver did not get there in time; log: {:?}", sim.log());
        let pass = drive(sim, sim, ring, plan, status.as_ref()).await.expect("pass");
        sim.scale(pass.replicas[SET]).await;
        status = pass.rollout.clone();
        actions.extend(pass.actions.clone());
        if until(&pass) {
            return (status, actions);
        }
        // The controller's requeue: pod and StatefulSet changes wake it in a cluster.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn done(pass: &Pass) -> bool {
    pass.waiting.is_none() && pass.rollout.as_ref().is_none_or(|r| r.phase == RolloutPhase::Done)
}

async fn setup(replicas: i32) -> (EtcdServer, SimPods, ClusterRing) {
    let etcd = EtcdServer::start().await.expect("etcd starts");
    let store: Arc<dyn KvStore> = Arc::new(etcd.kv().await.expect("client"));
    let ring = ClusterRing::new(Arc::clone(&store), PREFIX);
    let sim = SimPods::new(store, replicas).await;
    (etcd, sim, ring)
}

#[tokio::test]
async fn a_rollout_replaces_every_ingester_one_at_a_time_keeping_quorum() {
    let (_etcd, sim, ring) = setup(3).await;
    let tokens_before = ring.read().await.expect("ring");
    let stop = CancellationToken::new();
    let watch = monitor(ring.clone(), stop.clone());
    sim.change_template("rev-2");
    let (status, _) = operate(&sim, &ring, &plan(3), None, done).await;
    stop.cancel();
    let fewest = watch.await.expect("monitor");
    assert_eq!(status.as_ref().map(|s| s.phase), Some(RolloutPhase::Done), "{status:?}");
    assert!(fewest >= 2, "a write quorum of RF=3 needs 2 ACTIVE ingesters; the ring went down to {fewest}");

    // Each ingester: told to flush, deleted, gone from the ring, started on rev-2, before the next.
    let log = sim.log();
    let relevant: Vec<Event> =
        log.iter().filter(|e| !matches!(e, Event::Started(_, r) if r == "rev-1")).cloned().collect();
    let mut want = Vec::new();
    for i in 0..3 {
        let id = format!("{SET}-{i}");
        want.extend([
            Event::Prepared(id.clone()),
            Event::Deleted(id.clone()),
            Event::Gone(id.clone()),
            Event::Started(id, "rev-2".into()),
        ]);
    }
    assert_eq!(relevant, want);
    // Successors own exactly the ranges of the pods they replaced.
    let after = ring.read().await.expect("ring");
    for (id, inst) in &tokens_before.instances {
        assert_eq!(after.instances[id].tokens, inst.tokens, "{id}");
        assert_eq!(after.instances[id].state(), InstanceState::Active);
    }
}

#[tokio::test]
async fn an_operator_killed_mid_rollout_resumes_and_finishes() {
    let (_etcd, sim, ring) = setup(3).await;
    let stop = CancellationToken::new();
    let watch = monitor(ring.clone(), stop.clone());
    sim.change_template("rev-2");
    // The first operator replaces one ingester and dies while it is leaving.
    let (status, actions) = operate(&sim, &ring, &plan(3), None, |p| {
        !p.actions.is_empty() && p.actions.iter().any(|a| matches!(a, Action::Replaced(_)))
    })
    .await;
    assert_eq!(actions.iter().filter(|a| matches!(a, Action::Replaced(_))).count(), 1);
    let recorded = status.expect("rollout recorded in status");
    assert_eq!(recorded.phase, RolloutPhase::Leaving);
    assert_eq!(recorded.current.as_deref(), Some("logs-ingester-0"));
    // A new operator, with nothing but the status and what it observes, takes over.
    let ring2 = ClusterRing::new(Arc::new(_etcd.kv().await.expect("client")), PREFIX);
    let (status, _) = operate(&sim, &ring2, &plan(3), Some(recorded), done).await;
    stop.cancel();
    let fewest = watch.await.expect("monitor");
    assert_eq!(status.map(|s| s.phase), Some(RolloutPhase::Done));
    assert!(fewest >= 2, "quorum lost across the restart: {fewest} ACTIVE");
    let started: BTreeSet<String> = sim
        .log()
        .iter()
        .filter_map(|e| match e {
            Event::Started(id, r) if r == "rev-2" => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 3, "every ingester replaced exactly once: {:?}", sim.log());
    let deleted = sim.log().iter().filter(|e| matches!(e, Event::Deleted(_))).count();
    assert_eq!(deleted, 3, "no pod deleted twice: {:?}", sim.log());
}

#[tokio::test]
async fn scale_down_flushes_and_leaves_before_the_replica_count_drops() {
    let (_etcd, sim, ring) = setup(4).await;
    let stop = CancellationToken::new();
    let watch = monitor(ring.clone(), stop.clone());
    let (_, actions) = operate(&sim, &ring, &plan(3), None, done).await;
    stop.cancel();
    assert!(watch.await.expect("monitor") >= 3, "only the removed ingester leaves");
    assert_eq!(
        actions.iter().filter(|a| matches!(a, Action::ScaledDown { .. })).cloned().collect::<Vec<_>>(),
        vec![Action::ScaledDown { set: SET.into(), pod: format!("{SET}-3"), replicas: 3 }]
    );
    let log = sim.log();
    let prepared = log.iter().position(|e| *e == Event::Prepared(format!("{SET}-3"))).expect("prepared");
    let gone = log.iter().position(|e| *e == Event::Gone(format!("{SET}-3"))).expect("gone");
    assert!(prepared < gone, "{log:?}");
    let desc = ring.read().await.expect("ring");
    assert!(!desc.instances.contains_key(&format!("{SET}-3")), "it left the ring");
    assert_eq!(desc.instances.len(), 3);
}

#[tokio::test]
async fn scale_up_reserves_tokens_before_the_new_pods_start() {
    let (_etcd, sim, ring) = setup(3).await;
    let pass = drive(&sim, &sim, &ring, &plan(5), None).await.expect("pass");
    assert_eq!(pass.replicas[SET], 5);
    assert_eq!(pass.actions, vec![Action::Reserved(vec![format!("{SET}-3"), format!("{SET}-4")])]);
    let desc = ring.read().await.expect("ring");
    assert_eq!(desc.instances[&format!("{SET}-4")].state(), InstanceState::Pending);
    let reserved = desc.instances[&format!("{SET}-4")].tokens.clone();
    sim.scale(5).await;
    let desc = ring.read().await.expect("ring");
    assert_eq!(desc.instances[&format!("{SET}-4")].tokens, reserved, "the pod took the reserved tokens");
    assert_eq!(desc.instances[&format!("{SET}-4")].state(), InstanceState::Active);
}
