//! The memcached the operator runs as the query frontends' results cache when
//! `spec.queryFrontend.resultsCache.memcached` is set: a StatefulSet of `replicas` servers and
//! the headless Service that gives each a stable name. Every frontend is given the full list of
//! servers (`--query-range.results-cache.cache.memcached-client.addresses`), so a key hashes to
//! the same server from every frontend.
//!
//! A cache holds nothing that cannot be recomputed: no volume, no PDB (a server drained with
//! its node only costs misses; Norn answers from the queriers while it is away).

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodSpec, PodTemplateSpec, Probe, Service, ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::MEMCACHED_COMPONENT;
use super::object_meta;
use super::service::port;
use crate::crd::{LogClusterSpec, ManagedMemcachedSpec};
use crate::validate::ValidCluster;

/// memcached's port.
pub const PORT: i32 = 11211;
/// UID and GID memcached runs as (the `memcache` user of the official image).
const MEMCACHED_UID: i64 = 11211;
/// Largest item a server accepts (`-I`); Norn's client refuses larger values before sending.
const MAX_ITEM_SIZE: &str = "1m";

/// The managed memcached's objects.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedMemcached {
    /// The servers.
    pub statefulset: StatefulSet,
    /// The headless Service naming each server.
    pub service: Service,
}

/// The managed memcached asked for by `spec`, if any.
pub fn managed(spec: &LogClusterSpec) -> Option<&ManagedMemcachedSpec> {
    spec.query_frontend.results_cache.as_ref()?.memcached.as_ref()
}

/// The managed memcached of `v`, if its spec asks for one.
pub fn managed_memcached(v: &ValidCluster) -> Option<ManagedMemcached> {
    let m = managed(&v.spec)?;
    Some(ManagedMemcached { statefulset: statefulset(v, m), service: headless(v) })
}

/// The servers of the managed memcached as the frontends address them (`host:port`, comma
/// separated), if there is one.
pub fn addresses(v: &ValidCluster) -> Option<String> {
    let m = managed(&v.spec)?;
    let (sts, svc) = (v.names.memcached(), v.names.memcached_headless());
    Some((0..m.replicas).map(|i| format!("{sts}-{i}.{svc}.{}.svc:{PORT}", v.namespace)).collect::<Vec<_>>().join(","))
}

fn headless(v: &ValidCluster) -> Service {
    let names = &v.names;
    Service {
        metadata: object_meta(v, names.memcached_headless(), names.component_labels(MEMCACHED_COMPONENT, None)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(names.selector_labels(MEMCACHED_COMPONENT, None)),
            ports: Some(vec![port("memcached", PORT)]),
            ..Default::default()
        }),
        status: None,
    }
}

/// memcached's flags: `-m` from the spec, TCP only.
pub fn args(m: &ManagedMemcachedSpec) -> Vec<String> {
    vec![
        format!("--memory-limit={}", m.memory_limit_mb),
        format!("--port={PORT}"),
        "--udp-port=0".into(),
        format!("--max-item-size={MAX_ITEM_SIZE}"),
        "--conn-limit=4096".into(),
    ]
}

fn statefulset(v: &ValidCluster, m: &ManagedMemcachedSpec) -> StatefulSet {
    let names = &v.names;
    let container = Container {
        name: "memcached".into(),
        image: Some(m.image.clone()),
        command: Some(vec!["memcached".into()]),
        args: Some(args(m)),
        ports: Some(vec![ContainerPort {
            name: Some("memcached".into()),
            container_port: PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction { port: IntOrString::String("memcached".into()), host: None }),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        resources: m.resources.clone(),
        security_context: Some(super::restricted_container()),
        ..Default::default()
    };
    let labels = names.component_labels(MEMCACHED_COMPONENT, None);
    StatefulSet {
        metadata: object_meta(v, names.memcached(), labels.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(m.replicas),
            service_name: Some(names.memcached_headless()),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(names.selector_labels(MEMCACHED_COMPONENT, None)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(super::restricted_pod(MEMCACHED_UID, false)),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}
