//! What the cluster tests share: the control plane and node agent, the chart's RBAC applied
//! through the API, `norn-operator` processes with the chart's service account, and polling
//! with deadlines.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use norn_e2e::control_plane::{Binaries, ChildGuard, ControlPlane};
use norn_e2e::node::{AgentConfig, Image, NodeAgent};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The namespace the chart is installed into (its release namespace).
pub const OPERATOR_NAMESPACE: &str = "norn-system";
/// The chart's service account (release `norn`).
pub const OPERATOR_ACCOUNT: &str = "norn-operator";
/// The field manager of everything a test applies.
pub const MANAGER: &str = "norn-e2e";

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The control plane's binaries, or `None` after printing why the test skips.
pub fn binaries(test: &str) -> Option<Binaries> {
    match Binaries::from_env() {
        Ok(b) => Some(b),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// Polls `f` every 100ms until it returns `Some`, failing after `deadline` with `what`.
pub async fn eventually<T, Fut>(what: &str, deadline: Duration, mut f: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A binary cargo built next to this test (`target/<profile>/<name>`), or `$env`.
pub fn built_binary(name: &str, env: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env) {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join(name));
    match bin {
        Some(bin) if bin.exists() => bin,
        _ => panic!(
            "no {name} next to {}: run the workspace's tests (cargo nextest run --workspace), build it \
             (cargo build --workspace --bins), or set {env}",
            exe.display()
        ),
    }
}

/// Server-side applies `obj` (with apiVersion and kind) through `api`.
pub async fn apply<K>(api: &Api<K>, obj: &Value) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    let name = obj["metadata"]["name"].as_str().expect("a name");
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj)).await
}

/// Server-side applies `obj` as a dry run: validated and defaulted, not stored.
pub async fn dry_run<K>(api: &Api<K>, obj: &Value) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    let name = obj["metadata"]["name"].as_str().expect("a name");
    api.patch(name, &PatchParams::apply(MANAGER).force().dry_run(), &Patch::Apply(obj)).await
}

/// Renders `charts/norn` with default values through Helm's engine (helm-python-sdk, as the
/// operator's chart test does): every manifest, and the chart's CRDs.
pub fn render_chart() -> (Vec<Value>, Vec<Value>) {
    let python =
        std::env::var_os("NORN_HELM_PYTHON").map(PathBuf::from).unwrap_or_else(|| root().join(".venv/bin/python"));
    let request = json!({"chart": root().join("charts/norn"), "cases": {"default": {}}});
    let mut child = Command::new(&python)
        .arg(root().join("operator/tests/helm/render.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the Helm renderer {}: {e} (set NORN_HELM_PYTHON)", python.display()));
    child.stdin.take().expect("stdin").write_all(request.to_string().as_bytes()).expect("writing the request");
    let out = child.wait_with_output().expect("running the Helm renderer");
    assert!(out.status.success(), "the Helm renderer failed: {}", String::from_utf8_lossy(&out.stderr));
    let rendered: Value = serde_json::from_slice(&out.stdout).expect("renderer output is JSON");
    let yaml_docs = |text: &str| -> Vec<Value> {
        serde_norway::Deserializer::from_str(text)
            .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
            .filter(|d| !d.is_null())
            .collect()
    };
    let mut manifests = Vec::new();
    for (template, text) in rendered["cases"]["default"]["manifests"].as_object().expect("manifests") {
        if !template.ends_with("NOTES.txt") {
            manifests.extend(yaml_docs(text.as_str().expect("template text")));
        }
    }
    let crds = rendered["crds"]
        .as_array()
        .expect("crds")
        .iter()
        .flat_map(|c| yaml_docs(c["data"].as_str().expect("crd")))
        .collect();
    (manifests, crds)
}

/// Installs the chart's CRDs and waits until they are established.
pub async fn install_crds(client: &Client, crds: &[Value]) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        apply(&api, crd).await.unwrap_or_else(|e| panic!("the API server refuses the CRD: {e}"));
        let name = crd["metadata"]["name"].as_str().expect("name").to_string();
        eventually(&format!("CRD {name} established"), Duration::from_secs(30), || {
            let (api, name) = (api.clone(), name.clone());
            async move {
                let crd = api.get(&name).await.ok()?;
                let established =
                    crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            }
        })
        .await;
    }
}

/// Applies the chart's identity and RBAC objects (ServiceAccount, ClusterRole, ClusterRoleBinding,
/// Role, RoleBinding) exactly as rendered, and its Deployment and Service as a server-side dry
/// run (the operator runs as a local process under that service account instead).
pub async fn install_chart(client: &Client, manifests: &[Value]) -> Vec<String> {
    let ns: Api<Namespace> = Api::all(client.clone());
    apply(&ns, &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}))
        .await
        .expect("creating the operator's namespace");
    let mut applied = Vec::new();
    for doc in manifests {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let namespace = doc["metadata"]["namespace"].as_str().unwrap_or(OPERATOR_NAMESPACE);
        let result = match kind {
            "ServiceAccount" => {
                apply(&Api::<ServiceAccount>::namespaced(client.clone(), namespace), doc).await.map(drop)
            }
            "ClusterRole" => apply(&Api::<ClusterRole>::all(client.clone()), doc).await.map(drop),
            "ClusterRoleBinding" => apply(&Api::<ClusterRoleBinding>::all(client.clone()), doc).await.map(drop),
            "Role" => apply(&Api::<Role>::namespaced(client.clone(), namespace), doc).await.map(drop),
            "RoleBinding" => apply(&Api::<RoleBinding>::namespaced(client.clone(), namespace), doc).await.map(drop),
            // Applied as a server-side dry run: the API server validates and defaults them as
            // it would in `helm install`, but no operator pod is created (the node agent cannot
            // run the operator's image; the test runs the operator as a process instead).
            "Deployment" => dry_run(&Api::<Deployment>::namespaced(client.clone(), namespace), doc).await.map(drop),
            "Service" => dry_run(&Api::<Service>::namespaced(client.clone(), namespace), doc).await.map(drop),
            other => panic!("the chart renders a {other}; teach install_chart about it"),
        };
        result.unwrap_or_else(|e| panic!("the API server refuses the chart's {kind}: {e}\n{doc:#}"));
        applied.push(format!("{kind}/{}", doc["metadata"]["name"].as_str().unwrap_or_default()));
    }
    applied
}

/// A `norn-operator` process acting as the chart's service account, with the chart's flags
/// (leader election on the Lease in the release namespace).
pub struct Operator {
    pub identity: String,
    pub process: ChildGuard,
}

impl Operator {
    pub async fn start(plane: &ControlPlane, identity: &str) -> Self {
        let (_, kubeconfig) =
            plane.service_account(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT).await.expect("a token for the operator");
        let path = plane.dir.join(format!("{identity}.kubeconfig"));
        std::fs::write(&path, kubeconfig).expect("writing the operator's kubeconfig");
        let mut cmd = Command::new(built_binary("norn-operator", "NORN_OPERATOR_BIN"));
        cmd.arg("--metrics-addr=127.0.0.1:0")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", &path)
            .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
            .env("POD_NAME", identity)
            .env("RUST_LOG", "norn_operator=debug,info");
        let process = ChildGuard::spawn(identity, cmd, &plane.dir.join(format!("{identity}.log")))
            .expect("starting norn-operator");
        Self { identity: identity.into(), process }
    }
}

/// The control plane, a node agent that runs `norn` for the `norn:` images, and the admin client.
pub struct Cluster {
    pub agent: NodeAgent,
    pub client: Client,
    pub plane: ControlPlane,
}

impl Cluster {
    pub async fn start(bins: &Binaries) -> Self {
        let plane = ControlPlane::start(bins).await.unwrap_or_else(|e| panic!("starting the control plane: {e}"));
        let client = plane.admin().await;
        let config = AgentConfig {
            node: "node-0".into(),
            dir: plane.dir.join("node-0"),
            images: vec![Image {
                prefix: "norn:".into(),
                binary: built_binary("norn", "NORN_BIN"),
                // Norn's pods read 0.0.0.0 listeners and /var/lib/norn from the shared config
                // file; on one host each pod binds its own address and keeps its own data.
                extra_args: vec![
                    "--http.addr={pod_ip}:3100".into(),
                    "--grpc.addr={pod_ip}:9095".into(),
                    "--data.dir=/var/lib/norn".into(),
                ],
            }],
        };
        let agent =
            NodeAgent::start(client.clone(), config).await.unwrap_or_else(|e| panic!("starting the node agent: {e}"));
        Self { agent, client, plane }
    }
}
