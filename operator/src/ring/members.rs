//! The operator's writes to a running cluster's ingester ring: reserving the tokens of ingester
//! ordinals before their pods start, and forgetting entries whose pod is gone.
//!
//! Everything here goes through the data plane's own ring code (`norn::ring`): the ring value is
//! a [`RingDesc`] under `<prefix>ring`, changed only by compare-and-swap through
//! [`TypedKv::cas`]; a reservation is the entry [`reserved_entry`] builds (state `PENDING`,
//! heartbeat 0) holding [`spread_minimizing_tokens`] of the pod's ordinal and zone — the very
//! function an ingester falls back to when it registers without a tokens file, so there is one
//! token assignment, not two. Health is [`InstanceDesc::is_healthy`] with Norn's default
//! heartbeat timeout. As `docs/ring.md` says, each writer only touches what it owns: the operator
//! adds `PENDING` entries that do not exist yet and removes entries that are stale and whose pod
//! is gone; it never rewrites an entry an ingester wrote.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use norn::config::units::Dur;
use norn::ring::config::INGESTER_RING_KEY;
use norn::ring::kv::{EtcdKv, KvStore, TypedKv};
use norn::ring::lifecycler::reserved_entry;
use norn::ring::model::{Clock, InstanceDesc, RingDesc, SystemClock};
use norn::ring::tokens::{DEFAULT_NUM_TOKENS, spread_minimizing_tokens};
use norn::ring::{EtcdConfig, RingConfig, RingError as NornRingError, ring_kv};
use tokio::sync::Mutex;

use crate::rollout::{RingMember, RingState, RingView, RolloutError};

/// One ingester pod slot of a StatefulSet: the ring ID the pod will register as (its pod name),
/// its ordinal and its zone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    /// Ring instance ID, the pod name `<statefulset>-<ordinal>`.
    pub id: String,
    /// StatefulSet ordinal.
    pub ordinal: u32,
    /// Zone, empty without zone awareness.
    pub zone: String,
}

impl Slot {
    /// Ordinal `ordinal` of StatefulSet `set` in `zone`.
    pub fn new(set: &str, ordinal: u32, zone: Option<&str>) -> Self {
        Self { id: format!("{set}-{ordinal}"), ordinal, zone: zone.unwrap_or_default().to_string() }
    }
}

/// The ingester ring of one cluster.
#[derive(Clone)]
pub struct ClusterRing {
    /// The ring value, typed, with CAS retries.
    kv: TypedKv<RingDesc>,
    /// `<prefix>ring`.
    key: String,
    /// Tokens per ingester (Norn's `ring.num_tokens`; the operator does not change it).
    num_tokens: usize,
    /// Heartbeat age after which an instance is UNHEALTHY (Norn's `ring.heartbeat_timeout`).
    heartbeat_timeout: Duration,
    /// Time of health checks.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ClusterRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRing").field("key", &self.key).finish_non_exhaustive()
    }
}

impl ClusterRing {
    /// The ring under `prefix` in `store`, with Norn's default token count and heartbeat
    /// timeout (the operator renders neither, so the pods use the defaults too).
    pub fn new(store: Arc<dyn KvStore>, prefix: &str) -> Self {
        let defaults = RingConfig::default();
        Self {
            kv: ring_kv(store, defaults.etcd.max_retries),
            key: format!("{prefix}{INGESTER_RING_KEY}"),
            num_tokens: DEFAULT_NUM_TOKENS,
            heartbeat_timeout: defaults.heartbeat_timeout.0,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same ring read with another clock and heartbeat timeout (tests).
    pub fn with_health(mut self, clock: Arc<dyn Clock>, heartbeat_timeout: Duration) -> Self {
        self.clock = clock;
        self.heartbeat_timeout = heartbeat_timeout;
        self
    }

    /// The same ring with `n` tokens per ingester (tests; must match the pods' `ring.num_tokens`).
    pub fn with_num_tokens(mut self, n: usize) -> Self {
        self.num_tokens = n;
        self
    }

    /// The KV key of the ring.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The ring as stored (empty when the key does not exist yet).
    pub async fn read(&self) -> Result<RingDesc, RolloutError> {
        Ok(self.kv.get(&self.key).await.map_err(ring_err)?.map(|(r, _)| r).unwrap_or_default())
    }

    /// Writes a `PENDING` entry with the deterministic tokens of each slot that has no entry
    /// yet, in one compare-and-swap. Entries that exist (an ingester registered, or an earlier
    /// reservation) are left as they are. Returns the IDs it reserved.
    pub async fn reserve(&self, slots: &[Slot]) -> Result<Vec<String>, RolloutError> {
        let mut added = Vec::new();
        self.kv
            .cas(&self.key, |ring: Option<RingDesc>| {
                added.clear();
                let mut ring = ring.unwrap_or_default();
                for slot in slots {
                    if ring.instances.contains_key(&slot.id) {
                        continue;
                    }
                    let tokens = spread_minimizing_tokens(slot.ordinal, &slot.zone, self.num_tokens);
                    ring.instances.insert(slot.id.clone(), reserved_entry("", &slot.zone, tokens));
                    added.push(slot.id.clone());
                }
                Ok::<_, NornRingError>(if added.is_empty() { None } else { Some(ring) })
            })
            .await
            .map_err(ring_err)?;
        if !added.is_empty() {
            tracing::info!(key = %self.key, ids = ?added, "reserved ring tokens for ingesters that have not started");
        }
        Ok(added)
    }

    /// Removes every entry whose heartbeat is stale, whose ID is not in `live` (pods that
    /// exist) and not in `wanted` (ordinals the spec asks for, whose reservations must stay), in
    /// one compare-and-swap. Returns the IDs it removed.
    pub async fn forget_dead(
        &self,
        live: &BTreeSet<String>,
        wanted: &BTreeSet<String>,
    ) -> Result<Vec<String>, RolloutError> {
        let now = self.clock.now_ms();
        let mut removed = Vec::new();
        self.kv
            .cas(&self.key, |ring: Option<RingDesc>| {
                removed.clear();
                let Some(mut ring) = ring else { return Ok::<_, NornRingError>(None) };
                ring.instances.retain(|id, inst: &mut InstanceDesc| {
                    let dead =
                        !inst.is_healthy(now, self.heartbeat_timeout) && !live.contains(id) && !wanted.contains(id);
                    if dead {
                        removed.push(id.clone());
                    }
                    !dead
                });
                Ok(if removed.is_empty() { None } else { Some(ring) })
            })
            .await
            .map_err(ring_err)?;
        if !removed.is_empty() {
            tracing::info!(key = %self.key, ids = ?removed, "forgot ring entries of ingesters that are gone");
        }
        Ok(removed)
    }
}

#[async_trait]
impl RingView for ClusterRing {
    async fn members(&self) -> Result<Vec<RingMember>, RolloutError> {
        let ring = self.read().await?;
        let now = self.clock.now_ms();
        Ok(ring
            .instances
            .iter()
            .map(|(id, i)| RingMember {
                id: id.clone(),
                zone: i.zone.clone(),
                state: if i.is_healthy(now, self.heartbeat_timeout) {
                    RingState::from(i.state())
                } else {
                    RingState::Unhealthy
                },
                heartbeat_ms: i.heartbeat_ms,
            })
            .collect())
    }

    async fn reserve(&self, slots: &[Slot]) -> Result<Vec<String>, RolloutError> {
        ClusterRing::reserve(self, slots).await
    }

    async fn forget_dead(
        &self,
        live: &BTreeSet<String>,
        wanted: &BTreeSet<String>,
    ) -> Result<Vec<String>, RolloutError> {
        ClusterRing::forget_dead(self, live, wanted).await
    }
}

fn ring_err(e: impl std::fmt::Display) -> RolloutError {
    RolloutError::Ring(e.to_string())
}

/// Opens the ring of a cluster.
#[async_trait]
pub trait RingConnector: Send + Sync {
    /// The ingester ring under `prefix` in the etcd at `endpoints`.
    async fn connect(&self, endpoints: &[String], prefix: &str) -> Result<Arc<dyn RingView>, RolloutError>;
}

/// Connects to etcd with Norn's own client, keeping one client per set of endpoints (the
/// clients connect lazily and reconnect by themselves).
#[derive(Default)]
pub struct EtcdRings {
    clients: Mutex<HashMap<Vec<String>, Arc<dyn KvStore>>>,
    /// Deadline of each etcd request.
    pub request_timeout: Option<Duration>,
    /// Client certificate and authorities for rings at `https://` endpoints; see
    /// [`EtcdRingCleanup::tls`](super::EtcdRingCleanup::tls).
    pub tls: norn::tls::ClientTlsConfig,
}

impl EtcdRings {
    /// Rings at `https://` endpoints are reached with `tls` (its `tls_enabled` is ignored).
    pub fn with_tls(tls: norn::tls::ClientTlsConfig) -> Self {
        Self { tls, ..Self::default() }
    }
}

impl std::fmt::Debug for EtcdRings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRings").finish_non_exhaustive()
    }
}

#[async_trait]
impl RingConnector for EtcdRings {
    async fn connect(&self, endpoints: &[String], prefix: &str) -> Result<Arc<dyn RingView>, RolloutError> {
        let mut clients = self.clients.lock().await;
        let store = match clients.get(endpoints) {
            Some(s) => Arc::clone(s),
            None => {
                let tls = super::tls_for(endpoints, &self.tls);
                let mut cfg = EtcdConfig { endpoints: endpoints.to_vec(), ..EtcdConfig::default() }.with_tls(&tls);
                if let Some(t) = self.request_timeout {
                    cfg.request_timeout = Dur(t);
                }
                let kv: Arc<dyn KvStore> = Arc::new(EtcdKv::connect(&cfg).await.map_err(ring_err)?);
                clients.insert(endpoints.to_vec(), Arc::clone(&kv));
                kv
            }
        };
        Ok(Arc::new(ClusterRing::new(store, prefix)))
    }
}
