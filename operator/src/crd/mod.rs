//! The `LogCluster` custom resource (`norn.dev/v1alpha1`): the Rust types are the source of
//! truth, `crdgen` prints the CustomResourceDefinition generated from them into `crds/`.
//!
//! What the API server can check is in the schema: ranges and patterns through schemars
//! attributes, cross-field rules as CEL `x-kubernetes-validations` (replication factor at most the
//! ingester replicas, exactly one ring store, ...). Everything else is checked by
//! [`crate::validate`] and reported as a `Degraded` condition.

mod schema;
mod status;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub use status::{
    ComponentStatus, ComponentsStatus, ConditionReason, ConditionType, LogClusterStatus, RingMemberStatus,
    RolloutPhase, RolloutStatus,
};

/// API group of Norn's resources.
pub const GROUP: &str = "norn.dev";
/// API version of [`LogCluster`].
pub const VERSION: &str = "v1alpha1";

/// A Norn cluster: distributors, ingesters, queriers and query frontends sharing one ring and one
/// object store.
// The printer columns repeat `type_ = ...` with different values, which clippy's
// duplicated_attributes mistakes for repeated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "norn.dev",
    version = "v1alpha1",
    kind = "LogCluster",
    namespaced,
    shortname = "lc",
    category = "norn",
    status = "LogClusterStatus",
    derive = "PartialEq",
    cel,
    doc = "A Norn log cluster: distributors, ingesters, queriers and query frontends sharing one ring and one object store.",
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Reason", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#),
    printcolumn(
        name = "Ingesters",
        type_ = "integer",
        description = "ingester replicas that are ready",
        json_path = ".status.components.ingester.readyReplicas"
    ),
    printcolumn(
        name = "RF",
        type_ = "integer",
        description = "replication factor",
        json_path = ".spec.replicationFactor"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = Rule::new("self.replicationFactor <= self.ingester.replicas")
        .message("replicationFactor must not exceed ingester.replicas"),
    validation = Rule::new("!has(self.zones) || self.replicationFactor <= size(self.zones.names)")
        .message("with zones, replicationFactor must not exceed the number of zones"),
    validation = Rule::new("!has(self.zones) || self.ingester.replicas % size(self.zones.names) == 0")
        .message("with zones, ingester.replicas must be a multiple of the number of zones"),
)]
#[serde(rename_all = "camelCase")]
pub struct LogClusterSpec {
    /// Container image of Norn (the `norn` binary), e.g. `ghcr.io/norn-logs/norn:v0.1.0`. Every
    /// component runs this image with a different `--target`.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Pull policy of the Norn image: `Always`, `IfNotPresent` or `Never`; the Kubernetes default
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(Always|IfNotPresent|Never)$"))]
    pub image_pull_policy: Option<String>,
    /// Require `X-Scope-OrgID` on every request (multi-tenancy); when false everything belongs to
    /// tenant `fake`, as in Loki.
    #[serde(default)]
    pub auth_enabled: bool,
    /// Distributors: receive pushes and forward each stream to its ingesters.
    #[serde(default)]
    pub distributor: ComponentSpec,
    /// Ingesters: hold recent data in memory and a write-ahead log, flush chunks to the object
    /// store.
    #[serde(default)]
    pub ingester: IngesterSpec,
    /// Queriers: answer LogQL queries from ingesters and the object store.
    #[serde(default)]
    pub querier: ComponentSpec,
    /// Query frontends: queue, split, shard and cache queries in front of the queriers, which
    /// pull their work from them. Point Grafana at their Service.
    #[serde(default)]
    pub query_frontend: QueryFrontendSpec,
    /// The compactor: one pod that enforces retention, processes delete requests and merges
    /// index objects (one active compactor per cluster; it serves `/loki/api/v1/delete`).
    #[serde(default)]
    pub compactor: CompactorSpec,
    /// Rulers: evaluate Prometheus-format rule groups of LogQL, send alerts to Alertmanager and
    /// recorded series to a remote-write endpoint; several share the groups through a ring.
    #[serde(default)]
    pub ruler: RulerSpec,
    /// How many ingesters hold each stream; a write succeeds when a quorum (`floor(RF/2)+1`)
    /// acknowledged it.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 9))]
    pub replication_factor: i32,
    /// Zone-aware replication: one ingester StatefulSet per zone, replicas of a stream in
    /// distinct zones. Unset: no zone awareness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<ZonesSpec>,
    /// Where the hash ring lives.
    pub ring: RingSpec,
    /// Where chunks and the index are stored.
    pub object_storage: ObjectStorageSpec,
    /// Per-tenant limits: defaults for every tenant and overrides per tenant.
    #[serde(default, skip_serializing_if = "LimitsSpec::is_empty")]
    pub limits: LimitsSpec,
    /// How long logs are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
    /// TLS for Norn's HTTP API and for gRPC between its roles, with certificates from a Secret.
    /// Unset: plain HTTP and gRPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// Certificates for every Norn pod of the cluster, from a Secret in the cluster's namespace with
/// the keys `tls.crt`, `tls.key` and `ca.crt` (what cert-manager writes), mounted at
/// `/etc/norn/tls`. The HTTP API serves HTTPS and verifies client certificates signed by
/// `ca.crt` when a client presents one (the kubelet's probes present none); gRPC between the
/// roles is mutual TLS.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Name every pod's certificate carries (a DNS SAN), which the roles check when they call
    /// each other by pod IP; e.g. `norn.<namespace>.svc`.
    #[schemars(length(min = 1, max = 253))]
    pub server_name: String,
    /// Whether the gRPC servers require a client certificate signed by `ca.crt` (mutual TLS).
    /// Default true; false only verifies one that is presented.
    #[serde(default = "default_true")]
    pub require_client_certificates: bool,
}

fn default_true() -> bool {
    true
}

fn default_replication_factor() -> i32 {
    3
}

fn default_stateless_replicas() -> i32 {
    2
}

fn default_ingester_replicas() -> i32 {
    3
}

/// Placement and size of a stateless component (distributor, querier, query frontend).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Number of pods; 0 stops the component.
    #[serde(default = "default_stateless_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// CPU and memory requests and limits of the Norn container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// The query frontends: their pods, and how they split and cache queries.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QueryFrontendSpec {
    #[serde(flatten)]
    pub component: ComponentSpec,
    /// Length of the time splits of range queries (Norn's `limits.split_queries_by_interval`,
    /// a duration such as `30m`; `0s` turns splitting off). Unset: Norn's default, 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_queries_by_interval: Option<String>,
    /// Where query results are cached. Unset: each frontend's embedded cache (100 MB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_cache: Option<ResultsCacheSpec>,
}

impl std::ops::Deref for QueryFrontendSpec {
    type Target = ComponentSpec;

    fn deref(&self) -> &ComponentSpec {
        &self.component
    }
}

/// The results cache of the query frontends.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.memcachedAddresses) && has(self.memcached))")
        .message("set at most one of queryFrontend.resultsCache.memcachedAddresses and queryFrontend.resultsCache.memcached"),
)]
pub struct ResultsCacheSpec {
    /// Cache results at all (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Budget of each frontend's embedded cache, in MB, when no memcached is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub embedded_max_size_mb: Option<u64>,
    /// memcached servers shared by every frontend, as `host:port` entries separated by commas
    /// (e.g. the Service of a memcached you run). Set, it replaces the embedded caches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memcached_addresses: Option<String>,
    /// A memcached the operator runs for the frontends (instead of `memcachedAddresses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memcached: Option<ManagedMemcachedSpec>,
}

/// A memcached StatefulSet run by the operator as the frontends' shared results cache: a
/// StatefulSet so every frontend names every server the same way (`<pod>.<headless Service>`)
/// and a key lands on the same server from any frontend.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedMemcachedSpec {
    /// Number of memcached servers; keys are spread over them.
    #[serde(default = "default_memcached_replicas")]
    #[schemars(range(min = 1, max = 16))]
    pub replicas: i32,
    /// Container image of memcached.
    #[serde(default = "default_memcached_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// Memory of each server for items, in MB (memcached's `-m`). The container's memory limit,
    /// when `resources` sets one, should leave room above it.
    #[serde(default = "default_memcached_memory_mb")]
    #[schemars(range(min = 16))]
    pub memory_limit_mb: u32,
    /// CPU and memory requests and limits of the memcached container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_memcached_replicas() -> i32 {
    1
}

/// The memcached image used when `queryFrontend.resultsCache.memcached.image` is unset.
pub const DEFAULT_MEMCACHED_IMAGE: &str = "memcached:1.6.38-alpine";

fn default_memcached_image() -> String {
    DEFAULT_MEMCACHED_IMAGE.into()
}

fn default_memcached_memory_mb() -> u32 {
    1024
}

impl Default for ManagedMemcachedSpec {
    fn default() -> Self {
        Self {
            replicas: default_memcached_replicas(),
            image: default_memcached_image(),
            memory_limit_mb: default_memcached_memory_mb(),
            resources: None,
        }
    }
}

impl Default for ComponentSpec {
    fn default() -> Self {
        Self {
            replicas: default_stateless_replicas(),
            resources: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
        }
    }
}

/// Placement, size and storage of the ingesters.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngesterSpec {
    /// Number of ingesters in the whole cluster (across zones); at least the replication factor.
    #[serde(default = "default_ingester_replicas")]
    #[schemars(range(min = 1))]
    pub replicas: i32,
    /// CPU and memory requests and limits of the Norn container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// The volume of each ingester, holding its write-ahead log. Fixed once created: a
    /// StatefulSet's volume claim templates cannot change (resize the claims themselves).
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("ingester.storage cannot change after creation"))]
    pub storage: VolumeSpec,
}

impl Default for IngesterSpec {
    fn default() -> Self {
        Self {
            replicas: default_ingester_replicas(),
            resources: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            storage: VolumeSpec::default(),
        }
    }
}

/// The compactor's single pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompactorSpec {
    /// CPU and memory requests and limits of the Norn container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels the pod must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pod tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// The compactor's volume (its working directory). Fixed once created.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("compactor.storage cannot change after creation"))]
    pub storage: VolumeSpec,
}

/// The rulers: their pods, where alerts and recorded series go, where rules come from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RulerSpec {
    /// Pods (`replicas`: the rule groups are spread over them; 0: no ruler), resources and
    /// placement.
    #[serde(flatten)]
    pub component: ComponentSpec,
    /// Alertmanager base URLs, comma-separated (`http://alertmanager.monitoring:9093`); alerts
    /// are posted to their v2 API (`ruler.alertmanager_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager_url: Option<String>,
    /// Prometheus remote-write endpoint of recording rules
    /// (`http://prometheus.monitoring:9090/api/v1/write`, `ruler.remote_write.url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_write_url: Option<String>,
    /// Interval of groups that set none (`ruler.evaluation_interval`, 1m when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_interval: Option<String>,
    /// ConfigMaps of rule files: each key is a namespace file (`checkout.yaml` holding
    /// `groups: [...]`) of the given tenant. With any listed, the rulers read their rules from
    /// these ConfigMaps (mounted read-only; the rules API can list but not change them);
    /// without, rules are managed through the rules API and kept in the object store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules_config_maps: Vec<RulesConfigMap>,
}

impl std::ops::Deref for RulerSpec {
    type Target = ComponentSpec;

    fn deref(&self) -> &ComponentSpec {
        &self.component
    }
}

/// A ConfigMap of rule files for one tenant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RulesConfigMap {
    /// The ConfigMap, in the LogCluster's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The tenant its rules belong to (`fake` without auth).
    #[serde(default = "default_rules_tenant")]
    #[schemars(length(min = 1))]
    pub tenant: String,
}

fn default_rules_tenant() -> String {
    "fake".into()
}

/// A PersistentVolumeClaim per pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// Requested capacity, a Kubernetes quantity (`10Gi`).
    #[serde(default = "default_volume_size")]
    pub size: Quantity,
    /// StorageClass of the claim; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_volume_size() -> Quantity {
    Quantity("10Gi".into())
}

impl Default for VolumeSpec {
    fn default() -> Self {
        Self { size: default_volume_size(), storage_class_name: None }
    }
}

/// Zone-aware replication.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ZonesSpec {
    /// Node label whose value is a node's zone; ingesters of zone `z` are scheduled on nodes
    /// where this label is `z`.
    #[serde(default = "default_topology_key")]
    #[schemars(length(min = 1))]
    pub topology_key: String,
    /// The zones, as values of `topologyKey`. Each gets its own ingester StatefulSet named
    /// `<cluster>-ingester-<zone>`, so a zone name is a lowercase DNS label.
    #[schemars(schema_with = "schema::zone_names")]
    pub names: Vec<String>,
}

fn default_topology_key() -> String {
    "topology.kubernetes.io/zone".into()
}

/// The hash ring's key-value store.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RingSpec {
    /// Key prefix of this cluster's ring in etcd, ending in `/`; default
    /// `norn/<namespace>/<name>/`, so several clusters can share one etcd. Deleting the cluster
    /// deletes every key under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^\s]+/$"))]
    pub prefix: Option<String>,
    /// The etcd holding the ring.
    pub etcd: EtcdSpec,
}

/// An etcd: either an existing one (`endpoints`) or one the operator runs (`managed`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.endpoints) && size(self.endpoints) > 0) != has(self.managed)")
        .message("set exactly one of ring.etcd.endpoints and ring.etcd.managed"),
    validation = Rule::new("!has(self.endpoints) || self.endpoints.all(e, e.startsWith('https://') == has(self.tls))")
        .message("ring.etcd.endpoints are https:// URLs with ring.etcd.tls and http:// URLs without it"),
    validation = Rule::new("!has(self.tls) || !has(self.managed)")
        .message("ring.etcd.tls is for an existing etcd; the managed etcd serves plain HTTP"),
)]
pub struct EtcdSpec {
    /// Client URLs of an existing etcd: `http://etcd.infra.svc:2379`, or `https://...` with
    /// `tls`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::etcd_endpoints")]
    pub endpoints: Vec<String>,
    /// TLS to an existing etcd (`endpoints` are then `https://`), with client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<EtcdTlsSpec>,
    /// An etcd run by the operator next to the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedEtcdSpec>,
}

/// Certificates for the etcd client of every Norn pod, from a Secret in the cluster's namespace
/// with the keys `tls.crt`, `tls.key` (the client certificate etcd's `--client-cert-auth`
/// checks) and `ca.crt` (the authority of the members' certificates), mounted at
/// `/etc/norn/etcd-tls`. The operator's own etcd client uses the files given by its
/// `--etcd-tls-*` flags.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdTlsSpec {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Name the members' certificates carry; each endpoint's host when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// An etcd StatefulSet run by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedEtcdSpec {
    /// Members of the etcd cluster: 1, 3, 5 or 7. Fixed once created (etcd membership is not
    /// changed by the operator).
    #[serde(default = "default_etcd_replicas")]
    #[schemars(range(min = 1, max = 7))]
    #[x_kube(
        validation = Rule::new("self % 2 == 1").message("ring.etcd.managed.replicas must be odd"),
        validation = Rule::new("self == oldSelf").message("ring.etcd.managed.replicas cannot change after creation"),
    )]
    pub replicas: i32,
    /// Container image of etcd.
    #[serde(default = "default_etcd_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// The volume of each member. Fixed once created, like `ingester.storage`.
    #[serde(default = "default_etcd_volume")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("ring.etcd.managed.storage cannot change after creation"))]
    pub storage: VolumeSpec,
    /// CPU and memory requests and limits of the etcd container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_etcd_replicas() -> i32 {
    3
}

/// The etcd image used when `ring.etcd.managed.image` is unset.
pub const DEFAULT_ETCD_IMAGE: &str = "quay.io/coreos/etcd:v3.5.21";

fn default_etcd_image() -> String {
    DEFAULT_ETCD_IMAGE.into()
}

fn default_etcd_volume() -> VolumeSpec {
    VolumeSpec { size: Quantity("1Gi".into()), storage_class_name: None }
}

impl Default for ManagedEtcdSpec {
    fn default() -> Self {
        Self {
            replicas: default_etcd_replicas(),
            image: default_etcd_image(),
            storage: default_etcd_volume(),
            resources: None,
        }
    }
}

/// The object store shared by every component.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStorageSpec {
    /// An S3 bucket, on AWS or an S3-compatible service.
    pub s3: S3Spec,
}

/// An S3 bucket.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    /// The bucket; it must exist.
    #[schemars(length(min = 1, max = 255))]
    pub bucket: String,
    /// URL of an S3-compatible service (`http://minio.storage.svc:9000`); unset means AWS.
    /// Buckets are addressed path-style when it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub endpoint: Option<String>,
    /// Signing region.
    #[serde(default = "default_region")]
    #[schemars(length(min = 1))]
    pub region: String,
    /// A Secret in the cluster's namespace with the access key; unset means the pods' ambient
    /// credentials (web identity, instance metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<S3SecretRef>,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// The Secret holding S3 credentials.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3SecretRef {
    /// Name of the Secret, in the namespace of the LogCluster.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key of the access key ID in the Secret.
    #[serde(default = "default_access_key_id_key")]
    pub access_key_id_key: String,
    /// Key of the secret access key in the Secret.
    #[serde(default = "default_secret_access_key_key")]
    pub secret_access_key_key: String,
}

fn default_access_key_id_key() -> String {
    "AWS_ACCESS_KEY_ID".into()
}

fn default_secret_access_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

/// Per-tenant limits, with Loki's names (`ingestion_rate_mb`, `max_line_size`, ...; the full list
/// is in docs/configuration.md). Checked by Norn's own configuration parser when reconciled.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Limits of every tenant (the `limits` block of Norn's configuration).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::free_form_object")]
    pub global: BTreeMap<String, serde_json::Value>,
    /// Per-tenant partial limits merged over `global` (the `overrides` block), by tenant ID.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::free_form_object_map")]
    pub tenants: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

impl LimitsSpec {
    /// True when neither global limits nor overrides are set.
    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.tenants.is_empty()
    }
}

/// How long logs are kept in the object store.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Retention of every tenant, a duration (`744h`, `31d`); unset keeps logs forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d|w|y))+$"))]
    pub period: Option<String>,
    /// Retention per tenant ID, overriding `period`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::duration_map")]
    pub tenants: BTreeMap<String, String>,
    /// Retention per stream, for every tenant (Norn's `limits.retention_stream`): the matching
    /// rule with the highest priority wins, the shortest period among equals; streams no rule
    /// matches keep their tenant's period. Per-tenant stream rules go in
    /// `spec.limits.tenants.<id>.retention_stream`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamRetentionSpec>,
    /// How long a chunk removed from the index stays in the bucket (Norn's
    /// `compactor.retention_delete_delay`, 2h when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d|w|y))+$"))]
    pub delete_delay: Option<String>,
}

/// One per-stream retention rule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StreamRetentionSpec {
    /// A stream selector, `{namespace="dev"}`.
    pub selector: String,
    /// Higher wins when several rules match.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub priority: u32,
    /// How long matching streams are kept, a duration (`24h`).
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d|w|y))+$"))]
    pub period: String,
}

/// The CRDs of Norn's resources as one YAML stream: what `crdgen` prints and `crds/` holds.
pub fn crd_yaml() -> Result<String, serde_norway::Error> {
    use kube::CustomResourceExt;
    let crd = serde_norway::to_string(&LogCluster::crd())?;
    Ok(format!("# Generated by crdgen from the Rust types in operator/src/crd; do not edit.\n---\n{crd}"))
}

#[cfg(test)]
mod tests;
