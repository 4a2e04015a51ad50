//! The ingester step of reconciliation, between validation and build: one pass of the rollout
//! driver ([`crate::rollout::drive`]) over the cluster's ring and ingester pods. It decides how
//! many replicas each ingester StatefulSet gets in this pass, and reports the ring and the rollout
//! for the status.

use std::collections::BTreeMap;

use kube::Client;

use crate::crd::{RingMemberStatus, RolloutStatus};
use crate::ring::RingConnector;
use crate::rollout::kube::KubePods;
use crate::rollout::{self, Action, IngesterApi, Pass, Plan, PodApi, RingMember, RolloutError, SetPlan};
use crate::validate::ValidCluster;

/// What the ingester step found and decided.
#[derive(Clone, Debug, PartialEq)]
pub struct IngesterReport {
    /// Replicas of each ingester StatefulSet for this pass.
    pub replicas: BTreeMap<String, i32>,
    /// Ring members, when the ring could be read.
    pub members: Option<Vec<RingMemberStatus>>,
    /// The rollout, while one is in progress (and `Done` once it finished).
    pub rollout: Option<RolloutStatus>,
    /// What the driver did.
    pub actions: Vec<Action>,
    /// What the driver waits for.
    pub waiting: Option<String>,
    /// Why the driver could not run (the ring or an ingester could not be reached).
    pub error: Option<String>,
}

/// The driver's plan for `v`: every ingester StatefulSet with the replicas the spec asks for.
pub fn plan(v: &ValidCluster) -> Plan {
    Plan {
        sets: v.ingester_sets().into_iter().map(|(name, zone, wanted)| SetPlan { name, zone, wanted }).collect(),
        replication_factor: v.spec.replication_factor,
        zone_aware: !v.zones.is_empty(),
    }
}

/// Runs one driver pass. When the ring or an ingester cannot be reached, the StatefulSets keep
/// their current sizes (no ingester starts without reserved tokens, none is dropped without
/// flushing) and the error is reported; only a failing Kubernetes API fails the reconciliation.
pub async fn step(
    client: &Client,
    rings: &dyn RingConnector,
    ingesters: &dyn IngesterApi,
    v: &ValidCluster,
    previous: Option<&RolloutStatus>,
) -> Result<IngesterReport, RolloutError> {
    let pods = KubePods::new(client.clone(), &v.namespace, &v.names);
    let plan = plan(v);
    let result = match rings.connect(&v.ring_endpoints, &v.ring_prefix).await {
        Ok(ring) => rollout::drive(&pods, ingesters, ring.as_ref(), &plan, previous).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(pass) => Ok(report(pass)),
        Err(RolloutError::Kubernetes(e)) => Err(RolloutError::Kubernetes(e)),
        Err(e) => {
            let current: BTreeMap<String, i32> = pods.sets().await?.into_iter().map(|s| (s.name, s.replicas)).collect();
            let replicas =
                plan.sets.iter().map(|s| (s.name.clone(), current.get(&s.name).copied().unwrap_or(0))).collect();
            Ok(IngesterReport {
                replicas,
                members: None,
                rollout: previous.cloned(),
                actions: Vec::new(),
                waiting: None,
                error: Some(e.to_string()),
            })
        }
    }
}

fn report(pass: Pass) -> IngesterReport {
    IngesterReport {
        replicas: pass.replicas,
        members: Some(pass.members.iter().map(member_status).collect()),
        rollout: pass.rollout,
        actions: pass.actions,
        waiting: pass.waiting,
        error: None,
    }
}

fn member_status(m: &RingMember) -> RingMemberStatus {
    RingMemberStatus {
        id: m.id.clone(),
        state: m.state.as_str().to_string(),
        zone: (!m.zone.is_empty()).then(|| m.zone.clone()),
        last_heartbeat: (m.heartbeat_ms > 0)
            .then(|| norn::timeutil::format_rfc3339(m.heartbeat_ms.saturating_mul(1_000_000))),
    }
}

/// The Event of an action: reason and note.
pub fn event(action: &Action) -> (&'static str, String) {
    match action {
        Action::Reserved(ids) => ("TokensReserved", format!("reserved ring tokens for {}", ids.join(", "))),
        Action::Forgot(ids) => {
            ("RingMembersForgotten", format!("forgot stale ring entries of pods that are gone: {}", ids.join(", ")))
        }
        Action::Replaced(ids) => (
            "ReplacingIngesters",
            format!("{} flush, leave the ring and are recreated from the new template", ids.join(", ")),
        ),
        Action::Deleted(ids) => ("DeletedIngesters", format!("deleted {}, which had left the ring", ids.join(", "))),
        Action::ScaledDown { set, pod, replicas } => {
            ("ScalingDown", format!("{pod} flushes and leaves the ring; {set} scaled to {replicas}"))
        }
    }
}
