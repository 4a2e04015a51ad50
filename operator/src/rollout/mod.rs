//! The ingester rollout driver: keeps the ingester ring in step with the StatefulSets, replaces
//! outdated ingesters without losing a write quorum, and scales down gracefully.
//!
//! Ingester StatefulSets use `updateStrategy: OnDelete`, so a changed pod template replaces no
//! pod by itself. Each pass of [`drive`]:
//!
//! 1. **reserves** the ring tokens of every ingester ordinal the spec asks for whose pod does not
//!    exist yet (`PENDING` entries with the data plane's deterministic tokens, see
//!    [`crate::ring::members`]), so a pod finds its tokens in etcd before it starts. When the ring
//!    cannot be reached, the pass fails and the controller keeps the StatefulSets at their
//!    current size: no ingester starts without its tokens;
//! 2. **forgets** ring entries whose heartbeat is stale, whose pod is gone and whose ordinal the
//!    spec no longer asks for;
//! 3. **scales down** one ingester at a time, highest ordinal first: the ingester is told to
//!    flush and leave on its next SIGTERM (`POST /ingester/prepare_shutdown`), then the replica
//!    count drops by one, the StatefulSet controller stops that pod, and nothing else happens until
//!    it left the ring and its pod is gone;
//! 4. **rolls out** a changed template one replica at a time (with zone-aware replication, one
//!    zone at a time — a zone holds at most one replica of any stream): the batch's ingesters
//!    are told to flush and leave on SIGTERM, their pods are deleted (the SIGTERM makes them go
//!    LEAVING, flush every chunk and leave the ring within `terminationGracePeriodSeconds`), and
//!    the next batch starts only when every successor runs the new revision, is ready and ACTIVE
//!    in the ring. A batch starts only when every other ingester is ready and ACTIVE, and holds
//!    at most [`max_unavailable`] ingesters, so a write quorum is never lost.
//!
//! Why `prepare_shutdown` and a pod deletion rather than `/ingester/shutdown?flush=true`: the
//! latter makes the process exit after leaving the ring, and the kubelet restarts the container
//! of the same pod from the *old* template, which joins the ring again before the driver could
//! delete the pod. Deleting the pod after `prepare_shutdown` gives the same sequence — LEAVING,
//! flush, leave the ring, then the successor — without that race. (The pods also run with
//! `ingester.flush_on_shutdown: true`, so any SIGTERM flushes.)
//!
//! The driver keeps nothing in memory between passes: every decision comes from what it observes
//! (StatefulSets, pods and their revisions, ring states) plus the batch recorded in
//! `status.rollout`, which a restarted operator finishes first. It talks to Kubernetes, to the
//! ingesters and to the ring through three small traits ([`PodApi`], [`IngesterApi`],
//! [`RingView`]), so it runs against a real etcd and real ring members in tests without a
//! cluster; [`kube`] and [`http`] hold the implementations the operator uses.

pub mod http;
pub mod kube;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use norn::ring::InstanceState;

use crate::crd::{RolloutPhase, RolloutStatus};
use crate::ring::Slot;

#[cfg(test)]
mod tests;

/// An ingester pod as Kubernetes reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngesterPod {
    /// Pod name, which is also the ingester's ring ID.
    pub name: String,
    /// The StatefulSet it belongs to.
    pub set: String,
    /// Its ordinal in the StatefulSet.
    pub ordinal: u32,
    /// Zone, with zone-aware replication.
    pub zone: Option<String>,
    /// The pod's `controller-revision-hash`: the template revision it was created from.
    pub revision: String,
    /// The pod passes its readiness probe.
    pub ready: bool,
    /// The pod has a deletion timestamp.
    pub terminating: bool,
    /// `host:port` of its HTTP API, once it has an IP.
    pub http_addr: Option<String>,
    /// With `spec.tls`, its HTTP API serves HTTPS with a certificate for this name (the pod's
    /// `norn.dev/tls-server-name` annotation).
    pub tls_server_name: Option<String>,
}

/// An ingester StatefulSet as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngesterSet {
    /// StatefulSet name.
    pub name: String,
    /// Zone, with zone-aware replication.
    pub zone: Option<String>,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.updateRevision`, once the StatefulSet controller observed the current spec (None
    /// before: the revision may be stale, so no rollout decision is taken on it).
    pub update_revision: Option<String>,
}

/// The state of an instance in the ring (the data plane's lifecycle states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingState {
    /// Registered with tokens, not started yet (also the operator's reservations).
    Pending,
    /// Starting: replaying its WAL.
    Joining,
    /// Takes writes and reads.
    Active,
    /// Flushing before it leaves: takes reads only.
    Leaving,
    /// Its heartbeat is stale.
    Unhealthy,
}

impl RingState {
    /// The name shown in status and on Norn's `/ring` page.
    pub fn as_str(self) -> &'static str {
        match self {
            RingState::Pending => "PENDING",
            RingState::Joining => "JOINING",
            RingState::Active => "ACTIVE",
            RingState::Leaving => "LEAVING",
            RingState::Unhealthy => "UNHEALTHY",
        }
    }
}

impl From<InstanceState> for RingState {
    fn from(s: InstanceState) -> Self {
        match s {
            InstanceState::Pending => RingState::Pending,
            InstanceState::Joining => RingState::Joining,
            InstanceState::Active => RingState::Active,
            InstanceState::Leaving => RingState::Leaving,
        }
    }
}

/// One instance in the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingMember {
    /// Instance ID (the pod name).
    pub id: String,
    /// Zone, empty for none.
    pub zone: String,
    /// Lifecycle state, UNHEALTHY when the heartbeat is stale.
    pub state: RingState,
    /// Last heartbeat, Unix milliseconds (0: never, a reservation).
    pub heartbeat_ms: i64,
}

/// Why a driver call failed; the driver retries at its next pass.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The Kubernetes API failed.
    #[error("kubernetes: {0}")]
    Kubernetes(String),
    /// An ingester's HTTP API failed or refused.
    #[error("ingester {pod}: {message}")]
    Ingester {
        /// The pod.
        pod: String,
        /// What failed.
        message: String,
    },
    /// The ring could not be read or written.
    #[error("ring: {0}")]
    Ring(String),
}

/// The ingester pods and StatefulSets of one cluster, through the Kubernetes API.
#[async_trait]
pub trait PodApi: Send + Sync {
    /// The cluster's ingester StatefulSets (all zones); missing ones are simply absent.
    async fn sets(&self) -> Result<Vec<IngesterSet>, RolloutError>;
    /// Every ingester pod of the cluster (all zones).
    async fn ingesters(&self) -> Result<Vec<IngesterPod>, RolloutError>;
    /// Deletes a pod so that its StatefulSet recreates it from the current template. Deleting a
    /// pod that is already gone succeeds.
    async fn delete_pod(&self, name: &str) -> Result<(), RolloutError>;
}

/// The ingesters' own HTTP API.
#[async_trait]
pub trait IngesterApi: Send + Sync {
    /// Asks the ingester to go LEAVING, flush every chunk and leave the ring when it next gets
    /// SIGTERM (`POST /ingester/prepare_shutdown`). Idempotent.
    async fn prepare_shutdown(&self, pod: &IngesterPod) -> Result<(), RolloutError>;
}

/// The ingester ring in etcd.
#[async_trait]
pub trait RingView: Send + Sync {
    /// Every instance registered in the ring.
    async fn members(&self) -> Result<Vec<RingMember>, RolloutError>;
    /// Writes `PENDING` entries with the deterministic tokens of `slots` that have no entry
    /// yet; returns the IDs it added.
    async fn reserve(&self, slots: &[Slot]) -> Result<Vec<String>, RolloutError>;
    /// Removes stale entries that are neither in `live` nor in `wanted`; returns their IDs.
    async fn forget_dead(
        &self,
        live: &BTreeSet<String>,
        wanted: &BTreeSet<String>,
    ) -> Result<Vec<String>, RolloutError>;
}

/// What the spec asks of one ingester StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetPlan {
    /// StatefulSet name.
    pub name: String,
    /// Zone, with zone-aware replication.
    pub zone: Option<String>,
    /// Replicas the spec asks for.
    pub wanted: i32,
}

/// What the spec asks of the ingesters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Every ingester StatefulSet (one, or one per zone).
    pub sets: Vec<SetPlan>,
    /// `spec.replicationFactor`.
    pub replication_factor: i32,
    /// Whether replicas are spread over zones (one StatefulSet per zone).
    pub zone_aware: bool,
}

impl Plan {
    /// Ring IDs of every ordinal the spec asks for.
    pub fn slots(&self) -> Vec<Slot> {
        self.sets
            .iter()
            .flat_map(|s| {
                (0..u32::try_from(s.wanted).unwrap_or(0)).map(move |o| Slot::new(&s.name, o, s.zone.as_deref()))
            })
            .collect()
    }
}

/// Something the driver did, for Events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reserved ring tokens for these ingesters before their pods start.
    Reserved(Vec<String>),
    /// Forgot these stale ring entries whose pods are gone.
    Forgot(Vec<String>),
    /// Told these ingesters to flush and leave, and deleted their pods to replace them.
    Replaced(Vec<String>),
    /// Deleted the pods of these ingesters, which had left the ring already.
    Deleted(Vec<String>),
    /// Told this ingester to flush and leave, and lowered its StatefulSet by one.
    ScaledDown {
        /// The StatefulSet.
        set: String,
        /// The ingester leaving.
        pod: String,
        /// The new replica count.
        replicas: i32,
    },
}

/// The outcome of one pass of [`drive`].
#[derive(Clone, Debug, PartialEq)]
pub struct Pass {
    /// The replica count each ingester StatefulSet must have now (the controller applies it).
    pub replicas: BTreeMap<String, i32>,
    /// The ring as the pass saw it (after forgetting).
    pub members: Vec<RingMember>,
    /// The rollout, while pods are outdated or being replaced (and `Done` once one finished).
    pub rollout: Option<RolloutStatus>,
    /// What the pass did.
    pub actions: Vec<Action>,
    /// What it waits for, if anything; `None` when every ingester is where the spec wants it.
    pub waiting: Option<String>,
}

/// What the rollout should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Every ingester runs the target revision, is ready and ACTIVE.
    Done,
    /// Nothing to do until something changes; the phase says what is awaited.
    Wait(RolloutPhase, String),
    /// Replace these ingesters: prepare them to flush and leave, and delete their pods.
    Replace(Vec<String>),
    /// These outdated ingesters are out of the ring and still running: delete their pods.
    Delete(Vec<String>),
}

/// Ingesters that may be unavailable at once without losing the write quorum of any stream:
/// `RF - (floor(RF/2)+1)`, at least one so that a rollout can make progress (with RF 1 or 2 a
/// replacement always costs availability of some streams; Norn's WAL keeps what was acknowledged).
pub fn max_unavailable(replication_factor: i32) -> usize {
    let quorum = replication_factor / 2 + 1;
    usize::try_from((replication_factor - quorum).max(1)).unwrap_or(1)
}

/// What the rollout should do next, from the observed pods and ring (pure).
///
/// `target` gives the wanted revision of each pod's StatefulSet (by zone); `None` means "not
/// known yet" and keeps that pod out of the rollout. Pods that should exist but do not (deleted,
/// not yet recreated) must be in `pods` as not ready. A pod is *healthy* when it is ready, not
/// terminating and ACTIVE in the ring. The step works on a *batch*: with zones the outdated pods
/// of the first zone that has any, otherwise up to [`max_unavailable`] outdated pods by name;
/// `resume` (the batch in `status.rollout`) goes first, so a restarted operator finishes what it
/// started. Every pod outside the batch must be healthy before a batch starts.
pub fn next_step(
    pods: &[IngesterPod],
    members: &[RingMember],
    target: impl Fn(Option<&str>) -> Option<String>,
    replication_factor: i32,
    zone_aware: bool,
    resume: &[String],
) -> Step {
    let state = |id: &str| members.iter().find(|m| m.id == id).map(|m| m.state);
    let outdated = |p: &IngesterPod| target(p.zone.as_deref()).is_some_and(|t| t != p.revision);
    let healthy = |p: &IngesterPod| p.ready && !p.terminating && state(&p.name) == Some(RingState::Active);

    // Outdated pods already taken out (terminating, leaving, or out of the ring) are in flight.
    let in_flight: Vec<&IngesterPod> = pods
        .iter()
        .filter(|p| outdated(p) && (p.terminating || matches!(state(&p.name), None | Some(RingState::Leaving))))
        .collect();
    if !in_flight.is_empty() {
        let left: Vec<String> =
            in_flight.iter().filter(|p| !p.terminating && state(&p.name).is_none()).map(|p| p.name.clone()).collect();
        if !left.is_empty() {
            return Step::Delete(left);
        }
        let names: Vec<&str> = in_flight.iter().map(|p| p.name.as_str()).collect();
        return Step::Wait(
            RolloutPhase::Leaving,
            format!("waiting for {} to flush and leave the ring", names.join(", ")),
        );
    }
    let replacing: Vec<&str> = pods.iter().filter(|p| !outdated(p) && !healthy(p)).map(|p| p.name.as_str()).collect();
    let mut candidates: Vec<&IngesterPod> = pods.iter().filter(|p| outdated(p)).collect();
    if candidates.is_empty() {
        if replacing.is_empty() {
            return Step::Done;
        }
        return Step::Wait(
            RolloutPhase::Joining,
            format!("waiting for {} to be ready and ACTIVE", replacing.join(", ")),
        );
    }
    // The recorded batch first, then pods that are down anyway (replacing them costs nothing).
    candidates.sort_by_key(|p| (!resume.contains(&p.name), healthy(p), p.zone.clone(), p.ordinal, p.name.clone()));
    let batch: Vec<&IngesterPod> = if zone_aware {
        let zone = candidates[0].zone.clone();
        candidates.into_iter().filter(|p| p.zone == zone).collect()
    } else {
        candidates.into_iter().take(max_unavailable(replication_factor)).collect()
    };
    let unhealthy: Vec<&str> = pods
        .iter()
        .filter(|p| !batch.iter().any(|b| b.name == p.name) && !healthy(p))
        .map(|p| p.name.as_str())
        .collect();
    if !unhealthy.is_empty() {
        let phase = if replacing.is_empty() { RolloutPhase::Selecting } else { RolloutPhase::Joining };
        return Step::Wait(phase, format!("waiting for {} to be ready and ACTIVE", unhealthy.join(", ")));
    }
    Step::Replace(batch.iter().map(|p| p.name.clone()).collect())
}

/// One pass of the driver: reserve, forget, scale down or roll out one step (see the module
/// docs). Fails when the ring or the Kubernetes API cannot be reached; the caller then keeps the
/// StatefulSets at their current size and tries again later.
pub async fn drive(
    pods_api: &dyn PodApi,
    ingesters: &dyn IngesterApi,
    ring: &dyn RingView,
    plan: &Plan,
    previous: Option<&RolloutStatus>,
) -> Result<Pass, RolloutError> {
    let sets: BTreeMap<String, IngesterSet> = pods_api.sets().await?.into_iter().map(|s| (s.name.clone(), s)).collect();
    let mut pods = pods_api.ingesters().await?;
    pods.retain(|p| plan.sets.iter().any(|s| s.name == p.set));
    let current = |name: &str| sets.get(name).map_or(0, |s| s.replicas);
    let mut actions = Vec::new();

    // 1. Tokens for every wanted ordinal whose pod does not exist yet.
    let live: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
    let slots = plan.slots();
    let unstarted: Vec<Slot> = slots.iter().filter(|s| !live.contains(&s.id)).cloned().collect();
    let reserved = ring.reserve(&unstarted).await?;
    if !reserved.is_empty() {
        actions.push(Action::Reserved(reserved));
    }

    // 2. Stale entries of pods that are gone and not wanted.
    let wanted: BTreeSet<String> = slots.iter().map(|s| s.id.clone()).collect();
    let forgotten = ring.forget_dead(&live, &wanted).await?;
    let mut members = ring.members().await?;
    members.retain(|m| !forgotten.contains(&m.id));
    if !forgotten.is_empty() {
        actions.push(Action::Forgot(forgotten));
    }
    let state = |id: &str| members.iter().find(|m| m.id == id).map(|m| m.state);
    let healthy = |p: &IngesterPod| p.ready && !p.terminating && state(&p.name) == Some(RingState::Active);

    // Scale-ups take effect at once (their tokens are reserved); scale-downs one pod at a time.
    let mut replicas: BTreeMap<String, i32> =
        plan.sets.iter().map(|s| (s.name.clone(), s.wanted.max(current(&s.name)))).collect();
    for s in &plan.sets {
        if current(&s.name) <= s.wanted {
            continue;
        }
        let cur = current(&s.name);
        // A pod already dropped (ordinal >= replicas) must be gone and out of the ring first.
        let dropped = |id: &str| {
            id.strip_prefix(s.name.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|n| n.parse::<i64>().ok())
                .is_some_and(|o| o >= i64::from(cur))
        };
        let mut leaving: BTreeSet<&str> =
            pods.iter().filter(|p| p.set == s.name && dropped(&p.name)).map(|p| p.name.as_str()).collect();
        // ... and its ring entry gone (or stale, to be forgotten), not still taking reads.
        leaving.extend(
            members
                .iter()
                .filter(|m| {
                    dropped(&m.id) && matches!(m.state, RingState::Active | RingState::Leaving | RingState::Joining)
                })
                .map(|m| m.id.as_str()),
        );
        let leaving: Vec<String> = leaving.into_iter().map(str::to_string).collect();
        if !leaving.is_empty() {
            return Ok(pass(
                replicas,
                members,
                previous,
                actions,
                format!("waiting for {} to flush and leave", leaving.join(", ")),
            ));
        }
        let victim_id = format!("{}-{}", s.name, cur - 1);
        let others: Vec<String> =
            pods.iter().filter(|p| p.name != victim_id && !healthy(p)).map(|p| p.name.clone()).collect();
        if !others.is_empty() {
            let msg = format!("scale-down of {} waits for {} to be ready and ACTIVE", s.name, others.join(", "));
            return Ok(pass(replicas, members, previous, actions, msg));
        }
        if let Some(victim) = pods.iter().find(|p| p.name == victim_id) {
            ingesters.prepare_shutdown(victim).await?;
        }
        replicas.insert(s.name.clone(), cur - 1);
        actions.push(Action::ScaledDown { set: s.name.clone(), pod: victim_id.clone(), replicas: cur - 1 });
        return Ok(pass(replicas, members, previous, actions, format!("{victim_id} flushes and leaves the ring")));
    }

    // 3. The rollout. Pods the StatefulSets should have but that do not exist (deleted and not
    // yet recreated, or not created yet) count as unavailable successors.
    let targets: BTreeMap<Option<String>, Option<String>> =
        plan.sets.iter().map(|s| (s.zone.clone(), sets.get(&s.name).and_then(|o| o.update_revision.clone()))).collect();
    let target = |zone: Option<&str>| targets.get(&zone.map(str::to_string)).cloned().flatten();
    for s in &plan.sets {
        for ordinal in 0..u32::try_from(current(&s.name)).unwrap_or(0) {
            let name = format!("{}-{ordinal}", s.name);
            if !pods.iter().any(|p| p.name == name) {
                pods.push(IngesterPod {
                    name,
                    set: s.name.clone(),
                    ordinal,
                    zone: s.zone.clone(),
                    revision: target(s.zone.as_deref()).unwrap_or_default(),
                    ready: false,
                    terminating: false,
                    http_addr: None,
                    tls_server_name: None,
                });
            }
        }
    }
    let resume: Vec<String> = previous
        .filter(|r| matches!(r.phase, RolloutPhase::Leaving | RolloutPhase::Deleting))
        .and_then(|r| r.current.as_deref())
        .map(|c| c.split(", ").map(str::to_string).collect())
        .unwrap_or_default();
    let step = next_step(&pods, &members, target, plan.replication_factor, plan.zone_aware, &resume);
    let outdated = pods.iter().filter(|p| target(p.zone.as_deref()).is_some_and(|t| t != p.revision)).count();
    let revision: Vec<String> = {
        let mut r: Vec<String> = targets.values().flatten().cloned().collect();
        r.dedup();
        r
    };
    let total = i32::try_from(pods.len()).unwrap_or(i32::MAX);
    let updated = i32::try_from(
        pods.iter().filter(|p| target(p.zone.as_deref()).is_some_and(|t| t == p.revision) && healthy(p)).count(),
    )
    .unwrap_or(0);
    let status = |phase: RolloutPhase, current: Option<String>| RolloutStatus {
        target_revision: revision.join(","),
        phase,
        current,
        updated,
        total,
    };
    let in_progress = previous.is_some_and(|r| r.phase != RolloutPhase::Done);
    let (rollout, waiting) = match step {
        Step::Done => {
            let done = (in_progress || outdated > 0).then(|| status(RolloutPhase::Done, None));
            (done.or_else(|| previous.cloned()), None)
        }
        Step::Wait(phase, why) => {
            let rollout =
                (outdated > 0 || in_progress).then(|| status(phase, previous.and_then(|r| r.current.clone())));
            (rollout, Some(why))
        }
        Step::Replace(batch) => {
            for name in &batch {
                if let Some(p) = pods.iter().find(|p| &p.name == name) {
                    ingesters.prepare_shutdown(p).await?;
                }
            }
            for name in &batch {
                pods_api.delete_pod(name).await?;
            }
            let why = format!("replacing {}", batch.join(", "));
            actions.push(Action::Replaced(batch.clone()));
            (Some(status(RolloutPhase::Leaving, Some(batch.join(", ")))), Some(why))
        }
        Step::Delete(batch) => {
            for name in &batch {
                pods_api.delete_pod(name).await?;
            }
            let why = format!("deleted {}, which left the ring", batch.join(", "));
            actions.push(Action::Deleted(batch.clone()));
            (Some(status(RolloutPhase::Deleting, Some(batch.join(", ")))), Some(why))
        }
    };
    Ok(Pass { replicas, members, rollout, actions, waiting })
}

fn pass(
    replicas: BTreeMap<String, i32>,
    members: Vec<RingMember>,
    previous: Option<&RolloutStatus>,
    actions: Vec<Action>,
    waiting: String,
) -> Pass {
    Pass { replicas, members, rollout: previous.cloned(), actions, waiting: Some(waiting) }
}
