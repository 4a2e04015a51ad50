//! Loki's mapping of OTLP logs onto streams: resource attributes on the index label list become
//! stream labels, every other attribute (resource, scope, log record) and the record's trace id,
//! span id, severity and flags become structured metadata, and the body becomes the line.
//! Attribute names are normalized to label names (`service.name` → `service_name`).

use std::fmt::Write;

use bytes::Bytes;

use super::config::{Action, OtlpConfig, rule_action};
use super::proto::{AnyValue, ExportLogsServiceRequest, KeyValue, LogRecord, Value};
use crate::distributor::decode::{RawLabels, RawPush, RawStream};
use crate::entry::Entry;
use crate::labels::Label;

/// The `service_name` of a resource without `service.name`.
pub use crate::distributor::discover::UNKNOWN_SERVICE;

/// Streams of an export request, and how many log records it held.
pub fn to_push(req: ExportLogsServiceRequest, cfg: &OtlpConfig, now: i64) -> (RawPush, u64) {
    let mut streams = Vec::with_capacity(req.resource_logs.len());
    let mut records = 0u64;
    for rl in req.resource_logs {
        let mut labels: Vec<(String, String)> = Vec::new();
        let mut resource_meta: Vec<Label> = Vec::new();
        for kv in rl.resource.map(|r| r.attributes).unwrap_or_default() {
            match cfg.resource_action(&kv.key) {
                Action::Drop => {}
                Action::IndexLabel => {
                    let value = kv.value.as_ref().map(render).unwrap_or_default();
                    let name = normalize_name(&kv.key);
                    labels.retain(|(n, _)| *n != name);
                    labels.push((name, value));
                }
                Action::StructuredMetadata => flatten(&kv, "", &mut resource_meta),
            }
        }
        if !labels.iter().any(|(n, _)| n == "service_name") {
            labels.push(("service_name".into(), UNKNOWN_SERVICE.into()));
        }
        let mut entries = Vec::new();
        for sl in rl.scope_logs {
            let mut scope_meta = resource_meta.clone();
            if let Some(scope) = sl.scope {
                if !scope.name.is_empty() {
                    scope_meta.push(Label::new("scope_name", scope.name));
                }
                if !scope.version.is_empty() {
                    scope_meta.push(Label::new("scope_version", scope.version));
                }
                for kv in &scope.attributes {
                    if rule_action(&cfg.scope_attributes, &kv.key) != Some(Action::Drop) {
                        flatten(kv, "", &mut scope_meta);
                    }
                }
            }
            records += sl.log_records.len() as u64;
            entries.extend(sl.log_records.into_iter().map(|r| entry(r, &scope_meta, cfg, now)));
        }
        if !entries.is_empty() {
            streams.push(RawStream { labels: RawLabels::Map(labels), entries });
        }
    }
    (RawPush { streams }, records)
}

fn entry(r: LogRecord, scope_meta: &[Label], cfg: &OtlpConfig, now: i64) -> Entry {
    let ts = [r.time_unix_nano, r.observed_time_unix_nano].into_iter().find(|t| *t != 0).map_or(now, clamp_ns);
    let mut metadata = scope_meta.to_vec();
    for kv in &r.attributes {
        if rule_action(&cfg.log_attributes, &kv.key) != Some(Action::Drop) {
            flatten(kv, "", &mut metadata);
        }
    }
    if !r.trace_id.is_empty() {
        metadata.push(Label::new("trace_id", hex(&r.trace_id)));
    }
    if !r.span_id.is_empty() {
        metadata.push(Label::new("span_id", hex(&r.span_id)));
    }
    if !r.severity_text.is_empty() {
        metadata.push(Label::new("severity_text", r.severity_text));
    }
    if r.severity_number != 0 {
        metadata.push(Label::new("severity_number", r.severity_number.to_string()));
    }
    if r.flags != 0 {
        metadata.push(Label::new("flags", r.flags.to_string()));
    }
    if r.observed_time_unix_nano != 0 {
        metadata.push(Label::new("observed_timestamp", r.observed_time_unix_nano.to_string()));
    }
    let line = match r.body.and_then(|b| b.value) {
        Some(Value::StringValue(s)) => s,
        Some(v) => Bytes::from(render(&AnyValue { value: Some(v) })),
        None => Bytes::new(),
    };
    Entry { ts, line, metadata }
}

fn clamp_ns(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// Adds attribute `kv` as structured metadata; a map value becomes one entry per leaf, its keys
/// joined to the attribute's name with `_`.
fn flatten(kv: &KeyValue, prefix: &str, out: &mut Vec<Label>) {
    let name =
        if prefix.is_empty() { normalize_name(&kv.key) } else { format!("{prefix}_{}", normalize_name(&kv.key)) };
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::KvlistValue(m)) => {
            for inner in &m.values {
                flatten(inner, &name, out);
            }
        }
        _ => out.push(Label::new(name, kv.value.as_ref().map(render).unwrap_or_default())),
    }
}

/// An attribute name as a label name: every character outside `[A-Za-z0-9_]` becomes `_`, a
/// leading digit gets a `key_` prefix and a single leading underscore a `key` prefix (names
/// starting `__` are reserved), as Prometheus' OTLP translation and Loki do.
pub fn normalize_name(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

/// An `AnyValue` as text, the way OpenTelemetry's `AsString` renders it (and so Loki): strings
/// as they are, numbers and booleans in their JSON form, bytes as base64, arrays and maps as
/// JSON, the empty value as "".
pub fn render(v: &AnyValue) -> String {
    match &v.value {
        None => String::new(),
        Some(Value::StringValue(s)) => String::from_utf8_lossy(s).into_owned(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => format_double(*d),
        Some(Value::BytesValue(b)) => base64(b),
        Some(_) => to_json(v).to_string(),
    }
}

/// The JSON form of a value inside an array or map (maps with sorted keys, as Go's encoder
/// writes them).
fn to_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.value {
        None => J::Null,
        Some(Value::StringValue(s)) => J::String(String::from_utf8_lossy(s).into_owned()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(format_double(*d)), J::Number)
        }
        Some(Value::BytesValue(b)) => J::String(base64(b)),
        Some(Value::ArrayValue(a)) => J::Array(a.values.iter().map(to_json).collect()),
        Some(Value::KvlistValue(m)) => {
            let map: std::collections::BTreeMap<String, J> =
                m.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(J::Null, to_json))).collect();
            J::Object(map.into_iter().collect())
        }
    }
}

/// A double as ECMAScript (and Go's JSON encoder) writes it: plain decimals, exponent form below
/// 1e-6 and from 1e21 on (`1e+21`, `1e-7`).
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let abs = d.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{d:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    } else {
        format!("{d}")
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for byte in b {
        let _ = write!(s, "{byte:02x}");
    }
    s
}

fn base64(b: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
