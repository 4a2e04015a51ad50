//! A fake Kubernetes API server for reconcile tests: a tower-test mock service answering the
//! calls the controller makes, and recording each one so a scenario can check the exact
//! sequence.

use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::Handle;

/// One request the controller made.
#[derive(Clone, Debug)]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The query string.
    pub query: String,
    /// `Content-Type` of the body.
    pub content_type: String,
    /// The body as JSON (`Null` when empty).
    pub body: Value,
}

impl Call {
    /// `METHOD path`, what scenarios compare.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// How the fake answers.
#[derive(Clone, Debug, Default)]
pub struct Fake {
    /// The LogCluster, returned by patches of it (status is replaced by the patched one).
    pub cluster: Value,
    /// Objects that exist already, returned by list calls of their kind.
    pub existing: Vec<Value>,
    /// Applied StatefulSets report every replica ready and updated.
    pub ready: bool,
    /// Applies to a path ending in this (`statefulsets/NAME`) fail with this HTTP status.
    pub fail_apply: Option<(String, u16)>,
}

/// Answers requests until the client is dropped; returns every request in order.
pub async fn serve(mut handle: Handle<Request<Body>, Response<Body>>, fake: Fake) -> Vec<Call> {
    let mut calls = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), handle.next_request()).await;
        let Ok(Some((request, send))) = next else { break };
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = request.into_body().collect_bytes().await.expect("request body");
        let body: Value =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        let call = Call { method, path, query, content_type, body };
        let (code, reply) = answer(&fake, &call);
        calls.push(call);
        let response = Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&reply).expect("reply serializes")))
            .expect("response builds");
        send.send_response(response);
    }
    calls
}

fn answer(fake: &Fake, call: &Call) -> (u16, Value) {
    let segments: Vec<&str> = call.path.trim_start_matches('/').split('/').collect();
    let resource = segments.iter().position(|s| *s == "namespaces").and_then(|i| segments.get(i + 2)).copied();
    let name = segments.iter().position(|s| *s == "namespaces").and_then(|i| segments.get(i + 3)).copied();
    match (call.method.as_str(), resource, name) {
        ("PATCH", Some("logclusters"), Some(_)) => {
            let mut lc = fake.cluster.clone();
            if call.path.ends_with("/status") {
                lc["status"] = call.body["status"].clone();
            }
            (200, lc)
        }
        ("PATCH", Some(_), Some(name)) => {
            if let Some((fail, code)) = &fake.fail_apply
                && call.path.ends_with(fail.as_str())
            {
                return (*code, status_body(*code, &format!("applying {name} refused by the fake")));
            }
            let mut obj = call.body.clone();
            if obj["kind"] == "StatefulSet" {
                let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
                let up = if fake.ready { replicas } else { 0 };
                obj["metadata"]["generation"] = json!(1);
                obj["status"] = json!({
                    "observedGeneration": 1,
                    "replicas": replicas,
                    "readyReplicas": up,
                    "updatedReplicas": up,
                });
            }
            (200, obj)
        }
        ("GET", Some(resource), None) => {
            let kind = match resource {
                "configmaps" => "ConfigMap",
                "services" => "Service",
                "statefulsets" => "StatefulSet",
                "poddisruptionbudgets" => "PodDisruptionBudget",
                "pods" => "Pod",
                other => panic!("unexpected list of {other}"),
            };
            let items: Vec<Value> = fake.existing.iter().filter(|o| o["kind"] == kind).cloned().collect();
            (
                200,
                json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        ("DELETE", Some(_), Some(_)) => (200, status_body(200, "deleted")),
        ("POST", Some("events"), None) => (201, call.body.clone()),
        _ => panic!("unexpected request {} {}?{}", call.method, call.path, call.query),
    }
}

fn status_body(code: u16, message: &str) -> Value {
    let status = if code < 300 { "Success" } else { "Failure" };
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": status, "message": message, "reason": "", "code": code})
}
