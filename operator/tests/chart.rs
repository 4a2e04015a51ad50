//! The Helm chart, linted and rendered by Helm's own engine: PyPI `helm-python-sdk` (Helm's Go
//! SDK behind a C ABI, no helm binary) driven by `tests/helm/render.py`. Every rendered manifest
//! must parse into the k8s-openapi type of its kind (or the LogCluster type) and serialize back
//! to the same tree, so a misspelled or misplaced field fails here instead of in a cluster.
//!
//! The Python with the SDK is `NORN_HELM_PYTHON`, or `.venv/bin/python` at the repository root
//! (`scripts/test.sh` installs it there).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use norn_operator::crd::LogCluster;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("NORN_HELM_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with helm-python-sdk: run scripts/test.sh, or `python3 -m venv .venv && \
         .venv/bin/pip install helm-python-sdk`, or set NORN_HELM_PYTHON"
    );
    venv
}

/// Renders the chart with each named set of values.
fn render(cases: Value) -> Value {
    let request = json!({"chart": root().join("charts/norn"), "cases": cases});
    let mut child = Command::new(python())
        .arg(root().join("operator/tests/helm/render.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the Helm renderer");
    child.stdin.take().expect("stdin").write_all(request.to_string().as_bytes()).expect("writing the request");
    let out = child.wait_with_output().expect("running the Helm renderer");
    assert!(out.status.success(), "the Helm renderer failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("renderer output is JSON")
}

/// Parses `doc` as `K`, and checks that nothing was dropped or changed on the way.
fn typed<K: DeserializeOwned + serde::Serialize>(doc: &Value, what: &str) -> K {
    let obj: K = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{what} does not parse: {e}\n{doc:#}"));
    let back = serde_json::to_value(&obj).expect("serializes");
    assert_eq!(&back, doc, "{what} does not survive a round trip through its type: a field is misspelled or misplaced");
    obj
}

/// Every object of every template of a rendered case, by kind, parsed into its type.
fn check_manifests(case: &str, rendered: &Value) -> Vec<Value> {
    let manifests = rendered["manifests"].as_object().expect("manifests");
    let mut docs = Vec::new();
    for (template, text) in manifests {
        if template.ends_with("NOTES.txt") {
            continue;
        }
        let text = text.as_str().expect("template text");
        for doc in serde_norway::Deserializer::from_str(text) {
            let doc = Value::deserialize(doc).unwrap_or_else(|e| panic!("{case}/{template} is not YAML: {e}"));
            if doc.is_null() {
                continue;
            }
            let what = format!("{case}/{template} {}", doc["kind"]);
            match doc["kind"].as_str().unwrap_or_default() {
                "Deployment" => drop(typed::<Deployment>(&doc, &what)),
                "Service" => drop(typed::<Service>(&doc, &what)),
                "ServiceAccount" => drop(typed::<ServiceAccount>(&doc, &what)),
                "ClusterRole" => drop(typed::<ClusterRole>(&doc, &what)),
                "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(&doc, &what)),
                "Role" => drop(typed::<Role>(&doc, &what)),
                "RoleBinding" => drop(typed::<RoleBinding>(&doc, &what)),
                "LogCluster" => {
                    let lc: LogCluster = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
                    let mut lc = lc;
                    lc.metadata.uid = Some("uid".into());
                    norn_operator::validate::validate(&lc).unwrap_or_else(|e| panic!("{what}: {e}"));
                    lc.validate_cel().unwrap_or_else(|e| panic!("{what} breaks a CEL rule: {e:?}"));
                }
                other => panic!("{what}: no type known for kind {other:?}; add it to this test"),
            }
            docs.push(doc);
        }
    }
    docs
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs.iter().map(|d| d["kind"].as_str().unwrap_or_default().to_string()).collect();
    k.sort();
    k
}

#[test]
fn the_chart_lints_renders_and_parses() {
    let out = render(json!({
        "default": {},
        "sample": {"sample": {"enabled": true}},
        "namespaced": {"operator": {"watchNamespace": "logs", "leaderElection": false}, "metricsService": {"enabled": false}},
        "tls": {"operator": {"tlsCaSecret": "norn-ca", "etcdTlsSecret": "etcd-client"}},
    }));
    for (case, rendered) in out["cases"].as_object().expect("cases") {
        let lint = &rendered["lint"];
        assert_eq!(lint["errors"], json!([]), "{case}: helm lint errors");
        let serious: Vec<&Value> = lint["messages"]
            .as_array()
            .expect("lint messages")
            .iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(serious.is_empty(), "{case}: helm lint (strict) reports {serious:?}");
    }
    let default = check_manifests("default", &out["cases"]["default"]);
    assert_eq!(
        kinds(&default),
        ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]
    );
    let sample = check_manifests("sample", &out["cases"]["sample"]);
    assert!(kinds(&sample).contains(&"LogCluster".to_string()));
    let namespaced = check_manifests("namespaced", &out["cases"]["namespaced"]);
    assert_eq!(kinds(&namespaced), ["Deployment", "Role", "RoleBinding", "ServiceAccount"]);
    let deployment = namespaced.iter().find(|d| d["kind"] == "Deployment").expect("deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert!(container["args"].as_array().expect("args").contains(&json!("--no-leader-election")));
    assert!(container["env"].as_array().expect("env").contains(&json!({"name": "WATCH_NAMESPACE", "value": "logs"})));
    assert!(container.get("volumeMounts").is_none(), "no TLS Secrets without the values");

    // The operator's TLS Secrets are mounted and named by its flags.
    let tls = check_manifests("tls", &out["cases"]["tls"]);
    let deployment = tls.iter().find(|d| d["kind"] == "Deployment").expect("deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let args = pod["containers"][0]["args"].as_array().expect("args");
    for flag in [
        "--tls-ca-file=/etc/norn-operator/tls/ca.crt",
        "--etcd-tls-ca-file=/etc/norn-operator/etcd-tls/ca.crt",
        "--etcd-tls-cert-file=/etc/norn-operator/etcd-tls/tls.crt",
        "--etcd-tls-key-file=/etc/norn-operator/etcd-tls/tls.key",
    ] {
        assert!(args.contains(&json!(flag)), "{flag} in {args:?}");
    }
    assert_eq!(
        pod["volumes"],
        json!([
            {"name": "tls", "secret": {"secretName": "norn-ca"}},
            {"name": "etcd-tls", "secret": {"secretName": "etcd-client"}},
        ])
    );
    let mounts: Vec<&str> = pod["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(mounts, ["/etc/norn-operator/tls", "/etc/norn-operator/etcd-tls"]);
}

#[test]
fn the_chart_installs_the_generated_crd() {
    let out = render(json!({"default": {}}));
    let crds = out["crds"].as_array().expect("crds");
    assert_eq!(crds.len(), 1, "{crds:?}");
    let text = crds[0]["data"].as_str().expect("crd text");
    let doc: Value = serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("yaml"))
        .find(|d| !d.is_null())
        .expect("a document");
    let crd: CustomResourceDefinition = typed(&doc, "crds/logcluster.yaml");
    use kube::CustomResourceExt;
    assert!(
        crd == LogCluster::crd(),
        "the chart's CRD is not the one the Rust types generate: regenerate it with crdgen"
    );
}

#[test]
fn operator_rbac_grants_only_what_the_operator_uses() {
    let out = render(json!({"default": {}}));
    let docs = check_manifests("default", &out["cases"]["default"]);
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").expect("cluster role");
    let role: ClusterRole = serde_json::from_value(role.clone()).expect("parses");
    let mut grants = Vec::new();
    for rule in role.rules.unwrap_or_default() {
        for group in rule.api_groups.unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                for verb in &rule.verbs {
                    grants.push(format!("{group}/{resource}:{verb}"));
                }
            }
        }
    }
    assert!(!grants.iter().any(|g| g.contains('*')), "wildcards: {grants:?}");
    assert!(!grants.iter().any(|g| g.contains("secrets")), "the operator reads no Secret: {grants:?}");
    assert!(!grants.iter().any(|g| g.ends_with(":update") || g.ends_with(":deletecollection")), "{grants:?}");
    assert!(
        !grants.iter().any(|g| g.starts_with("/pods:") && (g.ends_with(":create") || g.ends_with(":patch"))),
        "{grants:?}"
    );
    for needed in [
        "norn.dev/logclusters:watch",
        "norn.dev/logclusters/status:patch",
        "apps/statefulsets:patch",
        "apps/statefulsets:delete",
        "policy/poddisruptionbudgets:create",
        "/configmaps:patch",
        "/services:watch",
        "events.k8s.io/events:create",
        "/pods:watch",
        "/pods:delete",
    ] {
        assert!(grants.contains(&needed.to_string()), "{needed} missing from {grants:?}");
    }
}
