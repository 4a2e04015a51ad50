//! Builders from fixtures: `tests/fixtures/<case>/logcluster.yaml` → every child object, compared
//! exactly with `tests/fixtures/<case>/expected.yaml` (one YAML document per object, in the order
//! the controller applies them).
//!
//! After an intended change, regenerate with `NORN_BLESS=1 cargo test -p norn-operator build::`
//! and review the diff of the expected files like any other code change.

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::StatefulSet;
use serde::Deserialize;
use serde_json::Value;

use super::names::Component;
use super::*;
use crate::crd::LogCluster;
use crate::validate::validate;

fn fixture_dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(case)
}

fn load(case: &str) -> LogCluster {
    let path = fixture_dir(case).join("logcluster.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn built(case: &str) -> Children {
    let lc = load(case);
    let valid = validate(&lc).unwrap_or_else(|e| panic!("fixture {case} is invalid: {e}"));
    build(&valid)
}

/// Every child as JSON, in apply order.
fn documents(children: &Children) -> Vec<Value> {
    let mut docs = vec![to_doc(&children.config_map)];
    docs.extend(children.services.iter().map(to_doc));
    docs.extend(children.statefulsets.iter().map(to_doc));
    docs.extend(children.pdbs.iter().map(to_doc));
    docs
}

fn to_doc<K: serde::Serialize + k8s_openapi::Resource>(obj: &K) -> Value {
    let mut v = serde_json::to_value(obj).expect("k8s-openapi objects serialize");
    if let Value::Object(map) = &mut v {
        // k8s-openapi's Serialize writes apiVersion and kind; keep them first for readers.
        let mut ordered = serde_json::Map::new();
        ordered.insert("apiVersion".into(), Value::String(K::API_VERSION.into()));
        ordered.insert("kind".into(), Value::String(K::KIND.into()));
        for (k, val) in std::mem::take(map) {
            ordered.entry(k).or_insert(val);
        }
        *map = ordered;
    }
    v
}

fn check_fixture(case: &str) {
    let docs = documents(&built(case));
    let path = fixture_dir(case).join("expected.yaml");
    if std::env::var_os("NORN_BLESS").is_some() {
        let text: String = docs
            .iter()
            .map(|d| format!("---\n{}", serde_norway::to_string(d).expect("JSON values serialize as YAML")))
            .collect();
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let expected: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display())))
        .collect();
    let name =
        |d: &Value| format!("{}/{}", d["kind"].as_str().unwrap_or("?"), d["metadata"]["name"].as_str().unwrap_or("?"));
    let got: Vec<String> = docs.iter().map(name).collect();
    let want: Vec<String> = expected.iter().map(name).collect();
    assert_eq!(got, want, "{case}: the children differ from {}", path.display());
    for (g, w) in docs.iter().zip(&expected) {
        assert!(
            g == w,
            "{case}: {} differs from {}\n--- got\n{}\n--- expected\n{}",
            name(g),
            path.display(),
            serde_norway::to_string(g).unwrap_or_default(),
            serde_norway::to_string(w).unwrap_or_default()
        );
    }
}

#[test]
fn fixture_managed_etcd() {
    check_fixture("managed-etcd");
}

#[test]
fn fixture_zones_external_etcd() {
    check_fixture("zones");
}

#[test]
fn fixture_minimal_defaults() {
    check_fixture("minimal");
}

#[test]
fn fixture_tls_everywhere() {
    check_fixture("tls");
}

/// With `spec.tls` every role serves HTTPS and mutual TLS on gRPC and calls the others with its
/// certificate, all on the files of the mounted Secret; with `spec.ring.etcd.tls` the etcd
/// client presents the other Secret's certificate. Norn's own parser reads back what matters.
#[test]
fn tls_secrets_are_mounted_and_configure_every_role() {
    use norn::tls::ClientAuth;
    let valid = validate(&load("tls")).expect("valid");
    let tree: Value = serde_norway::from_str(&valid.config).expect("yaml");
    let cfg = norn::config::Config::from_tree(tree).expect("norn parses the rendered config");
    cfg.validate().expect("norn accepts the rendered config");
    let crt = PathBuf::from("/etc/norn/tls/tls.crt");
    assert_eq!(cfg.http.tls_config.cert_file.as_deref(), Some(crt.as_path()));
    assert_eq!(cfg.http.tls_config.client_auth_type, ClientAuth::VerifyClientCertIfGiven);
    assert_eq!(cfg.grpc.tls_config.client_auth_type, ClientAuth::RequireAndVerifyClientCert);
    for client in [&cfg.ingester_client.grpc_client_config, &cfg.frontend_worker.grpc_client_config] {
        assert!(client.tls_enabled);
        assert_eq!(client.tls_cert_path.as_deref(), Some(crt.as_path()));
        assert_eq!(client.tls_server_name, "norn.logging.svc");
    }
    let children = build(&valid);
    for set in &children.statefulsets {
        let pod = set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let secrets: Vec<(&str, &str)> = pod
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| Some((v.name.as_str(), v.secret.as_ref()?.secret_name.as_deref()?)))
            .collect();
        assert_eq!(secrets, vec![("tls", "norn-tls"), ("etcd-tls", "norn-etcd-client")], "{:?}", set.metadata.name);
        let container = &pod.containers[0];
        let probe = container.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap();
        assert_eq!(probe.scheme.as_deref(), Some("HTTPS"));
        let args = container.args.as_ref().unwrap();
        assert!(args.contains(&"--ring.etcd.tls-cert-path=/etc/norn/etcd-tls/tls.crt".to_string()), "{args:?}");
        assert!(args.contains(&"--ring.etcd.tls-server-name=etcd.infra.svc".to_string()), "{args:?}");
        let annotations = set.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.as_ref().unwrap();
        assert_eq!(annotations.get(names::ANNOTATION_TLS_SERVER_NAME).map(String::as_str), Some("norn.logging.svc"));
    }
}

fn sts<'a>(c: &'a Children, name: &str) -> &'a StatefulSet {
    c.statefulsets.iter().find(|s| s.metadata.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn ingesters_roll_on_delete_with_a_volume_and_a_long_grace_period() {
    let c = built("managed-etcd");
    let spec = sts(&c, "logs-ingester").spec.as_ref().expect("spec");
    assert_eq!(spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()), Some("OnDelete"));
    let claims = spec.volume_claim_templates.as_ref().expect("volume claims");
    assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
    let pod = spec.template.spec.as_ref().expect("pod");
    assert_eq!(pod.termination_grace_period_seconds, Some(statefulset::INGESTER_GRACE_SECONDS));
    let probe = pod.containers[0].readiness_probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("http probe");
    assert_eq!(probe.path.as_deref(), Some("/ready"));
    for other in ["logs-distributor", "logs-querier", "logs-query-frontend"] {
        let s = sts(&c, other).spec.as_ref().expect("spec");
        assert_eq!(s.update_strategy.as_ref().and_then(|u| u.type_.as_deref()), Some("RollingUpdate"), "{other}");
        assert!(s.volume_claim_templates.is_none(), "{other}");
    }
}

#[test]
fn a_config_change_changes_every_norn_pod_template() {
    let lc = load("managed-etcd");
    let before = build(&validate(&lc).expect("valid"));
    let mut changed = lc.clone();
    changed.spec.limits.global.insert("ingestion_rate_mb".into(), serde_json::json!(99));
    let after = build(&validate(&changed).expect("valid"));
    let hash = |s: &StatefulSet| {
        s.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(names::ANNOTATION_CONFIG_HASH).cloned())
    };
    for (b, a) in before.statefulsets.iter().zip(&after.statefulsets) {
        let name = b.metadata.name.clone().unwrap_or_default();
        if name == "logs-etcd" {
            assert_eq!(hash(b), None, "etcd does not read Norn's configuration");
            assert_eq!(b, a, "etcd must not restart on a Norn config change");
        } else {
            assert!(hash(b).is_some(), "{name} has no config hash");
            assert_ne!(hash(b), hash(a), "{name} would not restart on a config change");
        }
    }
    assert_ne!(before.config_map, after.config_map);
}

#[test]
fn the_rendered_config_is_what_norn_parses() {
    for case in ["managed-etcd", "zones", "minimal", "tls"] {
        let valid = validate(&load(case)).expect("valid");
        let tree: Value = serde_norway::from_str(&valid.config).expect("yaml");
        let cfg = norn::config::Config::from_tree(tree).expect("norn parses the rendered config");
        cfg.validate().expect("norn accepts the rendered config");
        assert_eq!(cfg.storage.backend, norn::storage::Backend::S3, "{case}");
        assert_eq!(cfg.data.dir, PathBuf::from(config::DATA_DIR), "{case}");
        assert!(cfg.ingester.flush_on_shutdown, "{case}");
    }
    let valid = validate(&load("managed-etcd")).expect("valid");
    let tree: Value = serde_norway::from_str(&valid.config).expect("yaml");
    let cfg = norn::config::Config::from_tree(tree).expect("parses");
    assert_eq!(cfg.storage.s3.bucket, "norn-chunks");
    assert_eq!(cfg.storage.s3.endpoint.as_deref(), Some("http://minio.storage.svc:9000"));
    assert_eq!(cfg.limits.ingestion_rate_mb, 8.0);
    let tenants = norn::limits::TenantLimits::new(cfg.limits.clone(), &cfg.overrides).expect("overrides");
    assert_eq!(tenants.get("team-a").ingestion_rate_mb, 20.0);
    assert_eq!(tenants.get("team-a").max_line_size, norn::config::units::ByteSize(256_000));
    // The query frontend's settings.
    assert_eq!(cfg.limits.split_queries_by_interval, norn::config::units::Dur::mins(30));
    assert!(cfg.query_range.cache_results);
    assert_eq!(
        cfg.query_range.results_cache.cache.memcached_client.servers(),
        vec!["memcached.observability.svc:11211"]
    );
}

/// Queriers pull work from every query frontend through the frontends' headless Service; with
/// no frontends they pull from none.
#[test]
fn queriers_pull_from_the_frontends_headless_service() {
    let valid = validate(&load("managed-etcd")).expect("valid");
    let args = statefulset::args(&valid, Component::Querier, None);
    assert!(
        args.contains(
            &"--frontend-worker.frontend-address=logs-query-frontend-headless.observability.svc:9095".to_string()
        ),
        "{args:?}"
    );
    for c in [Component::Distributor, Component::Ingester, Component::QueryFrontend] {
        assert!(!statefulset::args(&valid, c, None).iter().any(|a| a.starts_with("--frontend-worker")), "{c}");
    }
    let mut lc = load("managed-etcd");
    lc.spec.query_frontend.component.replicas = 0;
    let valid = validate(&lc).expect("valid");
    assert!(!statefulset::args(&valid, Component::Querier, None).iter().any(|a| a.starts_with("--frontend-worker")));
}

/// A managed memcached: its servers, each named to every frontend, and the frontends' only
/// cache; removing it from the spec removes the servers.
#[test]
fn managed_memcached_serves_every_frontend() {
    let valid = validate(&load("zones")).expect("valid");
    let children = build(&valid);
    let sts = children.statefulsets.iter().find(|s| s.metadata.name.as_deref() == Some("prod-memcached")).expect("sts");
    let spec = sts.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.service_name.as_deref(), Some("prod-memcached-headless"));
    let container = &spec.template.spec.as_ref().expect("pod").containers[0];
    assert!(container.args.as_ref().expect("args").contains(&"--memory-limit=2048".to_string()));
    assert!(children.services.iter().any(|s| s.metadata.name.as_deref() == Some("prod-memcached-headless")));
    let servers = "prod-memcached-0.prod-memcached-headless.logging.svc:11211,prod-memcached-1.prod-memcached-headless.logging.svc:11211";
    let flag = format!("--query-range.results-cache.cache.memcached-client.addresses={servers}");
    assert!(statefulset::args(&valid, Component::QueryFrontend, None).contains(&flag));
    for c in [Component::Distributor, Component::Ingester, Component::Querier] {
        assert!(!statefulset::args(&valid, c, None).iter().any(|a| a.contains("memcached")), "{c}");
    }
    let mut lc = load("zones");
    lc.spec.query_frontend.results_cache = None;
    let without = build(&validate(&lc).expect("valid"));
    assert!(!without.statefulsets.iter().any(|s| s.metadata.name.as_deref() == Some("prod-memcached")));
    lc.spec.query_frontend.results_cache = load("zones").spec.query_frontend.results_cache;
    if let Some(cache) = lc.spec.query_frontend.results_cache.as_mut() {
        cache.memcached_addresses = Some("memcached:11211".into());
    }
    let err = validate(&lc).expect_err("both caches");
    assert!(err.to_string().contains("set at most one of spec.queryFrontend.resultsCache.memcachedAddresses"), "{err}");
}

/// Norn's own flag parser and configuration loader accept every pod's command line, with the
/// values the kubelet substitutes.
#[test]
fn norn_accepts_the_command_line_of_every_component() {
    for case in ["managed-etcd", "zones", "tls"] {
        let valid = validate(&load(case)).expect("valid");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(config::CONFIG_FILE);
        std::fs::write(&file, &valid.config).expect("write config");
        for component in Component::ALL {
            let zone = (component == Component::Ingester).then(|| valid.zones.first().map(String::as_str)).flatten();
            let args = statefulset::args(&valid, component, zone);
            let known: Vec<String> = args
                .iter()
                // What the kubelet substitutes from the pod's environment.
                .map(|a| a.replace("$(POD_NAME)", "logs-ingester-0").replace("$(POD_IP)", "10.1.2.3"))
                .map(|a| match a.strip_prefix("--config.file=") {
                    Some(_) => format!("--config.file={}", file.display()),
                    None => a,
                })
                .collect();
            assert!(known.iter().any(|a| a == &format!("--target={component}")), "{known:?}");
            let cli = norn::config::flags::parse(std::iter::once("norn".to_string()).chain(known))
                .unwrap_or_else(|e| panic!("{case}/{component}: norn rejects its flags: {e}"));
            let cfg = norn::config::Config::load(cli.config_file.as_deref(), cli.expand_env, &cli.overrides)
                .unwrap_or_else(|e| panic!("{case}/{component}: norn rejects its configuration: {e}"));
            assert_eq!(cfg.target.to_string(), component.as_str());
        }
    }
}

#[test]
fn ingester_pdb_allows_what_quorum_tolerates() {
    assert_eq!(pdb::ingester_max_unavailable(1), 1);
    assert_eq!(pdb::ingester_max_unavailable(2), 1);
    assert_eq!(pdb::ingester_max_unavailable(3), 1);
    assert_eq!(pdb::ingester_max_unavailable(5), 2);
}

#[test]
fn building_is_deterministic() {
    let lc = load("zones");
    let v = validate(&lc).expect("valid");
    assert_eq!(build(&v), build(&v));
    assert_eq!(validate(&lc).expect("valid").config_hash, v.config_hash);
}
