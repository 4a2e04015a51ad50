//! The third step of reconciliation: server-side apply of every child with one field manager,
//! then pruning of the children the spec no longer asks for.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::{NamespaceResourceScope, Resource as OpenApiResource};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use crate::build::Children;
use crate::build::names::{MANAGER, Names};

/// A child object that was deleted because the spec no longer asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pruned {
    /// Its kind (`StatefulSet`, ...).
    pub kind: &'static str,
    /// Its name.
    pub name: String,
}

/// What the API server returned for the applied children that status is computed from.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    /// The StatefulSets, with their status as of the apply.
    pub statefulsets: Vec<StatefulSet>,
}

/// Server-side applies every child, forcing ownership of the fields the operator sets: the
/// operator is the only writer of its children's specs.
pub async fn apply_all(client: &Client, namespace: &str, children: &Children) -> Result<Applied, Error> {
    apply_one(client, namespace, &children.config_map).await?;
    for svc in &children.services {
        apply_one(client, namespace, svc).await?;
    }
    let mut statefulsets = Vec::with_capacity(children.statefulsets.len());
    for sts in &children.statefulsets {
        statefulsets.push(apply_one(client, namespace, sts).await?);
    }
    for pdb in &children.pdbs {
        apply_one(client, namespace, pdb).await?;
    }
    Ok(Applied { statefulsets })
}

async fn apply_one<K>(client: &Client, namespace: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + OpenApiResource
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let name = obj.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(obj)).await.map_err(|source| Error::Apply {
        kind: <K as OpenApiResource>::KIND,
        name,
        source,
    })
}

/// Deletes the children of the cluster (by label, and controlled by `owner_uid`) that are not in
/// `children`: a zone, a managed etcd or a component the spec dropped.
pub async fn prune(
    client: &Client,
    namespace: &str,
    names: &Names,
    owner_uid: &str,
    children: &Children,
) -> Result<Vec<Pruned>, Error> {
    let keep = |objs: Vec<String>| objs.into_iter().collect::<BTreeSet<_>>();
    let mut pruned = Vec::new();
    let cm = keep(vec![children.config_map.name_any()]);
    pruned.extend(prune_kind::<ConfigMap>(client, namespace, names, owner_uid, &cm).await?);
    let svc = keep(children.services.iter().map(ResourceExt::name_any).collect());
    pruned.extend(prune_kind::<Service>(client, namespace, names, owner_uid, &svc).await?);
    let sts = keep(children.statefulsets.iter().map(ResourceExt::name_any).collect());
    pruned.extend(prune_kind::<StatefulSet>(client, namespace, names, owner_uid, &sts).await?);
    let pdb = keep(children.pdbs.iter().map(ResourceExt::name_any).collect());
    pruned.extend(prune_kind::<PodDisruptionBudget>(client, namespace, names, owner_uid, &pdb).await?);
    Ok(pruned)
}

async fn prune_kind<K>(
    client: &Client,
    namespace: &str,
    names: &Names,
    owner_uid: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<Pruned>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + OpenApiResource
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let kind = <K as OpenApiResource>::KIND;
    let list = api
        .list(&ListParams::default().labels(&names.children_selector()))
        .await
        .map_err(|source| Error::List { kind, source })?;
    let mut pruned = Vec::new();
    for obj in list.items {
        let name = obj.name_any();
        let controlled = obj.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == owner_uid);
        if keep.contains(&name) || !controlled {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => pruned.push(Pruned { kind, name }),
            // Someone else deleted it first: the outcome is the same.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => return Err(Error::Delete { kind, name, source }),
        }
    }
    Ok(pruned)
}
