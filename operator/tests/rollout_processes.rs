//! The rollout driver against real Norn processes: three `norn --target=ingester` processes at
//! replication factor 3 with StatefulSet pod names (`logs-ingester-0..2`, so each takes its
//! ordinal's deterministic tokens), a distributor and a querier, the ring in a real etcd and
//! chunks in a real S3 (moto), everything on 127.0.0.1 with OS-assigned ports.
//!
//! The driver runs with its real [`HttpIngesters`] (`POST /ingester/prepare_shutdown` on each
//! process) and real [`ClusterRing`]; only Kubernetes is played by [`Pods`]: deleting a pod
//! sends SIGTERM to its process and waits for it to exit (it flushes and leaves the ring, because
//! the driver prepared the shutdown); the pod stays gone until a driver pass saw it gone (and
//! reserved its tokens in the ring, as it does for any missing pod), then the "StatefulSet
//! controller" starts the same ordinal again — same instance ID, same data directory — from the
//! current template revision. A pod is ready when its `/ready` answers 200, as the kubelet's
//! probe sees it.
//!
//! A pusher sends batches of unique lines through the distributor for the whole rollout and
//! records every acknowledged line; afterwards the querier must return exactly those lines.
//! Every process is killed when a test ends, passing or not (drop guards).
//!
//! The `norn` binary is the one cargo built next to this test (`target/<profile>/norn`: run the
//! workspace's tests, or `cargo build -p norn` first), or `NORN_BIN`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use norn::ring::InstanceState;
use norn::ring::kv::KvStore;
use norn::ring::testing::EtcdServer;
use norn::storage::testing::MotoServer;
use norn::testing::{NornProcess, urlencode};
use norn_operator::crd::{RolloutPhase, RolloutStatus};
use norn_operator::ring::ClusterRing;
use norn_operator::rollout::http::HttpIngesters;
use norn_operator::rollout::{Action, IngesterPod, IngesterSet, Pass, Plan, PodApi, RolloutError, SetPlan, drive};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The ingester StatefulSet.
const SET: &str = "logs-ingester";
/// The cluster's ring prefix.
const PREFIX: &str = "norn/test/logs/";
const BUCKET: &str = "norn-rollout";
/// S3 credentials for the norn processes (moto accepts any).
const S3_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "norn-test-key"),
    ("AWS_SECRET_ACCESS_KEY", "norn-test-secret"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];
/// How long anything may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(90);
/// Concurrent push clients, streams per push, and lines per stream in a push.
const PUSHERS: usize = 4;
const STREAMS: usize = 4;
const LINES: usize = 25;

/// The `norn` binary: `NORN_BIN`, or the one cargo built in this test's target directory.
fn norn_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NORN_BIN") {
        return bin.into();
    }
    // target/<profile>/deps/<this test> → target/<profile>/norn
    let exe = std::env::current_exe().expect("the test binary's path");
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join(format!("norn{}", std::env::consts::EXE_SUFFIX)));
    match bin {
        Some(bin) if bin.exists() => bin,
        _ => panic!(
            "no norn binary next to {}: run the workspace's tests (cargo nextest run --workspace), \
             build it first (cargo build -p norn), or set NORN_BIN",
            exe.display()
        ),
    }
}

/// Polls `f` every 20ms until it returns `Some`, failing after [`DEADLINE`].
async fn eventually<T, Fut>(what: &str, mut f: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out after {DEADLINE:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `norn` processes that share the ring, the bucket and the settings.
struct Launcher {
    bin: PathBuf,
    dir: PathBuf,
    etcd: String,
    s3: String,
    /// Processes started so far, for unique log file names.
    started: AtomicUsize,
}

impl Launcher {
    /// A process of `target` named `id`, with its data in `<dir>/<id>` (a pod's volume: the same
    /// across restarts). Returns at once.
    fn spawn(&self, target: &str, id: &str) -> NornProcess {
        let n = self.started.fetch_add(1, Ordering::SeqCst);
        let log = self.dir.join(format!("{id}.{n}.log"));
        let args = vec![
            format!("--target={target}"),
            format!("--instance.id={id}"),
            "--grpc.addr=127.0.0.1:0".into(),
            format!("--data.dir={}", self.dir.join(id).display()),
            "--ring.store=etcd".into(),
            format!("--ring.etcd.endpoints={}", self.etcd),
            "--ring.etcd.dial-timeout=2s".into(),
            "--ring.etcd.request-timeout=2s".into(),
            format!("--ring.prefix={PREFIX}"),
            "--replication-factor=3".into(),
            "--storage.backend=s3".into(),
            format!("--storage.s3.endpoint={}", self.s3),
            format!("--storage.s3.bucket={BUCKET}"),
            "--storage.s3.region=us-east-1".into(),
            // What the operator renders into every ingester's configuration.
            "--ingester.flush-on-shutdown=true".into(),
            "--ingester.wal.sync=interval".into(),
            "--limits.ingestion-rate-mb=10000".into(),
            "--limits.ingestion-burst-size-mb=10000".into(),
            "--limits.max-entries-limit-per-query=1000000".into(),
        ];
        NornProcess::spawn(&self.bin, &log, &args, S3_ENV).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Launcher::spawn`], then waits until the process is ready.
    async fn start(&self, target: &str, id: &str) -> NornProcess {
        let p = self.spawn(target, id);
        let http = reqwest::Client::new();
        eventually(&format!("{id} to be ready"), || async {
            let addr = p.http_addr()?;
            let r = http.get(format!("http://{addr}/ready")).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        p
    }
}

/// What happened to the pods, in order, with when.
#[derive(Clone, Debug)]
enum Event {
    /// The pod was deleted (SIGTERM sent).
    Deleted(String, Instant),
    /// Its process exited; whether it exited 0 and logged that it flushed and left the ring.
    Exited { pod: String, success: bool, flushed_and_left: bool },
    /// The StatefulSet controller started the pod from this revision.
    Started(String, String, Instant),
}

/// One ingester pod.
struct Pod {
    /// The template revision it was created from.
    revision: String,
    /// Deleted, its process shutting down.
    terminating: bool,
    process: NornProcess,
}

struct PodsState {
    /// The StatefulSet's current template revision.
    revision: String,
    pods: BTreeMap<u32, Pod>,
    log: Vec<Event>,
    /// Times the pods were listed.
    observations: u64,
}

/// The kubelet and the StatefulSet controller of the ingester StatefulSet, over real processes.
#[derive(Clone)]
struct Pods {
    launcher: Arc<Launcher>,
    state: Arc<Mutex<PodsState>>,
    http: reqwest::Client,
}

impl Pods {
    /// Three ingesters on `rev-1`, ready.
    async fn start(launcher: Arc<Launcher>) -> Pods {
        let mut pods = BTreeMap::new();
        for ordinal in 0..3 {
            let process = launcher.start("ingester", &format!("{SET}-{ordinal}")).await;
            pods.insert(ordinal, Pod { revision: "rev-1".into(), terminating: false, process });
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
        Pods {
            launcher,
            state: Arc::new(Mutex::new(PodsState { revision: "rev-1".into(), pods, log: Vec::new(), observations: 0 })),
            http,
        }
    }

    /// A new pod template: what `kubectl apply` of a changed LogCluster does to the StatefulSet.
    fn change_template(&self, revision: &str) {
        self.state.lock().revision = revision.into();
    }

    fn log(&self) -> Vec<Event> {
        self.state.lock().log.clone()
    }

    /// The kubelet after a deletion: wait for the process to exit, then the StatefulSet
    /// controller recreates the pod from the current revision.
    async fn replace(&self, ordinal: u32) {
        let name = format!("{SET}-{ordinal}");
        let exited = eventually(&format!("{name} to exit after SIGTERM"), || async {
            let mut st = self.state.lock();
            let pod = st.pods.get_mut(&ordinal)?;
            let status = pod.process.exited()?;
            let log = pod.process.log_text();
            st.pods.remove(&ordinal);
            Some((status, log))
        })
        .await;
        let (status, log) = exited;
        let event =
            Event::Exited { pod: name.clone(), success: status.success(), flushed_and_left: flushed_and_left(&log) };
        let gone_at = {
            let mut st = self.state.lock();
            st.log.push(event);
            st.observations
        };
        // The pod stays gone until the driver saw it gone (as a controller's list between the
        // deletion and the recreation would), so that its pass reserves the ordinal's tokens. Two
        // listings: passes run one after the other, so the first one's reservation is written
        // when the second one lists.
        eventually(&format!("driver passes to see {name} gone"), || async {
            (self.state.lock().observations > gone_at + 1).then_some(())
        })
        .await;
        let revision = self.state.lock().revision.clone();
        let process = self.launcher.spawn("ingester", &name);
        let mut st = self.state.lock();
        st.pods.insert(ordinal, Pod { revision: revision.clone(), terminating: false, process });
        st.log.push(Event::Started(name, revision, Instant::now()));
    }
}

/// Whether an ingester's log says it flushed every chunk and left the ring.
fn flushed_and_left(log: &str) -> bool {
    let flushed = log.find("flushed before leaving the ring");
    let left = log.rfind("left the ring");
    matches!((flushed, left), (Some(f), Some(l)) if l > f)
}

#[async_trait]
impl PodApi for Pods {
    async fn sets(&self) -> Result<Vec<IngesterSet>, RolloutError> {
        let st = self.state.lock();
        Ok(vec![IngesterSet { name: SET.into(), zone: None, replicas: 3, update_revision: Some(st.revision.clone()) }])
    }

    async fn ingesters(&self) -> Result<Vec<IngesterPod>, RolloutError> {
        let pods: Vec<(u32, String, bool, Option<SocketAddr>)> = {
            let mut st = self.state.lock();
            st.observations += 1;
            st.pods.iter().map(|(o, p)| (*o, p.revision.clone(), p.terminating, p.process.http_addr())).collect()
        };
        let mut out = Vec::new();
        for (ordinal, revision, terminating, addr) in pods {
            // The kubelet's readiness probe; a terminating pod is never ready.
            let ready = match addr {
                Some(addr) if !terminating => {
                    self.http.get(format!("http://{addr}/ready")).send().await.is_ok_and(|r| r.status().is_success())
                }
                _ => false,
            };
            out.push(IngesterPod {
                name: format!("{SET}-{ordinal}"),
                set: SET.into(),
                ordinal,
                zone: None,
                revision,
                ready,
                terminating,
                http_addr: addr.map(|a| a.to_string()),
                tls_server_name: None,
            });
        }
        Ok(out)
    }

    async fn delete_pod(&self, name: &str) -> Result<(), RolloutError> {
        let ordinal: u32 = name.rsplit('-').next().and_then(|o| o.parse().ok()).expect("ordinal");
        {
            let mut st = self.state.lock();
            let Some(pod) = st.pods.get_mut(&ordinal) else { return Ok(()) };
            if pod.terminating {
                return Ok(());
            }
            pod.terminating = true;
            pod.process.sigterm().map_err(RolloutError::Kubernetes)?;
            st.log.push(Event::Deleted(name.to_string(), Instant::now()));
        }
        let pods = self.clone();
        tokio::spawn(async move { pods.replace(ordinal).await });
        Ok(())
    }
}

/// Unique lines pushed through the distributor until stopped, by [`PUSHERS`] concurrent
/// clients, each one push after the other on its own streams.
struct Pusher {
    /// Every acknowledged line, and when it was acknowledged.
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
    /// Every failed push: status and body, or the transport error.
    failures: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Pusher {
    /// Starts the clients, pushing to `distributor` for run `run`, timestamps from `base` on.
    fn start(distributor: &str, run: &'static str, base: i64) -> Pusher {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let url = format!("{distributor}/loki/api/v1/push");
        let tasks = (0..PUSHERS)
            .map(|client| {
                let (acked, failures, stop, url) = (acked.clone(), failures.clone(), stop.clone(), url.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
                    let mut push = 0usize;
                    while !stop.is_cancelled() {
                        let (body, lines) = batch(run, client, push, base);
                        push += 1;
                        match http.post(&url).json(&body).send().await {
                            Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => {
                                let now = Instant::now();
                                acked.lock().extend(lines.into_iter().map(|l| (l, now)));
                            }
                            Ok(r) => {
                                let status = r.status();
                                let body = r.text().await.unwrap_or_default();
                                failures.lock().push(format!("client {client} push {push}: {status}: {}", body.trim()));
                            }
                            Err(e) => failures.lock().push(format!("client {client} push {push}: {e}")),
                        }
                    }
                })
            })
            .collect();
        Pusher { acked, failures, stop, tasks }
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().len()
    }

    /// Stops after the push in flight; returns the acknowledged lines and the failures.
    async fn finish(self) -> (Vec<(String, Instant)>, Vec<String>) {
        self.stop.cancel();
        for task in self.tasks {
            task.await.expect("pusher");
        }
        let acked = std::mem::take(&mut *self.acked.lock());
        let failures = std::mem::take(&mut *self.failures.lock());
        (acked, failures)
    }
}

/// Push number `push` of `client`: [`STREAMS`] streams of [`LINES`] unique lines, each line with
/// a timestamp of its own, increasing per stream. Returns the JSON body and its lines.
fn batch(run: &str, client: usize, push: usize, base: i64) -> (Value, Vec<String>) {
    let mut lines = Vec::new();
    let streams: Vec<Value> = (0..STREAMS)
        .map(|k| {
            let values: Vec<Value> = (0..LINES)
                .map(|i| {
                    let ts = base + i64::try_from(push * LINES + i).expect("small");
                    let line = format!("run={run} client={client} push={push} stream={k} i={i}");
                    lines.push(line.clone());
                    json!([ts.to_string(), line])
                })
                .collect();
            let labels =
                json!({ "job": "rollout", "run": run, "client": client.to_string(), "stream": format!("s{k}") });
            json!({ "stream": labels, "values": values })
        })
        .collect();
    (json!({ "streams": streams }), lines)
}

/// etcd, S3, three ingester pods, a distributor and a querier.
struct Cluster {
    pods: Pods,
    distributor: NornProcess,
    querier: NornProcess,
    ring: ClusterRing,
    // Dropped last: the servers outlive the processes that use them.
    _moto: MotoServer,
    etcd: EtcdServer,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let etcd = EtcdServer::start().await.unwrap_or_else(|e| panic!("{e}"));
        let moto = MotoServer::start().await.unwrap_or_else(|e| panic!("{e}"));
        moto.create_bucket(BUCKET).await.unwrap_or_else(|e| panic!("{e}"));
        let launcher = Arc::new(Launcher {
            bin: norn_bin(),
            dir: dir.path().to_path_buf(),
            etcd: etcd.endpoint(),
            s3: moto.endpoint().to_string(),
            started: AtomicUsize::new(0),
        });
        let pods = Pods::start(launcher.clone()).await;
        let distributor = launcher.start("distributor", "distributor-0").await;
        let querier = launcher.start("querier", "querier-0").await;
        let store: Arc<dyn KvStore> = Arc::new(etcd.kv().await.unwrap_or_else(|e| panic!("{e}")));
        let ring = ClusterRing::new(store, PREFIX);
        let c = Cluster { pods, distributor, querier, ring, _moto: moto, etcd, _dir: dir };
        // The distributor routes only once it sees the three ingesters ACTIVE.
        let http = reqwest::Client::new();
        eventually("the distributor to see 3 ACTIVE ingesters", || async {
            let ring: Value = http.get(c.distributor.url("/ring?format=json")).send().await.ok()?.json().await.ok()?;
            let shards = ring["shards"].as_array()?;
            (shards.len() == 3 && shards.iter().all(|s| s["state"] == "ACTIVE")).then_some(())
        })
        .await;
        c
    }

    /// A fresh ring client, as a newly started operator has.
    async fn new_ring_client(&self) -> ClusterRing {
        let store: Arc<dyn KvStore> = Arc::new(self.etcd.kv().await.unwrap_or_else(|e| panic!("{e}")));
        ClusterRing::new(store, PREFIX)
    }

    /// Every line of `run` the querier returns, sorted (duplicates kept).
    async fn query_lines(&self, run: &str, base: i64) -> Vec<String> {
        let query = format!(r#"{{job="rollout", run="{run}"}}"#);
        let end = norn::timeutil::now_nanos() + 60_000_000_000;
        let path = format!(
            "/loki/api/v1/query_range?query={}&start={base}&end={end}&limit=1000000&direction=forward",
            urlencode(&query)
        );
        let r = reqwest::Client::new().get(self.querier.url(&path)).send().await.expect("query");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert!(status.is_success(), "query failed: {status}: {body}");
        let mut lines: Vec<String> = body["data"]["result"]
            .as_array()
            .expect("streams")
            .iter()
            .flat_map(|s| s["values"].as_array().expect("values").iter())
            .map(|v| v[1].as_str().expect("line").to_string())
            .collect();
        lines.sort();
        lines
    }
}

/// Samples the ring in etcd until stopped; returns the fewest ACTIVE ingesters it saw.
fn monitor(ring: ClusterRing, stop: CancellationToken) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut fewest = usize::MAX;
        while !stop.is_cancelled() {
            if let Ok(desc) = ring.read().await {
                let active = desc.instances.values().filter(|i| i.state() == InstanceState::Active).count();
                fewest = fewest.min(active);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        fewest
    })
}

fn plan() -> Plan {
    Plan { sets: vec![SetPlan { name: SET.into(), zone: None, wanted: 3 }], replication_factor: 3, zone_aware: false }
}

fn done(pass: &Pass) -> bool {
    pass.waiting.is_none() && pass.rollout.as_ref().is_none_or(|r| r.phase == RolloutPhase::Done)
}

/// An operator: driver passes, each starting from `status.rollout` as the last pass saved it
/// (JSON, as in the LogCluster's status), until the rollout is done. Returns the actions taken.
async fn operate(pods: Pods, ring: ClusterRing, status: Arc<Mutex<Option<String>>>) -> Vec<Action> {
    let ingesters = HttpIngesters::new(Duration::from_secs(10), None).expect("client");
    let start = Instant::now();
    let mut actions = Vec::new();
    loop {
        assert!(start.elapsed() < DEADLINE, "the rollout did not finish in time; pods: {:?}", pods.log());
        let previous: Option<RolloutStatus> =
            status.lock().as_deref().map(|s| serde_json::from_str(s).expect("saved rollout status"));
        match drive(&pods, &ingesters, &ring, &plan(), previous.as_ref()).await {
            Ok(pass) => {
                assert_eq!(pass.replicas[SET], 3, "a rollout never scales");
                *status.lock() = pass.rollout.as_ref().map(|r| serde_json::to_string(r).expect("status json"));
                actions.extend(pass.actions.clone());
                if done(&pass) {
                    return actions;
                }
            }
            // The controller retries a failed pass at its next reconcile.
            Err(e) => eprintln!("driver pass failed: {e}"),
        }
        // The requeue interval; in a cluster, pod and StatefulSet changes wake the controller.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pods' log says every ingester was deleted once, flushed and left the ring, and came back
/// once on `rev-2`; and pushes were acknowledged while each one was out.
fn assert_each_replaced_once(log: &[Event], acked: &[(String, Instant)]) {
    for ordinal in 0..3 {
        let pod = format!("{SET}-{ordinal}");
        let deleted: Vec<Instant> = log
            .iter()
            .filter_map(|e| match e {
                Event::Deleted(p, t) if *p == pod => Some(*t),
                _ => None,
            })
            .collect();
        let started: Vec<Instant> = log
            .iter()
            .filter_map(|e| match e {
                Event::Started(p, r, t) if *p == pod && r == "rev-2" => Some(*t),
                _ => None,
            })
            .collect();
        assert_eq!((deleted.len(), started.len()), (1, 1), "{pod} replaced exactly once: {log:?}");
        let exits: Vec<&Event> =
            log.iter().filter(|e| matches!(e, Event::Exited { pod: p, .. } if *p == pod)).collect();
        assert!(
            matches!(exits[..], [Event::Exited { success: true, flushed_and_left: true, .. }]),
            "{pod} exited 0 after flushing and leaving the ring: {exits:?}"
        );
        let (gone, back) = (deleted[0], started[0]);
        let during = acked.iter().filter(|(_, t)| *t > gone && *t < back).count();
        assert!(during > 0, "no push acknowledged while {pod} was replaced");
    }
}

/// After the rollout: every pod on `rev-2`, ACTIVE with the tokens it had, and the querier
/// returns exactly the acknowledged lines.
async fn assert_rolled_out_without_loss(
    c: &Cluster,
    tokens_before: &BTreeMap<String, Vec<u32>>,
    run: &str,
    base: i64,
    acked: &[(String, Instant)],
    failures: &[String],
) {
    assert!(failures.is_empty(), "{} pushes failed, e.g. {:?}", failures.len(), &failures[..failures.len().min(5)]);
    let revisions: Vec<String> = c.pods.state.lock().pods.values().map(|p| p.revision.clone()).collect();
    assert_eq!(revisions, vec!["rev-2"; 3]);
    let desc = c.ring.read().await.expect("ring");
    let after: BTreeMap<String, Vec<u32>> =
        desc.instances.iter().map(|(id, i)| (id.clone(), i.tokens.clone())).collect();
    assert_eq!(&after, tokens_before, "the successors own exactly the ranges of the pods they replaced");
    assert!(desc.instances.values().all(|i| i.state() == InstanceState::Active), "{desc:?}");

    let mut want: Vec<String> = acked.iter().map(|(l, _)| l.clone()).collect();
    want.sort();
    let got = c.query_lines(run, base).await;
    eprintln!("{} lines acknowledged, {} returned by the querier", want.len(), got.len());
    let missing = want.iter().filter(|l| got.binary_search(l).is_err()).count();
    let mut dedup = got.clone();
    dedup.dedup();
    assert_eq!(missing, 0, "{missing} acknowledged lines lost of {}", want.len());
    assert_eq!(got.len(), dedup.len(), "{} lines served twice", got.len() - dedup.len());
    // Unacknowledged lines cannot exist: no push failed.
    assert_eq!(got, want);
}

async fn tokens(ring: &ClusterRing) -> BTreeMap<String, Vec<u32>> {
    let desc = ring.read().await.expect("ring");
    desc.instances.iter().map(|(id, i)| (id.clone(), i.tokens.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_under_pushes_fails_no_push_and_loses_no_entry() {
    let c = Cluster::start().await;
    let tokens_before = tokens(&c.ring).await;
    assert_eq!(tokens_before.len(), 3);
    let base = norn::timeutil::now_nanos() - 5 * 60 * 1_000_000_000;
    let pusher = Pusher::start(&c.distributor.url(""), "full", base);
    eventually("pushes before the rollout", || async { (pusher.acked_count() > 0).then_some(()) }).await;
    let stop = CancellationToken::new();
    let watch = monitor(c.ring.clone(), stop.clone());

    c.pods.change_template("rev-2");
    let status = Arc::new(Mutex::new(None));
    let actions = operate(c.pods.clone(), c.ring.clone(), status.clone()).await;

    let (acked, failures) = pusher.finish().await;
    stop.cancel();
    let fewest = watch.await.expect("monitor");
    assert!(fewest >= 2, "a write quorum of RF=3 needs 2 ACTIVE ingesters; the ring went down to {fewest}");
    let replaced: Vec<&Action> = actions.iter().filter(|a| matches!(a, Action::Replaced(_))).collect();
    let want: Vec<Action> = (0..3).map(|o| Action::Replaced(vec![format!("{SET}-{o}")])).collect();
    assert_eq!(replaced, want.iter().collect::<Vec<_>>(), "one ingester at a time, in ordinal order");
    // Each successor found its tokens reserved in the ring, and registered over the reservation.
    let reserved: Vec<&Action> = actions.iter().filter(|a| matches!(a, Action::Reserved(_))).collect();
    let want: Vec<Action> = (0..3).map(|o| Action::Reserved(vec![format!("{SET}-{o}")])).collect();
    assert_eq!(reserved, want.iter().collect::<Vec<_>>());
    let saved: RolloutStatus = serde_json::from_str(status.lock().as_deref().expect("status")).expect("json");
    assert_eq!((saved.phase, saved.updated, saved.total), (RolloutPhase::Done, 3, 3));
    assert_each_replaced_once(&c.pods.log(), &acked);
    assert_rolled_out_without_loss(&c, &tokens_before, "full", base, &acked, &failures).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_killed_mid_rollout_resumes_and_finishes() {
    let c = Cluster::start().await;
    let tokens_before = tokens(&c.ring).await;
    let base = norn::timeutil::now_nanos() - 5 * 60 * 1_000_000_000;
    let pusher = Pusher::start(&c.distributor.url(""), "resume", base);
    eventually("pushes before the rollout", || async { (pusher.acked_count() > 0).then_some(()) }).await;
    let stop = CancellationToken::new();
    let watch = monitor(c.ring.clone(), stop.clone());

    c.pods.change_template("rev-2");
    // The first operator replaces ingester-0, starts on ingester-1 and dies: its task is aborted
    // at whatever await it is at, with ingester-1 flushing and leaving.
    let status = Arc::new(Mutex::new(None));
    let first = tokio::spawn(operate(c.pods.clone(), c.ring.clone(), status.clone()));
    let second_victim = format!("{SET}-1");
    eventually("the first operator to delete ingester-1", || async {
        c.pods.log().iter().any(|e| matches!(e, Event::Deleted(p, _) if *p == second_victim)).then_some(())
    })
    .await;
    first.abort();
    assert!(first.await.expect_err("aborted").is_cancelled());
    let saved: RolloutStatus = serde_json::from_str(status.lock().as_deref().expect("status")).expect("json");
    assert_eq!(saved.current.as_deref(), Some(second_victim.as_str()), "{saved:?}");
    assert_ne!(saved.phase, RolloutPhase::Done);

    // A new operator with its own clients, nothing but the saved status and what it observes.
    let ring = c.new_ring_client().await;
    operate(c.pods.clone(), ring, status.clone()).await;
    let (acked, failures) = pusher.finish().await;
    stop.cancel();
    let fewest = watch.await.expect("monitor");
    assert!(fewest >= 2, "quorum lost across the operator restart: {fewest} ACTIVE");
    let saved: RolloutStatus = serde_json::from_str(status.lock().as_deref().expect("status")).expect("json");
    assert_eq!(saved.phase, RolloutPhase::Done);
    assert_each_replaced_once(&c.pods.log(), &acked);
    assert_rolled_out_without_loss(&c, &tokens_before, "resume", base, &acked, &failures).await;
}
