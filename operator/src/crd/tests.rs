use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::*;

fn fixture(case: &str) -> LogCluster {
    let path = format!("{}/tests/fixtures/{case}/logcluster.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_norway::from_str(&text).expect("fixture parses")
}

fn spec_schema() -> Value {
    let crd = serde_json::to_value(LogCluster::crd()).expect("crd serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

#[test]
fn the_crd_has_names_scope_subresources_and_columns() {
    let crd = LogCluster::crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("logclusters.norn.dev"));
    assert_eq!(crd.spec.group, GROUP);
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "LogCluster");
    assert_eq!(crd.spec.names.short_names, Some(vec!["lc".to_string()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, VERSION);
    assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "status subresource");
    let columns: Vec<&str> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, ["Ready", "Reason", "Ingesters", "RF", "Age"]);
}

#[test]
fn the_schema_carries_ranges_defaults_and_cel_rules() {
    let spec = spec_schema();
    assert_eq!(spec["properties"]["replicationFactor"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(spec["properties"]["replicationFactor"]["maximum"].as_f64(), Some(9.0));
    assert_eq!(spec["properties"]["replicationFactor"]["default"], 3);
    // CEL rules read self.ingester.replicas: the API server must default the whole block.
    assert_eq!(spec["properties"]["ingester"]["default"]["replicas"], 3);
    let rules: Vec<&str> = spec["x-kubernetes-validations"]
        .as_array()
        .expect("rules on spec")
        .iter()
        .filter_map(|r| r["rule"].as_str())
        .collect();
    assert!(rules.contains(&"self.replicationFactor <= self.ingester.replicas"), "{rules:?}");
    let limits = &spec["properties"]["limits"]["properties"]["global"];
    assert_eq!(limits["x-kubernetes-preserve-unknown-fields"], true);
    let zones = &spec["properties"]["zones"]["properties"]["names"];
    assert_eq!(zones["x-kubernetes-list-type"], "set");
}

#[test]
fn fixtures_pass_the_cel_rules() {
    for case in ["managed-etcd", "zones", "minimal"] {
        fixture(case).validate_cel().unwrap_or_else(|e| panic!("{case}: {e:?}"));
    }
}

fn rejected(lc: &LogCluster, needle: &str) {
    let err = lc.validate_cel().expect_err("the API server would reject this");
    let text = format!("{err:?}");
    assert!(text.contains(needle), "{needle:?} not in {text}");
}

#[test]
fn cel_rejects_what_the_issue_asks_the_schema_to_reject() {
    let mut lc = fixture("minimal");
    lc.spec.replication_factor = 4;
    rejected(&lc, "replicationFactor must not exceed ingester.replicas");

    let mut lc = fixture("zones");
    lc.spec.ingester.replicas = 7;
    rejected(&lc, "multiple of the number of zones");

    let mut lc = fixture("zones");
    lc.spec.ring.etcd.managed = Some(ManagedEtcdSpec::default());
    rejected(&lc, "set exactly one of ring.etcd.endpoints and ring.etcd.managed");

    let mut lc = fixture("zones");
    lc.spec.ring.etcd.endpoints.clear();
    rejected(&lc, "set exactly one of");

    let mut lc = fixture("minimal");
    if let Some(m) = lc.spec.ring.etcd.managed.as_mut() {
        m.replicas = 4;
    }
    rejected(&lc, "must be odd");
}

#[test]
fn managed_etcd_replicas_are_immutable() {
    let old = fixture("managed-etcd");
    let mut new = old.clone();
    if let Some(m) = new.spec.ring.etcd.managed.as_mut() {
        m.replicas = 5;
    }
    let err = new.validate_cel_update(&old).expect_err("transition rule");
    assert!(format!("{err:?}").contains("cannot change after creation"), "{err:?}");
    old.validate_cel_update(&old).expect("unchanged is fine");
}

#[test]
fn volume_claims_are_immutable() {
    let old = fixture("managed-etcd");
    let mut new = old.clone();
    new.spec.ingester.storage.size = k8s_openapi::apimachinery::pkg::api::resource::Quantity("100Gi".into());
    let err = new.validate_cel_update(&old).expect_err("transition rule");
    assert!(format!("{err:?}").contains("ingester.storage cannot change after creation"), "{err:?}");
    let mut new = old.clone();
    if let Some(m) = new.spec.ring.etcd.managed.as_mut() {
        m.storage.storage_class_name = Some("other".into());
    }
    let err = new.validate_cel_update(&old).expect_err("transition rule");
    assert!(format!("{err:?}").contains("ring.etcd.managed.storage cannot change"), "{err:?}");
    let mut scaled = old.clone();
    scaled.spec.ingester.replicas = 6;
    scaled.validate_cel_update(&old).expect("scaling is not a storage change");
}

#[test]
fn specs_round_trip_with_defaults() {
    let lc = fixture("minimal");
    assert_eq!(lc.spec.replication_factor, 3);
    assert_eq!(lc.spec.query_frontend.replicas, 2);
    assert_eq!(lc.spec.ingester.storage.size.0, "10Gi");
    let managed = lc.spec.ring.etcd.managed.clone().expect("managed");
    assert_eq!(managed.image, DEFAULT_ETCD_IMAGE);
    assert_eq!(managed.storage.size.0, "1Gi");
    assert_eq!(lc.spec.object_storage.s3.region, "us-east-1");
    let back: LogCluster = serde_json::from_value(serde_json::to_value(&lc).expect("ser")).expect("de");
    assert_eq!(back, lc);
    let unknown = json!({"image": "x", "ring": {"etcd": {"managed": {}}}, "objectStorage": {"s3": {"bucket": "b"}}});
    let spec: LogClusterSpec = serde_json::from_value(unknown).expect("minimal spec");
    assert!(spec.limits.is_empty());
}
