//! StatefulSets of Norn's components: distributor, querier and query frontend (rolling update),
//! and the ingesters (one StatefulSet, or one per zone), which the operator rolls itself.
//!
//! Every pod runs the same image and configuration file; flags choose the role and carry what
//! differs per pod or comes from the ring settings:
//!
//! | flag | value |
//! |---|---|
//! | `--config.file` | `/etc/norn/norn.yaml` (the ConfigMap) |
//! | `--target` | the component |
//! | `--instance.id` | the pod name (`$(POD_NAME)`), which is also the ingester's ring ID |
//! | `--instance.addr` | the pod IP (`$(POD_IP)`) |
//! | `--instance.zone` | the zone, for zone-aware ingesters |
//! | `--ring.store`, `--ring.etcd.endpoints`, `--ring.prefix` | the ring in etcd |
//! | `--ring.etcd.tls-*` | with `spec.ring.etcd.tls`: the files of its Secret, mounted at `/etc/norn/etcd-tls` |
//! | `--replication-factor` | `spec.replicationFactor` |
//! | `--frontend-worker.frontend-address` | queriers, when there are query frontends: their headless Service |
//! | `--query-range.results-cache.cache.memcached-client.addresses` | query frontends, with a managed memcached: each of its servers |

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapProjection, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectFieldSelector, PersistentVolumeClaim, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, Probe,
    ProjectedVolumeSource, ResourceRequirements, SecretKeySelector, SecretVolumeSource, Toleration, Volume,
    VolumeMount, VolumeProjection, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{CONFIG_DIR, CONFIG_FILE, DATA_DIR, ETCD_TLS_DIR, GRPC_PORT, HTTP_PORT, TLS_DIR};
use super::names::{ANNOTATION_CONFIG_HASH, ANNOTATION_TLS_SERVER_NAME, Component};
use super::{object_meta, volume_claim};
use crate::validate::ValidCluster;

/// Name of the Norn container in every pod.
pub const CONTAINER: &str = "norn";
/// UID and GID Norn runs as (the image's `norn` user).
pub const NORN_UID: i64 = 10001;
/// How long an ingester may take to stop: flushing every chunk to the object store on SIGTERM.
pub const INGESTER_GRACE_SECONDS: i64 = 600;
/// How long the other components may take to stop: Norn's `http.shutdown_timeout` (30s) plus
/// margin.
pub const STATELESS_GRACE_SECONDS: i64 = 45;
/// Name of the volume holding Norn's data directory.
const DATA_VOLUME: &str = "data";
/// Name of the volume holding the configuration file.
const CONFIG_VOLUME: &str = "config";
/// Name of the volume of `spec.tls.secretName`.
const TLS_VOLUME: &str = "tls";
/// Name of the volume of `spec.ring.etcd.tls.secretName`.
const ETCD_TLS_VOLUME: &str = "etcd-tls";

/// Placement and size of one component's pods, taken from its spec.
struct Placement<'a> {
    replicas: i32,
    resources: Option<&'a ResourceRequirements>,
    node_selector: &'a BTreeMap<String, String>,
    tolerations: &'a [Toleration],
}

/// The StatefulSets of the six components: ingesters first per zone, in the order of
/// [`Component::ALL`].
pub fn statefulsets(v: &ValidCluster) -> Vec<StatefulSet> {
    let spec = &v.spec;
    let mut out = Vec::new();
    for component in Component::ALL {
        match component {
            Component::Ingester => {
                for (name, zone, wanted) in v.ingester_sets() {
                    let replicas = v.ingester_replicas.get(&name).copied().unwrap_or(wanted);
                    out.push(ingester(v, zone.as_deref(), replicas));
                }
            }
            Component::Distributor | Component::Querier | Component::QueryFrontend | Component::Ruler => {
                let c = match component {
                    Component::Distributor => &spec.distributor,
                    Component::Querier => &spec.querier,
                    Component::Ruler => &spec.ruler.component,
                    _ => &spec.query_frontend.component,
                };
                let placement = Placement {
                    replicas: c.replicas,
                    resources: c.resources.as_ref(),
                    node_selector: &c.node_selector,
                    tolerations: &c.tolerations,
                };
                let mut set = stateless(v, component, &placement);
                if component == Component::Ruler {
                    mount_rules(v, &mut set);
                }
                out.push(set);
            }
            Component::Compactor => out.push(compactor(v)),
        }
    }
    out
}

/// A distributor, querier or query-frontend StatefulSet: rolling updates, an emptyDir for data.
fn stateless(v: &ValidCluster, component: Component, placement: &Placement<'_>) -> StatefulSet {
    let names = &v.names;
    let mut pod = pod_spec(v, component, None, placement);
    pod.termination_grace_period_seconds = Some(STATELESS_GRACE_SECONDS);
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: DATA_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    StatefulSet {
        metadata: object_meta(v, names.component(component, None), names.component_labels(component.as_str(), None)),
        spec: Some(StatefulSetSpec {
            replicas: Some(placement.replicas),
            service_name: Some(names.headless(component)),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(names.selector_labels(component.as_str(), None)),
                ..Default::default()
            },
            template: template(v, component.as_str(), None, pod),
            ..Default::default()
        }),
        status: None,
    }
}

/// An ingester StatefulSet (of one zone when `zone` is given): a volume claim per pod for the
/// WAL, `OnDelete` updates (the operator replaces pods one at a time, see [`crate::rollout`]),
/// and a grace period long enough to flush.
fn ingester(v: &ValidCluster, zone: Option<&str>, replicas: i32) -> StatefulSet {
    let names = &v.names;
    let spec = &v.spec.ingester;
    let placement = Placement {
        replicas,
        resources: spec.resources.as_ref(),
        node_selector: &spec.node_selector,
        tolerations: &spec.tolerations,
    };
    let mut pod = pod_spec(v, Component::Ingester, zone, &placement);
    pod.termination_grace_period_seconds = Some(INGESTER_GRACE_SECONDS);
    let claim = data_claim(v, Component::Ingester, zone, &spec.storage);
    StatefulSet {
        metadata: object_meta(
            v,
            names.component(Component::Ingester, zone),
            names.component_labels(Component::Ingester.as_str(), zone),
        ),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(names.headless(Component::Ingester)),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None }),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".into()),
                when_scaled: Some("Retain".into()),
            }),
            selector: LabelSelector {
                match_labels: Some(names.selector_labels(Component::Ingester.as_str(), zone)),
                ..Default::default()
            },
            template: template(v, Component::Ingester.as_str(), zone, pod),
            volume_claim_templates: Some(vec![claim]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Where the ConfigMaps of `spec.ruler.rulesConfigMaps` are mounted: one directory per tenant.
pub const RULES_DIR: &str = "/etc/norn-rules";

/// Projects the rule ConfigMaps of each tenant into `RULES_DIR/<tenant>` of the rulers, which
/// are otherwise stateless pods (rules and alert state are in the object store or in
/// ConfigMaps; the remote-write queue lives in the emptyDir, so it survives container
/// restarts).
fn mount_rules(v: &ValidCluster, set: &mut StatefulSet) {
    let spec = &v.spec.ruler;
    let mut by_tenant: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for cm in &spec.rules_config_maps {
        by_tenant.entry(cm.tenant.as_str()).or_default().push(cm.name.as_str());
    }
    let Some(pod) = set.spec.as_mut().and_then(|s| s.template.spec.as_mut()) else { return };
    for (i, (tenant, maps)) in by_tenant.into_iter().enumerate() {
        let volume = format!("rules-{i}");
        let sources = maps
            .into_iter()
            .map(|name| VolumeProjection {
                config_map: Some(ConfigMapProjection { name: name.to_string(), ..Default::default() }),
                ..Default::default()
            })
            .collect();
        pod.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: volume.clone(),
            projected: Some(ProjectedVolumeSource { sources: Some(sources), ..Default::default() }),
            ..Default::default()
        });
        if let Some(c) = pod.containers.first_mut() {
            c.volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
                name: volume,
                mount_path: format!("{RULES_DIR}/{tenant}"),
                read_only: Some(true),
                ..Default::default()
            });
        }
    }
}

/// The claim template of a component's data volume.
fn data_claim(
    v: &ValidCluster,
    component: Component,
    zone: Option<&str>,
    storage: &crate::crd::VolumeSpec,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(v.names.component_labels(component.as_str(), zone)),
            ..Default::default()
        },
        spec: Some(volume_claim(storage)),
        status: None,
    }
}

/// The compactor: one pod (one active compactor per cluster; a second would only wait for the
/// lease), its own volume, rolling updates.
fn compactor(v: &ValidCluster) -> StatefulSet {
    let names = &v.names;
    let spec = &v.spec.compactor;
    let placement = Placement {
        replicas: 1,
        resources: spec.resources.as_ref(),
        node_selector: &spec.node_selector,
        tolerations: &spec.tolerations,
    };
    let mut pod = pod_spec(v, Component::Compactor, None, &placement);
    pod.termination_grace_period_seconds = Some(STATELESS_GRACE_SECONDS);
    let c = Component::Compactor;
    StatefulSet {
        metadata: object_meta(v, names.component(c, None), names.component_labels(c.as_str(), None)),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(names.headless(c)),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Delete".into()),
                when_scaled: Some("Delete".into()),
            }),
            selector: LabelSelector {
                match_labels: Some(names.selector_labels(c.as_str(), None)),
                ..Default::default()
            },
            template: template(v, c.as_str(), None, pod),
            volume_claim_templates: Some(vec![data_claim(v, c, None, &spec.storage)]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The pod template around `pod`: component labels and the configuration hash.
fn template(v: &ValidCluster, component: &str, zone: Option<&str>, pod: PodSpec) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(v.names.component_labels(component, zone)),
            annotations: Some(
                std::iter::once((ANNOTATION_CONFIG_HASH.to_string(), v.config_hash.clone()))
                    .chain(v.spec.tls.as_ref().map(|t| (ANNOTATION_TLS_SERVER_NAME.to_string(), t.server_name.clone())))
                    .collect(),
            ),
            ..Default::default()
        }),
        spec: Some(pod),
    }
}

/// The pod of a Norn component.
fn pod_spec(v: &ValidCluster, component: Component, zone: Option<&str>, placement: &Placement<'_>) -> PodSpec {
    let container = Container {
        name: CONTAINER.into(),
        image: Some(v.spec.image.clone()),
        image_pull_policy: v.spec.image_pull_policy.clone(),
        args: Some(args(v, component, zone)),
        env: Some(env(v)),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: HTTP_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("grpc".into()),
                container_port: GRPC_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/ready".into()),
                port: IntOrString::String("http".into()),
                scheme: v.spec.tls.as_ref().map(|_| "HTTPS".into()),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            timeout_seconds: Some(2),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        resources: placement.resources.cloned(),
        security_context: Some(super::restricted_container()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: CONFIG_VOLUME.into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount { name: DATA_VOLUME.into(), mount_path: DATA_DIR.into(), ..Default::default() },
        ]),
        ..Default::default()
    };
    let mut container = container;
    let mut volumes = vec![Volume {
        name: CONFIG_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource { name: v.names.config_map(), ..Default::default() }),
        ..Default::default()
    }];
    let secrets = [
        (TLS_VOLUME, TLS_DIR, v.spec.tls.as_ref().map(|t| &t.secret_name)),
        (ETCD_TLS_VOLUME, ETCD_TLS_DIR, v.spec.ring.etcd.tls.as_ref().map(|t| &t.secret_name)),
    ];
    for (volume, dir, secret) in secrets {
        let Some(secret) = secret else { continue };
        volumes.push(Volume {
            name: volume.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                // Readable by the pod's group (fsGroup), not by everyone.
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        });
        container.volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
            name: volume.into(),
            mount_path: dir.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    PodSpec {
        containers: vec![container],
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(super::restricted_pod(NORN_UID, true)),
        node_selector: (!placement.node_selector.is_empty()).then(|| placement.node_selector.clone()),
        tolerations: (!placement.tolerations.is_empty()).then(|| placement.tolerations.to_vec()),
        affinity: Some(affinity(v, component, zone)),
        volumes: Some(volumes),
        ..Default::default()
    }
}

/// Spread a component's pods over nodes; pin a zone's ingesters to nodes of that zone.
fn affinity(v: &ValidCluster, component: Component, zone: Option<&str>) -> Affinity {
    let spread = WeightedPodAffinityTerm {
        weight: 100,
        pod_affinity_term: PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(v.names.selector_labels(component.as_str(), None)),
                ..Default::default()
            }),
            topology_key: "kubernetes.io/hostname".into(),
            ..Default::default()
        },
    };
    let node_affinity = match (zone, &v.spec.zones) {
        (Some(zone), Some(zones)) => Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: zones.topology_key.clone(),
                        operator: "In".into(),
                        values: Some(vec![zone.to_string()]),
                    }]),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        _ => None,
    };
    Affinity {
        node_affinity,
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![spread]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The command line of a Norn container (see the module docs).
pub fn args(v: &ValidCluster, component: Component, zone: Option<&str>) -> Vec<String> {
    let mut args = vec![
        format!("--config.file={CONFIG_DIR}/{CONFIG_FILE}"),
        format!("--target={component}"),
        "--instance.id=$(POD_NAME)".to_string(),
        format!("--instance.addr=$(POD_IP):{GRPC_PORT}"),
    ];
    if let Some(zone) = zone {
        args.push(format!("--instance.zone={zone}"));
    }
    args.extend([
        "--ring.store=etcd".to_string(),
        format!("--ring.etcd.endpoints={}", v.ring_endpoints.join(",")),
        format!("--ring.prefix={}", v.ring_prefix),
        format!("--replication-factor={}", v.spec.replication_factor),
    ]);
    if let Some(t) = &v.spec.ring.etcd.tls {
        args.extend([
            "--ring.etcd.tls-enabled=true".to_string(),
            format!("--ring.etcd.tls-cert-path={ETCD_TLS_DIR}/tls.crt"),
            format!("--ring.etcd.tls-key-path={ETCD_TLS_DIR}/tls.key"),
            format!("--ring.etcd.tls-ca-path={ETCD_TLS_DIR}/ca.crt"),
        ]);
        if let Some(name) = &t.server_name {
            args.push(format!("--ring.etcd.tls-server-name={name}"));
        }
    }
    if component == Component::Querier && v.spec.query_frontend.replicas > 0 {
        // The frontends' headless Service resolves to every ready frontend pod: each querier
        // pulls work from all of them.
        let frontends = format!("{}.{}.svc:{GRPC_PORT}", v.names.headless(Component::QueryFrontend), v.namespace);
        args.push(format!("--frontend-worker.frontend-address={frontends}"));
    }
    if component == Component::QueryFrontend
        && let Some(servers) = super::memcached::addresses(v)
    {
        args.push(format!("--query-range.results-cache.cache.memcached-client.addresses={servers}"));
    }
    args
}

/// Environment of a Norn container: its own name and IP, and the S3 credentials.
fn env(v: &ValidCluster) -> Vec<EnvVar> {
    let field = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), api_version: None }),
            ..Default::default()
        }),
        value: None,
    };
    let mut env = vec![field("POD_NAME", "metadata.name"), field("POD_IP", "status.podIP")];
    if let Some(secret) = &v.spec.object_storage.s3.secret_ref {
        let key = |name: &str, key: &str| EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.name.clone(),
                    key: key.into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            value: None,
        };
        env.push(key("AWS_ACCESS_KEY_ID", &secret.access_key_id_key));
        env.push(key("AWS_SECRET_ACCESS_KEY", &secret.secret_access_key_key));
    }
    env
}
