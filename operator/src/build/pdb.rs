//! PodDisruptionBudgets: voluntary disruptions (node drains) take down at most what each
//! component tolerates.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::Component;
use super::object_meta;
use crate::validate::ValidCluster;

/// Ingesters a drain may take down at once: replicas of a stream beyond the write quorum
/// (`RF - (floor(RF/2)+1)`), and at least one so that a drain can make progress at all. With
/// replication factor 1 or 2 a drained ingester's streams are unavailable until it is back.
pub fn ingester_max_unavailable(replication_factor: i32) -> i32 {
    let quorum = replication_factor / 2 + 1;
    (replication_factor - quorum).max(1)
}

/// One PDB per component, in the order of [`Component::ALL`]. With zones, one PDB covers the
/// ingesters of every zone.
pub fn pdbs(v: &ValidCluster) -> Vec<PodDisruptionBudget> {
    Component::ALL
        .iter()
        .map(|c| {
            let max_unavailable = match c {
                Component::Ingester => ingester_max_unavailable(v.spec.replication_factor),
                _ => 1,
            };
            pdb(v, c.as_str(), v.names.component(*c, None), max_unavailable)
        })
        .collect()
}

/// A PDB named `name` over the pods of `component`.
pub(super) fn pdb(v: &ValidCluster, component: &str, name: String, max_unavailable: i32) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: object_meta(v, name, v.names.component_labels(component, None)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(v.names.selector_labels(component, None)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}
