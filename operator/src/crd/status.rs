//! `LogCluster.status`: what the operator observed and did.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// What the operator last observed of a LogCluster and its children.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogClusterStatus {
    /// The `metadata.generation` this status describes; older than the object's generation
    /// while a spec change has not been reconciled yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`, each with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Replicas of each component, as their StatefulSets report them.
    #[serde(default)]
    pub components: ComponentsStatus,
    /// Ingesters registered in the ring and their states.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ring_members: Vec<RingMemberStatus>,
    /// The ingester rollout in progress, if any. Kept here so that an operator restarted in the
    /// middle of a rollout resumes it where it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// Hash of the rendered Norn configuration the pods run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
}

/// Conditions are a map keyed by `type` for server-side apply.
fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema
}

/// Replicas per component.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentsStatus {
    /// Distributors.
    #[serde(default)]
    pub distributor: ComponentStatus,
    /// Ingesters, summed over zones.
    #[serde(default)]
    pub ingester: ComponentStatus,
    /// Queriers.
    #[serde(default)]
    pub querier: ComponentStatus,
    /// Query frontends.
    #[serde(default)]
    pub query_frontend: ComponentStatus,
    /// The compactor.
    #[serde(default)]
    pub compactor: ComponentStatus,
    /// Rulers.
    #[serde(default)]
    pub ruler: ComponentStatus,
}

/// Replica counts of one component.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Replicas asked for by the spec.
    #[serde(default)]
    pub replicas: i32,
    /// Pods that pass their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods running the current pod template.
    #[serde(default)]
    pub updated_replicas: i32,
}

/// One instance in the ring.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RingMemberStatus {
    /// Instance ID (the pod name).
    pub id: String,
    /// `PENDING`, `JOINING`, `ACTIVE`, `LEAVING` or `UNHEALTHY` (stale heartbeat).
    pub state: String,
    /// Zone of the instance, with zone-aware replication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Last heartbeat, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<String>,
}

/// Where an ingester rollout stands.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The pod template revision being rolled out (the StatefulSet's `updateRevision`).
    pub target_revision: String,
    /// What the driver is doing now.
    pub phase: RolloutPhase,
    /// The pod (or, with zones, the zone) being replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Ingesters already on `targetRevision`.
    pub updated: i32,
    /// Ingesters in total.
    pub total: i32,
}

/// A step of the ingester rollout (see [`crate::rollout`]).
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutPhase {
    /// Choosing the next ingester to replace.
    Selecting,
    /// The ingester was asked to flush and leave the ring.
    Leaving,
    /// The ingester left the ring; its pod is being deleted.
    Deleting,
    /// Waiting for the replacement to be ACTIVE in the ring and ready.
    Joining,
    /// Every ingester runs the target revision.
    Done,
}

/// The condition types of a LogCluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// Every component has all its replicas ready on the current spec.
    Ready,
    /// Children are being created or rolled out.
    Progressing,
    /// The spec is invalid or the children could not be applied.
    Degraded,
}

impl ConditionType {
    /// The `type` string of the condition.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Progressing => "Progressing",
            ConditionType::Degraded => "Degraded",
        }
    }
}

/// The reasons the operator gives in conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionReason {
    /// Every replica of every component is ready and updated.
    AllReplicasReady,
    /// Some replicas are not ready yet.
    ReplicasNotReady,
    /// Some pods do not run the current pod template yet.
    RollingOut,
    /// Nothing is changing.
    Stable,
    /// The spec failed validation.
    InvalidSpec,
    /// Applying a child object failed.
    ApplyFailed,
    /// Nothing is wrong.
    Healthy,
    /// The ring's etcd cannot be reached: ingesters are held at their current count.
    RingUnavailable,
}

impl ConditionReason {
    /// The `reason` string of the condition.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionReason::AllReplicasReady => "AllReplicasReady",
            ConditionReason::ReplicasNotReady => "ReplicasNotReady",
            ConditionReason::RollingOut => "RollingOut",
            ConditionReason::Stable => "Stable",
            ConditionReason::InvalidSpec => "InvalidSpec",
            ConditionReason::ApplyFailed => "ApplyFailed",
            ConditionReason::Healthy => "Healthy",
            ConditionReason::RingUnavailable => "RingUnavailable",
        }
    }
}
