//! [`RingClient`]: a process's view of one ring, kept current by a watch.
//!
//! The client holds the latest ring and its lookup tables behind an [`ArcSwap`]: readers (every
//! push, every query) load it without locks. A background task watches the ring key; each new
//! value replaces the view. When the store becomes unreachable the view stays as it was — a
//! distributor keeps routing writes with the last ring it saw — and the task reconnects with
//! backoff; the first value of the new watch is the ring as it is then.
//!
//! Heartbeats in a view the store cannot refresh grow old without saying anything about the
//! instances: while the store is unreachable, health is judged at the moment it was lost
//! ([`RingClient::health_now_ms`]), so an etcd outage longer than `ring.heartbeat_timeout` does
//! not turn every ingester UNHEALTHY and fail every push. After the store returns, health is
//! judged as if the outage had not happened for one more `heartbeat_timeout` (time for every
//! live instance to heartbeat again), then at the real time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::RingError;
use super::kv::{KvError, TypedKv};
use super::model::{Clock, RingDesc};
use super::replication::{Operation, ReadSet, ReplicaSet, ReplicationConfig, RingSnapshot};

/// First pause before watching again after the store failed.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause before watching again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One version of the ring as this process sees it.
#[derive(Debug)]
pub struct RingView {
    /// The ring as stored.
    pub desc: RingDesc,
    /// Its lookup tables.
    pub snapshot: RingSnapshot,
    /// The store version it was read at (0: nothing read yet).
    pub version: u64,
}

/// A watched ring (see the module docs).
#[derive(Debug)]
pub struct RingClient {
    /// The store.
    kv: TypedKv<RingDesc>,
    /// The ring's key.
    key: String,
    /// How replicas are chosen.
    cfg: ReplicationConfig,
    /// Time for health checks.
    clock: Arc<dyn Clock>,
    /// The latest view.
    current: ArcSwap<RingView>,
    /// Bumped on every new view, for waiters.
    changed: watch::Sender<u64>,
    /// Whether the watch is established right now.
    connected: AtomicBool,
    /// How many times the watch was lost.
    watch_failures: AtomicU64,
    /// When the store was lost (ms; 0: it is not, or it never was reached).
    lost_at_ms: AtomicI64,
    /// When the store came back (ms), and how long it had been away.
    reconnected_at_ms: AtomicI64,
    outage_ms: AtomicI64,
}

impl RingClient {
    /// A client for the ring at `key`; call [`RingClient::run`] (or [`RingClient::start`]) to
    /// follow it. Until the first value arrives the ring is empty.
    pub fn new(
        kv: TypedKv<RingDesc>,
        key: impl Into<String>,
        cfg: ReplicationConfig,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let empty = RingDesc::default();
        let view = RingView { snapshot: RingSnapshot::new(&empty, cfg), desc: empty, version: 0 };
        let (changed, _) = watch::channel(0);
        Arc::new(Self {
            kv,
            key: key.into(),
            cfg,
            clock,
            current: ArcSwap::from_pointee(view),
            changed,
            connected: AtomicBool::new(false),
            watch_failures: AtomicU64::new(0),
            lost_at_ms: AtomicI64::new(0),
            reconnected_at_ms: AtomicI64::new(0),
            outage_ms: AtomicI64::new(0),
        })
    }

    /// Starts [`RingClient::run`] on the runtime.
    pub fn start(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(Arc::clone(self).run(shutdown))
    }

    /// Follows the ring until `shutdown`: watch, apply every value, and on failure keep the view
    /// and watch again after a pause (100ms doubling to 5s, with jitter).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut pause = MIN_BACKOFF;
        loop {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.follow_once() => r,
            };
            self.set_connected(false);
            let n = self.watch_failures.fetch_add(1, Ordering::Relaxed) + 1;
            match outcome {
                // A watch that delivered something was healthy: start over with short pauses.
                Ok(true) => pause = MIN_BACKOFF,
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(key = %self.key, %err, failures = n, "ring watch failed; keeping the last ring view")
                }
            }
            let jittered = pause.mul_f64(rand::random_range(0.5..1.0));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(jittered) => {}
            }
            pause = (pause * 2).min(MAX_BACKOFF);
        }
    }

    /// One watch, until it fails. `Ok(true)` when it delivered at least one value.
    async fn follow_once(&self) -> Result<bool, KvError> {
        let mut stream = self.kv.watch_key(&self.key).await?;
        self.set_connected(true);
        let mut delivered = false;
        while let Some(item) = stream.next().await {
            match item {
                Ok(Some((desc, version))) => {
                    self.install(desc, version);
                    delivered = true;
                }
                Ok(None) => {
                    self.install(RingDesc::default(), 0);
                    delivered = true;
                }
                Err(KvError::Corrupt { key, reason }) => {
                    tracing::warn!(%key, %reason, "ring value does not decode; keeping the last ring view");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(delivered)
    }

    /// Replaces the view.
    fn install(&self, desc: RingDesc, version: u64) {
        let snapshot = RingSnapshot::new(&desc, self.cfg);
        self.current.store(Arc::new(RingView { desc, snapshot, version }));
        self.changed.send_modify(|n| *n += 1);
    }

    /// Reads the ring once and installs it (for callers that need a view before the watch has
    /// delivered, and for tests). The view is unchanged when the read fails.
    pub async fn refresh(&self) -> Result<(), RingError> {
        // The watch may have installed something newer meanwhile; never go back.
        match self.kv.get(&self.key).await? {
            Some((desc, version)) if version > self.view().version => self.install(desc, version),
            Some(_) => {}
            None => self.install(RingDesc::default(), 0),
        }
        Ok(())
    }

    /// The latest view.
    pub fn view(&self) -> Arc<RingView> {
        self.current.load_full()
    }

    /// The ring's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The replication settings.
    pub fn replication_config(&self) -> &ReplicationConfig {
        &self.cfg
    }

    /// Now, by the client's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The time heartbeats are judged at: now, except while the store is unreachable (the
    /// moment it was lost) and for one `heartbeat_timeout` after it returned (now minus the
    /// outage); see the module docs.
    pub fn health_now_ms(&self) -> i64 {
        let now = self.clock.now_ms();
        let lost = self.lost_at_ms.load(Ordering::Relaxed);
        if lost != 0 {
            return lost.min(now);
        }
        let back = self.reconnected_at_ms.load(Ordering::Relaxed);
        let grace = i64::try_from(self.cfg.heartbeat_timeout.as_millis()).unwrap_or(i64::MAX);
        if back != 0 && now.saturating_sub(back) < grace {
            return now - self.outage_ms.load(Ordering::Relaxed);
        }
        now
    }

    /// Records the watch being established or lost, and when the store went and came back.
    fn set_connected(&self, connected: bool) {
        let was = self.connected.swap(connected, Ordering::Relaxed);
        let now = self.clock.now_ms();
        if was && !connected {
            self.lost_at_ms.store(now, Ordering::Relaxed);
        } else if !was && connected {
            let lost = self.lost_at_ms.swap(0, Ordering::Relaxed);
            if lost != 0 {
                self.outage_ms.store(now.saturating_sub(lost).max(0), Ordering::Relaxed);
                self.reconnected_at_ms.store(now, Ordering::Relaxed);
            }
        }
    }

    /// Whether the watch is established (false while the store is unreachable).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// How many times the watch was lost or could not be established.
    pub fn watch_failures(&self) -> u64 {
        self.watch_failures.load(Ordering::Relaxed)
    }

    /// A receiver notified on every new view.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Waits until `pred` holds for the view, or `timeout` passes; returns the last view and
    /// whether `pred` held.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&RingView) -> bool) -> (Arc<RingView>, bool) {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let view = self.view();
            if pred(&view) {
                return (view, true);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    let view = self.view();
                    let ok = pred(&view);
                    return (view, ok);
                }
            }
        }
    }

    /// The replicas of `key` for `op`, on the latest view.
    pub fn replicas(&self, key: u32, op: Operation) -> Result<(Arc<RingView>, ReplicaSet), RingError> {
        let view = self.view();
        let set = view.snapshot.replicas(key, op, self.health_now_ms())?;
        Ok((view, set))
    }

    /// Every instance a read must ask, on the latest view.
    pub fn read_set(&self) -> Result<(Arc<RingView>, ReadSet), RingError> {
        let view = self.view();
        let set = view.snapshot.read_set(self.health_now_ms())?;
        Ok((view, set))
    }

    /// Healthy ACTIVE instances now (the number of distributors for the global rate limit).
    pub fn healthy_active(&self) -> usize {
        self.view().snapshot.healthy_in_state(super::InstanceState::Active, self.health_now_ms())
    }

    /// Removes instance `id` from the ring, only if its heartbeat is stale: a healthy instance
    /// would add itself back on its next heartbeat anyway, and removing it moves its ranges.
    pub async fn forget(&self, id: &str) -> Result<(), RingError> {
        let now = self.clock.now_ms();
        let timeout = self.cfg.heartbeat_timeout;
        let id_owned = id.to_string();
        self.kv
            .cas(&self.key, |ring: Option<RingDesc>| {
                let mut ring = ring.unwrap_or_default();
                let Some(inst) = ring.instances.get(&id_owned) else {
                    return Err(RingError::NotFound(id_owned.clone()));
                };
                if inst.is_healthy(now, timeout) {
                    return Err(RingError::Invalid(format!(
                        "instance {id_owned} is healthy; only unhealthy instances can be forgotten"
                    )));
                }
                ring.instances.remove(&id_owned);
                Ok(Some(ring))
            })
            .await?;
        tracing::info!(key = %self.key, id, "forgot ring instance");
        // Show the change at once, even before the watch reports it.
        if let Err(err) = self.refresh().await {
            tracing::debug!(%err, "re-reading the ring after forget failed");
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
