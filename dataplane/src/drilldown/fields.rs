//! `detected_fields`: the fields of a sample of lines — keys of JSON and logfmt lines, and
//! structured metadata — with their type, parser and number of distinct values.

use std::collections::{BTreeMap, HashSet};

use crate::logql::units::{parse_bytes, parse_go_duration};
use crate::query::value::StreamResult;

/// What is known of one field across the sample.
#[derive(Debug, Default)]
pub struct Field {
    pub values: HashSet<String>,
    /// Parsers that produced it (`json`, `logfmt`); empty for structured metadata.
    pub parsers: Vec<&'static str>,
    /// The JSON path of a field from a JSON line.
    pub json_path: Option<Vec<String>>,
    /// Types every value so far satisfies, narrowed as values arrive.
    kinds: Kinds,
}

#[derive(Debug, Clone, Copy)]
struct Kinds {
    int: bool,
    float: bool,
    boolean: bool,
    duration: bool,
    bytes: bool,
}

impl Default for Kinds {
    fn default() -> Self {
        Self { int: true, float: true, boolean: true, duration: true, bytes: true }
    }
}

impl Field {
    fn add(&mut self, value: &str) {
        let k = &mut self.kinds;
        k.int &= value.parse::<i64>().is_ok();
        k.float &= value.parse::<f64>().is_ok_and(f64::is_finite);
        k.boolean &= matches!(value, "true" | "false" | "TRUE" | "FALSE" | "True" | "False");
        k.duration &= parse_go_duration(value).is_ok();
        // A bytes value has a unit: a bare number is an int or a float.
        k.bytes &= value.bytes().any(|b| b.is_ascii_alphabetic()) && parse_bytes(value).is_some();
        self.values.insert(value.to_string());
    }

    /// Loki's type name: `int`, `float`, `boolean`, `duration`, `bytes` or `string`.
    pub fn kind(&self) -> &'static str {
        let k = self.kinds;
        if self.values.is_empty() {
            "string"
        } else if k.int {
            "int"
        } else if k.float {
            "float"
        } else if k.boolean {
            "boolean"
        } else if k.duration {
            "duration"
        } else if k.bytes {
            "bytes"
        } else {
            "string"
        }
    }
}

/// Fields of the lines of `streams`, by name; stream labels are left out (they are labels).
pub fn detect(streams: &[StreamResult]) -> BTreeMap<String, Field> {
    let mut out: BTreeMap<String, Field> = BTreeMap::new();
    for s in streams {
        for e in &s.entries {
            for m in &e.structured_metadata {
                if s.stream_labels.get(&m.name).is_none() {
                    out.entry(m.name.clone()).or_default().add(&m.value);
                }
            }
            for (name, value, parser, path) in parse_line(&e.line) {
                if s.stream_labels.get(&name).is_some() {
                    continue;
                }
                let f = out.entry(name).or_default();
                if !f.parsers.contains(&parser) {
                    f.parsers.push(parser);
                }
                if f.json_path.is_none() {
                    f.json_path = path;
                }
                f.add(&value);
            }
        }
    }
    out
}

/// Name, value, parser and JSON path of each field of a line: a JSON object's leaves (nested
/// keys joined with `_`, as `| json` names them), or logfmt pairs.
pub fn parse_line(line: &[u8]) -> Vec<(String, String, &'static str, Option<Vec<String>>)> {
    let trimmed = line.trim_ascii_start();
    if trimmed.first() == Some(&b'{')
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(trimmed)
    {
        let mut out = Vec::new();
        flatten_json(&map, &mut Vec::new(), &mut out);
        return out;
    }
    logfmt_pairs(line).into_iter().map(|(k, v)| (sanitize(&k), v, "logfmt", None)).collect()
}

fn flatten_json(
    map: &serde_json::Map<String, serde_json::Value>,
    path: &mut Vec<String>,
    out: &mut Vec<(String, String, &'static str, Option<Vec<String>>)>,
) {
    for (k, v) in map {
        path.push(k.clone());
        match v {
            serde_json::Value::Object(inner) => flatten_json(inner, path, out),
            serde_json::Value::Array(_) | serde_json::Value::Null => {}
            leaf => {
                let value = match leaf {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let name = path.iter().map(|p| sanitize(p)).collect::<Vec<_>>().join("_");
                out.push((name, value, "json", Some(path.clone())));
            }
        }
        path.pop();
    }
}

/// A key as a label name: characters outside `[A-Za-z0-9_]` become `_`.
fn sanitize(k: &str) -> String {
    let mut s: String = k.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// `key=value` and `key="quoted value"` pairs of a logfmt line; words without `=` are skipped.
fn logfmt_pairs(line: &[u8]) -> Vec<(String, String)> {
    let Ok(s) = std::str::from_utf8(line) else { return Vec::new() };
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let key_start = i;
        while i < b.len() && !matches!(b[i], b' ' | b'=' | b'"') {
            i += 1;
        }
        let key = &s[key_start..i];
        if i >= b.len() || b[i] != b'=' || key.is_empty() {
            // A bare word (or a stray quote): skip to the next space.
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            continue;
        }
        i += 1;
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch = s[i..].chars().next().unwrap_or(' ');
                v.push(ch);
                i += ch.len_utf8();
            }
            i += 1;
            v
        } else {
            let start = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            s[start..i].to_string()
        };
        out.push((key.to_string(), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(values: &[&str]) -> &'static str {
        let mut f = Field::default();
        for v in values {
            f.add(v);
        }
        f.kind()
    }

    #[test]
    fn types_are_the_narrowest_every_value_fits() {
        assert_eq!(kinds(&["1", "-20"]), "int");
        assert_eq!(kinds(&["1", "2.5"]), "float");
        assert_eq!(kinds(&["true", "false"]), "boolean");
        assert_eq!(kinds(&["12ms", "1.5s", "2h45m"]), "duration");
        assert_eq!(kinds(&["10KB", "3MiB"]), "bytes");
        assert_eq!(kinds(&["12ms", "abc"]), "string");
        assert_eq!(kinds(&["GET"]), "string");
    }

    #[test]
    fn json_and_logfmt_lines() {
        let got = parse_line(br#"{"level":"info","req":{"method":"GET","status":200},"tags":["a"],"user.id":"u1"}"#);
        let names: Vec<(&str, &str, &str)> = got.iter().map(|(n, v, p, _)| (n.as_str(), v.as_str(), *p)).collect();
        assert_eq!(
            names,
            vec![
                ("level", "info", "json"),
                ("req_method", "GET", "json"),
                ("req_status", "200", "json"),
                ("user_id", "u1", "json")
            ]
        );
        assert_eq!(got[1].3, Some(vec!["req".to_string(), "method".to_string()]));
        let got = parse_line(br#"ts=2024-01-01 level=warn msg="disk \"almost\" full" took=12ms bare"#);
        let names: Vec<(&str, &str)> = got.iter().map(|(n, v, _, _)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            names,
            vec![("ts", "2024-01-01"), ("level", "warn"), ("msg", "disk \"almost\" full"), ("took", "12ms")]
        );
        assert!(parse_line(b"plain words only").is_empty());
    }
}
