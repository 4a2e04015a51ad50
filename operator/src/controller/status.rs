//! The last step of reconciliation: the status a LogCluster should show, computed from the
//! applied StatefulSets by pure functions (the time is a parameter).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::ingesters::IngesterReport;
use crate::build::names::{Component, LABEL_COMPONENT};
use crate::crd::{ComponentStatus, ComponentsStatus, ConditionReason, ConditionType, LogClusterStatus};
use crate::validate::{InvalidSpec, ValidCluster};

/// Longest condition message the API server accepts is 32768 bytes; stay far below.
const MAX_MESSAGE: usize = 1024;

/// Status after a successful apply.
pub fn reconciled(
    old: &LogClusterStatus,
    generation: Option<i64>,
    v: &ValidCluster,
    statefulsets: &[StatefulSet],
    ingesters: &IngesterReport,
    now: &Time,
) -> LogClusterStatus {
    let components = components(v, statefulsets);
    let mut not_ready = Vec::new();
    let mut rolling = Vec::new();
    for sts in statefulsets {
        let name = sts.metadata.name.clone().unwrap_or_default();
        let desired = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = sts.status.clone().unwrap_or_default();
        let observed = status.observed_generation.is_some() && status.observed_generation >= sts.metadata.generation;
        if !observed || status.updated_replicas.unwrap_or(0) < desired {
            rolling.push(name.clone());
        }
        if !observed || status.ready_replicas.unwrap_or(0) < desired {
            not_ready.push(format!("{name} {}/{desired}", status.ready_replicas.unwrap_or(0)));
        }
    }
    // Ingesters the spec asks for but the driver holds back (tokens not reserved, scale-down
    // in progress) count as not ready.
    for (name, _, wanted) in v.ingester_sets() {
        let held = ingesters.replicas.get(&name).copied().unwrap_or(wanted);
        if held != wanted {
            not_ready.push(format!("{name} held at {held} of {wanted}"));
        }
    }
    if let Some(waiting) = &ingesters.waiting
        && ingesters.rollout.as_ref().is_some_and(|r| r.phase != crate::crd::RolloutPhase::Done)
    {
        rolling.push(format!("ingesters ({waiting})"));
    }
    let ready = if let Some(err) = &ingesters.error {
        (false, ConditionReason::RingUnavailable, format!("the ring cannot be reached: {err}"))
    } else if not_ready.is_empty() && rolling.is_empty() {
        (true, ConditionReason::AllReplicasReady, "every replica of every component is ready".to_string())
    } else if not_ready.is_empty() {
        (false, ConditionReason::RollingOut, format!("not yet on the current pod template: {}", rolling.join(", ")))
    } else {
        (false, ConditionReason::ReplicasNotReady, format!("ready: {}", not_ready.join(", ")))
    };
    let progressing = if let Some(err) = &ingesters.error {
        (true, ConditionReason::RingUnavailable, format!("ingesters are held at their current count: {err}"))
    } else if !rolling.is_empty() {
        (true, ConditionReason::RollingOut, format!("rolling out: {}", rolling.join(", ")))
    } else if !not_ready.is_empty() {
        (true, ConditionReason::ReplicasNotReady, format!("waiting for: {}", not_ready.join(", ")))
    } else {
        (false, ConditionReason::Stable, "nothing is changing".to_string())
    };
    let degraded = (false, ConditionReason::Healthy, "the spec is valid and every child is applied".to_string());
    LogClusterStatus {
        observed_generation: generation,
        conditions: conditions(old, generation, now, [ready, progressing, degraded]),
        components,
        ring_members: ingesters.members.clone().unwrap_or_else(|| old.ring_members.clone()),
        rollout: ingesters.rollout.clone(),
        config_hash: Some(v.config_hash.clone()),
    }
}

/// Status of a spec that failed validation: Degraded with every problem; the children keep
/// running as last applied.
pub fn invalid(
    old: &LogClusterStatus,
    generation: Option<i64>,
    problems: &InvalidSpec,
    now: &Time,
) -> LogClusterStatus {
    let msg = problems.0.join("; ");
    LogClusterStatus {
        observed_generation: generation,
        conditions: conditions(
            old,
            generation,
            now,
            [
                (false, ConditionReason::InvalidSpec, "the spec is invalid; see the Degraded condition".into()),
                (false, ConditionReason::InvalidSpec, "nothing is applied until the spec is fixed".into()),
                (true, ConditionReason::InvalidSpec, msg),
            ],
        ),
        ..old.clone()
    }
}

/// Status when applying children failed: Degraded with the error, the rest as before.
pub fn apply_failed(old: &LogClusterStatus, generation: Option<i64>, error: &str, now: &Time) -> LogClusterStatus {
    let mut conds = old.conditions.clone();
    let degraded =
        condition(old, generation, now, ConditionType::Degraded, (true, ConditionReason::ApplyFailed, error.into()));
    conds.retain(|c| c.type_ != ConditionType::Degraded.as_str());
    conds.push(degraded);
    conds.sort_by_key(|c| order(&c.type_));
    LogClusterStatus { conditions: conds, ..old.clone() }
}

fn order(type_: &str) -> usize {
    match type_ {
        "Ready" => 0,
        "Progressing" => 1,
        "Degraded" => 2,
        _ => 3,
    }
}

/// Ready, Progressing and Degraded from `(status, reason, message)` triples.
fn conditions(
    old: &LogClusterStatus,
    generation: Option<i64>,
    now: &Time,
    [ready, progressing, degraded]: [(bool, ConditionReason, String); 3],
) -> Vec<Condition> {
    vec![
        condition(old, generation, now, ConditionType::Ready, ready),
        condition(old, generation, now, ConditionType::Progressing, progressing),
        condition(old, generation, now, ConditionType::Degraded, degraded),
    ]
}

/// One condition; its `lastTransitionTime` stays as it was unless its status changes.
fn condition(
    old: &LogClusterStatus,
    generation: Option<i64>,
    now: &Time,
    type_: ConditionType,
    (status, reason, mut message): (bool, ConditionReason, String),
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    truncate(&mut message, MAX_MESSAGE);
    let last_transition_time = old
        .conditions
        .iter()
        .find(|c| c.type_ == type_.as_str() && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.as_str().into(),
        status,
        reason: reason.as_str().into(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Replica counts per component, summed over zones.
fn components(v: &ValidCluster, statefulsets: &[StatefulSet]) -> ComponentsStatus {
    let count = |c: Component, desired: i32| {
        let mut out = ComponentStatus { replicas: desired, ..Default::default() };
        for sts in statefulsets {
            let label = sts.metadata.labels.as_ref().and_then(|l| l.get(LABEL_COMPONENT));
            if label.map(String::as_str) != Some(c.as_str()) {
                continue;
            }
            let s = sts.status.clone().unwrap_or_default();
            out.ready_replicas += s.ready_replicas.unwrap_or(0);
            out.updated_replicas += s.updated_replicas.unwrap_or(0);
        }
        out
    };
    let spec = &v.spec;
    ComponentsStatus {
        distributor: count(Component::Distributor, spec.distributor.replicas),
        ingester: count(Component::Ingester, spec.ingester.replicas),
        querier: count(Component::Querier, spec.querier.replicas),
        query_frontend: count(Component::QueryFrontend, spec.query_frontend.replicas),
        compactor: count(Component::Compactor, 1),
        ruler: count(Component::Ruler, spec.ruler.replicas),
    }
}

/// Whether the Ready condition of `status` is True.
pub fn is_ready(status: &LogClusterStatus) -> bool {
    status.conditions.iter().any(|c| c.type_ == ConditionType::Ready.as_str() && c.status == "True")
}

/// Shortens `text` to at most `max` bytes, at a character boundary.
pub fn truncate(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_keeps_whole_characters() {
        let mut s = "ααα".to_string();
        truncate(&mut s, 3);
        assert_eq!(s, "α");
        let mut short = "ok".to_string();
        truncate(&mut short, 3);
        assert_eq!(short, "ok");
    }
}
