use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use super::*;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn spec(holder: Option<&str>, renewed: &str, duration: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: holder.map(Into::into),
        renew_time: Some(MicroTime(ts(renewed))),
        lease_duration_seconds: Some(duration),
        ..Default::default()
    }
}

#[test]
fn decisions() {
    let now = ts("2026-01-01T00:00:20Z");
    assert_eq!(decide(None, "me", now), Decision::Acquire);
    assert_eq!(decide(Some(&spec(Some("me"), "2026-01-01T00:00:00Z", 15)), "me", now), Decision::Renew);
    assert_eq!(
        decide(Some(&spec(Some("other"), "2026-01-01T00:00:10Z", 15)), "me", now),
        Decision::Wait { holder: "other".into() }
    );
    assert_eq!(decide(Some(&spec(Some("other"), "2026-01-01T00:00:04Z", 15)), "me", now), Decision::Acquire);
    assert_eq!(decide(Some(&spec(None, "2026-01-01T00:00:19Z", 15)), "me", now), Decision::Acquire);
    assert_eq!(decide(Some(&spec(Some(""), "2026-01-01T00:00:19Z", 15)), "me", now), Decision::Acquire);
}

/// Answers GET with `current` (404 when `None`) and writes with `write_status`; returns the
/// requests as (method, path, body).
async fn scenario(
    current: Option<Value>,
    write_status: u16,
    now: &str,
) -> (Result<bool, LeaderError>, Vec<(String, String, Value)>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut calls = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let bytes = req.into_body().collect_bytes().await.expect("body");
            let body: Value =
                if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("json") };
            let (code, reply) = match method.as_str() {
                "GET" => match &current {
                    Some(l) => (200, l.clone()),
                    None => (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
                    ),
                },
                _ if write_status >= 300 => (
                    write_status,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": write_status, "message": "the object has been modified"}),
                ),
                _ => (200, body.clone()),
            };
            calls.push((method, path, body));
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&reply).expect("json")))
                    .expect("response"),
            );
        }
        calls
    });
    let lock =
        LeaseLock::new(Api::namespaced(Client::new(service, "ops"), "ops"), LeaderConfig::new("norn-operator", "me"));
    let result = lock.try_acquire_or_renew(ts(now)).await;
    drop(lock);
    (result, server.await.expect("server"))
}

fn lease(holder: &str, renewed: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "norn-operator", "namespace": "ops", "resourceVersion": "42"},
        "spec": {"holderIdentity": holder, "renewTime": renewed, "acquireTime": renewed,
                 "leaseDurationSeconds": 15, "leaseTransitions": transitions}
    })
}

#[tokio::test]
async fn a_missing_lease_is_created() {
    let (got, calls) = scenario(None, 200, "2026-01-01T00:00:00Z").await;
    assert!(got.expect("no error"));
    assert_eq!(calls[1].0, "POST");
    assert_eq!(calls[1].1, LEASES);
    assert_eq!(calls[1].2["spec"]["holderIdentity"], "me");
    assert_eq!(calls[1].2["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(calls[1].2["spec"]["leaseTransitions"], 0);
}

#[tokio::test]
async fn the_holder_renews_with_the_version_it_read() {
    let (got, calls) = scenario(Some(lease("me", "2026-01-01T00:00:00Z", 3)), 200, "2026-01-01T00:00:05Z").await;
    assert!(got.expect("no error"));
    let (method, path, body) = &calls[1];
    assert_eq!((method.as_str(), path.as_str()), ("PUT", format!("{LEASES}/norn-operator").as_str()));
    assert_eq!(body["metadata"]["resourceVersion"], "42");
    assert_eq!(body["spec"]["renewTime"], "2026-01-01T00:00:05.000000Z");
    assert_eq!(body["spec"]["leaseTransitions"], 3);
}

#[tokio::test]
async fn a_valid_lease_of_another_holder_is_left_alone() {
    let (got, calls) = scenario(Some(lease("other", "2026-01-01T00:00:00Z", 3)), 200, "2026-01-01T00:00:10Z").await;
    assert!(!got.expect("no error"));
    assert_eq!(calls.len(), 1, "only the read");
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let (got, calls) = scenario(Some(lease("other", "2026-01-01T00:00:00Z", 3)), 200, "2026-01-01T00:00:16Z").await;
    assert!(got.expect("no error"));
    assert_eq!(calls[1].2["spec"]["holderIdentity"], "me");
    assert_eq!(calls[1].2["spec"]["leaseTransitions"], 4);
}

#[tokio::test]
async fn losing_the_race_is_not_an_error() {
    let (got, _) = scenario(Some(lease("other", "2026-01-01T00:00:00Z", 3)), 409, "2026-01-01T00:00:16Z").await;
    assert!(!got.expect("a conflict means someone else won"));
    let (got, _) = scenario(Some(lease("other", "2026-01-01T00:00:00Z", 3)), 500, "2026-01-01T00:00:16Z").await;
    assert!(matches!(got, Err(LeaderError::Api { .. })));
}
