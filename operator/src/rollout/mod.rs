//! The ingester rollout driver: its contract with Kubernetes, the ingesters and the ring, and
//! the pure decision of what to do next.
//!
//! Ingester StatefulSets use `updateStrategy: OnDelete`, so a changed pod template replaces no
//! pod by itself. The driver replaces them one at a time (with zone-aware replication, one zone
//! at a time: a zone holds at most one replica of any stream):
//!
//! 1. ask the ingester to flush and leave the ring (`/ingester/shutdown?flush=true`, or
//!    `/ingester/prepare_shutdown` then SIGTERM): its ring state goes LEAVING, then it is gone;
//! 2. once it left the ring, delete the pod; the StatefulSet controller recreates it from the
//!    new template, and its tokens (the same deterministic ones for its ordinal) are already in
//!    etcd, so it takes over the same ranges;
//! 3. wait until the successor is ACTIVE in the ring and ready, then continue with the next.
//!
//! It never has more ingesters unavailable than [`max_unavailable`] allows, and it keeps no
//! state in memory that it cannot rebuild: every decision is taken by [`next_step`] from what it
//! observes (pods, their revisions, ring states) plus `status.rollout`, so an operator restarted
//! mid-rollout resumes where it stopped. Scale-down uses the same steps on the highest ordinals
//! before the replica count is lowered.
//!
//! **Status:** the ring and `/ingester/shutdown` arrive with the data plane's issue 4. Until
//! then this module holds the traits the driver talks through ([`PodApi`], [`IngesterApi`],
//! [`RingView`]), so it can be tested against real `norn` processes and a real etcd without a
//! cluster, and [`next_step`], which is unit-tested now. The loop that calls them is not wired
//! into the controller yet.

use async_trait::async_trait;

#[cfg(test)]
mod tests;

/// An ingester pod as Kubernetes reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngesterPod {
    /// Pod name, which is also the ingester's ring ID.
    pub name: String,
    /// Zone, with zone-aware replication.
    pub zone: Option<String>,
    /// The pod's `controller-revision-hash`: the template revision it was created from.
    pub revision: String,
    /// The pod passes its readiness probe.
    pub ready: bool,
    /// The pod has a deletion timestamp.
    pub terminating: bool,
}

/// The state of an instance in the ring (the data plane's lifecycle states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingState {
    /// Registered with tokens, not started yet.
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

/// One instance in the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingMember {
    /// Instance ID (the pod name).
    pub id: String,
    /// Lifecycle state.
    pub state: RingState,
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

/// The ingester pods of one cluster, through the Kubernetes API.
#[async_trait]
pub trait PodApi: Send + Sync {
    /// Every ingester pod of the cluster (all zones).
    async fn ingesters(&self) -> Result<Vec<IngesterPod>, RolloutError>;
    /// The revision the ingester StatefulSet of `zone` (or the only one) wants: its
    /// `status.updateRevision`.
    async fn target_revision(&self, zone: Option<&str>) -> Result<String, RolloutError>;
    /// Deletes a pod so that its StatefulSet recreates it from the current template.
    async fn delete_pod(&self, name: &str) -> Result<(), RolloutError>;
}

/// The ingesters' own HTTP API.
///
/// After a shutdown the ingester must stay out of the ring until its pod is deleted: if the
/// process exited and the kubelet restarted the container (same pod, old template), it would
/// join the ring again and the driver would shut it down again. Either the endpoint keeps the
/// process alive and unready after leaving (Loki's `terminate=false`), or the driver uses
/// `/ingester/prepare_shutdown` and deletes the pod, letting SIGTERM flush and leave; the
/// observed states [`next_step`] works from are the same for both.
#[async_trait]
pub trait IngesterApi: Send + Sync {
    /// Asks the ingester to go LEAVING, flush every chunk and leave the ring.
    async fn shutdown_and_flush(&self, pod: &IngesterPod) -> Result<(), RolloutError>;
}

/// The ring in etcd.
#[async_trait]
pub trait RingView: Send + Sync {
    /// Every instance registered in the ring.
    async fn members(&self) -> Result<Vec<RingMember>, RolloutError>;
    /// Registers ingester `id` (ordinal `ordinal` of its StatefulSet, in `zone`) with its
    /// deterministic tokens in state PENDING, unless it is registered already: done before the
    /// pod of that ordinal starts.
    async fn register(&self, id: &str, ordinal: u32, zone: Option<&str>) -> Result<(), RolloutError>;
    /// Removes an instance whose pod is gone and whose heartbeat is stale.
    async fn forget(&self, id: &str) -> Result<(), RolloutError>;
}

/// What the driver should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Every ingester runs the target revision.
    Done,
    /// Nothing to do until something changes (a pod becomes ready, an instance ACTIVE).
    Wait(String),
    /// Ask these ingesters to flush and leave the ring.
    Shutdown(Vec<String>),
    /// These ingesters left the ring: delete their pods.
    Delete(Vec<String>),
}

/// Ingesters that may be unavailable at once without losing the write quorum of any stream:
/// `RF - (floor(RF/2)+1)`, at least one so that a rollout can make progress. With zones, one
/// whole zone.
pub fn max_unavailable(replication_factor: i32) -> usize {
    let quorum = replication_factor / 2 + 1;
    usize::try_from((replication_factor - quorum).max(1)).unwrap_or(1)
}

/// What the rollout should do next, from the observed pods and ring (pure).
///
/// `target` gives the wanted revision of each pod's StatefulSet (by zone). A pod is *done* when
/// it runs the target revision, is ready and ACTIVE. The step works on a *batch*: with zones the
/// outdated pods of the first zone (in order) that has any, otherwise up to
/// [`max_unavailable`] outdated pods by name. Pods outside the batch must all be done (ready and
/// ACTIVE) before any pod of the batch is touched, so the rollout never adds unavailability on
/// top of an already unhealthy ring.
pub fn next_step(
    pods: &[IngesterPod],
    members: &[RingMember],
    target: impl Fn(Option<&str>) -> Option<String>,
    replication_factor: i32,
    zone_aware: bool,
) -> Step {
    let state = |id: &str| members.iter().find(|m| m.id == id).map(|m| m.state);
    let outdated = |p: &IngesterPod| target(p.zone.as_deref()).is_some_and(|t| t != p.revision);
    let healthy = |p: &IngesterPod| p.ready && !p.terminating && state(&p.name) == Some(RingState::Active);

    // Pods already taken out (left the ring, or being replaced) are the batch in flight.
    let mut in_flight: Vec<&IngesterPod> = pods
        .iter()
        .filter(|p| {
            outdated(p) && (p.terminating || state(&p.name) == Some(RingState::Leaving) || state(&p.name).is_none())
        })
        .collect();
    let replacing: Vec<&IngesterPod> = pods.iter().filter(|p| !outdated(p) && !healthy(p)).collect();
    if !replacing.is_empty() && in_flight.is_empty() {
        let names: Vec<&str> = replacing.iter().map(|p| p.name.as_str()).collect();
        return Step::Wait(format!("waiting for {} to be ready and ACTIVE", names.join(", ")));
    }
    if in_flight.is_empty() {
        let mut candidates: Vec<&IngesterPod> = pods.iter().filter(|p| outdated(p)).collect();
        if candidates.is_empty() {
            return Step::Done;
        }
        candidates.sort_by(|a, b| (&a.zone, &a.name).cmp(&(&b.zone, &b.name)));
        in_flight = if zone_aware {
            let zone = candidates[0].zone.clone();
            candidates.into_iter().filter(|p| p.zone == zone).collect()
        } else {
            candidates.into_iter().take(max_unavailable(replication_factor)).collect()
        };
        let unhealthy: Vec<&str> = pods
            .iter()
            .filter(|p| !in_flight.iter().any(|b| b.name == p.name) && !healthy(p))
            .map(|p| p.name.as_str())
            .collect();
        if !unhealthy.is_empty() {
            return Step::Wait(format!("not starting: {} not ready or not ACTIVE", unhealthy.join(", ")));
        }
        return Step::Shutdown(in_flight.iter().map(|p| p.name.clone()).collect());
    }
    let left: Vec<String> =
        in_flight.iter().filter(|p| !p.terminating && state(&p.name).is_none()).map(|p| p.name.clone()).collect();
    if !left.is_empty() {
        return Step::Delete(left);
    }
    let names: Vec<&str> = in_flight.iter().map(|p| p.name.as_str()).collect();
    Step::Wait(format!("waiting for {} to leave the ring and be replaced", names.join(", ")))
}
