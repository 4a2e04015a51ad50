//! The CRD on a real API server: it installs, and the API server's own validation (the OpenAPI
//! schema and the CEL rules generated from the Rust types) refuses invalid LogClusters with the
//! message `kubectl apply` prints.
//!
//! Needs the control plane of `e2e/control-plane/build.sh` (`NORN_KUBE_*`, set by
//! `scripts/test.sh`); skips, saying so, without it.

mod support;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use norn_operator::crd::LogCluster;
use serde_json::{Value, json};
use support::{Cluster, MANAGER, apply, binaries, install_crds, render_chart};

fn cluster(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "norn.dev/v1alpha1", "kind": "LogCluster", "metadata": {"name": name}, "spec": spec})
}

fn valid_spec() -> Value {
    json!({
        "image": "norn:e2e",
        "replicationFactor": 3,
        "ingester": {"replicas": 3, "storage": {"size": "1Gi"}},
        "ring": {"etcd": {"endpoints": ["http://127.0.0.1:2379"]}},
        "objectStorage": {"s3": {"bucket": "logs", "endpoint": "http://127.0.0.1:5000"}},
    })
}

/// `spec` with `path` (dot-separated) set to `value`.
fn with(mut spec: Value, path: &str, value: Value) -> Value {
    let mut at = &mut spec;
    for key in path.split('.') {
        at = &mut at[key];
    }
    *at = value;
    spec
}

/// The API server's refusal of creating `obj`: its status code and message.
async fn refusal(api: &Api<LogCluster>, obj: &Value) -> (u16, String) {
    let lc: LogCluster = serde_json::from_value(obj.clone()).expect("a LogCluster");
    match api.create(&PostParams::default(), &lc).await {
        Ok(_) => panic!("the API server accepted an invalid LogCluster: {obj:#}"),
        Err(kube::Error::Api(e)) => (e.code, e.message),
        Err(e) => panic!("creating the LogCluster: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_invalid_log_clusters_with_the_rules_message() {
    let Some(bins) = binaries("the_api_server_refuses_invalid_log_clusters_with_the_rules_message") else { return };
    let cluster_ = Cluster::start(&bins).await;
    let client = cluster_.client.clone();
    let (_, crds) = render_chart();
    install_crds(&client, &crds).await;
    apply(
        &Api::<Namespace>::all(client.clone()),
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "logs"}}),
    )
    .await
    .expect("namespace");
    let api: Api<LogCluster> = Api::namespaced(client.clone(), "logs");

    // Each case: the spec, and what the message must say (the rule's message or the schema's).
    let cases = [
        (
            "rf",
            with(valid_spec(), "replicationFactor", json!(5)),
            "replicationFactor must not exceed ingester.replicas",
        ),
        (
            "two-rings",
            with(valid_spec(), "ring.etcd.managed", json!({"replicas": 1})),
            "set exactly one of ring.etcd.endpoints and ring.etcd.managed",
        ),
        (
            "even-etcd",
            with(valid_spec(), "ring.etcd", json!({"managed": {"replicas": 2}})),
            "ring.etcd.managed.replicas must be odd",
        ),
        (
            "https-ring",
            with(valid_spec(), "ring.etcd.endpoints", json!(["https://etcd:2379"])),
            "ring.etcd.endpoints are https:// URLs with ring.etcd.tls and http:// URLs without it",
        ),
        (
            "ring-path",
            with(valid_spec(), "ring.etcd.endpoints", json!(["http://etcd:2379/v3"])),
            "should match '^https?://[^/]+$'",
        ),
        ("no-ingesters", with(valid_spec(), "ingester.replicas", json!(0)), "should be greater than or equal to 1"),
    ];
    for (name, spec, expected) in cases {
        let (code, message) = refusal(&api, &cluster(name, spec)).await;
        assert_eq!(code, 422, "{name}: {message}");
        assert!(
            message.starts_with(&format!("LogCluster.norn.dev \"{name}\" is invalid: ")) && message.contains(expected),
            "{name}: kubectl would print {message:?}, not the rule's message {expected:?}"
        );
    }

    // Transition rules: the ingester's storage is fixed once the cluster exists.
    let created = apply(&api, &cluster("fixed-storage", valid_spec())).await.expect("a valid LogCluster is accepted");
    assert_eq!(created.spec.ingester.replicas, 3);
    let patch = json!({"spec": {"ingester": {"storage": {"size": "2Gi"}}}});
    match api.patch("fixed-storage", &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => panic!("the API server accepted a change of ingester.storage"),
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{}", e.message);
            assert!(e.message.contains("ingester.storage cannot change after creation"), "{}", e.message);
        }
        Err(e) => panic!("patching: {e}"),
    }
    // Applying the same object again through server-side apply changes nothing.
    let again = apply(&api, &cluster("fixed-storage", valid_spec())).await.expect("re-apply");
    assert_eq!(again.metadata.generation, created.metadata.generation);
    let managers: Vec<String> =
        again.metadata.managed_fields.iter().flatten().filter_map(|m| m.manager.clone()).collect();
    assert_eq!(managers, [MANAGER]);
}
