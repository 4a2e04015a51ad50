//! A node agent for tests: a process-based stand-in for the kubelet (and, since the test control
//! plane has no scheduler, the scheduler of its node). A test tool, never shipped.
//!
//! What it does, against a real API server:
//! - registers a `Node` (Ready, an InternalIP, capacity) under its name;
//! - binds every pending pod that names no node to itself (`pods/binding`, as the scheduler does);
//! - runs each container of its pods as a local process: the image is mapped to a local binary
//!   ([`Image`]), `command`/`args` with `$(VAR)` expanded, `env` with the downward API
//!   (`metadata.name`, `metadata.namespace`, `metadata.uid`, `status.podIP`, `status.hostIP`,
//!   `spec.nodeName`, labels and annotations), `secretKeyRef`, `configMapKeyRef`, `envFrom`;
//! - gives every pod its own loopback address `127.a.b.x` (`a.b` random per agent, so agents of
//!   concurrent tests do not meet), so every pod keeps its standard ports;
//! - volumes are directories under the pod's directory: ConfigMaps, Secrets and projections of
//!   them written as files, `emptyDir` empty, and a `persistentVolumeClaim` one directory per
//!   claim under the node (kept when the pod goes, as a bound volume is: a StatefulSet's
//!   replacement pod finds its predecessor's data). Claims are not bound to PersistentVolumes;
//!   they stay Pending, which nothing here waits for;
//! - reports pod status: phase, `podIP`, `hostIP`, container states and restart counts, and
//!   Ready from the readiness probe (HTTP GET, success and failure thresholds);
//! - honours deletion: SIGTERM, the grace period, SIGKILL, then removes the pod
//!   (`gracePeriodSeconds=0` with the pod's UID as precondition, as the kubelet does);
//! - restarts exited containers by the pod's `restartPolicy`, with a back-off.
//!
//! Where it differs from a kubelet, on purpose: no container isolation (no namespaces, no
//! cgroups, the agent's own user), so a path a container sees inside a volume is rewritten to
//! the volume's directory wherever it appears in `command`, `args` and env values, and the
//! program's own listen addresses and data directory come from [`Image::extra_args`] (the
//! configuration Norn's pods read says `0.0.0.0` and `/var/lib/norn`, which processes sharing
//! one network and file system cannot all take). Probes run at most every second and start
//! without the initial delay, and the restart back-off is capped at 10 s instead of 5 minutes,
//! so tests wait seconds where a cluster waits minutes. No node heartbeats (the test control
//! plane runs without the node lifecycle controller).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, ConfigMap, Container, ContainerPort, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, EnvVar, Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus,
    NodeSystemInfo, ObjectReference, Pod, PodCondition, PodIP, PodStatus, Probe, Secret, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use parking_lot::Mutex;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the agent looks at everything again, besides watch events.
const RESYNC: Duration = Duration::from_secs(1);
/// How often a pod worker checks its processes.
const TICK: Duration = Duration::from_millis(200);
/// The longest restart back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest probe period.
const MAX_PROBE_PERIOD: Duration = Duration::from_secs(1);

/// A container image the agent can run: images whose name starts with `prefix` run `binary`.
#[derive(Debug, Clone)]
pub struct Image {
    /// Image name prefix, e.g. `norn:` or `ghcr.io/norn/norn`.
    pub prefix: String,
    /// The local program.
    pub binary: PathBuf,
    /// Appended to the container's arguments, after `{pod_ip}` is replaced by the pod's IP and
    /// paths inside volumes are rewritten (see the module docs): what the program needs to share
    /// one host with other pods.
    pub extra_args: Vec<String>,
}

/// What an agent needs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The node's name.
    pub node: String,
    /// Where pods' directories, volumes, claims and logs go.
    pub dir: PathBuf,
    /// The images it can run.
    pub images: Vec<Image>,
}

/// A running node agent; stops (and kills every process it started) when dropped.
pub struct NodeAgent {
    /// The node's name.
    pub node: String,
    /// The node's address; pods get `<first three octets>.2` and up.
    pub node_ip: Ipv4Addr,
    /// The agent's directory.
    pub dir: PathBuf,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for NodeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAgent").field("node", &self.node).field("node_ip", &self.node_ip).finish_non_exhaustive()
    }
}

/// What the agent and its pod workers share.
struct Shared {
    client: Client,
    config: AgentConfig,
    node_ip: Ipv4Addr,
    /// Last octets of the pod IPs in use.
    ips: Mutex<BTreeSet<u8>>,
    /// Process IDs of running containers, by `namespace/pod/container`.
    pids: Mutex<HashMap<String, u32>>,
}

/// What the agent tells a pod worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Keep running.
    No,
    /// The pod is being deleted: SIGTERM, this grace period, SIGKILL, then remove it.
    Graceful(Duration),
    /// The pod is gone from the API: kill at once.
    Now,
}

impl NodeAgent {
    /// Registers the node and starts serving it.
    pub async fn start(client: Client, config: AgentConfig) -> Result<Self, String> {
        std::fs::create_dir_all(&config.dir).map_err(|e| format!("creating {}: {e}", config.dir.display()))?;
        let node_ip = Ipv4Addr::new(127, rand::random_range(1..=254), rand::random_range(0..=254), 1);
        register_node(&client, &config.node, node_ip).await?;
        let shared = Arc::new(Shared {
            client,
            config: config.clone(),
            node_ip,
            ips: Mutex::new(BTreeSet::new()),
            pids: Mutex::new(HashMap::new()),
        });
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(shared.clone(), shutdown.clone()));
        Ok(Self { node: config.node, node_ip, dir: config.dir, shared, shutdown, task })
    }

    /// SIGKILLs the process of `container` in pod `namespace/pod` behind the API's back (a
    /// crash); the agent restarts it by the pod's restart policy. Whether it was running.
    pub fn kill_container(&self, namespace: &str, pod: &str, container: &str) -> bool {
        let pid = self.shared.pids.lock().get(&format!("{namespace}/{pod}/{container}")).copied();
        match pid {
            Some(pid) => {
                crate::signal::kill(pid);
                true
            }
            None => false,
        }
    }

    /// The log of `container` in pod `namespace/pod` (every run of it).
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> String {
        std::fs::read_to_string(self.dir.join("pods").join(namespace).join(pod).join(format!("{container}.log")))
            .unwrap_or_default()
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.task.abort();
        for pid in self.shared.pids.lock().values() {
            crate::signal::kill(*pid);
        }
    }
}

async fn register_node(client: &Client, name: &str, ip: Ipv4Addr) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), name.to_string()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                ("kubernetes.io/arch".to_string(), std::env::consts::ARCH.to_string()),
            ])),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: None,
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(format!("registering node {name}: {e}")),
    }
    let now = Time(Timestamp::now());
    let quantity = |q: &str| Quantity(q.to_string());
    let capacity = BTreeMap::from([
        ("cpu".to_string(), quantity("2")),
        ("memory".to_string(), quantity("24Gi")),
        ("pods".to_string(), quantity("110")),
    ]);
    let status = NodeStatus {
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: ip.to_string() },
            NodeAddress { type_: "Hostname".into(), address: name.into() },
        ]),
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("NornE2eAgentReady".into()),
            message: Some("the norn-e2e node agent runs pods as local processes".into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now),
        }]),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.into(),
            boot_id: String::new(),
            container_runtime_version: "norn-e2e://processes".into(),
            kernel_version: String::new(),
            kube_proxy_version: String::new(),
            kubelet_version: "v1.37.2".into(),
            machine_id: String::new(),
            operating_system: "linux".into(),
            os_image: "norn-e2e node agent".into(),
            system_uuid: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    };
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(serde_json::json!({ "status": status })))
        .await
        .map_err(|e| format!("writing the status of node {name}: {e}"))?;
    Ok(())
}

/// The agent's loop: a reflector over every pod; each change (and every [`RESYNC`]) binds
/// pending pods, starts workers for new pods of this node and tells workers of deleted pods.
async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let (store, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(pods, watcher::Config::default()).default_backoff()).touched_objects();
    let mut stream = std::pin::pin!(stream);
    let mut workers: HashMap<String, watch::Sender<Stop>> = HashMap::new();
    let mut binding: BTreeSet<String> = BTreeSet::new();
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = stream.next() => {
                match event {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::debug!(error = %e, "node agent: pod watch"),
                    None => break,
                }
            }
            _ = tick.tick() => {}
        }
        sync(&shared, &store, &mut workers, &mut binding, &shutdown).await;
    }
    for (_, w) in workers {
        let _ = w.send(Stop::Now);
    }
}

async fn sync(
    shared: &Arc<Shared>,
    store: &Store<Pod>,
    workers: &mut HashMap<String, watch::Sender<Stop>>,
    binding: &mut BTreeSet<String>,
    shutdown: &CancellationToken,
) {
    let node = &shared.config.node;
    let mut present = BTreeSet::new();
    for pod in store.state() {
        let Some(uid) = pod.uid() else { continue };
        let spec = pod.spec.as_ref();
        let deleting = pod.metadata.deletion_timestamp.is_some();
        match spec.and_then(|s| s.node_name.as_deref()) {
            None if !deleting && !binding.contains(&uid) && bind(shared, &pod).await => {
                binding.insert(uid.clone());
            }
            Some(n) if n == node => {
                present.insert(uid.clone());
                if deleting {
                    let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0);
                    match workers.get(&uid) {
                        Some(w) => {
                            w.send_if_modified(|s| {
                                let changed = *s == Stop::No;
                                if changed {
                                    *s = Stop::Graceful(Duration::from_secs(grace as u64));
                                }
                                changed
                            });
                        }
                        None => {
                            // Never started here (or the agent restarted): nothing to stop.
                            finish_deletion(shared, &pod).await;
                        }
                    }
                } else if !workers.contains_key(&uid) && !terminal(&pod) {
                    let (tx, rx) = watch::channel(Stop::No);
                    workers.insert(uid.clone(), tx);
                    tokio::spawn(worker(shared.clone(), (*pod).clone(), rx, shutdown.child_token()));
                }
            }
            _ => {}
        }
    }
    workers.retain(|uid, w| {
        if present.contains(uid) {
            return !w.is_closed();
        }
        let _ = w.send(Stop::Now);
        false
    });
    binding.retain(|uid| store.state().iter().any(|p| p.uid().as_deref() == Some(uid.as_str())));
}

fn terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Binds `pod` to this node, as the scheduler would; whether the binding was accepted.
async fn bind(shared: &Shared, pod: &Pod) -> bool {
    let (Some(ns), name) = (pod.namespace(), pod.name_any()) else { return false };
    let binding = Binding {
        metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(ns.clone()), ..Default::default() },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some(shared.config.node.clone()),
            ..Default::default()
        },
    };
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    match api.create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding).await {
        Ok(_) => {
            tracing::debug!(pod = %name, namespace = %ns, "node agent: bound");
            true
        }
        Err(e) => {
            tracing::warn!(pod = %name, namespace = %ns, error = %e, "node agent: binding failed");
            false
        }
    }
}

/// Removes a pod whose processes have stopped: the last step of a graceful deletion.
async fn finish_deletion(shared: &Shared, pod: &Pod) {
    let (Some(ns), Some(uid)) = (pod.namespace(), pod.uid()) else { return };
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
        ..Default::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %pod.name_any(), error = %e, "node agent: removing the pod"),
    }
}

/// One container's process and what its status shows.
struct Running {
    spec: Container,
    binary: PathBuf,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    workdir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    started_at: Option<Time>,
    restarts: i32,
    last_exit: Option<ContainerStateTerminated>,
    /// When a stopped container may start again.
    restart_at: Option<Instant>,
    ready: bool,
    probe_ok: i32,
    probe_failed: i32,
    next_probe: Instant,
}

/// Runs one pod until it is deleted or gone.
async fn worker(shared: Arc<Shared>, pod: Pod, mut stop: watch::Receiver<Stop>, shutdown: CancellationToken) {
    let name = pod.name_any();
    let ns = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let ports: Vec<u16> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    let Some(ip) = allocate_ip(&shared, &ports) else {
        tracing::error!(pod = %name, "node agent: no free loopback address");
        return;
    };
    let started = Time(Timestamp::now());
    // As the kubelet does, a pod whose ConfigMap, Secret or key is missing waits and tries again
    // (CreateContainerConfigError) until it can start or is deleted.
    let mut containers = loop {
        match prepare(&shared, &pod, ip).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(pod = %name, namespace = %ns, error = %e, "node agent: cannot start the pod yet");
                let status = serde_json::json!({"status": {"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "False", "reason": "CreateContainerConfigError", "message": e}
                ]}});
                let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await;
                let waited = tokio::time::timeout(MAX_PROBE_PERIOD, stop.wait_for(|s| *s != Stop::No))
                    .await
                    .map(|r| r.map(|s| *s));
                if waited.is_ok() || shutdown.is_cancelled() {
                    if matches!(waited, Ok(Ok(Stop::Graceful(_)))) {
                        finish_deletion(&shared, &pod).await;
                    }
                    release_ip(&shared, ip);
                    return;
                }
            }
        }
    };
    let restart_policy = pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into());
    let key = |c: &str| format!("{ns}/{name}/{c}");
    let mut last_status = serde_json::Value::Null;
    let mut transitions = HashMap::new();
    let mut interval = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = stop.changed() => {}
            _ = interval.tick() => {}
        }
        let what = *stop.borrow();
        match what {
            Stop::No => {}
            Stop::Now => break,
            Stop::Graceful(grace) => {
                terminate(&mut containers, grace).await;
                for c in &containers {
                    shared.pids.lock().remove(&key(&c.spec.name));
                }
                finish_deletion(&shared, &pod).await;
                release_ip(&shared, ip);
                return;
            }
        }
        for c in &mut containers {
            step(c, &restart_policy, ip).await;
            match c.child.as_ref().and_then(Child::id) {
                Some(pid) => shared.pids.lock().insert(key(&c.spec.name), pid),
                None => shared.pids.lock().remove(&key(&c.spec.name)),
            };
        }
        let status = pod_status(&containers, &shared, ip, &started, &mut transitions);
        let json = serde_json::json!({ "status": status });
        if json != last_status {
            match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json)).await {
                Ok(_) => last_status = json,
                Err(kube::Error::Api(e)) if e.code == 404 => break,
                Err(e) => tracing::debug!(pod = %name, error = %e, "node agent: writing pod status"),
            }
        }
    }
    for c in &mut containers {
        if let Some(child) = c.child.as_mut() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        shared.pids.lock().remove(&key(&c.spec.name));
    }
    release_ip(&shared, ip);
}

/// Starts, reaps, restarts and probes one container.
async fn step(c: &mut Running, restart_policy: &str, ip: Ipv4Addr) {
    if let Some(child) = c.child.as_mut()
        && let Ok(Some(exit)) = child.try_wait()
    {
        let code = exit.code().unwrap_or(137);
        let finished = Time(Timestamp::now());
        c.last_exit = Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
            started_at: c.started_at.clone(),
            finished_at: Some(finished),
            ..Default::default()
        });
        c.child = None;
        c.ready = false;
        c.probe_ok = 0;
        let restart = restart_policy == "Always" || (restart_policy == "OnFailure" && code != 0);
        if restart {
            let backoff = Duration::from_secs(1 << c.restarts.clamp(0, 4) as u32).min(MAX_BACKOFF);
            c.restart_at = Some(Instant::now() + backoff);
            c.restarts += 1;
        }
        tracing::info!(container = %c.spec.name, code, restart, "node agent: container exited");
    }
    let due = c.restart_at.is_some_and(|at| Instant::now() >= at);
    if c.child.is_none() && (due || (c.started_at.is_none() && c.restart_at.is_none())) {
        c.restart_at = None;
        match spawn(c) {
            Ok(child) => {
                c.child = Some(child);
                c.started_at = Some(Time(Timestamp::now()));
                c.next_probe = Instant::now();
            }
            Err(e) => {
                tracing::warn!(container = %c.spec.name, error = %e, "node agent: cannot start");
                c.restart_at = Some(Instant::now() + MAX_BACKOFF);
            }
        }
    }
    if c.child.is_some() && Instant::now() >= c.next_probe {
        match c.spec.readiness_probe.clone() {
            None => c.ready = true,
            Some(probe) => {
                let period =
                    Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64).min(MAX_PROBE_PERIOD);
                c.next_probe = Instant::now() + period;
                let ok = http_probe(&probe, &c.spec, ip).await;
                if ok {
                    c.probe_ok += 1;
                    c.probe_failed = 0;
                    if c.probe_ok >= probe.success_threshold.unwrap_or(1) {
                        c.ready = true;
                    }
                } else {
                    c.probe_failed += 1;
                    c.probe_ok = 0;
                    if c.probe_failed >= probe.failure_threshold.unwrap_or(3) || !c.ready {
                        c.ready = false;
                    }
                }
            }
        }
    }
}

fn spawn(c: &Running) -> Result<Child, String> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&c.log)
        .map_err(|e| format!("opening {}: {e}", c.log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    Command::new(&c.binary)
        .args(&c.argv)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&c.workdir)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", c.binary.display()))
}

/// SIGTERM every container, wait up to `grace`, SIGKILL what is left.
async fn terminate(containers: &mut [Running], grace: Duration) {
    for c in containers.iter() {
        if let Some(pid) = c.child.as_ref().and_then(Child::id) {
            crate::signal::term(pid);
        }
    }
    let deadline = Instant::now() + grace;
    for c in containers.iter_mut() {
        let Some(child) = c.child.as_mut() else { continue };
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, child.wait()).await.is_err() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        c.child = None;
    }
}

async fn http_probe(probe: &Probe, container: &Container, ip: Ipv4Addr) -> bool {
    let Some(get) = &probe.http_get else {
        // Exec and TCP probes: a running process counts as ready.
        return true;
    };
    let Some(port) = resolve_port(&get.port, container.ports.as_deref().unwrap_or_default()) else { return false };
    let url = format!("http://{ip}:{port}{}", get.path.as_deref().unwrap_or("/"));
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let Ok(client) = reqwest::Client::builder().timeout(timeout).build() else { return false };
    client.get(url).send().await.is_ok_and(|r| r.status().is_success() || r.status().is_redirection())
}

fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok()),
    }
}

/// The pod's status. `transitions` keeps each condition's last status and when it changed, so
/// an unchanged status serializes the same on every tick (and is not written again).
fn pod_status(
    containers: &[Running],
    shared: &Shared,
    ip: Ipv4Addr,
    started: &Time,
    transitions: &mut HashMap<String, (bool, Time)>,
) -> PodStatus {
    let statuses: Vec<ContainerStatus> = containers
        .iter()
        .map(|c| {
            let state = match (&c.child, &c.last_exit) {
                (Some(_), _) => ContainerState {
                    running: Some(ContainerStateRunning { started_at: c.started_at.clone() }),
                    ..Default::default()
                },
                (None, Some(exit)) if c.restart_at.is_some() => ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("CrashLoopBackOff".into()),
                        message: Some(format!("exited with {}; restarting", exit.exit_code)),
                    }),
                    ..Default::default()
                },
                (None, Some(exit)) => ContainerState { terminated: Some(exit.clone()), ..Default::default() },
                (None, None) => ContainerState {
                    waiting: Some(ContainerStateWaiting { reason: Some("ContainerCreating".into()), message: None }),
                    ..Default::default()
                },
            };
            ContainerStatus {
                name: c.spec.name.clone(),
                image: c.spec.image.clone().unwrap_or_default(),
                image_id: format!("file://{}", c.binary.display()),
                container_id: c.child.as_ref().and_then(Child::id).map(|pid| format!("process://{pid}")),
                ready: c.ready,
                started: Some(c.child.is_some()),
                restart_count: c.restarts,
                state: Some(state),
                last_state: c.last_exit.clone().map(|t| ContainerState { terminated: Some(t), ..Default::default() }),
                ..Default::default()
            }
        })
        .collect();
    let all_ready = containers.iter().all(|c| c.ready);
    let any_running = containers.iter().any(|c| c.child.is_some());
    let all_done = containers.iter().all(|c| c.child.is_none() && c.restart_at.is_none() && c.last_exit.is_some());
    let phase = if all_done {
        if containers.iter().all(|c| c.last_exit.as_ref().is_some_and(|e| e.exit_code == 0)) {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if any_running || containers.iter().any(|c| c.last_exit.is_some()) {
        "Running"
    } else {
        "Pending"
    };
    let mut condition = |type_: &str, ok: bool| {
        let entry = transitions.entry(type_.to_string()).or_insert_with(|| (ok, Time(Timestamp::now())));
        if entry.0 != ok {
            *entry = (ok, Time(Timestamp::now()));
        }
        PodCondition {
            type_: type_.into(),
            status: if ok { "True" } else { "False" }.into(),
            last_transition_time: Some(entry.1.clone()),
            ..Default::default()
        }
    };
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(vec![
            condition("PodScheduled", true),
            condition("Initialized", true),
            condition("ContainersReady", all_ready),
            condition("Ready", all_ready),
        ]),
        host_ip: Some(shared.node_ip.to_string()),
        pod_ip: Some(ip.to_string()),
        pod_ips: Some(vec![PodIP { ip: ip.to_string() }]),
        start_time: Some(started.clone()),
        container_statuses: Some(statuses),
        ..Default::default()
    }
}

fn allocate_ip(shared: &Shared, ports: &[u16]) -> Option<Ipv4Addr> {
    let [a, b, c, _] = shared.node_ip.octets();
    let mut used = shared.ips.lock();
    for x in 2..=254u8 {
        if used.contains(&x) {
            continue;
        }
        let ip = Ipv4Addr::new(a, b, c, x);
        // Another process (another test's agent, or a pod of ours that outlived its worker) may
        // hold the address: take only one whose ports are free.
        if ports.iter().all(|p| TcpListener::bind(SocketAddr::from((ip, *p))).is_ok()) {
            used.insert(x);
            return Some(ip);
        }
    }
    None
}

fn release_ip(shared: &Shared, ip: Ipv4Addr) {
    shared.ips.lock().remove(&ip.octets()[3]);
}

/// Volumes, environment and command lines of a pod's containers.
async fn prepare(shared: &Shared, pod: &Pod, ip: Ipv4Addr) -> Result<Vec<Running>, String> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let spec = pod.spec.as_ref().ok_or("the pod has no spec")?;
    let dir = shared.config.dir.join("pods").join(&ns).join(&name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut volumes: HashMap<String, PathBuf> = HashMap::new();
    for v in spec.volumes.iter().flatten() {
        volumes.insert(v.name.clone(), volume(shared, &ns, &dir, v).await?);
    }
    let mut out = Vec::new();
    for c in &spec.containers {
        let image_name = c.image.clone().unwrap_or_default();
        let image = shared
            .config
            .images
            .iter()
            .find(|i| image_name.starts_with(&i.prefix))
            .ok_or_else(|| format!("container {}: this node cannot run image {image_name:?}", c.name))?;
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let host = volumes.get(&m.name).ok_or_else(|| format!("container {}: no volume {}", c.name, m.name))?;
            let host = match m.sub_path.as_deref() {
                Some(sub) if !sub.is_empty() => host.join(sub),
                _ => host.clone(),
            };
            mounts.push((m.mount_path.trim_end_matches('/').to_string(), host));
        }
        // Longest first, so /a/b is rewritten before /a.
        mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let env = environment(shared, pod, c, ip, &mounts).await?;
        let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut argv: Vec<String> = c.command.iter().flatten().skip(1).cloned().collect();
        argv.extend(c.args.iter().flatten().cloned());
        let mut argv: Vec<String> = argv.iter().map(|a| rewrite_paths(&expand(a, &vars), &mounts)).collect();
        argv.extend(image.extra_args.iter().map(|a| rewrite_paths(&a.replace("{pod_ip}", &ip.to_string()), &mounts)));
        let workdir = c.working_dir.as_deref().map(|w| PathBuf::from(rewrite_paths(w, &mounts))).unwrap_or(dir.clone());
        out.push(Running {
            spec: c.clone(),
            binary: image.binary.clone(),
            argv,
            env,
            workdir,
            log: dir.join(format!("{}.log", c.name)),
            child: None,
            started_at: None,
            restarts: 0,
            last_exit: None,
            restart_at: None,
            ready: false,
            probe_ok: 0,
            probe_failed: 0,
            next_probe: Instant::now(),
        });
    }
    Ok(out)
}

/// The directory of volume `v`, filled as its source says.
async fn volume(shared: &Shared, ns: &str, pod_dir: &Path, v: &Volume) -> Result<PathBuf, String> {
    let io = |e: std::io::Error| format!("volume {}: {e}", v.name);
    if let Some(claim) = &v.persistent_volume_claim {
        let dir = shared.config.dir.join("claims").join(ns).join(&claim.claim_name);
        std::fs::create_dir_all(&dir).map_err(io)?;
        return Ok(dir);
    }
    let dir = pod_dir.join("volumes").join(&v.name);
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(cm) = &v.config_map {
        files.extend(config_map_files(shared, ns, &cm.name, cm.items.as_deref(), cm.optional).await?);
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        files.extend(secret_files(shared, ns, &name, s.items.as_deref(), s.optional).await?);
    }
    if let Some(p) = &v.projected {
        for source in p.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                files.extend(config_map_files(shared, ns, &cm.name, cm.items.as_deref(), cm.optional).await?);
            }
            if let Some(s) = &source.secret {
                files.extend(secret_files(shared, ns, &s.name, s.items.as_deref(), s.optional).await?);
            }
        }
    }
    for (path, bytes) in files {
        let file = dir.join(&path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&file, bytes).map_err(io)?;
    }
    Ok(dir)
}

type Items<'a> = Option<&'a [k8s_openapi::api::core::v1::KeyToPath]>;

fn select(data: BTreeMap<String, Vec<u8>>, items: Items<'_>) -> Vec<(String, Vec<u8>)> {
    match items {
        None => data.into_iter().collect(),
        Some(items) => items.iter().filter_map(|i| Some((i.path.clone(), data.get(&i.key)?.clone()))).collect(),
    }
}

async fn config_map_files(
    shared: &Shared,
    ns: &str,
    name: &str,
    items: Items<'_>,
    optional: Option<bool>,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), ns);
    match api.get_opt(name).await.map_err(|e| format!("reading ConfigMap {name}: {e}"))? {
        Some(cm) => {
            let mut data: BTreeMap<String, Vec<u8>> =
                cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
            data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
            Ok(select(data, items))
        }
        None if optional == Some(true) => Ok(Vec::new()),
        None => Err(format!("ConfigMap {name} not found")),
    }
}

async fn secret_files(
    shared: &Shared,
    ns: &str,
    name: &str,
    items: Items<'_>,
    optional: Option<bool>,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    match secret_data(shared, ns, name).await? {
        Some(data) => Ok(select(data, items)),
        None if optional == Some(true) => Ok(Vec::new()),
        None => Err(format!("Secret {name} not found")),
    }
}

async fn secret_data(shared: &Shared, ns: &str, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), ns);
    let Some(s) = api.get_opt(name).await.map_err(|e| format!("reading Secret {name}: {e}"))? else { return Ok(None) };
    let mut data: BTreeMap<String, Vec<u8>> = s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
    data.extend(s.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
    Ok(Some(data))
}

/// A container's environment in order: `envFrom`, then `env` (later `$(VAR)`s see earlier
/// ones), plus `HOSTNAME` as the kubelet sets it.
async fn environment(
    shared: &Shared,
    pod: &Pod,
    c: &Container,
    ip: Ipv4Addr,
    mounts: &[(String, PathBuf)],
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.namespace().unwrap_or_default();
    let mut env: Vec<(String, String)> = vec![("HOSTNAME".into(), pod.name_any())];
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(key, _)| *key != k);
        env.push((k, v));
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(cm) = &from.config_map_ref {
            for (k, v) in config_map_files(shared, &ns, &cm.name, None, cm.optional).await? {
                set(&mut env, format!("{prefix}{k}"), String::from_utf8_lossy(&v).into_owned());
            }
        }
        if let Some(s) = &from.secret_ref {
            for (k, v) in secret_files(shared, &ns, &s.name, None, s.optional).await? {
                set(&mut env, format!("{prefix}{k}"), String::from_utf8_lossy(&v).into_owned());
            }
        }
    }
    for EnvVar { name, value, value_from } in c.env.iter().flatten() {
        let v = match (value, value_from) {
            (Some(v), _) => {
                let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                rewrite_paths(&expand(v, &vars), mounts)
            }
            (None, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    field(pod, &shared.config.node, shared.node_ip, ip, &f.field_path)
                        .ok_or_else(|| format!("env {name}: field {} is not supported", f.field_path))?
                } else if let Some(s) = &from.secret_key_ref {
                    let data = secret_data(shared, &ns, &s.name).await?;
                    match data.and_then(|d| d.get(&s.key).cloned()) {
                        Some(v) => String::from_utf8_lossy(&v).into_owned(),
                        None if s.optional == Some(true) => continue,
                        None => return Err(format!("env {name}: key {} of Secret {} not found", s.key, s.name)),
                    }
                } else if let Some(k) = &from.config_map_key_ref {
                    let files = config_map_files(shared, &ns, &k.name, None, k.optional).await?;
                    match files.into_iter().find(|(key, _)| *key == k.key) {
                        Some((_, v)) => String::from_utf8_lossy(&v).into_owned(),
                        None if k.optional == Some(true) => continue,
                        None => return Err(format!("env {name}: key {} of ConfigMap {} not found", k.key, k.name)),
                    }
                } else {
                    return Err(format!("env {name}: this source is not supported"));
                }
            }
            (None, None) => String::new(),
        };
        set(&mut env, name.clone(), v);
    }
    Ok(env)
}

/// A downward-API field of the pod.
fn field(pod: &Pod, node: &str, host_ip: Ipv4Addr, ip: Ipv4Addr, path: &str) -> Option<String> {
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    match path {
        "metadata.name" => Some(pod.name_any()),
        "metadata.namespace" => pod.namespace(),
        "metadata.uid" => pod.uid(),
        "spec.nodeName" => Some(node.into()),
        "spec.serviceAccountName" => pod.spec.as_ref().and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => Some(ip.to_string()),
        "status.hostIP" | "status.hostIPs" => Some(host_ip.to_string()),
        _ => keyed("metadata.labels['", pod.metadata.labels.as_ref())
            .or_else(|| keyed("metadata.annotations['", pod.metadata.annotations.as_ref())),
    }
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, `$$` is a literal `$`, and
/// anything else stays as written.
pub fn expand(s: &str, vars: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(close) = tail.strip_prefix("$(").and_then(|t| t.find(')')) {
            let name = &tail[2..2 + close];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&tail[..3 + close]),
            }
            rest = &tail[3 + close..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Rewrites each path under a mount (at the start of `s` or after `=`, `,` or `:`) to the
/// volume's directory on the host.
pub fn rewrite_paths(s: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut out = s.to_string();
    for (mount, host) in mounts {
        let host = host.display().to_string();
        let mut result = String::with_capacity(out.len());
        let mut i = 0;
        while let Some(found) = out[i..].find(mount.as_str()) {
            let at = i + found;
            let end = at + mount.len();
            let starts = at == 0 || matches!(out.as_bytes()[at - 1], b'=' | b',' | b':');
            let ends = end == out.len() || out.as_bytes()[end] == b'/';
            result.push_str(&out[i..at]);
            if starts && ends {
                result.push_str(&host);
            } else {
                result.push_str(mount);
            }
            i = end;
        }
        result.push_str(&out[i..]);
        out = result;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_the_kubelet() {
        let vars = HashMap::from([("POD_IP", "127.1.2.3"), ("POD_NAME", "logs-ingester-0")]);
        assert_eq!(expand("--instance.addr=$(POD_IP):9095", &vars), "--instance.addr=127.1.2.3:9095");
        assert_eq!(expand("$(POD_NAME)-$(MISSING)", &vars), "logs-ingester-0-$(MISSING)");
        assert_eq!(expand("$$(POD_IP) $5 $", &vars), "$(POD_IP) $5 $");
    }

    #[test]
    fn rewrites_paths_under_mounts_only_at_boundaries() {
        let mounts = vec![
            ("/etc/norn".to_string(), PathBuf::from("/tmp/p/config")),
            ("/var/lib/norn".to_string(), PathBuf::from("/tmp/p/data")),
        ];
        assert_eq!(
            rewrite_paths("--config.file=/etc/norn/norn.yaml", &mounts),
            "--config.file=/tmp/p/config/norn.yaml"
        );
        assert_eq!(rewrite_paths("--data.dir=/var/lib/norn", &mounts), "--data.dir=/tmp/p/data");
        assert_eq!(rewrite_paths("/etc/nornx/a", &mounts), "/etc/nornx/a");
        assert_eq!(rewrite_paths("x/etc/norn", &mounts), "x/etc/norn");
    }
}
