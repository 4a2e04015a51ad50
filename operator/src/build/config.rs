//! The Norn configuration file every pod of a cluster reads (`/etc/norn/norn.yaml`).
//!
//! The operator renders only the keys it decides; everything else keeps Norn's defaults, so a
//! Norn image newer or older than the operator reads the file the same way. Settings that differ
//! per pod (instance ID, address, zone) and the ring settings are command-line flags (see
//! [`super::statefulset`]). [`validate`](crate::validate) runs the rendered text through Norn's
//! own parser, so the operator never writes a file Norn would reject.

use serde_json::{Map, Value, json};
use xxhash_rust::xxh3::xxh3_64;

use crate::crd::LogClusterSpec;

/// Key of the configuration file in the ConfigMap.
pub const CONFIG_FILE: &str = "norn.yaml";
/// Where the ConfigMap is mounted in every Norn container.
pub const CONFIG_DIR: &str = "/etc/norn";
/// Norn's data directory in every container: the ingesters' volume, an emptyDir elsewhere.
pub const DATA_DIR: &str = "/var/lib/norn";
/// Port of Norn's HTTP API.
pub const HTTP_PORT: i32 = 3100;
/// Port of Norn's gRPC server.
pub const GRPC_PORT: i32 = 9095;
/// Where `spec.tls.secretName` is mounted.
pub const TLS_DIR: &str = "/etc/norn/tls";
/// Where `spec.ring.etcd.tls.secretName` is mounted.
pub const ETCD_TLS_DIR: &str = "/etc/norn/etcd-tls";

/// The configuration tree for `spec`, before it is written as YAML.
///
/// - `ingester.flush_on_shutdown: true`: an ingester stopped by Kubernetes (scale-down, node
///   drain, cluster deletion) flushes its chunks to the object store instead of leaving them in a
///   WAL that nobody may replay. `terminationGracePeriodSeconds` leaves it the time to.
/// - Limits are Norn's `limits` and `overrides` blocks as given in `spec.limits`, with
///   `spec.queryFrontend.splitQueriesByInterval` as `limits.split_queries_by_interval`.
/// - `spec.queryFrontend.resultsCache` becomes the `query_range` results-cache settings.
/// - `spec.ruler` becomes the `ruler` section (see [`ruler`]).
/// - `spec.retention` turns on `compactor.retention_enabled` and sets `limits.retention_period`,
///   `limits.retention_stream`, the tenants' `overrides.<id>.retention_period` and
///   `compactor.retention_delete_delay` (over the same keys of `spec.limits`).
/// - `spec.tls` becomes `http.tls_config` (client certificates verified when given: the
///   kubelet's probes give none), `grpc.tls_config` (required with
///   `requireClientCertificates`) and the `grpc_client_config` of `ingester_client` and
///   `frontend_worker` (the pod's certificate as client certificate, `serverName` checked), all
///   on the files of the mounted Secret ([`TLS_DIR`]). `spec.ring.etcd.tls` is a command-line
///   setting, like the rest of the ring (see [`super::statefulset`]).
pub fn tree(spec: &LogClusterSpec) -> Value {
    let s3 = &spec.object_storage.s3;
    let mut s3_tree = Map::new();
    s3_tree.insert("bucket".into(), json!(s3.bucket));
    if let Some(endpoint) = &s3.endpoint {
        s3_tree.insert("endpoint".into(), json!(endpoint));
    }
    s3_tree.insert("region".into(), json!(s3.region));

    let mut root = Map::new();
    root.insert("auth".into(), json!({ "enabled": spec.auth_enabled }));
    root.insert("data".into(), json!({ "dir": DATA_DIR }));
    let mut grpc = json!({ "addr": format!("0.0.0.0:{GRPC_PORT}") });
    let mut http = json!({ "addr": format!("0.0.0.0:{HTTP_PORT}") });
    if let Some(t) = &spec.tls {
        let server = |client_auth: &str| {
            json!({
                "cert_file": format!("{TLS_DIR}/tls.crt"),
                "key_file": format!("{TLS_DIR}/tls.key"),
                "client_ca_file": format!("{TLS_DIR}/ca.crt"),
                "client_auth_type": client_auth,
            })
        };
        http["tls_config"] = server("VerifyClientCertIfGiven");
        let grpc_auth =
            if t.require_client_certificates { "RequireAndVerifyClientCert" } else { "VerifyClientCertIfGiven" };
        grpc["tls_config"] = server(grpc_auth);
        let client = json!({
            "grpc_client_config": {
                "tls_enabled": true,
                "tls_cert_path": format!("{TLS_DIR}/tls.crt"),
                "tls_key_path": format!("{TLS_DIR}/tls.key"),
                "tls_ca_path": format!("{TLS_DIR}/ca.crt"),
                "tls_server_name": t.server_name,
            }
        });
        root.insert("ingester_client".into(), client.clone());
        root.insert("frontend_worker".into(), client);
    }
    root.insert("grpc".into(), grpc);
    root.insert("http".into(), http);
    root.insert("ingester".into(), json!({ "flush_on_shutdown": true }));
    root.insert("storage".into(), json!({ "backend": "s3", "s3": Value::Object(s3_tree) }));
    let mut limits: Map<String, Value> = spec.limits.global.clone().into_iter().collect();
    let mut overrides: Map<String, Value> = spec
        .limits
        .tenants
        .iter()
        .map(|(tenant, limits)| (tenant.clone(), Value::Object(limits.clone().into_iter().collect())))
        .collect();
    if let Some(r) = &spec.retention {
        let mut compactor = Map::new();
        compactor.insert("retention_enabled".into(), json!(true));
        if let Some(delay) = &r.delete_delay {
            compactor.insert("retention_delete_delay".into(), json!(delay));
        }
        root.insert("compactor".into(), Value::Object(compactor));
        if let Some(period) = &r.period {
            limits.insert("retention_period".into(), json!(period));
        }
        if !r.streams.is_empty() {
            let rules: Vec<Value> = r
                .streams
                .iter()
                .map(|s| json!({ "selector": s.selector, "priority": s.priority, "period": s.period }))
                .collect();
            limits.insert("retention_stream".into(), Value::Array(rules));
        }
        for (tenant, period) in &r.tenants {
            let entry = overrides.entry(tenant.clone()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                m.insert("retention_period".into(), json!(period));
            }
        }
    }
    let frontend = &spec.query_frontend;
    if let Some(interval) = &frontend.split_queries_by_interval {
        limits.insert("split_queries_by_interval".into(), json!(interval));
    }
    if let Some(cache) = &frontend.results_cache {
        let mut c = Map::new();
        if let Some(mb) = cache.embedded_max_size_mb {
            c.insert("embedded_cache".into(), json!({ "max_size_mb": mb }));
        }
        if let Some(addresses) = &cache.memcached_addresses {
            c.insert("memcached_client".into(), json!({ "addresses": addresses }));
        }
        let mut range = Map::new();
        range.insert("cache_results".into(), json!(cache.enabled.unwrap_or(true)));
        if !c.is_empty() {
            range.insert("results_cache".into(), json!({ "cache": Value::Object(c) }));
        }
        root.insert("query_range".into(), Value::Object(range));
    }
    root.insert("ruler".into(), ruler(&spec.ruler));
    if !limits.is_empty() {
        root.insert("limits".into(), Value::Object(limits));
    }
    if !overrides.is_empty() {
        root.insert("overrides".into(), Value::Object(overrides));
    }
    Value::Object(root)
}

/// The `ruler` section: Alertmanager and remote-write URLs, and where rules are kept — the
/// mounted ConfigMaps when there are any (`local`), the object store otherwise (`object`, where
/// rules posted through the API are shared by every ruler).
fn ruler(spec: &crate::crd::RulerSpec) -> Value {
    let mut ruler = Map::new();
    if let Some(url) = &spec.alertmanager_url {
        ruler.insert("alertmanager_url".into(), json!(url));
    }
    if let Some(url) = &spec.remote_write_url {
        ruler.insert("remote_write".into(), json!({ "url": url }));
    }
    if let Some(interval) = &spec.evaluation_interval {
        ruler.insert("evaluation_interval".into(), json!(interval));
    }
    let storage = if spec.rules_config_maps.is_empty() {
        json!({ "type": "object" })
    } else {
        json!({ "type": "local", "local": { "directory": super::statefulset::RULES_DIR } })
    };
    ruler.insert("storage".into(), storage);
    Value::Object(ruler)
}

/// The configuration file for `spec` as YAML.
pub fn render(spec: &LogClusterSpec) -> Result<String, serde_norway::Error> {
    let body = serde_norway::to_string(&tree(spec))?;
    Ok(format!("# Rendered by norn-operator from the LogCluster spec; edits are overwritten.\n{body}"))
}

/// The hash put on pod templates: 16 hex digits of XXH3 over the file, stable across releases.
pub fn hash(rendered: &str) -> String {
    format!("{:016x}", xxh3_64(rendered.as_bytes()))
}
