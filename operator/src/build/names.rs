//! Names and labels of a LogCluster's children: one place, so builders, pruning and status agree.

use std::collections::BTreeMap;
use std::fmt;

/// Label every child carries with the LogCluster's name; pruning selects on it.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// Label naming the application.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Label naming the component (`ingester`, `etcd`, ...).
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Label naming who manages the object; pruning selects on it.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label naming the zone of a zone-aware ingester.
pub const LABEL_ZONE: &str = "norn.dev/zone";
/// Pod template annotation: hash of the rendered configuration, so a config change rolls pods.
pub const ANNOTATION_CONFIG_HASH: &str = "norn.dev/config-hash";
/// Pod-template annotation with `spec.tls.serverName`: the name the operator checks in a pod's
/// HTTPS certificate when it calls the pod by IP (absent without TLS).
pub const ANNOTATION_TLS_SERVER_NAME: &str = "norn.dev/tls-server-name";

/// Value of [`LABEL_NAME`] on Norn's pods.
pub const APP_NAME: &str = "norn";
/// Value of [`LABEL_MANAGED_BY`]; also the server-side apply field manager.
pub const MANAGER: &str = "norn-operator";

/// A Norn component, each its own StatefulSet (or one per zone for ingesters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// Receives pushes.
    Distributor,
    /// Holds recent data and the write-ahead log.
    Ingester,
    /// Answers queries.
    Querier,
    /// Splits, queues and caches queries.
    QueryFrontend,
    /// Retention, delete requests and index compaction: one pod.
    Compactor,
    /// Rule groups: alerts and recorded series.
    Ruler,
}

impl Component {
    /// Every Norn component, in the order children are applied.
    pub const ALL: [Component; 6] = [
        Component::Distributor,
        Component::Ingester,
        Component::Querier,
        Component::QueryFrontend,
        Component::Compactor,
        Component::Ruler,
    ];

    /// The component's name: its `--target` value and part of its children's names.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Distributor => "distributor",
            Component::Ingester => "ingester",
            Component::Querier => "querier",
            Component::QueryFrontend => "query-frontend",
            Component::Compactor => "compactor",
            Component::Ruler => "ruler",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Component label value of the managed etcd.
pub const ETCD_COMPONENT: &str = "etcd";
/// Component label value of the managed memcached.
pub const MEMCACHED_COMPONENT: &str = "memcached";

/// The names of one LogCluster's children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    cluster: String,
}

impl Names {
    /// Names for the LogCluster called `cluster`.
    pub fn new(cluster: &str) -> Self {
        Self { cluster: cluster.to_string() }
    }

    /// The LogCluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The ConfigMap with the rendered configuration.
    pub fn config_map(&self) -> String {
        format!("{}-config", self.cluster)
    }

    /// The StatefulSet (and client Service and PDB) of a component; `zone` for zone-aware
    /// ingesters.
    pub fn component(&self, c: Component, zone: Option<&str>) -> String {
        match zone {
            Some(z) => format!("{}-{}-{z}", self.cluster, c.as_str()),
            None => format!("{}-{}", self.cluster, c.as_str()),
        }
    }

    /// The headless Service governing a component's pods.
    pub fn headless(&self, c: Component) -> String {
        format!("{}-{}-headless", self.cluster, c.as_str())
    }

    /// The managed etcd's StatefulSet, client Service and PDB.
    pub fn etcd(&self) -> String {
        format!("{}-etcd", self.cluster)
    }

    /// The managed etcd's headless (peer) Service.
    pub fn etcd_headless(&self) -> String {
        format!("{}-etcd-headless", self.cluster)
    }

    /// The managed memcached's StatefulSet.
    pub fn memcached(&self) -> String {
        format!("{}-memcached", self.cluster)
    }

    /// The managed memcached's headless Service, naming each server.
    pub fn memcached_headless(&self) -> String {
        format!("{}-memcached-headless", self.cluster)
    }

    /// Labels every child of this cluster carries.
    pub fn common_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_string(), APP_NAME.to_string()),
            (LABEL_INSTANCE.to_string(), self.cluster.clone()),
            (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
        ])
    }

    /// The label selector (as `k=v,k=v`) matching every child of this cluster.
    pub fn children_selector(&self) -> String {
        format!("{LABEL_INSTANCE}={},{LABEL_MANAGED_BY}={MANAGER}", self.cluster)
    }

    /// Labels selecting the pods of a component (of one zone when `zone` is given). They go into
    /// StatefulSet selectors, which are immutable: never add to them.
    pub fn selector_labels(&self, component: &str, zone: Option<&str>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (LABEL_NAME.to_string(), APP_NAME.to_string()),
            (LABEL_INSTANCE.to_string(), self.cluster.clone()),
            (LABEL_COMPONENT.to_string(), component.to_string()),
        ]);
        if let Some(z) = zone {
            labels.insert(LABEL_ZONE.to_string(), z.to_string());
        }
        labels
    }

    /// Labels of a component's objects and pods: the common labels plus the selector labels.
    pub fn component_labels(&self, component: &str, zone: Option<&str>) -> BTreeMap<String, String> {
        let mut labels = self.common_labels();
        labels.extend(self.selector_labels(component, zone));
        labels
    }
}
