//! [`PodApi`] over the Kubernetes API.

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};

use super::{IngesterPod, IngesterSet, PodApi, RolloutError};
use crate::build::config::HTTP_PORT;
use crate::build::names::{ANNOTATION_TLS_SERVER_NAME, Component, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_ZONE, Names};

/// Label the StatefulSet controller puts on each pod: the template revision it was made from.
pub const LABEL_REVISION: &str = "controller-revision-hash";
/// Label the StatefulSet controller puts on each pod: its ordinal.
pub const LABEL_POD_INDEX: &str = "apps.kubernetes.io/pod-index";

/// The ingester pods and StatefulSets of one LogCluster.
#[derive(Clone)]
pub struct KubePods {
    pods: Api<Pod>,
    sets: Api<StatefulSet>,
    selector: String,
}

impl std::fmt::Debug for KubePods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubePods").field("selector", &self.selector).finish_non_exhaustive()
    }
}

impl KubePods {
    /// The ingesters of the cluster `names` in `namespace`.
    pub fn new(client: Client, namespace: &str, names: &Names) -> Self {
        Self {
            pods: Api::namespaced(client.clone(), namespace),
            sets: Api::namespaced(client, namespace),
            selector: format!("{LABEL_INSTANCE}={},{LABEL_COMPONENT}={}", names.cluster(), Component::Ingester),
        }
    }
}

fn kube_err(e: kube::Error) -> RolloutError {
    RolloutError::Kubernetes(e.to_string())
}

#[async_trait]
impl PodApi for KubePods {
    async fn sets(&self) -> Result<Vec<IngesterSet>, RolloutError> {
        let list = self.sets.list(&ListParams::default().labels(&self.selector)).await.map_err(kube_err)?;
        Ok(list.items.iter().map(ingester_set).collect())
    }

    async fn ingesters(&self) -> Result<Vec<IngesterPod>, RolloutError> {
        let list = self.pods.list(&ListParams::default().labels(&self.selector)).await.map_err(kube_err)?;
        Ok(list.items.iter().filter_map(ingester_pod).collect())
    }

    async fn delete_pod(&self, name: &str) -> Result<(), RolloutError> {
        match self.pods.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(kube_err(e)),
        }
    }
}

/// An ingester StatefulSet; its update revision counts only once the StatefulSet controller
/// observed the current generation.
pub fn ingester_set(sts: &StatefulSet) -> IngesterSet {
    let status = sts.status.clone().unwrap_or_default();
    let observed = status.observed_generation.is_some() && status.observed_generation >= sts.metadata.generation;
    IngesterSet {
        name: sts.name_any(),
        zone: sts.labels().get(LABEL_ZONE).cloned(),
        replicas: sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        update_revision: status.update_revision.filter(|_| observed),
    }
}

/// An ingester pod, if it belongs to a StatefulSet (it has an owner and an ordinal).
pub fn ingester_pod(pod: &Pod) -> Option<IngesterPod> {
    let name = pod.name_any();
    let set = pod.owner_references().iter().find(|o| o.kind == "StatefulSet")?.name.clone();
    let ordinal = match pod.labels().get(LABEL_POD_INDEX) {
        Some(i) => i.parse().ok()?,
        None => name.strip_prefix(&format!("{set}-"))?.parse().ok()?,
    };
    let status = pod.status.clone().unwrap_or_default();
    let ready = status.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Ready" && c.status == "True");
    Some(IngesterPod {
        name,
        set,
        ordinal,
        zone: pod.labels().get(LABEL_ZONE).cloned(),
        revision: pod.labels().get(LABEL_REVISION).cloned().unwrap_or_default(),
        ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        http_addr: status
            .pod_ip
            .filter(|ip| !ip.is_empty())
            .map(|ip| if ip.contains(':') { format!("[{ip}]:{HTTP_PORT}") } else { format!("{ip}:{HTTP_PORT}") }),
        tls_server_name: pod.annotations().get(ANNOTATION_TLS_SERVER_NAME).cloned(),
    })
}
