//! The ruler: Prometheus-format rule groups of LogQL expressions, evaluated every `interval`
//! through the querier (`--target=ruler`, part of `all`).
//!
//! - [`rules`]: the rule file format and its validation.
//! - [`store`]: rule files per tenant and namespace, in a directory or the object store, and
//!   the saved alert state of each group.
//! - [`alerting`]: alert states (`for`, `keep_firing_for`, resolution, resend).
//! - [`group`]: one group's evaluation loop.
//! - [`notifier`]: Alertmanager's v2 API.
//! - [`remote_write`]: recorded samples through a disk queue to a Prometheus remote-write
//!   endpoint.
//! - [`http`]: Loki's rules API and the Prometheus-compatible read API Grafana uses.
//!
//! Several rulers share the groups through the ruler ring (`{ring.prefix}ruler`): a group
//! belongs to the first healthy ACTIVE ruler clockwise from the hash of (tenant, namespace,
//! group). Each ruler re-reads the rules and recomputes what it owns every
//! `ruler.poll_interval`, on every change of the ring and after each write through its API,
//! starting the groups it gained and stopping (after saving their state) those it lost. A ruler
//! that leaves gracefully hands its groups over at once; one that dies, once its heartbeat is
//! older than `ring.heartbeat_timeout`.

pub mod alerting;
pub mod config;
pub mod group;
pub mod http;
pub mod notifier;
pub mod remote_write;
pub mod rules;
pub mod store;
pub mod testing;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::{ErrorKind, HasKind};
use crate::metrics::{Metrics, SampleKind};
use crate::querier::Querier;
use crate::ring::model::{RingDesc, SystemClock};
use crate::ring::{InstanceState, Lifecycler, LifecyclerConfig, RingClient};
use crate::storage::StorageError;

pub use config::RulerConfig;
use group::{Group, GroupKey};
use notifier::Notifier;
use remote_write::RemoteWriteQueue;
use rules::RuleGroup;
use store::RuleStore;

/// The key of the ruler ring, below `ring.prefix`.
pub const RULER_RING_KEY: &str = "ruler";

/// Why a ruler request failed.
#[derive(Debug, thiserror::Error)]
pub enum RulerError {
    /// A rule file, group or name the API refuses (400).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("rules store: {0}")]
    Storage(String),
}

impl From<StorageError> for RulerError {
    fn from(e: StorageError) -> Self {
        RulerError::Storage(e.to_string())
    }
}

impl HasKind for RulerError {
    fn kind(&self) -> ErrorKind {
        match self {
            RulerError::Invalid(_) => ErrorKind::Invalid,
            RulerError::NotFound(_) => ErrorKind::NotFound,
            RulerError::Storage(_) => ErrorKind::Unavailable,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub tenant: String,
    /// `namespace;group`, as Prometheus' `rule_group`.
    pub rule_group: String,
}

/// The ruler's metrics.
#[derive(Debug, Default)]
pub struct RulerMetrics {
    /// Evaluations of each group by this ruler.
    pub evaluations: Family<GroupLabels, Counter>,
    /// Evaluations in which a rule failed.
    pub evaluation_failures: Family<GroupLabels, Counter>,
    /// Duration of the last evaluation of each group, in seconds.
    pub last_duration: Family<GroupLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Groups this ruler evaluates.
    pub owned_groups: Gauge,
}

impl RulerMetrics {
    fn evaluated(&self, key: &GroupKey, failed: bool, secs: f64) {
        let l = GroupLabels { tenant: key.tenant.clone(), rule_group: key.rule_group() };
        self.evaluations.get_or_create(&l).inc();
        if failed {
            self.evaluation_failures.get_or_create(&l).inc();
        }
        self.last_duration.get_or_create(&l).set(secs);
    }
}

/// What every group of the ruler uses.
pub(crate) struct Shared {
    pub(crate) cfg: RulerConfig,
    pub(crate) querier: Querier,
    pub(crate) store: Arc<RuleStore>,
    pub(crate) notifier: Option<Arc<Notifier>>,
    pub(crate) queue: Option<Arc<RemoteWriteQueue>>,
    pub(crate) metrics: Arc<RulerMetrics>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("store", &self.store).finish_non_exhaustive()
    }
}

/// A group being evaluated.
#[derive(Debug)]
struct Running {
    group: Arc<Group>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// This ruler in the ruler ring.
#[derive(Debug)]
pub struct RulerRing {
    pub lifecycler: Arc<Lifecycler>,
    pub client: Arc<RingClient>,
    /// `ring.heartbeat_timeout`: a ruler silent for longer owns nothing.
    heartbeat_timeout: Duration,
}

/// The ruler of one process.
#[derive(Debug)]
pub struct Ruler {
    shared: Arc<Shared>,
    ring: RulerRing,
    running: Mutex<BTreeMap<GroupKey, Running>>,
    /// Wakes the sync loop (a write through the API).
    changed: Notify,
}

impl Ruler {
    pub fn store(&self) -> &Arc<RuleStore> {
        &self.shared.store
    }

    pub fn config(&self) -> &RulerConfig {
        &self.shared.cfg
    }

    pub fn ring(&self) -> &RulerRing {
        &self.ring
    }

    /// Asks for a sync soon (after a write through the API).
    pub fn poke(&self) {
        self.changed.notify_one();
    }

    /// The groups this ruler evaluates, sorted.
    pub fn running_groups(&self) -> Vec<Arc<Group>> {
        self.running.lock().values().map(|r| r.group.clone()).collect()
    }

    /// The HTTP addresses of the other healthy ACTIVE rulers.
    pub fn peers(&self) -> Vec<String> {
        let view = self.ring.client.view();
        let me = &self.ring.lifecycler.config().id;
        let now = self.ring.client.health_now_ms();
        view.desc
            .instances
            .iter()
            .filter(|(id, i)| {
                *id != me && i.state() == InstanceState::Active && i.is_healthy(now, self.ring.heartbeat_timeout)
            })
            .map(|(_, i)| i.addr.clone())
            .collect()
    }

    /// Starts the groups this ruler owns now and stops those it no longer owns.
    pub async fn sync(&self) {
        let all = match self.shared.store.load_all().await {
            Ok(a) => a,
            Err(err) => {
                tracing::warn!(%err, "cannot read the rules store; keeping the groups as they are");
                return;
            }
        };
        let owners = OwnerTable::new(
            &self.ring.client.view().desc,
            self.ring.client.health_now_ms(),
            self.ring.heartbeat_timeout,
        );
        let me = self.ring.lifecycler.config().id.clone();
        let mut wanted: BTreeMap<GroupKey, RuleGroup> = BTreeMap::new();
        for (tenant, namespaces) in all {
            for (namespace, file) in namespaces {
                for g in file.groups {
                    let key = GroupKey { tenant: tenant.clone(), namespace: namespace.clone(), name: g.name.clone() };
                    if owners.owner(key.token()) == Some(me.as_str()) {
                        wanted.insert(key, g);
                    }
                }
            }
        }
        let mut stopped = Vec::new();
        {
            let mut running = self.running.lock();
            let gone: Vec<GroupKey> =
                running.iter().filter(|(k, r)| wanted.get(*k) != Some(&r.group.def)).map(|(k, _)| k.clone()).collect();
            for k in gone {
                if let Some(r) = running.remove(&k) {
                    r.stop.cancel();
                    stopped.push(r.task);
                }
            }
        }
        // A group that moved here, or changed, starts after the old one saved its state.
        for t in stopped {
            let _ = t.await;
        }
        let mut running = self.running.lock();
        for (key, def) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            tracing::info!(tenant = %key.tenant, group = %key.rule_group(), "evaluating rule group");
            let group = Arc::new(Group::new(key.clone(), def, self.shared.cfg.evaluation_interval.get()));
            let stop = CancellationToken::new();
            let task = tokio::spawn(group.clone().run(self.shared.clone(), stop.clone()));
            running.insert(key, Running { group, stop, task });
        }
        self.shared.metrics.owned_groups.set(running.len() as i64);
    }

    /// Syncs every `poll_interval`, on ring changes and on API writes, until `shutdown`; then
    /// stops every group (saving its state) and leaves the ring.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ring_changes = self.ring.client.subscribe();
        let poll = self.shared.cfg.poll_interval.get();
        loop {
            self.sync().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(poll) => {}
                _ = self.changed.notified() => {}
                r = ring_changes.changed() => if r.is_err() { break },
            }
        }
        let tasks: Vec<_> = {
            let mut running = self.running.lock();
            std::mem::take(&mut *running)
                .into_values()
                .map(|r| {
                    r.stop.cancel();
                    r.task
                })
                .collect()
        };
        for t in tasks {
            let _ = t.await;
        }
        if let Err(err) = self.ring.lifecycler.leave(Duration::from_secs(10)).await {
            tracing::warn!(%err, "ruler could not leave its ring");
        }
    }

    fn register_metrics(&self, metrics: &Metrics) {
        let m = &self.shared.metrics;
        metrics.register(
            "ruler_group_evaluations",
            "Evaluations of each rule group by this ruler",
            m.evaluations.clone(),
        );
        metrics.register(
            "ruler_group_evaluation_failures",
            "Evaluations of a rule group in which a rule failed",
            m.evaluation_failures.clone(),
        );
        metrics.register(
            "ruler_group_last_evaluation_duration_seconds",
            "Duration of the last evaluation of each rule group",
            m.last_duration.clone(),
        );
        metrics.register("ruler_owned_groups", "Rule groups this ruler evaluates", m.owned_groups.clone());
        if let Some(n) = &self.shared.notifier {
            let c = SampleKind::Counter;
            metrics.register_fields::<Notifier>(
                n,
                &[
                    ("ruler_notifications_sent", "Alerts sent to Alertmanager", c, |n| &n.stats.sent),
                    ("ruler_notification_errors", "Failed requests to Alertmanager", c, |n| &n.stats.errors),
                    ("ruler_notifications_dropped", "Alerts dropped from a full notification queue", c, |n| {
                        &n.stats.dropped
                    }),
                ],
            );
        }
        if let Some(q) = &self.shared.queue {
            let c = SampleKind::Counter;
            metrics.register_fields::<RemoteWriteQueue>(
                q,
                &[
                    ("ruler_remote_write_samples_queued", "Recorded samples queued", c, |q| &q.stats.samples_queued),
                    ("ruler_remote_write_samples_sent", "Recorded samples the endpoint took", c, |q| {
                        &q.stats.samples_sent
                    }),
                    (
                        "ruler_remote_write_samples_dropped",
                        "Recorded samples dropped (queue full, or refused by the endpoint)",
                        c,
                        |q| &q.stats.samples_dropped,
                    ),
                    ("ruler_remote_write_failures", "Remote-write requests that failed and were retried", c, |q| {
                        &q.stats.send_failures
                    }),
                    ("ruler_remote_write_queue_bytes", "Bytes in the remote-write queue", SampleKind::Gauge, |q| {
                        &q.stats.bytes_queued
                    }),
                ],
            );
        }
    }
}

/// Which ruler owns a token: the first healthy ACTIVE ruler clockwise.
struct OwnerTable {
    tokens: Vec<(u32, String)>,
}

impl OwnerTable {
    fn new(desc: &RingDesc, now_ms: i64, timeout: Duration) -> Self {
        let mut tokens: Vec<(u32, String)> = desc
            .instances
            .iter()
            .filter(|(_, i)| i.state() == InstanceState::Active && i.is_healthy(now_ms, timeout))
            .flat_map(|(id, i)| i.tokens.iter().map(move |t| (*t, id.clone())))
            .collect();
        tokens.sort();
        Self { tokens }
    }

    fn owner(&self, token: u32) -> Option<&str> {
        if self.tokens.is_empty() {
            return None;
        }
        let i = self.tokens.partition_point(|(t, _)| *t < token) % self.tokens.len();
        Some(self.tokens[i].1.as_str())
    }
}

/// The address other rulers reach this one's HTTP API at: the host of `instance.addr` (a pod
/// IP on Kubernetes) with the HTTP port, else the HTTP listen address (an unspecified IP
/// replaced by the host name).
fn advertised_http(cfg: &crate::config::Config, http: SocketAddr) -> String {
    if let Some((host, _)) = cfg.instance.addr.rsplit_once(':') {
        return format!("{host}:{}", http.port());
    }
    if http.ip().is_unspecified() {
        format!("{}:{}", crate::ring::config::hostname(), http.port())
    } else {
        http.to_string()
    }
}

/// Why the ruler could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("ruler rules store: {0}")]
    Storage(#[from] StorageError),
    #[error("ruler remote-write queue {dir}: {source}")]
    Wal { dir: String, source: std::io::Error },
    #[error("ruler ring: {0}")]
    Ring(#[from] crate::ring::RingError),
}

/// Builds the ruler of a process, joins the ruler ring and starts evaluating.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    cfg: &crate::config::Config,
    querier: Querier,
    object_store: Arc<dyn crate::storage::ObjectStore>,
    kv: crate::ring::kv::TypedKv<RingDesc>,
    http_addr: SocketAddr,
    metrics: &Metrics,
    background: CancellationToken,
    shutdown: CancellationToken,
) -> Result<(Arc<Ruler>, tokio::task::JoinHandle<()>), StartError> {
    let rc = &cfg.ruler;
    let store = match rc.storage.kind {
        config::RuleStorageType::Local => {
            let dir = rc.storage.local.directory.clone().unwrap_or_else(|| cfg.data.dir.join("rules"));
            let local: Arc<dyn crate::storage::ObjectStore> = Arc::new(crate::storage::FilesystemStore::new(dir)?);
            RuleStore::new(local, store::Layout::Local, object_store.clone())
        }
        config::RuleStorageType::Object => RuleStore::new(object_store.clone(), store::Layout::Object, object_store),
    };
    let notifier = {
        let urls = rc.alertmanager_urls();
        (!urls.is_empty()).then(|| Notifier::new(urls, rc.notification_timeout.get()))
    };
    let queue = if rc.remote_write.url.is_empty() {
        None
    } else {
        let dir = rc.wal.dir.clone().unwrap_or_else(|| cfg.data.dir.join("ruler-wal"));
        let q = RemoteWriteQueue::open(&dir, rc.wal.max_size.bytes())
            .map_err(|source| StartError::Wal { dir: dir.display().to_string(), source })?;
        Some(q)
    };
    let lc = LifecyclerConfig {
        ring_key: cfg.ring.key(RULER_RING_KEY),
        id: cfg.instance.id.clone(),
        addr: advertised_http(cfg, http_addr),
        zone: cfg.instance.zone.clone(),
        num_tokens: rc.ring.num_tokens,
        tokens_file: None,
        heartbeat_period: cfg.ring.heartbeat_period.get(),
    };
    let lifecycler = Lifecycler::new(lc, kv.clone(), Arc::new(SystemClock));
    lifecycler.register().await?;
    lifecycler.set_state(InstanceState::Active).await?;
    tokio::spawn(lifecycler.clone().run_heartbeat(background.clone()));
    let repl = crate::ring::config::replication_config(cfg);
    let client = RingClient::new(kv, cfg.ring.key(RULER_RING_KEY), repl, Arc::new(SystemClock));
    if let Err(err) = client.refresh().await {
        tracing::warn!(%err, "cannot read the ruler ring yet");
    }
    client.start(background.clone());
    let shared = Arc::new(Shared {
        cfg: rc.clone(),
        querier,
        store: Arc::new(store),
        notifier: notifier.clone(),
        queue: queue.clone(),
        metrics: Arc::new(RulerMetrics::default()),
    });
    let ring = RulerRing { lifecycler, client, heartbeat_timeout: cfg.ring.heartbeat_timeout.get() };
    let ruler = Arc::new(Ruler { shared, ring, running: Mutex::new(BTreeMap::new()), changed: Notify::new() });
    ruler.register_metrics(metrics);
    if let Some(n) = notifier {
        tokio::spawn(n.run(background.clone()));
    }
    if let Some(q) = queue {
        tokio::spawn(q.run_sender(rc.remote_write.clone(), background.clone()));
    }
    let task = tokio::spawn(ruler.clone().run(shutdown));
    Ok((ruler, task))
}
