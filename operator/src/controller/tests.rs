//! Reconcile scenarios against a fake API server (tower-test): each scenario runs one
//! reconciliation and checks every request it made, in order.

use std::sync::Mutex;

use async_trait::async_trait;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};

use norn::ring::kv::{KvStore, MemoryKv};
use norn::ring::{InstanceDesc, InstanceState, RingDesc};

use super::fake::{self, Call, Fake};
use super::*;
use crate::ring::{ClusterRing, RingCleanup, RingError, RingLocation};
use crate::rollout::{IngesterPod, RingView, RolloutError};

const NS: &str = "observability";
const LC: &str = "/apis/norn.dev/v1alpha1/namespaces/observability/logclusters/logs";

/// Records the rings it was asked to forget.
#[derive(Default)]
struct RecordingRing {
    forgotten: Mutex<Vec<RingLocation>>,
}

#[async_trait]
impl RingCleanup for RecordingRing {
    async fn forget_cluster(&self, ring: &RingLocation) -> Result<(), RingError> {
        self.forgotten.lock().expect("lock").push(ring.clone());
        Ok(())
    }
}

/// The fixture cluster with a finalizer, `generation` and `status`.
fn cluster(generation: i64, status: Option<Value>) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/managed-etcd/logcluster.yaml");
    let text = std::fs::read_to_string(path).expect("fixture");
    let mut lc: Value = serde_norway::from_str(&text).expect("fixture parses");
    lc["metadata"]["generation"] = json!(generation);
    lc["metadata"]["finalizers"] = json!([FINALIZER]);
    lc["metadata"]["resourceVersion"] = json!("7");
    if let Some(s) = status {
        lc["status"] = s;
    }
    lc
}

/// The clusters' rings, in one in-memory store (`None`: etcd is unreachable).
struct MemoryRings(Option<Arc<MemoryKv>>);

#[async_trait]
impl RingConnector for MemoryRings {
    async fn connect(&self, endpoints: &[String], prefix: &str) -> Result<Arc<dyn RingView>, RolloutError> {
        match &self.0 {
            Some(kv) => Ok(Arc::new(ClusterRing::new(kv.clone(), prefix))),
            None => Err(RolloutError::Ring(format!("etcd at {} is unreachable", endpoints.join(",")))),
        }
    }
}

/// Records the ingesters told to prepare for shutdown.
#[derive(Default)]
struct RecordingIngesters(Mutex<Vec<String>>);

#[async_trait]
impl IngesterApi for RecordingIngesters {
    async fn prepare_shutdown(&self, pod: &IngesterPod) -> Result<(), RolloutError> {
        self.0.lock().expect("lock").push(pod.name.clone());
        Ok(())
    }
}

struct Outcome {
    result: Result<Action, Error>,
    calls: Vec<Call>,
    ring: Arc<RecordingRing>,
    prepared: Vec<String>,
}

/// The ring key of the fixture cluster.
const RING_KEY: &str = "norn/observability/logs/ring";

async fn run(lc: Value, fake: Fake) -> Outcome {
    run_with(lc, fake, Some(Arc::new(MemoryKv::new()))).await
}

async fn run_with(lc: Value, fake: Fake, store: Option<Arc<MemoryKv>>) -> Outcome {
    let (service, handle) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
    let server = tokio::spawn(fake::serve(handle, Fake { cluster: lc.clone(), ..fake }));
    let ring = Arc::new(RecordingRing::default());
    let ingesters = Arc::new(RecordingIngesters::default());
    let ctx = Arc::new(Context {
        client: Client::new(service, NS),
        reporter: Reporter { controller: "norn-operator".into(), instance: Some("test".into()) },
        metrics: Arc::new(Metrics::new()),
        ring: ring.clone(),
        rings: Arc::new(MemoryRings(store)),
        ingesters: ingesters.clone(),
    });
    let obj: LogCluster = serde_json::from_value(lc).expect("cluster deserializes");
    let result = reconcile(Arc::new(obj), ctx).await;
    let calls = server.await.expect("fake server");
    let prepared = ingesters.0.lock().expect("lock").clone();
    Outcome { result, calls, ring, prepared }
}

fn lines(calls: &[Call]) -> Vec<String> {
    calls.iter().map(Call::line).collect()
}

const EVENTS: &str = "POST /apis/events.k8s.io/v1/namespaces/observability/events";

/// The ingester step's reads: StatefulSets and pods.
fn ingester_lines() -> Vec<String> {
    vec![
        "GET /apis/apps/v1/namespaces/observability/statefulsets".to_string(),
        "GET /api/v1/namespaces/observability/pods".to_string(),
    ]
}

/// Every apply and prune call of the managed-etcd fixture, in order.
fn apply_and_prune_lines() -> Vec<String> {
    let core = "/api/v1/namespaces/observability";
    let apps = "/apis/apps/v1/namespaces/observability";
    let policy = "/apis/policy/v1/namespaces/observability";
    let mut out = vec![format!("PATCH {core}/configmaps/logs-config")];
    let mut services = vec!["logs-etcd".to_string(), "logs-etcd-headless".to_string()];
    for c in ["distributor", "ingester", "querier", "query-frontend", "compactor", "ruler"] {
        services.push(format!("logs-{c}"));
        services.push(format!("logs-{c}-headless"));
    }
    out.extend(services.iter().map(|s| format!("PATCH {core}/services/{s}")));
    let sets = [
        "logs-etcd",
        "logs-distributor",
        "logs-ingester",
        "logs-querier",
        "logs-query-frontend",
        "logs-compactor",
        "logs-ruler",
    ];
    for s in sets {
        out.push(format!("PATCH {apps}/statefulsets/{s}"));
    }
    for s in sets {
        out.push(format!("PATCH {policy}/poddisruptionbudgets/{s}"));
    }
    out.push(format!("GET {core}/configmaps"));
    out.push(format!("GET {core}/services"));
    out.push(format!("GET {apps}/statefulsets"));
    out.push(format!("GET {policy}/poddisruptionbudgets"));
    out
}

fn events(calls: &[Call]) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|c| c.path.ends_with("/events"))
        .map(|c| (c.body["type"].as_str().unwrap_or("").into(), c.body["reason"].as_str().unwrap_or("").into()))
        .collect()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == type_)).expect("condition present")
}

fn status_patch(calls: &[Call]) -> Option<&Call> {
    calls.iter().find(|c| c.path.ends_with("/status"))
}

#[tokio::test]
async fn create_adds_the_finalizer_and_nothing_else() {
    let mut lc = cluster(1, None);
    lc["metadata"].as_object_mut().expect("metadata").remove("finalizers");
    let out = run(lc, Fake::default()).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    assert_eq!(lines(&out.calls), vec![format!("PATCH {LC}")]);
    let call = &out.calls[0];
    assert_eq!(call.content_type, "application/json-patch+json");
    assert_eq!(call.body[1], json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}));
}

#[tokio::test]
async fn first_reconcile_applies_every_child_and_reports_progress() {
    let out = run(cluster(1, None), Fake::default()).await;
    let action = out.result.expect("reconciled");
    assert_eq!(action, Action::requeue(NOT_READY_RECHECK));
    let mut want = ingester_lines();
    want.push(EVENTS.into());
    want.extend(apply_and_prune_lines());
    want.push(format!("PATCH {LC}/status"));
    want.push(EVENTS.into());
    assert_eq!(lines(&out.calls), want);
    for apply in out.calls.iter().filter(|c| c.method == "PATCH" && !c.path.contains("logclusters")) {
        assert_eq!(apply.content_type, "application/apply-patch+yaml", "{}", apply.path);
        assert!(apply.query.contains("fieldManager=norn-operator"), "{}", apply.query);
        assert!(apply.query.contains("force=true"), "{}", apply.query);
        let owner = &apply.body["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], "7d1f0c4e-5b8a-4c1e-9a53-2f6d7e8b9c01", "{}", apply.path);
        assert_eq!(owner["controller"], true);
    }
    let status = &status_patch(&out.calls).expect("status written").body["status"];
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(condition(status, "Ready")["status"], "False");
    assert_eq!(condition(status, "Progressing")["status"], "True");
    assert_eq!(condition(status, "Degraded")["status"], "False");
    assert_eq!(status["components"]["ingester"], json!({"replicas": 3, "readyReplicas": 0, "updatedReplicas": 0}));
    assert_eq!(status["configHash"].as_str().map(str::len), Some(16));
    assert_eq!(
        events(&out.calls),
        vec![("Normal".to_string(), "TokensReserved".to_string()), ("Normal".to_string(), "Created".to_string()),]
    );
    // Before any ingester pod exists, its tokens are in the ring: the data plane's own PENDING
    // reservations, with the spread-minimizing tokens of its ordinal.
    let members: Vec<(String, String)> = status["ringMembers"]
        .as_array()
        .expect("ring members")
        .iter()
        .map(|m| (m["id"].as_str().unwrap_or("").to_string(), m["state"].as_str().unwrap_or("").to_string()))
        .collect();
    let want: Vec<(String, String)> = (0..3).map(|i| (format!("logs-ingester-{i}"), "UNHEALTHY".to_string())).collect();
    assert_eq!(members, want, "reservations have no heartbeat yet");
}

#[tokio::test]
async fn reservations_hold_the_deterministic_tokens_of_each_ordinal() {
    let store = Arc::new(MemoryKv::new());
    let out = run_with(cluster(1, None), Fake::default(), Some(store.clone())).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    let ring = ClusterRing::new(store, "norn/observability/logs/").read().await.expect("ring");
    assert_eq!(ring.instances.len(), 3);
    for i in 0..3u32 {
        let e = &ring.instances[&format!("logs-ingester-{i}")];
        assert_eq!(e.state(), InstanceState::Pending);
        assert_eq!(e.tokens, norn::ring::tokens::spread_minimizing_tokens(i, "", 128));
    }
}

#[tokio::test]
async fn an_unreachable_ring_holds_new_ingesters_back() {
    let out = run_with(cluster(1, None), Fake::default(), None).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    let ingester =
        out.calls.iter().find(|c| c.path.ends_with("/statefulsets/logs-ingester")).expect("ingester applied");
    assert_eq!(ingester.body["spec"]["replicas"], 0, "no ingester starts before its tokens are in etcd");
    let distributor =
        out.calls.iter().find(|c| c.path.ends_with("/statefulsets/logs-distributor")).expect("distributor");
    assert_eq!(distributor.body["spec"]["replicas"], 2);
    let status = &status_patch(&out.calls).expect("status").body["status"];
    assert_eq!(condition(status, "Ready")["reason"], "RingUnavailable");
    assert_eq!(condition(status, "Progressing")["reason"], "RingUnavailable");
    assert!(events(&out.calls).contains(&("Warning".to_string(), "RingUnavailable".to_string())));
}

/// An ingester StatefulSet whose template changed: `updateRevision` is `new`, its pods run `old`.
fn outdated_ingesters(ready: [bool; 3]) -> Vec<Value> {
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "logs-ingester", "namespace": NS, "generation": 2,
            "labels": {"app.kubernetes.io/instance": "logs", "app.kubernetes.io/managed-by": "norn-operator",
                "app.kubernetes.io/component": "ingester"}},
        "spec": {"replicas": 3, "serviceName": "logs-ingester-headless", "selector": {},
            "template": {"metadata": {}, "spec": {"containers": []}}},
        "status": {"observedGeneration": 2, "replicas": 3, "updateRevision": "logs-ingester-new"}});
    let mut out = vec![sts];
    for (i, ready) in ready.iter().enumerate() {
        out.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("logs-ingester-{i}"), "namespace": NS,
                "labels": {"app.kubernetes.io/instance": "logs", "app.kubernetes.io/component": "ingester",
                    "controller-revision-hash": "logs-ingester-old", "apps.kubernetes.io/pod-index": i.to_string()},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "logs-ingester",
                    "uid": "u", "controller": true}]},
            "status": {"podIP": format!("10.0.0.{i}"),
                "conditions": [{"type": "Ready", "status": if *ready { "True" } else { "False" }}]}}));
    }
    out
}

/// A ring where the three ingesters heartbeat now, ACTIVE.
async fn active_ring() -> Arc<MemoryKv> {
    let store = Arc::new(MemoryKv::new());
    let now = norn::ring::lifecycler::now_ms();
    let mut ring = RingDesc::default();
    for i in 0..3u32 {
        let mut e = InstanceDesc {
            addr: format!("10.0.0.{i}:9095"),
            tokens: norn::ring::tokens::spread_minimizing_tokens(i, "", 128),
            heartbeat_ms: now,
            registered_ms: now,
            ..Default::default()
        };
        e.set_state(InstanceState::Active);
        ring.instances.insert(format!("logs-ingester-{i}"), e);
    }
    let kv = norn::ring::ring_kv(store.clone() as Arc<dyn KvStore>, 3);
    kv.put(RING_KEY, &ring).await.expect("seed the ring");
    store
}

#[tokio::test]
async fn a_changed_template_replaces_one_ingester_first() {
    let fake = Fake { existing: outdated_ingesters([true; 3]), ..Fake::default() };
    let out = run_with(cluster(1, None), fake, Some(active_ring().await)).await;
    assert_eq!(out.result.expect("reconciled"), Action::requeue(ROLLOUT_RECHECK));
    assert_eq!(out.prepared, vec!["logs-ingester-0".to_string()], "told to flush and leave on SIGTERM");
    let deletes: Vec<String> = out.calls.iter().filter(|c| c.method == "DELETE").map(Call::line).collect();
    assert_eq!(deletes, vec!["DELETE /api/v1/namespaces/observability/pods/logs-ingester-0"]);
    let status = &status_patch(&out.calls).expect("status").body["status"];
    assert_eq!(status["rollout"]["phase"], "Leaving");
    assert_eq!(status["rollout"]["current"], "logs-ingester-0");
    assert_eq!(status["rollout"]["targetRevision"], "logs-ingester-new");
    assert_eq!(status["rollout"]["total"], 3);
    assert_eq!(condition(status, "Progressing")["reason"], "RollingOut");
    assert!(events(&out.calls).contains(&("Normal".to_string(), "ReplacingIngesters".to_string())));
    let states: Vec<&str> =
        status["ringMembers"].as_array().expect("members").iter().filter_map(|m| m["state"].as_str()).collect();
    assert_eq!(states, vec!["ACTIVE"; 3]);
}

#[tokio::test]
async fn no_ingester_is_replaced_while_another_is_not_ready() {
    let fake = Fake { existing: outdated_ingesters([true, true, false]), ..Fake::default() };
    let out = run_with(cluster(1, None), fake, Some(active_ring().await)).await;
    // ing-2 is down and outdated: it is the one replaced, never a healthy one on top of it.
    assert_eq!(out.prepared, vec!["logs-ingester-2".to_string()]);
    let deletes: Vec<String> = out.calls.iter().filter(|c| c.method == "DELETE").map(Call::line).collect();
    assert_eq!(deletes, vec!["DELETE /api/v1/namespaces/observability/pods/logs-ingester-2"]);
}

#[tokio::test]
async fn a_second_pass_without_changes_writes_no_status_and_no_event() {
    let store = Arc::new(MemoryKv::new());
    let first = run_with(cluster(1, None), Fake::default(), Some(store.clone())).await;
    let status = status_patch(&first.calls).expect("status").body["status"].clone();
    let out = run_with(cluster(1, Some(status)), Fake::default(), Some(store)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    let mut want = ingester_lines();
    want.extend(apply_and_prune_lines());
    assert_eq!(lines(&out.calls), want, "only reads, the idempotent applies and the prune lists");
}

#[tokio::test]
async fn becoming_ready_is_reported_once() {
    let store = Arc::new(MemoryKv::new());
    let first = run_with(cluster(1, None), Fake::default(), Some(store.clone())).await;
    let status = status_patch(&first.calls).expect("status").body["status"].clone();
    let out = run_with(cluster(1, Some(status)), Fake { ready: true, ..Fake::default() }, Some(store.clone())).await;
    assert_eq!(out.result.expect("reconciled"), Action::requeue(RESYNC));
    let status = &status_patch(&out.calls).expect("status").body["status"];
    assert_eq!(condition(status, "Ready")["status"], "True");
    assert_eq!(condition(status, "Ready")["reason"], "AllReplicasReady");
    assert_eq!(condition(status, "Progressing")["status"], "False");
    assert_eq!(status["components"]["ingester"]["readyReplicas"], 3);
    assert_eq!(events(&out.calls), vec![("Normal".to_string(), "Ready".to_string())]);
    let again = run_with(cluster(1, Some(status.clone())), Fake { ready: true, ..Fake::default() }, Some(store)).await;
    assert!(status_patch(&again.calls).is_none());
    assert!(events(&again.calls).is_empty());
}

#[tokio::test]
async fn a_spec_change_applies_prunes_and_reports() {
    let first = run(cluster(1, None), Fake::default()).await;
    let status = status_patch(&first.calls).expect("status").body["status"].clone();
    // Generation 2 drops the managed etcd for an external one and raises a limit.
    let mut lc = cluster(2, Some(status));
    lc["spec"]["ring"]["etcd"] = json!({"endpoints": ["http://etcd.infra.svc:2379"]});
    lc["spec"]["limits"]["global"]["ingestion_rate_mb"] = json!(16);
    let owned = |kind: &str, api: &str, name: &str| {
        json!({"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": NS,
            "labels": {"app.kubernetes.io/instance": "logs", "app.kubernetes.io/managed-by": "norn-operator"},
            "ownerReferences": [{"apiVersion": "norn.dev/v1alpha1", "kind": "LogCluster", "name": "logs",
                "uid": "7d1f0c4e-5b8a-4c1e-9a53-2f6d7e8b9c01", "controller": true}]}})
    };
    let mut foreign = owned("Service", "v1", "logs-debug");
    foreign["metadata"]["ownerReferences"][0]["uid"] = json!("someone-else");
    let existing = vec![
        owned("StatefulSet", "apps/v1", "logs-etcd"),
        owned("StatefulSet", "apps/v1", "logs-ingester"),
        owned("Service", "v1", "logs-etcd"),
        owned("Service", "v1", "logs-etcd-headless"),
        owned("PodDisruptionBudget", "policy/v1", "logs-etcd"),
        foreign,
    ];
    let out = run(lc, Fake { existing, ..Fake::default() }).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    let deletes: Vec<String> = out.calls.iter().filter(|c| c.method == "DELETE").map(Call::line).collect();
    assert_eq!(
        deletes,
        vec![
            "DELETE /api/v1/namespaces/observability/services/logs-etcd",
            "DELETE /api/v1/namespaces/observability/services/logs-etcd-headless",
            "DELETE /apis/apps/v1/namespaces/observability/statefulsets/logs-etcd",
            "DELETE /apis/policy/v1/namespaces/observability/poddisruptionbudgets/logs-etcd",
        ],
        "only what the spec dropped, and only what this cluster controls"
    );
    assert!(!out.calls.iter().any(|c| c.method == "PATCH" && c.path.ends_with("/statefulsets/logs-etcd")));
    let ingester =
        out.calls.iter().find(|c| c.path.ends_with("/statefulsets/logs-ingester")).expect("ingester applied");
    let args = ingester.body["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--ring.etcd.endpoints=http://etcd.infra.svc:2379"), "{args}");
    let status = &status_patch(&out.calls).expect("status").body["status"];
    assert_eq!(status["observedGeneration"], 2);
    let reasons: Vec<String> = events(&out.calls).into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        reasons,
        vec!["TokensReserved", "Pruned", "Pruned", "Pruned", "Pruned", "Updated", "ConfigChanged"],
        "{:?}",
        events(&out.calls)
    );
}

#[tokio::test]
async fn deletion_forgets_the_ring_and_removes_the_finalizer() {
    let mut lc = cluster(1, None);
    lc["spec"]["ring"]["etcd"] = json!({"endpoints": ["http://etcd.infra.svc:2379"]});
    lc["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let out = run(lc, Fake::default()).await;
    assert_eq!(out.result.expect("cleaned up"), Action::await_change());
    assert_eq!(
        lines(&out.calls),
        vec![
            format!("GET /apis/apps/v1/namespaces/{NS}/statefulsets"),
            format!("GET /api/v1/namespaces/{NS}/pods"),
            EVENTS.to_string(),
            format!("PATCH {LC}")
        ]
    );
    assert_eq!(out.calls[2].body["reason"], "Deleting");
    let remove = &out.calls[3].body;
    assert_eq!(remove[0], json!({"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER}));
    assert_eq!(remove[1], json!({"op": "remove", "path": "/metadata/finalizers/0"}));
    let forgotten = out.ring.forgotten.lock().expect("lock").clone();
    assert_eq!(
        forgotten,
        vec![RingLocation {
            endpoints: vec!["http://etcd.infra.svc:2379".into()],
            prefix: "norn/observability/logs/".into(),
            managed: false,
        }]
    );
}

#[tokio::test]
async fn deletion_stops_the_pods_before_it_forgets_an_external_ring() {
    let mut lc = cluster(1, None);
    lc["spec"]["ring"]["etcd"] = json!({"endpoints": ["http://etcd.infra.svc:2379"]});
    lc["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let out = run(lc, Fake { existing: outdated_ingesters([true; 3]), ..Fake::default() }).await;
    let err = out.result.expect_err("pods still run");
    assert!(
        matches!(
            &err,
            Error::Finalizer(e) if matches!(e.as_ref(), kube::runtime::finalizer::Error::CleanupFailed(Error::Draining { pods: 3 }))
        ),
        "{err}"
    );
    assert_eq!(
        lines(&out.calls),
        vec![
            format!("GET /apis/apps/v1/namespaces/{NS}/statefulsets"),
            format!("DELETE /apis/apps/v1/namespaces/{NS}/statefulsets/logs-ingester"),
            format!("GET /api/v1/namespaces/{NS}/pods"),
        ]
    );
    assert_eq!(out.calls[1].body["propagationPolicy"], "Background");
    assert!(out.ring.forgotten.lock().expect("lock").is_empty(), "the ring was forgotten while pods run");
}

#[tokio::test]
async fn an_invalid_spec_is_degraded_and_nothing_is_applied() {
    let mut lc = cluster(1, None);
    lc["spec"]["replicationFactor"] = json!(5);
    let out = run(lc, Fake::default()).await;
    assert_eq!(out.result.expect("handled"), Action::await_change());
    assert_eq!(
        lines(&out.calls),
        vec![format!("PATCH {LC}/status"), "POST /apis/events.k8s.io/v1/namespaces/observability/events".to_string()]
    );
    let status = &out.calls[0].body["status"];
    let degraded = condition(status, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(degraded["message"].as_str().unwrap_or("").contains("spec.replicationFactor (5)"), "{degraded}");
    assert_eq!(condition(status, "Ready")["status"], "False");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(events(&out.calls), vec![("Warning".to_string(), "InvalidSpec".to_string())]);
}

#[tokio::test]
async fn a_failed_apply_is_degraded_and_retried() {
    let fake = Fake { fail_apply: Some(("/statefulsets/logs-ingester".into(), 422)), ..Fake::default() };
    let out = run(cluster(1, None), fake).await;
    let err = out.result.expect_err("apply fails");
    assert_eq!(err.kind(), "apply");
    assert!(err.to_string().contains("StatefulSet logs-ingester"), "{err}");
    let last_two: Vec<String> = lines(&out.calls).into_iter().rev().take(2).collect();
    assert_eq!(
        last_two,
        vec!["POST /apis/events.k8s.io/v1/namespaces/observability/events".to_string(), format!("PATCH {LC}/status")]
    );
    let status = &status_patch(&out.calls).expect("status").body["status"];
    assert_eq!(condition(status, "Degraded")["reason"], "ApplyFailed");
    assert!(
        !out.calls.iter().any(|c| c.method == "GET" && c.path.ends_with("/configmaps")),
        "no pruning after a failed apply"
    );
}
