//! The first step of reconciliation: check a LogCluster's spec and resolve what the builders
//! need (names, ring endpoints and prefix, the rendered configuration).
//!
//! The CRD schema already rejects most mistakes when the API server enforces it; these checks
//! repeat the cross-field rules (a CRD installed from an older version may not carry them) and add
//! what a schema cannot express: child names that fit Kubernetes' limits, and limits that Norn's
//! own configuration parser accepts. Every problem names the spec field.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use crate::build::config;
use crate::build::names::{Component, Names};
use crate::crd::{LogCluster, LogClusterSpec};

/// Longest StatefulSet name: its pods' `controller-revision-hash` label is the name plus a dash
/// and up to 10 characters, and a label value has at most 63.
const MAX_STATEFULSET_NAME: usize = 52;
/// Longest Service name (a DNS-1035 label).
const MAX_SERVICE_NAME: usize = 63;

/// A spec that passed validation, with everything the builders derive from it resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidCluster {
    /// Namespace of the LogCluster and all its children.
    pub namespace: String,
    /// Names of the children.
    pub names: Names,
    /// Controller owner reference put on every child, so they are garbage-collected with the
    /// LogCluster.
    pub owner: OwnerReference,
    /// The spec as validated.
    pub spec: LogClusterSpec,
    /// etcd client URLs Norn's pods use for the ring.
    pub ring_endpoints: Vec<String>,
    /// Key prefix of the ring in etcd.
    pub ring_prefix: String,
    /// Zones of zone-aware replication; empty without zone awareness.
    pub zones: Vec<String>,
    /// The Norn configuration file, as Norn's parser accepted it.
    pub config: String,
    /// Hash of [`Self::config`], put on pod templates.
    pub config_hash: String,
    /// Replicas to give each ingester StatefulSet now, by name, where the rollout driver holds
    /// them apart from the spec (a scale-down in progress, or tokens not reserved yet). Empty
    /// after validation: the spec's counts.
    pub ingester_replicas: std::collections::BTreeMap<String, i32>,
}

impl ValidCluster {
    /// Replicas the spec asks for in each ingester StatefulSet (one, or one per zone), by name.
    pub fn ingester_sets(&self) -> Vec<(String, Option<String>, i32)> {
        if self.zones.is_empty() {
            return vec![(self.names.component(Component::Ingester, None), None, self.spec.ingester.replicas)];
        }
        let per_zone = self.spec.ingester.replicas / i32::try_from(self.zones.len()).unwrap_or(i32::MAX);
        self.zones
            .iter()
            .map(|z| (self.names.component(Component::Ingester, Some(z)), Some(z.clone()), per_zone))
            .collect()
    }
}

/// Why a LogCluster cannot be reconciled: one message per problem, naming the spec field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid LogCluster: {}", .0.join("; "))]
pub struct InvalidSpec(pub Vec<String>);

/// Checks `lc` and resolves what the builders need.
pub fn validate(lc: &LogCluster) -> Result<ValidCluster, InvalidSpec> {
    let mut problems = Vec::new();
    let name = lc.name_any();
    let namespace = lc.namespace().unwrap_or_default();
    if namespace.is_empty() {
        problems.push("metadata.namespace is missing".to_string());
    }
    let owner = lc.controller_owner_ref(&());
    if owner.is_none() {
        problems.push("metadata.name and metadata.uid must be set".to_string());
    }
    let spec = &lc.spec;
    check_name(&name, spec, &mut problems);
    check_replicas(spec, &mut problems);
    let zones = check_zones(spec, &mut problems);
    check_ring(spec, &mut problems);
    check_retention(spec, &mut problems);
    check_results_cache(spec, &mut problems);
    let config = match config::render(spec) {
        Ok(text) => {
            check_config(&text, &mut problems);
            text
        }
        Err(e) => {
            problems.push(format!("the Norn configuration cannot be rendered: {e}"));
            String::new()
        }
    };
    let (Some(owner), true) = (owner, problems.is_empty()) else {
        return Err(InvalidSpec(problems));
    };
    let names = Names::new(&name);
    let ring_endpoints = match &spec.ring.etcd.managed {
        Some(_) => vec![format!("http://{}.{namespace}.svc:2379", names.etcd())],
        None => spec.ring.etcd.endpoints.clone(),
    };
    let ring_prefix = spec.ring.prefix.clone().unwrap_or_else(|| format!("norn/{namespace}/{name}/"));
    let config_hash = config::hash(&config);
    Ok(ValidCluster {
        namespace,
        names,
        owner,
        spec: spec.clone(),
        ring_endpoints,
        ring_prefix,
        zones,
        config,
        config_hash,
        ingester_replicas: Default::default(),
    })
}

/// The cluster's name becomes part of Service and StatefulSet names.
fn check_name(name: &str, spec: &LogClusterSpec, problems: &mut Vec<String>) {
    let dns1035 = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !dns1035 {
        problems.push(format!(
            "metadata.name {name:?} must be a DNS-1035 label (lowercase letters, digits and '-', starting with a \
             letter): it names Services"
        ));
        return;
    }
    let names = Names::new(name);
    let zones: Vec<Option<&str>> = match &spec.zones {
        Some(z) => z.names.iter().map(|n| Some(n.as_str())).collect(),
        None => vec![None],
    };
    let mut statefulsets: Vec<String> = Component::ALL
        .iter()
        .filter(|c| **c != Component::Ingester)
        .map(|c| names.component(*c, None))
        .chain(zones.iter().map(|z| names.component(Component::Ingester, *z)))
        .collect();
    if spec.ring.etcd.managed.is_some() {
        statefulsets.push(names.etcd());
    }
    if crate::build::memcached::managed(spec).is_some() {
        statefulsets.push(names.memcached());
    }
    if let Some(longest) = statefulsets.iter().max_by_key(|n| n.len())
        && longest.len() > MAX_STATEFULSET_NAME
    {
        problems.push(format!(
            "metadata.name {name:?} is too long: StatefulSet {longest:?} would exceed {MAX_STATEFULSET_NAME} characters"
        ));
    }
    let longest_service = names.headless(Component::QueryFrontend);
    if longest_service.len() > MAX_SERVICE_NAME {
        problems.push(format!(
            "metadata.name {name:?} is too long: Service {longest_service:?} would exceed {MAX_SERVICE_NAME} characters"
        ));
    }
}

fn check_replicas(spec: &LogClusterSpec, problems: &mut Vec<String>) {
    for (field, replicas) in [
        ("spec.distributor.replicas", spec.distributor.replicas),
        ("spec.querier.replicas", spec.querier.replicas),
        ("spec.queryFrontend.replicas", spec.query_frontend.replicas),
    ] {
        if replicas < 0 {
            problems.push(format!("{field} must not be negative, got {replicas}"));
        }
    }
    if spec.ingester.replicas < 1 {
        problems.push(format!("spec.ingester.replicas must be at least 1, got {}", spec.ingester.replicas));
    }
    let rf = spec.replication_factor;
    if rf < 1 {
        problems.push(format!("spec.replicationFactor must be at least 1, got {rf}"));
    } else if rf > spec.ingester.replicas {
        problems.push(format!(
            "spec.replicationFactor ({rf}) must not exceed spec.ingester.replicas ({})",
            spec.ingester.replicas
        ));
    }
}

/// Returns the zone names (empty without zones).
fn check_zones(spec: &LogClusterSpec, problems: &mut Vec<String>) -> Vec<String> {
    let Some(zones) = &spec.zones else {
        return Vec::new();
    };
    if zones.topology_key.is_empty() {
        problems.push("spec.zones.topologyKey must not be empty".into());
    }
    if zones.names.is_empty() {
        problems.push("spec.zones.names must name at least one zone".into());
        return Vec::new();
    }
    let mut seen = BTreeSet::new();
    for z in &zones.names {
        let label = !z.is_empty()
            && z.len() <= 20
            && z.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !z.starts_with('-')
            && !z.ends_with('-');
        if !label {
            problems.push(format!(
                "spec.zones.names: {z:?} must be a DNS label of at most 20 characters (it names a StatefulSet)"
            ));
        }
        if !seen.insert(z) {
            problems.push(format!("spec.zones.names: {z:?} is listed twice"));
        }
    }
    let count = i32::try_from(zones.names.len()).unwrap_or(i32::MAX);
    if spec.ingester.replicas % count != 0 {
        problems.push(format!(
            "spec.ingester.replicas ({}) must be a multiple of the number of zones ({count})",
            spec.ingester.replicas
        ));
    }
    if spec.replication_factor > count {
        problems.push(format!(
            "spec.replicationFactor ({}) must not exceed the number of zones ({count})",
            spec.replication_factor
        ));
    }
    zones.names.clone()
}

/// A DNS-1123 subdomain: what a Secret's name must be.
fn is_dns_subdomain(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(ok_char)
        && name.split('.').all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
}

fn check_ring(spec: &LogClusterSpec, problems: &mut Vec<String>) {
    let etcd = &spec.ring.etcd;
    match (&etcd.managed, etcd.endpoints.is_empty()) {
        (Some(_), false) | (None, true) => {
            problems.push("set exactly one of spec.ring.etcd.endpoints and spec.ring.etcd.managed".into());
        }
        _ => {}
    }
    let scheme = if etcd.tls.is_some() { "https://" } else { "http://" };
    for e in &etcd.endpoints {
        let host = e.strip_prefix(scheme);
        if host.is_none_or(|h| h.is_empty() || h.contains('/')) {
            let why = if etcd.tls.is_some() { "with spec.ring.etcd.tls" } else { "without spec.ring.etcd.tls" };
            problems.push(format!("spec.ring.etcd.endpoints: {e:?} must be an {scheme} URL without a path ({why})"));
        }
    }
    if etcd.tls.is_some() && etcd.managed.is_some() {
        problems.push("spec.ring.etcd.tls is for an existing etcd; the managed etcd serves plain HTTP".into());
    }
    for (field, secret) in [
        ("spec.tls.secretName", spec.tls.as_ref().map(|t| t.secret_name.as_str())),
        ("spec.ring.etcd.tls.secretName", etcd.tls.as_ref().map(|t| t.secret_name.as_str())),
    ] {
        if let Some(name) = secret
            && !is_dns_subdomain(name)
        {
            problems.push(format!("{field}: {name:?} is not a valid Secret name (a DNS subdomain)"));
        }
    }
    if let Some(t) = &spec.tls
        && t.server_name.trim().is_empty()
    {
        problems.push("spec.tls.serverName must name the DNS SAN of the pods' certificates".into());
    }
    if let Some(m) = &etcd.managed
        && (!(1..=7).contains(&m.replicas) || m.replicas % 2 == 0)
    {
        problems.push(format!("spec.ring.etcd.managed.replicas must be 1, 3, 5 or 7, got {}", m.replicas));
    }
    if let Some(p) = &spec.ring.prefix
        && (!p.ends_with('/') || p.len() < 2 || p.chars().any(char::is_whitespace))
    {
        problems.push(format!(
            "spec.ring.prefix {p:?} must end with '/' and not be '/' alone: the cluster's keys are everything under it"
        ));
    }
}

fn check_results_cache(spec: &LogClusterSpec, problems: &mut Vec<String>) {
    let Some(cache) = &spec.query_frontend.results_cache else {
        return;
    };
    if cache.memcached_addresses.is_some() && cache.memcached.is_some() {
        problems.push(
            "set at most one of spec.queryFrontend.resultsCache.memcachedAddresses and spec.queryFrontend.resultsCache.memcached"
                .into(),
        );
    }
    if let Some(m) = &cache.memcached {
        if !(1..=16).contains(&m.replicas) {
            problems.push(format!(
                "spec.queryFrontend.resultsCache.memcached.replicas must be 1 to 16, got {}",
                m.replicas
            ));
        }
        if m.memory_limit_mb < 16 {
            problems.push(format!(
                "spec.queryFrontend.resultsCache.memcached.memoryLimitMb must be at least 16, got {}",
                m.memory_limit_mb
            ));
        }
    }
}

fn check_retention(spec: &LogClusterSpec, problems: &mut Vec<String>) {
    let Some(r) = &spec.retention else {
        return;
    };
    let periods = r
        .period
        .iter()
        .map(|p| ("spec.retention.period".to_string(), p))
        .chain(r.tenants.iter().map(|(tenant, p)| (format!("spec.retention.tenants.{tenant}"), p)))
        .chain(r.streams.iter().enumerate().map(|(i, s)| (format!("spec.retention.streams[{i}].period"), &s.period)))
        .chain(r.delete_delay.iter().map(|p| ("spec.retention.deleteDelay".to_string(), p)));
    for (field, p) in periods {
        if let Err(e) = norn::config::units::parse_duration(p) {
            problems.push(format!("{field}: {e}"));
        }
    }
    for (i, s) in r.streams.iter().enumerate() {
        if let Err(e) = norn::logql::parse_matchers(&s.selector) {
            problems.push(format!("spec.retention.streams[{i}].selector: {e}"));
        }
    }
}

/// Runs the rendered file through Norn's parser and checks, naming spec fields where the key
/// comes from `spec.limits`.
fn check_config(text: &str, problems: &mut Vec<String>) {
    let tree: serde_json::Value = match serde_norway::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("the rendered Norn configuration is not YAML: {e}"));
            return;
        }
    };
    let parsed = norn::config::Config::from_tree(tree).map_err(|e| match e {
        norn::config::ConfigError::Key { key, msg } => format!("{}: {msg}", spec_field(&key)),
        other => other.to_string(),
    });
    match parsed.and_then(|cfg| cfg.validate().map_err(|msg| spec_message(&msg))) {
        Ok(()) => {}
        Err(msg) => problems.push(msg),
    }
}

/// Maps a key of Norn's configuration to the spec field it was rendered from.
fn spec_field(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("limits.") {
        format!("spec.limits.global.{rest}")
    } else if let Some(rest) = key.strip_prefix("overrides.") {
        format!("spec.limits.tenants.{rest}")
    } else if let Some(rest) = key.strip_prefix("storage.s3.") {
        format!("spec.objectStorage.s3.{rest}")
    } else {
        format!("Norn configuration key {key}")
    }
}

/// Rewrites the key a validation message starts with into its spec field.
fn spec_message(msg: &str) -> String {
    match msg.split_once(' ') {
        Some((key, rest)) if key.contains('.') => format!("{} {rest}", spec_field(key)),
        _ => format!("the rendered Norn configuration is invalid: {msg}"),
    }
}

#[cfg(test)]
mod tests;
