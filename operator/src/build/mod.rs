//! The second step of reconciliation: the desired child objects of a validated LogCluster, built
//! by pure functions (no client, no clock) so they can be tested from fixtures.

pub mod config;
pub mod etcd;
pub mod memcached;
pub mod names;
pub mod pdb;
pub mod service;
pub mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, PersistentVolumeClaimSpec, PodSecurityContext, SeccompProfile, SecurityContext, Service,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::VolumeSpec;
use crate::validate::ValidCluster;

/// Every object a LogCluster asks for. The controller applies all of them and deletes children
/// of the cluster that are not in here.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// The rendered Norn configuration.
    pub config_map: ConfigMap,
    /// Client and headless Services of every component (and of the managed etcd).
    pub services: Vec<Service>,
    /// The components' StatefulSets (and the managed etcd's).
    pub statefulsets: Vec<StatefulSet>,
    /// A PodDisruptionBudget per component (and for the managed etcd).
    pub pdbs: Vec<PodDisruptionBudget>,
}

/// Builds every child of `v`. The managed etcd comes first in each list: the ring must exist
/// before the components that use it.
pub fn build(v: &ValidCluster) -> Children {
    let mut services = Vec::new();
    let mut statefulsets = Vec::new();
    let mut pdbs = Vec::new();
    if let Some(etcd) = etcd::managed_etcd(v) {
        services.extend(etcd.services);
        statefulsets.push(etcd.statefulset);
        pdbs.extend(etcd.pdb);
    }
    if let Some(m) = memcached::managed_memcached(v) {
        services.push(m.service);
        statefulsets.push(m.statefulset);
    }
    services.extend(service::services(v));
    statefulsets.extend(statefulset::statefulsets(v));
    pdbs.extend(pdb::pdbs(v));
    Children { config_map: config_map(v), services, statefulsets, pdbs }
}

/// The ConfigMap holding the configuration file.
fn config_map(v: &ValidCluster) -> ConfigMap {
    let mut meta = object_meta(v, v.names.config_map(), v.names.common_labels());
    meta.annotations = Some(BTreeMap::from([(names::ANNOTATION_CONFIG_HASH.to_string(), v.config_hash.clone())]));
    ConfigMap {
        metadata: meta,
        data: Some(BTreeMap::from([(config::CONFIG_FILE.to_string(), v.config.clone())])),
        ..Default::default()
    }
}

/// Metadata of a child: its name, the cluster's namespace, `labels`, and the owner reference.
fn object_meta(v: &ValidCluster, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(v.namespace.clone()),
        labels: Some(labels),
        owner_references: Some(vec![v.owner.clone()]),
        ..Default::default()
    }
}

/// The container security context of every pod the operator runs: no privilege escalation, a
/// read-only root filesystem, no capabilities.
fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        ..Default::default()
    }
}

/// The pod security context of every pod the operator runs: not root (user and group `uid`,
/// which also owns the pod's volumes when `owns_volumes`), the runtime's default seccomp profile.
fn restricted_pod(uid: i64, owns_volumes: bool) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: owns_volumes.then_some(uid),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..Default::default()
    }
}

/// A ReadWriteOnce claim of `storage.size` in `storage.storageClassName`.
fn volume_claim(storage: &VolumeSpec) -> PersistentVolumeClaimSpec {
    PersistentVolumeClaimSpec {
        access_modes: Some(vec!["ReadWriteOnce".into()]),
        storage_class_name: storage.storage_class_name.clone(),
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([("storage".to_string(), storage.size.clone())])),
            limits: None,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
