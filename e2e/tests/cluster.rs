//! A LogCluster through its life on a real control plane: kube-apiserver, etcd and
//! kube-controller-manager (StatefulSet, garbage collector, PVC protection, … controllers), the
//! process-based node agent running every pod as a real `norn` process on its own loopback
//! address, and two `norn-operator` processes with exactly the chart's RBAC, electing a leader
//! through the Lease. The ring is a real etcd, the object store a real S3 (moto).
//!
//! Needs the control plane of `e2e/control-plane/build.sh` (`NORN_KUBE_*`, set by
//! `scripts/test.sh`), etcd (`NORN_ETCD`), moto (`NORN_MOTO_SERVER`) and helm-python-sdk
//! (`NORN_HELM_PYTHON`); skips, saying so, without the control plane.

mod support;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use norn::ring::kv::KvStore;
use norn::ring::testing::EtcdServer;
use norn::storage::testing::MotoServer;
use norn::testing::urlencode;
use norn_operator::crd::LogCluster;
use parking_lot::Mutex;
use serde_json::{Value, json};
use support::{
    Cluster, OPERATOR_NAMESPACE, Operator, apply, binaries, eventually, install_chart, install_crds, render_chart,
};
use tokio_util::sync::CancellationToken;

const NS: &str = "logs";
const NAME: &str = "logs";
const BUCKET: &str = "norn-e2e";
/// How long a cluster may take to become ready, or a rollout to finish.
const SLOW: Duration = Duration::from_secs(180);
/// How long a quick reaction (a status write, a Lease takeover, garbage collection) may take.
const QUICK: Duration = Duration::from_secs(60);

fn spec(etcd: &str, s3: &str) -> Value {
    json!({
        "image": "norn:e2e",
        "replicationFactor": 3,
        "distributor": {"replicas": 1},
        "ingester": {"replicas": 3, "storage": {"size": "1Gi"}},
        "querier": {"replicas": 1},
        // Without cluster DNS the queriers could not resolve the frontends' headless Service.
        "queryFrontend": {"replicas": 0},
        "ruler": {"replicas": 0},
        "ring": {"etcd": {"endpoints": [format!("http://{etcd}")]}},
        "limits": {"global": {"max_entries_limit_per_query": 100000}},
        "objectStorage": {"s3": {"bucket": BUCKET, "endpoint": s3, "region": "us-east-1", "secretRef": {"name": "norn-s3"}}},
    })
}

/// The LogCluster, once its Ready condition is True for the current generation.
async fn ready(api: &Api<LogCluster>, deadline: Duration) -> LogCluster {
    eventually("the LogCluster to be Ready", deadline, || async {
        let lc = api.get(NAME).await.ok()?;
        let status = lc.status.as_ref()?;
        let ok = status.observed_generation == lc.metadata.generation
            && status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        ok.then_some(lc)
    })
    .await
}

/// Ready pods of a component (`app.kubernetes.io/component`): name → IP.
async fn ready_pods(pods: &Api<Pod>, component: &str) -> Vec<(String, Ipv4Addr)> {
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/component={component}"));
    let mut out = Vec::new();
    for p in pods.list(&lp).await.map(|l| l.items).unwrap_or_default() {
        let Some(status) = &p.status else { continue };
        let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        if ready
            && p.metadata.deletion_timestamp.is_none()
            && let Some(ip) = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok())
        {
            out.push((p.name_any(), ip));
        }
    }
    out.sort();
    out
}

/// Pushes `lines` lines of stream `{job="e2e", run=run}` through `distributor`; the lines
/// acknowledged.
async fn push(
    http: &reqwest::Client,
    distributor: Ipv4Addr,
    run: &str,
    from: usize,
    lines: usize,
) -> Result<(), String> {
    let base = norn::timeutil::now_nanos();
    let values: Vec<Value> =
        (from..from + lines).map(|i| json!([(base + i as i64).to_string(), format!("line {run} {i}")])).collect();
    let body = json!({"streams": [{"stream": {"job": "e2e", "run": run}, "values": values}]});
    let r = http
        .post(format!("http://{distributor}:3100/loki/api/v1/push"))
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(format!("{}: {}", r.status(), r.text().await.unwrap_or_default()))
    }
}

/// Every line of `{job="e2e", run=run}` the querier returns.
async fn query(http: &reqwest::Client, querier: Ipv4Addr, run: &str) -> Result<BTreeSet<String>, String> {
    let q = format!(r#"{{job="e2e", run="{run}"}}"#);
    let end = norn::timeutil::now_nanos() + 60_000_000_000;
    let start = end - 3_600_000_000_000;
    let url = format!(
        "http://{querier}:3100/loki/api/v1/query_range?query={}&start={start}&end={end}&limit=100000&direction=forward",
        urlencode(&q)
    );
    let r = http.get(url).send().await.map_err(|e| e.to_string())?;
    let status = r.status();
    let text = r.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {text}"));
    }
    let body: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    let mut lines = BTreeSet::new();
    for stream in body["data"]["result"].as_array().into_iter().flatten() {
        for v in stream["values"].as_array().into_iter().flatten() {
            lines.insert(v[1].as_str().unwrap_or_default().to_string());
        }
    }
    Ok(lines)
}

/// `kubectl get logclusters` as the API server renders it: column names and the one row's cells.
async fn table(client: &Client) -> (Vec<String>, Vec<Value>) {
    let request = http::Request::get(format!("/apis/norn.dev/v1alpha1/namespaces/{NS}/logclusters"))
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .expect("a request");
    let text = client.request_text(request).await.expect("the table");
    let t: Value = serde_json::from_str(&text).expect("JSON");
    let columns = t["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let cells = t["rows"][0]["cells"].as_array().cloned().unwrap_or_default();
    (columns, cells)
}

/// Reasons of the Events about the LogCluster, oldest first.
async fn event_reasons(client: &Client) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let mut list = events.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    list.retain(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(NAME));
    list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    list.into_iter().filter_map(|e| e.reason).collect()
}

/// Who holds the operator's Lease.
async fn leader(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    leases.get_opt("norn-operator").await.ok().flatten()?.spec?.holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_cluster_lives_on_a_real_control_plane() {
    let Some(bins) = binaries("a_log_cluster_lives_on_a_real_control_plane") else { return };
    let etcd = EtcdServer::start().await.expect("the ring's etcd");
    let moto = MotoServer::start().await.expect("moto");
    moto.create_bucket(BUCKET).await.expect("bucket");
    let mut cluster = Cluster::start(&bins).await;
    let client = cluster.client.clone();

    // The chart: its CRD, and its RBAC for the operator, exactly as Helm renders them.
    let (manifests, crds) = render_chart();
    install_crds(&client, &crds).await;
    let installed = install_chart(&client, &manifests).await;
    for kind in ["ServiceAccount/", "ClusterRole/", "ClusterRoleBinding/", "Role/", "RoleBinding/", "Deployment/"] {
        assert!(installed.iter().any(|k| k.starts_with(kind)), "{kind} not in {installed:?}");
    }

    // Two operator replicas as the chart's service account; one leads.
    let mut operators =
        [Operator::start(&cluster.plane, "operator-a").await, Operator::start(&cluster.plane, "operator-b").await];
    let first = eventually("an operator to take the Lease", QUICK, || leader(&client)).await;
    assert!(operators.iter().any(|o| o.identity == first), "{first}");

    apply(
        &Api::<Namespace>::all(client.clone()),
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    .await
    .expect("namespace");
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "norn-s3"},
        "stringData": {"AWS_ACCESS_KEY_ID": "norn-test-key", "AWS_SECRET_ACCESS_KEY": "norn-test-secret"}});
    apply(&Api::<Secret>::namespaced(client.clone(), NS), &secret).await.expect("the S3 secret");
    let lcs: Api<LogCluster> = Api::namespaced(client.clone(), NS);
    let lc = json!({"apiVersion": "norn.dev/v1alpha1", "kind": "LogCluster", "metadata": {"name": NAME},
        "spec": spec(&etcd.endpoint(), moto.endpoint())});
    apply(&lcs, &lc).await.expect("the LogCluster is accepted");

    // It becomes running Norn pods, and Ready.
    let lc = ready(&lcs, SLOW).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    assert_eq!(ready_pods(&pods, "ingester").await.len(), 3);
    let distributor = ready_pods(&pods, "distributor").await[0].1;
    let querier = ready_pods(&pods, "querier").await[0].1;
    let status = lc.status.clone().expect("status");
    assert!(
        status.conditions.iter().any(|c| c.type_ == "Progressing" && c.status == "False"),
        "{:?}",
        status.conditions
    );
    assert!(status.conditions.iter().any(|c| c.type_ == "Degraded" && c.status == "False"), "{:?}", status.conditions);
    let (columns, cells) = table(&client).await;
    assert_eq!(columns, ["Name", "Ready", "Reason", "Ingesters", "RF", "Age"]);
    assert_eq!(cells[..5], [json!(NAME), json!("True"), json!("AllReplicasReady"), json!(3), json!(3)], "{cells:?}");
    let reasons = eventually("the Created and Ready events", QUICK, || async {
        let r = event_reasons(&client).await;
        (r.contains(&"Created".to_string()) && r.contains(&"Ready".to_string())).then_some(r)
    })
    .await;
    assert!(!reasons.contains(&"ApplyFailed".to_string()), "{reasons:?}");

    // Pushes through the distributor pod, queries through the querier pod: exact counts.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    push(&http, distributor, "first", 0, 500).await.expect("push");
    let lines = query(&http, querier, "first").await.expect("query");
    assert_eq!(lines.len(), 500);

    // Field ownership: the operator owns its children's fields through server-side apply. A user
    // applying a field it owns without --force-conflicts is refused with a conflict naming it;
    // `kubectl scale` (the scale subresource) goes through, and the operator takes it back.
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let theirs = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "logs-distributor"},
        "spec": {"replicas": 2}});
    match sts.patch("logs-distributor", &PatchParams::apply("kubectl"), &Patch::Apply(&theirs)).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 409, "{}", e.message);
            assert!(e.message.contains("norn-operator") && e.message.contains(".spec.replicas"), "{}", e.message);
        }
        other => panic!("a conflicting apply was not refused: {other:?}"),
    }
    sts.patch_scale("logs-distributor", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}})))
        .await
        .expect("kubectl scale");
    eventually("the operator to restore the distributor's replicas", QUICK, || async {
        let s = sts.get("logs-distributor").await.ok()?;
        let back = s.spec.as_ref()?.replicas == Some(1);
        let owner = s.metadata.managed_fields.iter().flatten().any(|m| {
            m.manager.as_deref() == Some("norn-operator")
                && m.fields_v1.as_ref().is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
        });
        let extra_gone = pods.get_opt("logs-distributor-1").await.ok()?.is_none();
        (back && owner && extra_gone).then_some(())
    })
    .await;

    // A template change under continuous pushes: the ingesters roll one at a time, and the
    // leader is killed mid-rollout; the other replica takes the Lease and finishes it.
    let acked = Arc::new(Mutex::new(Vec::<usize>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = CancellationToken::new();
    let pusher = {
        let (acked, failures, stop, http) = (acked.clone(), failures.clone(), stop.clone(), http.clone());
        tokio::spawn(async move {
            let next = AtomicUsize::new(0);
            while !stop.is_cancelled() {
                let from = next.fetch_add(20, Ordering::SeqCst);
                match push(&http, distributor, "rollout", from, 20).await {
                    Ok(()) => acked.lock().extend(from..from + 20),
                    Err(e) => failures.lock().push(e),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let old_revisions = ingester_revisions(&pods).await;
    // A change of the ingesters' pod template only (the distributor and querier pods stay).
    let patch = json!({"spec": {"ingester": {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}}});
    lcs.patch(NAME, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("a spec change");
    eventually("an ingester to be replaced", SLOW, || async {
        let now = ingester_revisions(&pods).await;
        (now.iter().any(|r| !old_revisions.contains(r))).then_some(())
    })
    .await;
    let leading = leader(&client).await.expect("a leader");
    let index = operators.iter().position(|o| o.identity == leading).expect("the leader is one of ours");
    operators[index].process.kill();
    let successor = eventually("the other operator to take the Lease", QUICK, || async {
        leader(&client).await.filter(|l| *l != leading)
    })
    .await;
    assert_eq!(successor, operators[1 - index].identity);
    let lc = ready(&lcs, SLOW).await;
    let rollout = lc.status.as_ref().and_then(|s| s.rollout.clone());
    assert!(rollout.is_none_or(|r| r.phase == norn_operator::crd::RolloutPhase::Done), "{:?}", lc.status);
    eventually("the RolloutDone event from the new leader", QUICK, || async {
        event_reasons(&client).await.contains(&"RolloutDone".to_string()).then_some(())
    })
    .await;
    let revisions = ingester_revisions(&pods).await;
    assert_eq!(revisions.len(), 1, "every ingester runs one revision: {revisions:?}");
    assert!(revisions.is_disjoint(&old_revisions), "{revisions:?} vs {old_revisions:?}");
    stop.cancel();
    pusher.await.expect("pusher");
    assert_eq!(*failures.lock(), Vec::<String>::new(), "pushes failed during the rollout");
    let acked: BTreeSet<String> = acked.lock().iter().map(|i| format!("line rollout {i}")).collect();
    assert!(acked.len() >= 100, "only {} lines were pushed during the rollout", acked.len());
    let distributor = ready_pods(&pods, "distributor").await[0].1;
    let querier = ready_pods(&pods, "querier").await[0].1;
    assert_eq!(query(&http, querier, "rollout").await.expect("query"), acked, "exactly the acknowledged lines");
    assert_eq!(query(&http, querier, "first").await.expect("query").len(), 500);

    // A pod deleted behind the operator's back comes back (the StatefulSet controller) and
    // rejoins the ring with its tokens; a crashed container is restarted (the node agent).
    let (state, tokens) = ring_member(&http, distributor, "logs-ingester-1").await.expect("ingester 1 in the ring");
    assert_eq!(state, "ACTIVE");
    assert!(tokens.as_array().is_some_and(|t| !t.is_empty()), "{tokens}");
    let uid = pods.get("logs-ingester-1").await.expect("pod").uid();
    pods.delete("logs-ingester-1", &DeleteParams::default()).await.expect("delete");
    eventually("logs-ingester-1 to come back ready", SLOW, || async {
        let p = pods.get("logs-ingester-1").await.ok()?;
        let ready = p.status.as_ref()?.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        (p.uid() != uid && ready).then_some(())
    })
    .await;
    let (state, after) = eventually("logs-ingester-1 ACTIVE in the ring", QUICK, || async {
        ring_member(&http, distributor, "logs-ingester-1").await.filter(|(s, _)| s == "ACTIVE")
    })
    .await;
    assert_eq!((state.as_str(), &after), ("ACTIVE", &tokens), "the replacement took other tokens");
    assert!(cluster.agent.kill_container(NS, "logs-querier-0", "norn"));
    eventually("the querier to restart", QUICK, || async {
        let p = pods.get("logs-querier-0").await.ok()?;
        let s = p.status?.container_statuses?.into_iter().next()?;
        (s.restart_count >= 1 && s.ready).then_some(())
    })
    .await;
    push(&http, distributor, "after", 0, 100).await.expect("push after the restarts");
    let querier = ready_pods(&pods, "querier").await[0].1;
    assert_eq!(query(&http, querier, "after").await.expect("query").len(), 100);

    // Scale the ingesters up and down again: the one that goes flushes and leaves the ring
    // before the StatefulSet shrinks, and nothing acknowledged is lost.
    let scale = |n: i32| json!({"spec": {"ingester": {"replicas": n}}});
    lcs.patch(NAME, &PatchParams::default(), &Patch::Merge(&scale(4))).await.expect("scale up");
    eventually("four ready ingesters, the fourth ACTIVE in the ring", SLOW, || async {
        let ready = ready_pods(&pods, "ingester").await.len() == 4;
        let active = ring_member(&http, distributor, "logs-ingester-3").await.is_some_and(|(s, _)| s == "ACTIVE");
        (ready && active).then_some(())
    })
    .await;
    push(&http, distributor, "scale", 0, 300).await.expect("push with four ingesters");
    lcs.patch(NAME, &PatchParams::default(), &Patch::Merge(&scale(3))).await.expect("scale down");
    eventually("three ingesters, the fourth gone from the ring", SLOW, || async {
        let three =
            pods.get_opt("logs-ingester-3").await.ok()?.is_none() && ready_pods(&pods, "ingester").await.len() == 3;
        let gone = ring_member(&http, distributor, "logs-ingester-3").await.is_none();
        (three && gone).then_some(())
    })
    .await;
    let log = cluster.agent.container_log(NS, "logs-ingester-3", "norn");
    assert!(log.contains("flushed before leaving the ring"), "logs-ingester-3 did not flush on its way out:\n{log}");
    assert!(event_reasons(&client).await.contains(&"ScalingDown".to_string()));
    let querier = ready_pods(&pods, "querier").await[0].1;
    assert_eq!(query(&http, querier, "scale").await.expect("query").len(), 300);

    // Deleting the LogCluster: the finalizer forgets the ring, the garbage collector removes
    // every child through the owner references.
    assert!(!etcd_keys(&etcd, &format!("norn/{NS}/{NAME}/")).await.is_empty());
    lcs.delete(NAME, &DeleteParams::default()).await.expect("delete the LogCluster");
    eventually("the LogCluster to be gone", QUICK, || async { lcs.get_opt(NAME).await.ok()?.is_none().then_some(()) })
        .await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), NS);
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=norn-operator");
    eventually("every child to be garbage-collected", SLOW, || async {
        let n = sts.list(&managed).await.ok()?.items.len()
            + cms.list(&managed).await.ok()?.items.len()
            + svcs.list(&managed).await.ok()?.items.len()
            + pdbs.list(&managed).await.ok()?.items.len()
            + pods.list(&ListParams::default()).await.ok()?.items.len();
        (n == 0).then_some(())
    })
    .await;
    assert_eq!(
        etcd_keys(&etcd, &format!("norn/{NS}/{NAME}/")).await,
        Vec::<String>::new(),
        "the ring prefix was not cleared"
    );
    assert!(event_reasons(&client).await.contains(&"Deleting".to_string()));
    // Retained ingester claims stay (whenDeleted: Retain), the compactor's go.
    let claims: Vec<String> = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("claims")
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert!(claims.iter().all(|c| c.contains("ingester")), "{claims:?}");
    cluster.plane.check_running().expect("the control plane survived");
    // The chart's RBAC was enough for everything the operator did: a missing permission shows
    // as a forbidden call (Events, for one, only log it).
    for o in &operators {
        let log = o.process.log_text();
        assert!(!log.contains("forbidden"), "{} hit a missing permission:\n{log}", o.identity);
    }
}

/// The controller revisions of the ingester pods.
async fn ingester_revisions(pods: &Api<Pod>) -> BTreeSet<String> {
    let lp = ListParams::default().labels("app.kubernetes.io/component=ingester");
    pods.list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.labels().get("controller-revision-hash").cloned())
        .collect()
}

async fn etcd_keys(etcd: &EtcdServer, prefix: &str) -> Vec<String> {
    let kv = etcd.kv().await.expect("etcd");
    kv.list(prefix).await.expect("list").into_iter().map(|(k, _)| k).collect()
}

/// The state and tokens of ingester `instance` in the ring, as a distributor's `/ring` shows it.
async fn ring_member(http: &reqwest::Client, distributor: Ipv4Addr, instance: &str) -> Option<(String, Value)> {
    let url = format!("http://{distributor}:3100/ring?format=json&tokens=true");
    let ring: Value = http.get(url).send().await.ok()?.json().await.ok()?;
    let member = ring["shards"].as_array()?.iter().find(|s| s["id"] == instance)?;
    Some((member["state"].as_str()?.to_string(), member["tokens"].clone()))
}
