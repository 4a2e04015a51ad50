use super::*;
use crate::crd::EtcdTlsSpec;

/// A valid cluster named `name`, with `extra` YAML merged into its spec.
fn cluster(name: &str, spec_patch: serde_json::Value) -> LogCluster {
    let mut spec = serde_json::json!({
        "image": "norn:dev",
        "ring": {"etcd": {"managed": {}}},
        "objectStorage": {"s3": {"bucket": "logs"}},
    });
    norn::config::merge_json(&mut spec, spec_patch);
    let mut lc: LogCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "norn.dev/v1alpha1",
        "kind": "LogCluster",
        "metadata": {"name": name, "namespace": "ns", "uid": "u-1"},
        "spec": spec,
    }))
    .expect("test spec deserializes");
    lc.metadata.generation = Some(1);
    lc
}

fn problems(lc: &LogCluster) -> Vec<String> {
    match validate(lc) {
        Ok(_) => Vec::new(),
        Err(InvalidSpec(p)) => p,
    }
}

fn assert_problem(lc: &LogCluster, needle: &str) {
    let p = problems(lc);
    assert!(p.iter().any(|m| m.contains(needle)), "no problem mentioning {needle:?} in {p:?}");
}

#[test]
fn defaults_are_valid_and_resolved() {
    let v = validate(&cluster("logs", serde_json::json!({}))).expect("valid");
    assert_eq!(v.spec.replication_factor, 3);
    assert_eq!(v.spec.ingester.replicas, 3);
    assert_eq!(v.spec.distributor.replicas, 2);
    assert_eq!(v.ring_endpoints, vec!["http://logs-etcd.ns.svc:2379".to_string()]);
    assert_eq!(v.ring_prefix, "norn/ns/logs/");
    assert!(v.zones.is_empty());
    assert_eq!(v.owner.uid, "u-1");
    assert_eq!(v.owner.controller, Some(true));
    assert_eq!(v.config_hash.len(), 16);
}

#[test]
fn replication_factor_above_ingesters_is_named() {
    let lc = cluster("logs", serde_json::json!({"replicationFactor": 5, "ingester": {"replicas": 3}}));
    assert_problem(&lc, "spec.replicationFactor (5) must not exceed spec.ingester.replicas (3)");
    assert_problem(
        &cluster("logs", serde_json::json!({"replicationFactor": 0})),
        "spec.replicationFactor must be at least 1",
    );
}

#[test]
fn zones_must_divide_the_ingesters_and_cover_the_replication_factor() {
    let lc = cluster("logs", serde_json::json!({"zones": {"names": ["a", "b"]}, "ingester": {"replicas": 3}}));
    assert_problem(&lc, "spec.ingester.replicas (3) must be a multiple of the number of zones (2)");
    assert_problem(&lc, "spec.replicationFactor (3) must not exceed the number of zones (2)");
    let dup = cluster("logs", serde_json::json!({"zones": {"names": ["a", "a", "B_"]}, "ingester": {"replicas": 3}}));
    assert_problem(&dup, "\"a\" is listed twice");
    assert_problem(&dup, "\"B_\" must be a DNS label");
    let ok = validate(&cluster(
        "logs",
        serde_json::json!({"zones": {"names": ["a", "b", "c"]}, "ingester": {"replicas": 6}}),
    ))
    .expect("valid");
    assert_eq!(ok.zones, vec!["a", "b", "c"]);
}

#[test]
fn exactly_one_ring_store() {
    let both = cluster("logs", serde_json::json!({"ring": {"etcd": {"endpoints": ["http://etcd:2379"]}}}));
    assert_problem(&both, "set exactly one of spec.ring.etcd.endpoints and spec.ring.etcd.managed");
    let mut none = cluster("logs", serde_json::json!({}));
    none.spec.ring.etcd.managed = None;
    assert_problem(&none, "set exactly one of");
    let mut bad_url = cluster("logs", serde_json::json!({}));
    bad_url.spec.ring.etcd.managed = None;
    bad_url.spec.ring.etcd.endpoints = vec!["etcd:2379".into()];
    assert_problem(&bad_url, "\"etcd:2379\" must be an http:// URL");
    bad_url.spec.ring.etcd.endpoints = vec!["https://etcd:2379".into()];
    assert_problem(
        &bad_url,
        "\"https://etcd:2379\" must be an http:// URL without a path (without spec.ring.etcd.tls)",
    );
    bad_url.spec.ring.etcd.tls = Some(EtcdTlsSpec { secret_name: "etcd-client".into(), server_name: None });
    assert!(problems(&bad_url).is_empty(), "{:?}", problems(&bad_url));
    bad_url.spec.ring.etcd.endpoints = vec!["http://etcd:2379".into()];
    assert_problem(&bad_url, "must be an https:// URL without a path (with spec.ring.etcd.tls)");
    bad_url.spec.ring.etcd.tls = Some(EtcdTlsSpec { secret_name: "Not_A_Name".into(), server_name: None });
    assert_problem(&bad_url, "spec.ring.etcd.tls.secretName: \"Not_A_Name\" is not a valid Secret name");
    let mut managed_tls = cluster("logs", serde_json::json!({}));
    managed_tls.spec.ring.etcd.tls = Some(EtcdTlsSpec { secret_name: "etcd-client".into(), server_name: None });
    assert_problem(&managed_tls, "spec.ring.etcd.tls is for an existing etcd");
    let mut prefix = cluster("logs", serde_json::json!({}));
    for p in ["norn/a", "/", ""] {
        prefix.spec.ring.prefix = Some(p.into());
        assert_problem(&prefix, "spec.ring.prefix");
    }
    prefix.spec.ring.prefix = Some("norn/a/".into());
    assert!(problems(&prefix).is_empty(), "{:?}", problems(&prefix));
    let even = cluster("logs", serde_json::json!({"ring": {"etcd": {"managed": {"replicas": 2}}}}));
    assert_problem(&even, "spec.ring.etcd.managed.replicas must be 1, 3, 5 or 7, got 2");
}

#[test]
fn limits_are_checked_by_norns_parser_and_named_as_spec_fields() {
    let unknown = cluster("logs", serde_json::json!({"limits": {"global": {"ingestion_rate": 5}}}));
    assert_problem(&unknown, "spec.limits.global.ingestion_rate");
    let wrong_type = cluster("logs", serde_json::json!({"limits": {"tenants": {"team-a": {"max_line_size": "huge"}}}}));
    assert_problem(&wrong_type, "spec.limits.tenants.team-a");
    let negative = cluster("logs", serde_json::json!({"limits": {"global": {"ingestion_rate_mb": -1}}}));
    assert_problem(&negative, "spec.limits.global.ingestion_rate_mb must be a non-negative number");
    let good = cluster("logs", serde_json::json!({"limits": {"global": {"max_line_size": "1MB"}}}));
    assert!(problems(&good).is_empty(), "{:?}", problems(&good));
}

#[test]
fn names_must_fit_kubernetes_limits() {
    assert_problem(&cluster("my.logs", serde_json::json!({})), "must be a DNS-1035 label");
    assert_problem(&cluster("1logs", serde_json::json!({})), "must be a DNS-1035 label");
    let long = "l".repeat(40);
    assert_problem(&cluster(&long, serde_json::json!({})), "is too long");
    let zoned = cluster(
        &"z".repeat(30),
        serde_json::json!({"zones": {"names": ["zone-with-long-name", "b", "c"]}, "ingester": {"replicas": 3}}),
    );
    assert_problem(&zoned, "-ingester-zone-with-long-name\" would exceed 52 characters");
    assert!(problems(&cluster(&"l".repeat(30), serde_json::json!({}))).is_empty());
}

#[test]
fn retention_durations_are_parsed() {
    let bad = cluster("logs", serde_json::json!({"retention": {"period": "forever", "tenants": {"a": "3x"}}}));
    assert_problem(&bad, "spec.retention.period");
    assert_problem(&bad, "spec.retention.tenants.a");
    let good = cluster("logs", serde_json::json!({"retention": {"period": "31d", "tenants": {"a": "1w"}}}));
    assert!(problems(&good).is_empty(), "{:?}", problems(&good));
}

#[test]
fn every_problem_is_reported_at_once() {
    let lc = cluster(
        "logs",
        serde_json::json!({"replicationFactor": 9, "limits": {"global": {"nope": 1}}, "retention": {"period": "x"}}),
    );
    assert!(problems(&lc).len() >= 2, "{:?}", problems(&lc));
}

#[test]
fn a_cluster_without_uid_is_not_built() {
    let mut lc = cluster("logs", serde_json::json!({}));
    lc.metadata.uid = None;
    assert_problem(&lc, "metadata.name and metadata.uid must be set");
}
