//! `limits.otlp_config`: which OTLP attributes become stream labels, which structured
//! metadata, and which are dropped — Loki's keys and semantics, per tenant through `overrides`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Resource attributes that become stream labels unless `ignore_defaults` is set: Loki's
/// default list (`service.name` is always a label, `unknown_service` when it is absent).
pub const DEFAULT_INDEX_LABELS: &[&str] = &[
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// `otlp_config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    pub resource_attributes: ResourceAttributes,
    /// Rules for instrumentation scope attributes (`structured_metadata` or `drop`).
    pub scope_attributes: Vec<AttributesRule>,
    /// Rules for log record attributes (`structured_metadata` or `drop`).
    pub log_attributes: Vec<AttributesRule>,
}

/// `otlp_config.resource_attributes`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceAttributes {
    /// Drop the default index label list: only `attributes_config` rules (and `service.name`)
    /// make labels.
    pub ignore_defaults: bool,
    /// Rules checked in order before the defaults; the first that matches an attribute decides.
    pub attributes_config: Vec<AttributesRule>,
}

/// One rule: an action for the attributes named in `attributes` or matching `regex`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesRule {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
    /// Matched against the whole attribute name (anchored), as Loki does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<AnchoredRegex>,
}

/// What happens to a matching attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    IndexLabel,
    StructuredMetadata,
    Drop,
}

impl AttributesRule {
    pub fn matches(&self, name: &str) -> bool {
        self.attributes.iter().any(|a| a == name) || self.regex.as_ref().is_some_and(|r| r.0.is_match(name))
    }
}

/// The first rule's action for `name`, if any rule matches.
pub fn rule_action(rules: &[AttributesRule], name: &str) -> Option<Action> {
    rules.iter().find(|r| r.matches(name)).map(|r| r.action)
}

impl OtlpConfig {
    /// What becomes of resource attribute `name`.
    pub fn resource_action(&self, name: &str) -> Action {
        if let Some(a) = rule_action(&self.resource_attributes.attributes_config, name) {
            return a;
        }
        if name == "service.name" || (!self.resource_attributes.ignore_defaults && DEFAULT_INDEX_LABELS.contains(&name))
        {
            Action::IndexLabel
        } else {
            Action::StructuredMetadata
        }
    }

    /// Checks the rules; `path` is the YAML key of this block.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        let all =
            self.resource_attributes.attributes_config.iter().map(|r| ("resource_attributes.attributes_config", r));
        let scoped = self.scope_attributes.iter().map(|r| ("scope_attributes", r));
        let logs = self.log_attributes.iter().map(|r| ("log_attributes", r));
        for (key, rule) in all.chain(scoped.clone()).chain(logs.clone()) {
            if rule.attributes.is_empty() && rule.regex.is_none() {
                return Err(format!("{path}.{key}: a rule needs attributes or a regex"));
            }
        }
        for (key, rule) in scoped.chain(logs) {
            if rule.action == Action::IndexLabel {
                return Err(format!("{path}.{key}: action index_label is only supported for resource_attributes"));
            }
        }
        Ok(())
    }
}

/// A regex matched against whole names, kept with its source text for serialization.
#[derive(Clone)]
pub struct AnchoredRegex(regex::Regex, String);

impl AnchoredRegex {
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        Ok(Self(regex::Regex::new(&format!("^(?:{source})$"))?, source.to_string()))
    }
}

impl fmt::Debug for AnchoredRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.1)
    }
}

impl PartialEq for AnchoredRegex {
    fn eq(&self, other: &Self) -> bool {
        self.1 == other.1
    }
}

impl Serialize for AnchoredRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.1)
    }
}

impl<'de> Deserialize<'de> for AnchoredRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AnchoredRegex::new(&s).map_err(|e| serde::de::Error::custom(format!("invalid regex {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> OtlpConfig {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_rules_and_ignore_defaults() {
        let c = OtlpConfig::default();
        assert_eq!(c.resource_action("k8s.namespace.name"), Action::IndexLabel);
        assert_eq!(c.resource_action("host.name"), Action::StructuredMetadata);
        let c = parse(
            "resource_attributes:\n  attributes_config:\n    - action: index_label\n      attributes: [host.name]\n    - action: drop\n      regex: k8s\\.pod\\..*\n",
        );
        assert_eq!(c.resource_action("host.name"), Action::IndexLabel);
        assert_eq!(c.resource_action("k8s.pod.name"), Action::Drop);
        assert_eq!(c.resource_action("xk8s.pod.name"), Action::StructuredMetadata, "regexes are anchored");
        let c = parse("resource_attributes:\n  ignore_defaults: true\n");
        assert_eq!(c.resource_action("k8s.namespace.name"), Action::StructuredMetadata);
        assert_eq!(c.resource_action("service.name"), Action::IndexLabel);
    }

    #[test]
    fn validation_names_the_key() {
        let c = parse("log_attributes:\n  - action: index_label\n    attributes: [a]\n");
        let e = c.validate("limits.otlp_config").unwrap_err();
        assert!(e.contains("limits.otlp_config.log_attributes"), "{e}");
        let c = parse("scope_attributes:\n  - action: drop\n");
        assert!(c.validate("x").unwrap_err().contains("attributes or a regex"));
        assert!(serde_norway::from_str::<OtlpConfig>("log_attributes:\n  - action: drop\n    regex: '('\n").is_err());
        // Serializes back to what was read.
        let c = parse("log_attributes:\n  - action: drop\n    regex: a.*\n");
        assert_eq!(parse(&serde_norway::to_string(&c).unwrap()), c);
    }
}
