//! What the ring says: the instances, their tokens, states and heartbeats.
//!
//! # Serialization
//!
//! A ring is stored under one key as a protobuf message ([`RingDesc`], prost derive, no `.proto`
//! build step). Protobuf rather than JSON because the value is rewritten on every heartbeat of
//! every instance and sent to every watcher: tokens are `fixed32` in a packed field, 4 bytes
//! each, where JSON spends about 11; unknown fields are skipped, so a newer Norn can add fields
//! that an older one keeps when it rewrites the ring during a rolling upgrade; and `prost` is
//! already a dependency. The JSON form of the ring is what `GET /ring` serves to people.
//!
//! # Concurrent updates
//!
//! Every change is a compare-and-swap of the whole ring ([`crate::ring::kv::TypedKv::cas`]): the
//! update function runs on the latest value and is retried when another writer got in between,
//! so no merge of diverged copies is ever needed. Each writer only touches what it owns: a
//! lifecycler its own entry, the `/ring` page the entry it forgets (only while unhealthy), the
//! operator the entries it pre-assigns tokens to (`PENDING`, before the pod starts). A lifecycler
//! that finds its entry gone (forgotten while it was cut off) adds it back on its next heartbeat.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The lifecycle state of an instance; see `docs/ring.md` for the transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[repr(i32)]
pub enum InstanceState {
    /// Registered without taking part yet: no writes, no reads. Also the state of entries that
    /// the operator creates to reserve tokens for a pod that has not started.
    Pending = 0,
    /// Tokens claimed, still starting (e.g. replaying its WAL): no writes, no reads.
    Joining = 1,
    /// Serving: takes writes and reads.
    Active = 2,
    /// Shutting down: no new writes, still serves reads of what it holds.
    Leaving = 3,
}

impl InstanceState {
    /// The upper-case name used on `/ring` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            InstanceState::Pending => "PENDING",
            InstanceState::Joining => "JOINING",
            InstanceState::Active => "ACTIVE",
            InstanceState::Leaving => "LEAVING",
        }
    }
}

/// One instance as the ring knows it. The instance ID is the key in [`RingDesc::instances`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstanceDesc {
    /// Where its gRPC server listens (`host:port`).
    #[prost(string, tag = "1")]
    pub addr: String,
    /// Its availability zone; empty when zones are not used.
    #[prost(string, tag = "2")]
    pub zone: String,
    /// Its [`InstanceState`], read with the generated `state()` (an unknown value, from a newer
    /// version, reads as `PENDING`, which keeps the instance out of reads and writes) and written
    /// with `set_state()`.
    #[prost(enumeration = "InstanceState", tag = "3")]
    pub state: i32,
    /// Its tokens, ascending, no duplicates.
    #[prost(fixed32, repeated, tag = "4")]
    pub tokens: Vec<u32>,
    /// Last heartbeat, milliseconds since the Unix epoch.
    #[prost(int64, tag = "5")]
    pub heartbeat_ms: i64,
    /// When it (last) registered, milliseconds since the Unix epoch.
    #[prost(int64, tag = "6")]
    pub registered_ms: i64,
}

impl InstanceDesc {
    /// Whether its last heartbeat is recent: no older than `timeout` at `now_ms`. A zero timeout
    /// disables the check. A heartbeat from the future (clock skew) counts as recent.
    pub fn is_healthy(&self, now_ms: i64, timeout: Duration) -> bool {
        timeout.is_zero() || now_ms.saturating_sub(self.heartbeat_ms) <= duration_ms(timeout)
    }

    /// The state as shown to people: `UNHEALTHY` when the heartbeat is stale, else the state.
    pub fn display_state(&self, now_ms: i64, timeout: Duration) -> &'static str {
        if self.is_healthy(now_ms, timeout) { self.state().name() } else { "UNHEALTHY" }
    }
}

/// The whole ring: instance ID → instance.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RingDesc {
    /// Every registered instance, by ID (ordered, so the encoding is deterministic).
    #[prost(btree_map = "string, message", tag = "1")]
    pub instances: BTreeMap<String, InstanceDesc>,
}

impl RingDesc {
    /// Instances whose heartbeat is recent at `now_ms`.
    pub fn healthy_count(&self, now_ms: i64, timeout: Duration) -> usize {
        self.instances.values().filter(|i| i.is_healthy(now_ms, timeout)).count()
    }

    /// Healthy instances in `state`.
    pub fn count_in_state(&self, state: InstanceState, now_ms: i64, timeout: Duration) -> usize {
        self.instances.values().filter(|i| i.state() == state && i.is_healthy(now_ms, timeout)).count()
    }

    /// Every token of every instance but `except`, for collision checks.
    pub fn taken_tokens(&self, except: &str) -> std::collections::HashSet<u32> {
        self.instances
            .iter()
            .filter(|(id, _)| id.as_str() != except)
            .flat_map(|(_, i)| i.tokens.iter().copied())
            .collect()
    }

    /// Pairs of instances that claim the same token (should be empty; tokens are chosen to avoid
    /// collisions, but two zones whose spread-minimizing offsets coincide share tokens).
    pub fn token_conflicts(&self) -> Vec<(u32, String, String)> {
        let mut owners: BTreeMap<u32, &str> = BTreeMap::new();
        let mut out = Vec::new();
        for (id, inst) in &self.instances {
            for &t in &inst.tokens {
                if let Some(prev) = owners.insert(t, id) {
                    out.push((t, prev.to_string(), id.clone()));
                }
            }
        }
        out
    }
}

/// Milliseconds since the Unix epoch of `t` (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Where time comes from, so tests can move it. Production uses [`SystemClock`].
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        unix_ms(SystemTime::now())
    }
}

/// A clock that tests set by hand.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock showing `ms`.
    pub fn new(ms: i64) -> Self {
        Self(std::sync::atomic::AtomicI64::new(ms))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(duration_ms(d), std::sync::atomic::Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The JSON view of one instance, as `GET /ring` serves it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InstanceView {
    /// Instance ID.
    pub id: String,
    /// gRPC address.
    pub address: String,
    /// Zone (empty: none).
    pub zone: String,
    /// `PENDING`, `JOINING`, `ACTIVE`, `LEAVING`, or `UNHEALTHY` when the heartbeat is stale.
    pub state: String,
    /// The stored state, whatever the heartbeat says.
    pub registered_state: InstanceState,
    /// Whether the heartbeat is recent.
    pub healthy: bool,
    /// Last heartbeat, RFC 3339.
    pub heartbeat: String,
    /// Age of the last heartbeat in milliseconds (negative: from the future).
    pub heartbeat_age_ms: i64,
    /// Registration time, RFC 3339.
    pub registered: String,
    /// Number of tokens.
    pub num_tokens: usize,
    /// Share of the token space whose keys this instance receives first, in percent.
    pub ownership_percent: f64,
    /// The tokens themselves (only with `?tokens=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<u32>>,
}

/// Each instance's share of the token space: the ranges `(previous token, token]` its tokens end.
pub fn ownership(ring: &RingDesc) -> BTreeMap<String, f64> {
    let mut all: Vec<(u32, &str)> =
        ring.instances.iter().flat_map(|(id, i)| i.tokens.iter().map(move |&t| (t, id.as_str()))).collect();
    all.sort_unstable();
    let mut out: BTreeMap<String, f64> = ring.instances.keys().map(|k| (k.clone(), 0.0)).collect();
    let Some(&(last, _)) = all.last() else { return out };
    let mut prev = last;
    for &(t, id) in &all {
        // Modular distance: the first token also owns the wrap-around range after the last one.
        let span = if all.len() == 1 { 1u64 << 32 } else { u64::from(t.wrapping_sub(prev)) };
        if let Some(v) = out.get_mut(id) {
            *v += span as f64 / (1u64 << 32) as f64 * 100.0;
        }
        prev = t;
    }
    out
}

/// The JSON view of a ring at `now_ms`, sorted by zone then ID.
pub fn view(ring: &RingDesc, now_ms: i64, timeout: Duration, with_tokens: bool) -> Vec<InstanceView> {
    let owned = ownership(ring);
    let mut out: Vec<InstanceView> = ring
        .instances
        .iter()
        .map(|(id, i)| InstanceView {
            id: id.clone(),
            address: i.addr.clone(),
            zone: i.zone.clone(),
            state: i.display_state(now_ms, timeout).to_string(),
            registered_state: i.state(),
            healthy: i.is_healthy(now_ms, timeout),
            heartbeat: rfc3339_ms(i.heartbeat_ms),
            heartbeat_age_ms: now_ms.saturating_sub(i.heartbeat_ms),
            registered: rfc3339_ms(i.registered_ms),
            num_tokens: i.tokens.len(),
            ownership_percent: owned.get(id).copied().unwrap_or(0.0),
            tokens: with_tokens.then(|| i.tokens.clone()),
        })
        .collect();
    out.sort_by(|a, b| (&a.zone, &a.id).cmp(&(&b.zone, &b.id)));
    out
}

/// Milliseconds since the epoch as RFC 3339 (UTC, millisecond precision).
fn rfc3339_ms(ms: i64) -> String {
    crate::timeutil::format_rfc3339(ms.saturating_mul(1_000_000))
}
