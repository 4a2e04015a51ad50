//! What Loki 3 adds to pushes so that Grafana's Logs Drilldown has something to group by:
//! a `service_name` stream label (`limits.discover_service_name`) and a `detected_level`
//! structured metadata field on each entry (`limits.discover_log_levels`).

use crate::entry::Entry;
use crate::labels::{Label, Labels};

/// The stream label every stream gets.
pub const SERVICE_NAME: &str = "service_name";
/// `service_name` of a stream none of whose labels name a service.
pub const UNKNOWN_SERVICE: &str = "unknown_service";
/// The structured metadata field with an entry's level.
pub const DETECTED_LEVEL: &str = "detected_level";

/// Loki's default `discover_service_name`: labels tried in this order.
pub const DEFAULT_SERVICE_NAME_LABELS: &[&str] = &[
    "service",
    "app",
    "application",
    "app_name",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "k8s_container_name",
    "component",
    "workload",
    "job",
    "k8s_job_name",
];

/// Names of a level in labels, structured metadata and the fields of a line, as Loki reads them
/// (case-sensitive).
pub const LEVEL_FIELDS: &[&str] = &["level", "LEVEL", "Level", "severity", "SEVERITY", "Severity", "lvl", "LVL", "Lvl"];

/// Adds `service_name` to `labels` (sorted) unless it has one: the value of the first label of
/// `candidates` it has, `unknown_service` otherwise. An empty `candidates` turns this off.
pub fn service_name(labels: Labels, candidates: &[String]) -> Labels {
    if candidates.is_empty() || labels.get(SERVICE_NAME).is_some() {
        return labels;
    }
    let value = candidates.iter().find_map(|c| labels.get(c)).unwrap_or(UNKNOWN_SERVICE).to_string();
    let mut v = labels.into_vec();
    v.push(Label::new(SERVICE_NAME, value));
    Labels::from_vec(v).sorted()
}

/// Adds `detected_level` to the entry unless it has one: from a level label of the stream,
/// then the entry's metadata (OTLP's `severity_number` and `severity_text` included), then the
/// line. Nothing is added when no level is found.
pub fn detect_level(labels: &Labels, e: &mut Entry) {
    if e.metadata.iter().any(|l| l.name == DETECTED_LEVEL) || labels.get(DETECTED_LEVEL).is_some() {
        return;
    }
    let level = LEVEL_FIELDS
        .iter()
        .find_map(|f| labels.get(f))
        .map(normalize_level)
        .or_else(|| from_metadata(&e.metadata))
        .or_else(|| from_line(&e.line));
    if let Some(level) = level.filter(|l| *l != "unknown") {
        e.metadata.push(Label::new(DETECTED_LEVEL, level));
    }
}

fn from_metadata(meta: &[Label]) -> Option<&'static str> {
    if let Some(n) = meta.iter().find(|l| l.name == "severity_number").and_then(|l| l.value.parse::<i32>().ok()) {
        let level = severity_number_level(n);
        if level != "unknown" {
            return Some(level);
        }
    }
    meta.iter()
        .find(|l| l.name == "severity_text" || LEVEL_FIELDS.contains(&l.name.as_str()))
        .map(|l| normalize_level(&l.value))
}

/// The level of an OTLP `SeverityNumber` (1-4 trace, 5-8 debug, 9-12 info, 13-16 warn,
/// 17-20 error, 21-24 fatal).
pub fn severity_number_level(n: i32) -> &'static str {
    match n {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => "unknown",
    }
}

/// A level value as one of trace, debug, info, warn, error, critical, fatal or unknown.
pub fn normalize_level(v: &str) -> &'static str {
    match v.trim().to_ascii_lowercase().as_str() {
        "trace" | "trc" => "trace",
        "debug" | "dbg" => "debug",
        "info" | "inf" | "information" | "informational" | "notice" => "info",
        "warn" | "warning" | "wrn" => "warn",
        "error" | "err" | "eror" => "error",
        "critical" | "crit" => "critical",
        "fatal" | "panic" | "emerg" | "emergency" | "alert" => "fatal",
        _ => "unknown",
    }
}

/// The level a line states: a level field of a JSON or logfmt line, else the leftmost level
/// word in it (`ERROR`, `warn`, `Info`, ...).
fn from_line(line: &[u8]) -> Option<&'static str> {
    level_field(line).map(normalize_level).or_else(|| level_word(line))
}

/// The value of the first level field of the line (one of [`LEVEL_FIELDS`]) as a logfmt key
/// (`level=v`, `level="v"`) or a JSON key (`"level":"v"`), in one pass over its `=` and `:`.
fn level_field(line: &[u8]) -> Option<&str> {
    for pos in memchr::memchr2_iter(b'=', b':', line) {
        let key_end = if line[pos] == b'=' {
            pos
        } else {
            // `"key" :` — the key's closing quote before the colon.
            let end = pos - line[..pos].iter().rev().take_while(|c| **c == b' ').count();
            match end.checked_sub(1) {
                Some(q) if line[q] == b'"' => q,
                _ => continue,
            }
        };
        let key_start =
            line[..key_end].iter().rposition(|c| matches!(c, b' ' | b'\t' | b'{' | b',' | b'"')).map_or(0, |i| i + 1);
        let Ok(key) = std::str::from_utf8(&line[key_start..key_end]) else { continue };
        if !LEVEL_FIELDS.contains(&key) {
            continue;
        }
        let rest = trim_start(&line[pos + 1..]);
        let value = match rest.strip_prefix(b"\"") {
            Some(r) => &r[..memchr::memchr(b'"', r).unwrap_or(r.len())],
            None => {
                let stop = rest.iter().position(|&c| matches!(c, b' ' | b'\t' | b',' | b'}')).unwrap_or(rest.len());
                &rest[..stop]
            }
        };
        return std::str::from_utf8(value).ok();
    }
    None
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// The leftmost whole word of the line that names a level.
fn level_word(line: &[u8]) -> Option<&'static str> {
    const WORDS: &[&str] = &["trace", "debug", "info", "warn", "warning", "error", "err", "critical", "fatal", "panic"];
    let mut start = 0;
    let n = line.len();
    while start < n {
        while start < n && !line[start].is_ascii_alphabetic() {
            start += 1;
        }
        let mut end = start;
        while end < n && line[end].is_ascii_alphabetic() {
            end += 1;
        }
        let word = &line[start..end];
        if (3..=8).contains(&word.len()) && is_one_case(word) {
            let lower = word.to_ascii_lowercase();
            if let Some(w) = WORDS.iter().find(|w| w.as_bytes() == lower.as_slice()) {
                return Some(normalize_level(w));
            }
        }
        start = end;
    }
    None
}

/// `ERROR`, `error` or `Error`, not `eRRoR`: words in prose and identifiers stay out.
fn is_one_case(w: &[u8]) -> bool {
    let rest = &w[1..];
    rest.iter().all(u8::is_ascii_lowercase) || w.iter().all(u8::is_ascii_uppercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(s: &str) -> Labels {
        Labels::parse(s).unwrap().sorted()
    }

    fn level_of(labels_text: &str, line: &str, meta: &[(&str, &str)]) -> Option<String> {
        let mut e = Entry::new(1, line.to_string());
        e.metadata = meta.iter().map(|(n, v)| Label::new(*n, *v)).collect();
        detect_level(&labels(labels_text), &mut e);
        e.metadata.iter().find(|l| l.name == DETECTED_LEVEL).map(|l| l.value.clone())
    }

    #[test]
    fn service_name_comes_from_the_first_listed_label() {
        let list: Vec<String> = DEFAULT_SERVICE_NAME_LABELS.iter().map(|s| s.to_string()).collect();
        let got = service_name(labels(r#"{job="varlogs", app="api"}"#), &list);
        assert_eq!(got.get(SERVICE_NAME), Some("api"), "app comes before job");
        let got = service_name(labels(r#"{host="h"}"#), &list);
        assert_eq!(got.get(SERVICE_NAME), Some(UNKNOWN_SERVICE));
        assert!(got.is_sorted());
        let got = service_name(labels(r#"{service_name="x", app="api"}"#), &list);
        assert_eq!(got.get(SERVICE_NAME), Some("x"), "an existing service_name stays");
        let got = service_name(labels(r#"{app="api"}"#), &[]);
        assert_eq!(got.get(SERVICE_NAME), None, "an empty list turns discovery off");
    }

    #[test]
    fn levels_from_labels_metadata_and_lines() {
        assert_eq!(level_of(r#"{level="WARNING"}"#, "x", &[]).as_deref(), Some("warn"));
        assert_eq!(level_of("{a=\"b\"}", "x", &[("severity_number", "17")]).as_deref(), Some("error"));
        assert_eq!(level_of("{a=\"b\"}", "x", &[("severity_text", "Information")]).as_deref(), Some("info"));
        assert_eq!(level_of("{a=\"b\"}", "ts=1 level=debug msg=\"an error\"", &[]).as_deref(), Some("debug"));
        assert_eq!(level_of("{a=\"b\"}", r#"{"msg":"boom","level": "ERROR"}"#, &[]).as_deref(), Some("error"));
        assert_eq!(level_of("{a=\"b\"}", r#"{"Severity":"crit"}"#, &[]).as_deref(), Some("critical"));
        assert_eq!(level_of("{a=\"b\"}", "2024-01-01 WARN disk almost full, error soon", &[]).as_deref(), Some("warn"));
        assert_eq!(level_of("{a=\"b\"}", "[Fatal] out of memory", &[]).as_deref(), Some("fatal"));
        assert_eq!(level_of("{a=\"b\"}", "GET /information 200", &[]), None, "words inside words do not count");
        assert_eq!(level_field(b"sublevel=info"), None, "a key must start at a boundary");
        assert_eq!(level_field(b"a=1 level=info"), Some("info"));
        assert_eq!(level_field(br#"{"x":1, "level" : "warn"}"#), Some("warn"));
        assert_eq!(level_field(br#"{"msg":"a:b","lvl":"debug"}"#), Some("debug"));
        assert_eq!(level_field(b"time=12:00 Severity=error"), Some("error"));
        assert_eq!(level_of("{a=\"b\"}", "level=verbose", &[]), None, "unknown levels are not stored");
        assert_eq!(level_of("{a=\"b\"}", "error", &[("detected_level", "info")]).as_deref(), Some("info"));
    }

    #[test]
    fn severity_numbers() {
        let got: Vec<&str> = [0, 1, 5, 9, 12, 13, 17, 21, 24, 25].into_iter().map(severity_number_level).collect();
        assert_eq!(got, ["unknown", "trace", "debug", "info", "info", "warn", "error", "fatal", "fatal", "unknown"]);
    }
}
