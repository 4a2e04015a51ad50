//! Rule files in Prometheus' format, with LogQL expressions, and their validation.
//!
//! A namespace is one rule file (`groups: [...]`); the rules API posts one group at a time.
//! Everything is checked before it is stored, with Prometheus' wording where it has one, so a
//! bad file is a 400 on the API and never reaches evaluation.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::config::units::Dur;
use crate::labels::is_valid_label_name;
use crate::logql::{self, SampleExpr};
use crate::query::pipeline::template::CompiledTemplate;

/// A rule file: the groups of one namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default)]
    pub groups: Vec<RuleGroup>,
}

/// A group: rules evaluated in order, every `interval`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGroup {
    pub name: String,
    /// The group's own interval; `ruler.evaluation_interval` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Dur>,
    /// Most alerts (or series) one rule may produce per evaluation (0 = no limit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: usize,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// An alerting rule (`alert`) or a recording rule (`record`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    #[serde(default)]
    pub expr: String,
    /// How long the condition must hold before the alert fires.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<Dur>,
    /// How long a firing alert keeps firing after the condition cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<Dur>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Rule {
    /// The alert or record name.
    pub fn name(&self) -> &str {
        self.alert.as_deref().or(self.record.as_deref()).unwrap_or("")
    }

    pub fn is_alert(&self) -> bool {
        self.alert.is_some()
    }

    pub fn hold(&self) -> std::time::Duration {
        self.for_.map(Dur::get).unwrap_or_default()
    }

    pub fn keep_firing(&self) -> std::time::Duration {
        self.keep_firing_for.map(Dur::get).unwrap_or_default()
    }
}

/// A rule file, group or namespace name the API refused, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

/// Parses a rule file (`groups: [...]`) and validates every group.
pub fn parse_file(text: &str) -> Result<RuleFile, RuleError> {
    let file: RuleFile = if text.trim().is_empty() {
        RuleFile::default()
    } else {
        serde_norway::from_str(text).map_err(|e| RuleError(format!("invalid rule file: {e}")))?
    };
    let mut names = HashSet::new();
    for g in &file.groups {
        if !names.insert(g.name.as_str()) {
            return Err(RuleError(format!("groupname: {:?} is repeated in the same file", g.name)));
        }
        validate_group(g)?;
    }
    Ok(file)
}

/// Parses one group, as the rules API receives it, and validates it.
pub fn parse_group(text: &str) -> Result<RuleGroup, RuleError> {
    let g: RuleGroup = serde_norway::from_str(text).map_err(|e| RuleError(format!("invalid rule group: {e}")))?;
    validate_group(&g)?;
    Ok(g)
}

/// Checks a group the way Prometheus' `rulefmt` does, plus LogQL parsing of every `expr`.
pub fn validate_group(g: &RuleGroup) -> Result<(), RuleError> {
    if g.name.trim().is_empty() {
        return Err(RuleError("Groupname must not be empty".into()));
    }
    if g.interval.is_some_and(|d| d.get().is_zero()) {
        return Err(RuleError(format!("group {:?}: interval must be greater than 0", g.name)));
    }
    for (i, r) in g.rules.iter().enumerate() {
        validate_rule(r)
            .map_err(|msg| RuleError(format!("group {:?}, rule {}, {:?}: {msg}", g.name, i + 1, r.name())))?;
    }
    Ok(())
}

fn validate_rule(r: &Rule) -> Result<(), String> {
    match (&r.record, &r.alert) {
        (Some(_), Some(_)) => return Err("only one of 'record' and 'alert' must be set".into()),
        (None, None) => return Err("one of 'record' or 'alert' must be set".into()),
        (Some(name), None) => {
            if !is_valid_metric_name(name) {
                return Err(format!("invalid recording rule name: {name}"));
            }
            if r.for_.is_some() {
                return Err("invalid field 'for' in recording rule".into());
            }
            if r.keep_firing_for.is_some() {
                return Err("invalid field 'keep_firing_for' in recording rule".into());
            }
            if !r.annotations.is_empty() {
                return Err("invalid field 'annotations' in recording rule".into());
            }
        }
        (None, Some(name)) => {
            if name.trim().is_empty() {
                return Err("field 'alert' must not be empty".into());
            }
        }
    }
    if r.expr.trim().is_empty() {
        return Err("field 'expr' must be set in rule".into());
    }
    parse_expr(&r.expr)?;
    for (k, v) in &r.labels {
        if !is_valid_label_name(k) {
            return Err(format!("invalid label name: {k}"));
        }
        if k == "__name__" {
            return Err("invalid label name: __name__".into());
        }
        if r.is_alert() {
            AlertTemplate::new(v).map_err(|e| format!("label {k:?}: {e}"))?;
        }
    }
    for (k, v) in &r.annotations {
        if !is_valid_label_name(k) {
            return Err(format!("invalid annotation name: {k}"));
        }
        AlertTemplate::new(v).map_err(|e| format!("annotation {k:?}: {e}"))?;
    }
    Ok(())
}

/// Parses a rule's expression: a LogQL metric query.
pub fn parse_expr(expr: &str) -> Result<SampleExpr, String> {
    logql::parse_sample_expr(expr).map_err(|e| format!("could not parse expression: {e}"))
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A label or annotation template of an alerting rule, in Prometheus' dialect: Go
/// `text/template` where `$labels` is the alert's labels (also `.`), and `$value` its value.
/// Loki's template functions are available; Prometheus' `humanize*` and `query` are not.
#[derive(Debug, Clone)]
pub struct AlertTemplate {
    src: String,
    /// Whether the text has an action at all; plain text is copied as is.
    templated: bool,
}

/// What a template can read: the labels of the sample that made the alert.
struct TemplateLabels<'a>(&'a crate::labels::Labels);

impl crate::query::pipeline::template::Data for TemplateLabels<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.0.get(name)
    }
    fn entries(&self) -> Vec<(String, String)> {
        self.0.iter().map(|l| (l.name.clone(), l.value.clone())).collect()
    }
}

impl AlertTemplate {
    /// Parses `src` (with `$value` standing for 0).
    pub fn new(src: &str) -> Result<Self, String> {
        let t = Self { src: src.to_string(), templated: src.contains("{{") };
        if t.templated {
            t.compile(0.0)?;
        }
        Ok(t)
    }

    /// Text copied as it is, never expanded.
    pub fn plain(src: &str) -> Self {
        Self { src: src.to_string(), templated: false }
    }

    fn compile(&self, value: f64) -> Result<CompiledTemplate, String> {
        // `$value` is a constant of this execution: a float literal, as Go would hold it.
        let value = if value.is_finite() { format!("{value:?}") } else { format!("{:?}", value.to_string()) };
        let src = format!("{{{{$labels := .}}}}{{{{$value := {value}}}}}{}", self.src);
        CompiledTemplate::new("alert", &src)
    }

    /// Expands the template for a sample's labels and value; a failure yields the error text,
    /// as Prometheus puts it in place of the annotation.
    pub fn expand(&self, labels: &crate::labels::Labels, value: f64) -> String {
        if !self.templated {
            return self.src.clone();
        }
        let data = TemplateLabels(labels);
        let env = crate::query::pipeline::template::Env { data: &data, line: b"", ts: 0 };
        let mut out = String::new();
        match self.compile(value).and_then(|t| t.execute(&env, &mut out)) {
            Ok(()) => out,
            Err(e) => format!("<error expanding template: {e}>"),
        }
    }
}

/// Encodes a namespace or group name into one path segment: `%XX` for everything but
/// `[A-Za-z0-9_-]` and non-leading `.`, so any name is a safe, reversible file name.
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`encode_name`]; `None` for text it cannot have produced.
pub fn decode_name(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
