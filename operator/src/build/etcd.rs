//! The etcd the operator runs for the ring when `spec.ring.etcd.managed` is set: a StatefulSet
//! of `replicas` members that bootstrap together (static `--initial-cluster` over the headless
//! Service's DNS names), a client Service Norn's pods use, and a PDB that keeps quorum.
//!
//! Membership is fixed at creation (the schema makes `replicas` immutable): growing an etcd
//! cluster needs `member add` before the new pod starts, which this operator does not do.

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim, PodSpec,
    PodTemplateSpec, Probe, Service, ServiceSpec, VolumeMount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::ETCD_COMPONENT;
use super::service::port;
use super::{object_meta, pdb, volume_claim};
use crate::crd::ManagedEtcdSpec;
use crate::validate::ValidCluster;

/// etcd's client port.
pub const CLIENT_PORT: i32 = 2379;
/// etcd's peer port.
pub const PEER_PORT: i32 = 2380;
/// Where each member's volume is mounted.
const DATA_DIR: &str = "/var/lib/etcd";
/// UID and GID etcd runs as.
const ETCD_UID: i64 = 10001;

/// The managed etcd's objects: StatefulSet, Services (client, headless) and PDB (only with more
/// than one member: a single member cannot be disrupted without losing the ring anyway).
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedEtcd {
    /// The members.
    pub statefulset: StatefulSet,
    /// Client and headless Services.
    pub services: Vec<Service>,
    /// Keeps a quorum of members up during drains.
    pub pdb: Option<PodDisruptionBudget>,
}

/// The managed etcd for `v`, if its spec asks for one.
pub fn managed_etcd(v: &ValidCluster) -> Option<ManagedEtcd> {
    let m = v.spec.ring.etcd.managed.as_ref()?;
    let pdb = (m.replicas > 1).then(|| pdb::pdb(v, ETCD_COMPONENT, v.names.etcd(), (m.replicas - 1) / 2));
    Some(ManagedEtcd { statefulset: statefulset(v, m), services: vec![client(v), headless(v)], pdb })
}

fn client(v: &ValidCluster) -> Service {
    let names = &v.names;
    Service {
        metadata: object_meta(v, names.etcd(), names.component_labels(ETCD_COMPONENT, None)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names.selector_labels(ETCD_COMPONENT, None)),
            ports: Some(vec![port("client", CLIENT_PORT)]),
            ..Default::default()
        }),
        status: None,
    }
}

fn headless(v: &ValidCluster) -> Service {
    let names = &v.names;
    Service {
        metadata: object_meta(v, names.etcd_headless(), names.component_labels(ETCD_COMPONENT, None)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(names.selector_labels(ETCD_COMPONENT, None)),
            ports: Some(vec![port("client", CLIENT_PORT), port("peer", PEER_PORT)]),
            // Members must find each other by name before any of them is ready.
            publish_not_ready_addresses: Some(true),
            ..Default::default()
        }),
        status: None,
    }
}

/// The DNS name of member `pod` (`$(POD_NAME)` for the member itself).
fn member_host(v: &ValidCluster, pod: &str) -> String {
    format!("{pod}.{}.{}.svc", v.names.etcd_headless(), v.namespace)
}

/// etcd's flags.
pub fn args(v: &ValidCluster, m: &ManagedEtcdSpec) -> Vec<String> {
    let sts = v.names.etcd();
    let initial_cluster = (0..m.replicas)
        .map(|i| {
            let member = format!("{sts}-{i}");
            format!("{member}=http://{}:{PEER_PORT}", member_host(v, &member))
        })
        .collect::<Vec<_>>()
        .join(",");
    let me = member_host(v, "$(POD_NAME)");
    vec![
        "--name=$(POD_NAME)".into(),
        format!("--data-dir={DATA_DIR}/data"),
        format!("--listen-client-urls=http://0.0.0.0:{CLIENT_PORT}"),
        format!("--advertise-client-urls=http://{me}:{CLIENT_PORT}"),
        format!("--listen-peer-urls=http://0.0.0.0:{PEER_PORT}"),
        format!("--initial-advertise-peer-urls=http://{me}:{PEER_PORT}"),
        format!("--initial-cluster={initial_cluster}"),
        "--initial-cluster-state=new".into(),
        format!("--initial-cluster-token={}-{sts}", v.namespace),
        // Heartbeats rewrite ring keys every few seconds; keep an hour of history at most.
        "--auto-compaction-mode=periodic".into(),
        "--auto-compaction-retention=1h".into(),
    ]
}

fn statefulset(v: &ValidCluster, m: &ManagedEtcdSpec) -> StatefulSet {
    let names = &v.names;
    let container = Container {
        name: "etcd".into(),
        image: Some(m.image.clone()),
        command: Some(vec!["etcd".into()]),
        args: Some(args(v, m)),
        env: Some(vec![EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".into(), api_version: None }),
                ..Default::default()
            }),
            value: None,
        }]),
        ports: Some(vec![
            ContainerPort {
                name: Some("client".into()),
                container_port: CLIENT_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("peer".into()),
                container_port: PEER_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/health".into()),
                port: IntOrString::String("client".into()),
                ..Default::default()
            }),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        resources: m.resources.clone(),
        security_context: Some(super::restricted_container()),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: DATA_DIR.into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let labels = names.component_labels(ETCD_COMPONENT, None);
    StatefulSet {
        metadata: object_meta(v, names.etcd(), labels.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(m.replicas),
            service_name: Some(names.etcd_headless()),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            // The ring is rebuilt by the ingesters; a deleted cluster must not leave a data
            // directory that a new cluster of the same name would boot from.
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Delete".into()),
                when_scaled: Some("Retain".into()),
            }),
            selector: LabelSelector {
                match_labels: Some(names.selector_labels(ETCD_COMPONENT, None)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels.clone()), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(super::restricted_pod(ETCD_UID, true)),
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta { name: Some("data".into()), labels: Some(labels), ..Default::default() },
                spec: Some(volume_claim(&m.storage)),
                status: None,
            }]),
            ..Default::default()
        }),
        status: None,
    }
}
