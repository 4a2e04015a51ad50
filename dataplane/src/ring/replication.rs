//! Which instances hold a key: replication sets over a precomputed token table.
//!
//! A [`RingSnapshot`] is built once per ring version (a sorted token table plus a compact copy of
//! every instance) and answers lookups without locks or allocation beyond the result.
//!
//! # Write and read sets for a key
//!
//! The walk starts at the first token `>= key` and goes clockwise, wrapping around, visiting each
//! instance once (and, with zone awareness, each zone once):
//!
//! - An instance whose state does not serve the operation (writes: only `ACTIVE`; reads: `ACTIVE`
//!   and `LEAVING`) is passed over and the walk goes on: the set is *extended* to the next
//!   instance, which is the one that takes over those ranges. Such an instance does not use up
//!   its zone either, so with zone awareness the replica stays in that zone.
//! - An instance in the right state whose heartbeat is stale (UNHEALTHY) keeps its place in the
//!   set — it counts towards the replication factor and uses up its zone — but is not returned as
//!   a target. A missed heartbeat is often a slow or cut-off KV store rather than a dead
//!   instance, and moving its ranges to a neighbour for that would scatter streams; the quorum
//!   absorbs one missing replica instead. (This is how Loki and Cortex behave: a non-serving
//!   *state* extends the set, a stale *heartbeat* does not.)
//! - The walk stops once the effective replication factor `n = min(RF, instances with tokens,
//!   zones when zone-aware)` instances have been counted. A ring with one ingester thus
//!   replicates once, whatever `replication_factor` says.
//!
//! The write succeeds when `quorum = ⌊n/2⌋ + 1` targets acknowledge it; `max_errors` is how many
//! targets may fail. Fewer healthy targets than the quorum is an error before anything is sent.
//!
//! # Read fan-out
//!
//! Queriers ask every instance that serves reads ([`RingSnapshot::read_set`]). An acknowledged
//! write is on at least a quorum of its `n` replicas, so a read still sees it with up to
//! `⌊n/2⌋` instances missing — or, with zone awareness, `⌊n/2⌋` whole zones. Instances already
//! unhealthy use up that budget first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::RingError;
use super::model::{InstanceState, RingDesc};

/// What a replication set is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Pushes: `ACTIVE` instances only.
    Write,
    /// Queries: `ACTIVE` and `LEAVING` instances.
    Read,
}

impl Operation {
    /// Whether an instance in `state` serves this operation.
    pub fn serves(self, state: InstanceState) -> bool {
        match self {
            Operation::Write => state == InstanceState::Active,
            Operation::Read => matches!(state, InstanceState::Active | InstanceState::Leaving),
        }
    }
}

/// How replicas are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// Replicas per key before clipping to the ring's size (`replication_factor`).
    pub replication_factor: usize,
    /// Put the replicas of a key in distinct zones (`ring.zone_awareness_enabled`).
    pub zone_awareness: bool,
    /// A heartbeat older than this makes an instance UNHEALTHY (`ring.heartbeat_timeout`; zero
    /// disables the check).
    pub heartbeat_timeout: Duration,
}

/// One instance of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Instance ID.
    pub id: Arc<str>,
    /// gRPC address.
    pub addr: Arc<str>,
    /// Zone name (empty: none).
    pub zone: Arc<str>,
    /// Index of the zone in the snapshot's zone list.
    pub zone_index: usize,
    /// Registered state.
    pub state: InstanceState,
    /// Last heartbeat, ms since the epoch.
    pub heartbeat_ms: i64,
    /// How many tokens it has.
    pub num_tokens: usize,
}

/// The replicas of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSet {
    /// Indexes (into [`RingSnapshot::members`]) of the healthy replicas to send to, in ring order.
    pub instances: Vec<usize>,
    /// Acknowledgements needed: `⌊n/2⌋ + 1`.
    pub quorum: usize,
    /// How many of `instances` may fail with the operation still succeeding.
    pub max_errors: usize,
}

/// Every instance a read must ask, and how many may be missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadSet {
    /// Indexes (into [`RingSnapshot::members`]) of the healthy instances that serve reads.
    pub instances: Vec<usize>,
    /// Without zone awareness: how many of `instances` may fail.
    pub max_errors: usize,
    /// With zone awareness: how many zones may have failures (any number within them).
    pub max_unavailable_zones: usize,
    /// Whether `max_unavailable_zones` (true) or `max_errors` (false) applies.
    pub zone_aware: bool,
}

impl ReadSet {
    /// Whether a read is complete when the instances `failed` (indexes) did not answer.
    pub fn tolerates(&self, snapshot: &RingSnapshot, failed: &[usize]) -> bool {
        if !self.zone_aware {
            return failed.len() <= self.max_errors;
        }
        let mut zones: Vec<usize> =
            failed.iter().filter_map(|&i| snapshot.members.get(i).map(|m| m.zone_index)).collect();
        zones.sort_unstable();
        zones.dedup();
        zones.len() <= self.max_unavailable_zones
    }
}

/// A ring prepared for lookups: instances, zones and the sorted token table.
#[derive(Clone, Debug)]
pub struct RingSnapshot {
    /// Every instance, ordered by ID.
    members: Vec<Member>,
    /// Zone names, ordered.
    zones: Vec<Arc<str>>,
    /// Every token, ascending (ties by instance ID).
    tokens: Vec<u32>,
    /// `owners[i]` is the member that holds `tokens[i]`.
    owners: Vec<u32>,
    /// Members with at least one token.
    with_tokens: usize,
    /// Zones with at least one member that has tokens.
    zones_with_tokens: usize,
    /// Replication settings.
    cfg: ReplicationConfig,
    /// ID → member index.
    by_id: HashMap<Arc<str>, usize>,
}

impl RingSnapshot {
    /// Builds the lookup tables of `ring`.
    pub fn new(ring: &RingDesc, cfg: ReplicationConfig) -> Self {
        let mut zone_names: Vec<&str> = ring.instances.values().map(|i| i.zone.as_str()).collect();
        zone_names.sort_unstable();
        zone_names.dedup();
        let zones: Vec<Arc<str>> = zone_names.iter().map(|z| Arc::from(*z)).collect();
        let mut members = Vec::with_capacity(ring.instances.len());
        let mut table: Vec<(u32, u32)> = Vec::new();
        let mut zone_has_tokens = vec![false; zones.len()];
        for (idx, (id, inst)) in ring.instances.iter().enumerate() {
            let zone_index = zone_names.binary_search(&inst.zone.as_str()).unwrap_or(0);
            if !inst.tokens.is_empty()
                && let Some(z) = zone_has_tokens.get_mut(zone_index)
            {
                *z = true;
            }
            members.push(Member {
                id: Arc::from(id.as_str()),
                addr: Arc::from(inst.addr.as_str()),
                zone: zones.get(zone_index).cloned().unwrap_or_else(|| Arc::from("")),
                zone_index,
                state: inst.state(),
                heartbeat_ms: inst.heartbeat_ms,
                num_tokens: inst.tokens.len(),
            });
            table.extend(inst.tokens.iter().map(|&t| (t, idx as u32)));
        }
        // Instances are in ID order, so ties on a token order by ID.
        table.sort_unstable();
        let (tokens, owners) = table.into_iter().unzip();
        let with_tokens = members.iter().filter(|m| m.num_tokens > 0).count();
        let by_id = members.iter().enumerate().map(|(i, m)| (Arc::clone(&m.id), i)).collect();
        Self {
            members,
            zones,
            tokens,
            owners,
            with_tokens,
            zones_with_tokens: zone_has_tokens.iter().filter(|&&z| z).count(),
            cfg,
            by_id,
        }
    }

    /// Every instance, ordered by ID.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The instance at `index`.
    pub fn member(&self, index: usize) -> Option<&Member> {
        self.members.get(index)
    }

    /// The index of instance `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Zone names, ordered.
    pub fn zones(&self) -> &[Arc<str>] {
        &self.zones
    }

    /// The replication settings.
    pub fn config(&self) -> &ReplicationConfig {
        &self.cfg
    }

    /// Number of tokens in the ring.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the member's heartbeat is recent at `now_ms`.
    pub fn is_healthy(&self, m: &Member, now_ms: i64) -> bool {
        let timeout = self.cfg.heartbeat_timeout;
        timeout.is_zero() || now_ms.saturating_sub(m.heartbeat_ms) <= super::model::duration_ms(timeout)
    }

    /// Healthy instances in `state` at `now_ms` (e.g. ACTIVE distributors for the global rate
    /// limit).
    pub fn healthy_in_state(&self, state: InstanceState, now_ms: i64) -> usize {
        self.members.iter().filter(|m| m.state == state && self.is_healthy(m, now_ms)).count()
    }

    /// The replication factor after clipping: `min(RF, instances with tokens, zones)` (zones only
    /// with zone awareness).
    pub fn effective_replication_factor(&self) -> usize {
        let mut n = self.cfg.replication_factor.min(self.with_tokens);
        if self.cfg.zone_awareness {
            n = n.min(self.zones_with_tokens);
        }
        n
    }

    /// The replicas of `key` for `op` at `now_ms` (see the module docs).
    pub fn replicas(&self, key: u32, op: Operation, now_ms: i64) -> Result<ReplicaSet, RingError> {
        let n = self.effective_replication_factor();
        if n == 0 || self.tokens.is_empty() {
            return Err(RingError::EmptyRing);
        }
        let start = self.tokens.partition_point(|&t| t < key);
        let mut counted = 0usize;
        // Instances and zones already visited; tiny, so linear scans beat hashing.
        let mut seen: Vec<u32> = Vec::with_capacity(n + 2);
        let mut seen_zones: Vec<usize> = Vec::with_capacity(if self.cfg.zone_awareness { n } else { 0 });
        let mut instances = Vec::with_capacity(n);
        let len = self.tokens.len();
        for step in 0..len {
            let owner = self.owners[(start + step) % len];
            if seen.contains(&owner) {
                continue;
            }
            seen.push(owner);
            let m = &self.members[owner as usize];
            if self.cfg.zone_awareness && seen_zones.contains(&m.zone_index) {
                continue;
            }
            if !op.serves(m.state) {
                // Extend the set: the next instance (of this zone) takes the place.
                continue;
            }
            if self.cfg.zone_awareness {
                seen_zones.push(m.zone_index);
            }
            counted += 1;
            if self.is_healthy(m, now_ms) {
                instances.push(owner as usize);
            }
            if counted == n {
                break;
            }
        }
        let quorum = n / 2 + 1;
        if instances.len() < quorum {
            return Err(RingError::TooFewReplicas { needed: quorum, found: instances.len() });
        }
        let max_errors = instances.len() - quorum;
        Ok(ReplicaSet { instances, quorum, max_errors })
    }

    /// Every healthy instance that serves reads, and how many may fail (see the module docs).
    pub fn read_set(&self, now_ms: i64) -> Result<ReadSet, RingError> {
        let n = self.effective_replication_factor();
        if n == 0 {
            return Err(RingError::EmptyRing);
        }
        let budget = n / 2;
        let mut instances = Vec::new();
        let mut unhealthy = 0usize;
        let mut unhealthy_zones: Vec<usize> = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            if !Operation::Read.serves(m.state) {
                continue;
            }
            if self.is_healthy(m, now_ms) {
                instances.push(i);
            } else {
                unhealthy += 1;
                if !unhealthy_zones.contains(&m.zone_index) {
                    unhealthy_zones.push(m.zone_index);
                }
            }
        }
        let zone_aware = self.cfg.zone_awareness;
        let (max_errors, max_unavailable_zones) = if zone_aware {
            let left = budget.checked_sub(unhealthy_zones.len()).ok_or(RingError::TooManyUnhealthy)?;
            (0, left)
        } else {
            let left = budget.checked_sub(unhealthy).ok_or(RingError::TooManyUnhealthy)?;
            (left, 0)
        };
        if instances.is_empty() {
            return Err(RingError::EmptyRing);
        }
        Ok(ReadSet { instances, max_errors, max_unavailable_zones, zone_aware })
    }
}

#[cfg(test)]
#[path = "replication_tests.rs"]
mod tests;
