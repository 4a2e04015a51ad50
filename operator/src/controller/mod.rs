//! The LogCluster controller: reconcile as a pipeline.
//!
//! 1. **validate** ([`crate::validate`]): an invalid spec sets `Degraded=True/InvalidSpec` and
//!    stops there; the children keep running as last applied.
//! 2. **build** ([`crate::build`]): the desired children, from pure functions.
//! 3. **apply** ([`apply`]): server-side apply of every child with the field manager
//!    `norn-operator`, then deletion of children the spec no longer asks for.
//! 4. **status** ([`status`]): observedGeneration, conditions and replica counts, written only
//!    when they changed, and an Event for every action that matters.
//!
//! A finalizer (`norn.dev/ring-cleanup`) runs [`RingCleanup`] before a LogCluster goes away;
//! children are removed by Kubernetes' garbage collector through their owner references.

pub mod apply;
pub mod ingesters;
pub mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::build::build;
use crate::build::names::{Component, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGER};
use crate::crd::{LogCluster, LogClusterStatus, RolloutPhase};
use crate::metrics::Metrics;
use crate::ring::{RingCleanup, RingConnector, RingError, RingLocation};
use crate::rollout::IngesterApi;
use crate::validate::validate;

/// The finalizer that keeps a LogCluster until its ring keys are forgotten.
pub const FINALIZER: &str = "norn.dev/ring-cleanup";
/// How often a ready cluster is reconciled without any change (drift repair).
pub const RESYNC: Duration = Duration::from_secs(300);
/// How often a cluster that is not ready yet is looked at again.
pub const NOT_READY_RECHECK: Duration = Duration::from_secs(15);
/// How long to wait before retrying a failed reconciliation.
pub const RETRY: Duration = Duration::from_secs(15);
/// How often a cluster whose ingesters are being replaced or scaled is looked at again (pod
/// and StatefulSet changes also trigger a pass at once).
pub const ROLLOUT_RECHECK: Duration = Duration::from_secs(5);
/// How often a deleted cluster whose pods still stop is looked at again.
pub const DRAIN_RECHECK: Duration = Duration::from_secs(2);

/// A reconciliation that failed; it is retried after [`RETRY`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The LogCluster has no namespace (the API server always sets one).
    #[error("LogCluster {0} has no namespace")]
    MissingNamespace(String),
    /// A child could not be applied.
    #[error("applying {kind} {name}: {source}")]
    Apply {
        /// Kind of the child.
        kind: &'static str,
        /// Name of the child.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Listing children for pruning failed.
    #[error("listing {kind} children: {source}")]
    List {
        /// Kind listed.
        kind: &'static str,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting a child the spec no longer asks for failed.
    #[error("deleting {kind} {name}: {source}")]
    Delete {
        /// Kind of the child.
        kind: &'static str,
        /// Name of the child.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The ingester pods or StatefulSets could not be read or changed.
    #[error("ingesters: {0}")]
    Ingesters(#[source] crate::rollout::RolloutError),
    /// Writing the status failed.
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
    /// The ring keys of a deleted cluster could not be forgotten.
    #[error("forgetting ring keys: {0}")]
    Ring(#[from] RingError),
    /// The cluster is being deleted and its Norn pods still run: the ring is forgotten only once
    /// they are gone, or they would register in it again (retried after [`DRAIN_RECHECK`]).
    #[error("waiting for {pods} pods to stop before forgetting the ring")]
    Draining {
        /// Pods of the cluster still present.
        pods: usize,
    },
    /// Adding or removing the finalizer failed (the source says which).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// The step that failed, as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::MissingNamespace(_) => "metadata",
            Error::Apply { .. } => "apply",
            Error::List { .. } | Error::Delete { .. } => "prune",
            Error::Status(_) => "status",
            Error::Ring(_) => "ring_cleanup",
            Error::Draining { .. } => "draining",
            Error::Ingesters(_) => "ingesters",
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.kind(),
                _ => "finalizer",
            },
        }
    }
}

/// What every reconciliation needs.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Who publishes Events.
    pub reporter: Reporter,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Forgets the ring of deleted clusters.
    pub ring: Arc<dyn RingCleanup>,
    /// Opens a cluster's ingester ring (token reservations, forgetting, rollouts).
    pub rings: Arc<dyn RingConnector>,
    /// The ingesters' HTTP API (flush and leave before a pod goes).
    pub ingesters: Arc<dyn IngesterApi>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("reporter", &self.reporter).finish_non_exhaustive()
    }
}

impl Context {
    async fn event(&self, reference: &ObjectReference, type_: EventType, reason: &str, action: &str, mut note: String) {
        // The API server refuses notes over 1kB.
        status::truncate(&mut note, 1000);
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let ev = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
        if let Err(e) = recorder.publish(&ev, reference).await {
            // Events are for people; a failed one must not fail the reconciliation.
            tracing::warn!(reason, error = %e, "cannot publish event");
        }
    }
}

/// Reconciles one LogCluster (the controller's entry point).
pub async fn reconcile(lc: Arc<LogCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(lc, &ctx).await;
    ctx.metrics.observe(started.elapsed(), result.as_ref().err().map(Error::kind));
    result
}

async fn reconcile_inner(lc: Arc<LogCluster>, ctx: &Context) -> Result<Action, Error> {
    let namespace = lc.namespace().ok_or_else(|| Error::MissingNamespace(lc.name_any()))?;
    let api: Api<LogCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, lc, |event| async {
        match event {
            FinalizerEvent::Apply(lc) => apply(&lc, &api, ctx).await,
            FinalizerEvent::Cleanup(lc) => cleanup(&lc, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// What the controller does after a failed reconciliation.
pub fn error_policy(lc: Arc<LogCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    if let Error::Finalizer(e) = error
        && let kube::runtime::finalizer::Error::CleanupFailed(Error::Draining { pods }) = e.as_ref()
    {
        tracing::info!(cluster = %lc.name_any(), namespace = ?lc.namespace(), pods, "deleting: waiting for pods to stop");
        return Action::requeue(DRAIN_RECHECK);
    }
    tracing::warn!(cluster = %lc.name_any(), namespace = ?lc.namespace(), error = %error, "reconcile failed");
    Action::requeue(RETRY)
}

fn now() -> Time {
    Time(Timestamp::now())
}

async fn apply(lc: &LogCluster, api: &Api<LogCluster>, ctx: &Context) -> Result<Action, Error> {
    let reference = lc.object_ref(&());
    let generation = lc.metadata.generation;
    let old = lc.status.clone().unwrap_or_default();
    let first = old.observed_generation.is_none();
    let spec_changed = old.observed_generation != generation;

    let mut valid = match validate(lc) {
        Ok(v) => v,
        Err(invalid) => {
            let status = status::invalid(&old, generation, &invalid, &now());
            write_status(api, lc, &old, status).await?;
            if spec_changed {
                ctx.event(&reference, EventType::Warning, "InvalidSpec", "Validate", invalid.to_string()).await;
            }
            return Ok(Action::await_change());
        }
    };

    let ingesters =
        ingesters::step(&ctx.client, ctx.rings.as_ref(), ctx.ingesters.as_ref(), &valid, old.rollout.as_ref())
            .await
            .map_err(Error::Ingesters)?;
    valid.ingester_replicas = ingesters.replicas.clone();
    for action in &ingesters.actions {
        let (reason, note) = ingesters::event(action);
        ctx.event(&reference, EventType::Normal, reason, "Ingesters", note).await;
    }
    if let Some(err) = &ingesters.error
        && old.conditions.iter().all(|c| c.reason != crate::crd::ConditionReason::RingUnavailable.as_str())
    {
        let note = format!("ingesters are held at their current count: {err}");
        ctx.event(&reference, EventType::Warning, "RingUnavailable", "Ingesters", note).await;
    }

    let children = build(&valid);
    let applied = match apply::apply_all(&ctx.client, &valid.namespace, &children).await {
        Ok(a) => a,
        Err(e) => {
            let status = status::apply_failed(&old, generation, &e.to_string(), &now());
            write_status(api, lc, &old, status).await?;
            ctx.event(&reference, EventType::Warning, "ApplyFailed", "Apply", e.to_string()).await;
            return Err(e);
        }
    };
    let pruned = apply::prune(&ctx.client, &valid.namespace, &valid.names, &valid.owner.uid, &children).await?;
    for p in &pruned {
        ctx.metrics.pruned.inc();
        let note = format!("deleted {} {}: the spec no longer asks for it", p.kind, p.name);
        ctx.event(&reference, EventType::Normal, "Pruned", "Delete", note).await;
    }

    let status = status::reconciled(&old, generation, &valid, &applied.statefulsets, &ingesters, &now());
    let rollout_finished = old.rollout.as_ref().is_some_and(|r| r.phase != RolloutPhase::Done)
        && status.rollout.as_ref().is_some_and(|r| r.phase == RolloutPhase::Done);
    let ready = status::is_ready(&status);
    let was_ready = status::is_ready(&old);
    let config_changed = !first && old.config_hash.as_ref() != status.config_hash.as_ref();
    write_status(api, lc, &old, status).await?;

    let count = 1 + children.services.len() + children.statefulsets.len() + children.pdbs.len();
    if first {
        let note = format!("created {count} objects: configuration, services, statefulsets, disruption budgets");
        ctx.event(&reference, EventType::Normal, "Created", "Apply", note).await;
    } else if spec_changed {
        let note = format!("applied generation {} to {count} objects", generation.unwrap_or_default());
        ctx.event(&reference, EventType::Normal, "Updated", "Apply", note).await;
    }
    if config_changed {
        let note = format!("configuration changed (hash {}); pods are replaced", valid.config_hash);
        ctx.event(&reference, EventType::Normal, "ConfigChanged", "Apply", note).await;
    }
    if rollout_finished {
        let note = "every ingester runs the current pod template".to_string();
        ctx.event(&reference, EventType::Normal, "RolloutDone", "Ingesters", note).await;
    }
    if ready && !was_ready {
        ctx.event(&reference, EventType::Normal, "Ready", "Observe", "every replica is ready".into()).await;
    }
    let next = if ingesters.waiting.is_some() {
        ROLLOUT_RECHECK
    } else if ready {
        RESYNC
    } else {
        NOT_READY_RECHECK
    };
    Ok(Action::requeue(next))
}

/// Writes `status` when it differs from what the object shows.
async fn write_status(
    api: &Api<LogCluster>,
    lc: &LogCluster,
    old: &LogClusterStatus,
    status: LogClusterStatus,
) -> Result<(), Error> {
    if lc.status.is_some() && *old == status {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": LogCluster::api_version(&()),
        "kind": LogCluster::kind(&()),
        "status": status,
    });
    api.patch_status(&lc.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::Status)?;
    Ok(())
}

async fn cleanup(lc: &LogCluster, ctx: &Context) -> Result<Action, Error> {
    let ring = RingLocation::of(lc);
    if !ring.managed {
        stop_pods(lc, ctx).await?;
    }
    ctx.ring.forget_cluster(&ring).await?;
    let note = if ring.managed {
        "the managed etcd is deleted with the cluster".to_string()
    } else {
        format!("forgot the ring under {} in {}", ring.prefix, ring.endpoints.join(","))
    };
    ctx.event(&lc.object_ref(&()), EventType::Normal, "Deleting", "Cleanup", note).await;
    Ok(Action::await_change())
}

/// Deletes the cluster's StatefulSets and fails with [`Error::Draining`] while any of its pods
/// remain. The garbage collector would delete them too, but only after the LogCluster itself is
/// gone: pods that outlive the finalizer (distributors heartbeating, ingesters flushing on
/// SIGTERM) write their ring entries again into the external etcd it just cleared. The
/// ingesters flush to the object store on the way out, within their grace period.
async fn stop_pods(lc: &LogCluster, ctx: &Context) -> Result<(), Error> {
    let namespace = lc.namespace().ok_or_else(|| Error::MissingNamespace(lc.name_any()))?;
    let selector = crate::build::names::Names::new(&lc.name_any()).children_selector();
    let lp = ListParams::default().labels(&selector);
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let list = sets.list(&lp).await.map_err(|source| Error::List { kind: "StatefulSet", source })?;
    for set in list.items.iter().filter(|s| s.metadata.deletion_timestamp.is_none()) {
        let name = set.name_any();
        match sets.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => return Err(Error::Delete { kind: "StatefulSet", name, source }),
        }
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let left = pods.list(&lp).await.map_err(|source| Error::List { kind: "Pod", source })?.items.len();
    if left > 0 {
        return Err(Error::Draining { pods: left });
    }
    Ok(())
}

/// Runs the controller until `shutdown` is cancelled: watches LogClusters (in `namespace`, or
/// everywhere) and the children the operator manages.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let children = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let ingester_pods = format!("{LABEL_MANAGED_BY}={MANAGER},{LABEL_COMPONENT}={}", Component::Ingester);
    let (clusters, sts, cms, svcs, pdbs, pods) = match &namespace {
        Some(ns) => (
            Api::<LogCluster>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client.clone(), ns),
            Api::<ConfigMap>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
            Api::<Pod>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client),
        ),
    };
    Controller::new(clusters, watcher::Config::default())
        .owns(sts, children.clone())
        .owns(cms, children.clone())
        .owns(svcs, children.clone())
        .owns(pdbs, children)
        // Ingester pods are owned by their StatefulSet: map them to the cluster by its label.
        .watches(pods, watcher::Config::default().labels(&ingester_pods), |pod: Pod| {
            let cluster = pod.labels().get(LABEL_INSTANCE)?.clone();
            Some(ObjectRef::<LogCluster>::new(&cluster).within(&pod.namespace()?))
        })
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(cluster = %obj.name, namespace = ?obj.namespace, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        })
        .await;
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
