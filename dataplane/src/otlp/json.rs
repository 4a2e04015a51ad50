//! OTLP/JSON: the protobuf JSON mapping of [`ExportLogsServiceRequest`] as OTLP specifies it —
//! lowerCamelCase field names (the proto names are accepted too), trace and span ids as hex
//! rather than base64, enums as integers (names accepted), 64-bit integers as strings or
//! numbers, unknown fields ignored.

use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::proto::{self, ExportLogsServiceRequest};

/// Decodes an OTLP/JSON logs export body.
pub fn decode(body: &[u8]) -> Result<ExportLogsServiceRequest, serde_json::Error> {
    let req: Request = serde_json::from_slice(body)?;
    Ok(req.into())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    #[serde(default, alias = "resource_logs")]
    resource_logs: Vec<ResourceLogs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceLogs {
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default, alias = "scope_logs")]
    scope_logs: Vec<ScopeLogs>,
    #[serde(default, alias = "schema_url")]
    schema_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resource {
    #[serde(default)]
    attributes: Vec<KeyValue>,
    #[serde(default, alias = "dropped_attributes_count")]
    dropped_attributes_count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeLogs {
    #[serde(default)]
    scope: Option<Scope>,
    #[serde(default, alias = "log_records")]
    log_records: Vec<LogRecord>,
    #[serde(default, alias = "schema_url")]
    schema_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Scope {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    attributes: Vec<KeyValue>,
    #[serde(default, alias = "dropped_attributes_count")]
    dropped_attributes_count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogRecord {
    #[serde(default, alias = "time_unix_nano", deserialize_with = "int64")]
    time_unix_nano: i128,
    #[serde(default, alias = "observed_time_unix_nano", deserialize_with = "int64")]
    observed_time_unix_nano: i128,
    #[serde(default, alias = "severity_number", deserialize_with = "severity")]
    severity_number: i32,
    #[serde(default, alias = "severity_text")]
    severity_text: String,
    #[serde(default)]
    body: Option<AnyValue>,
    #[serde(default)]
    attributes: Vec<KeyValue>,
    #[serde(default, alias = "dropped_attributes_count")]
    dropped_attributes_count: u32,
    #[serde(default, deserialize_with = "int64")]
    flags: i128,
    #[serde(default, alias = "trace_id", deserialize_with = "hex_id")]
    trace_id: Vec<u8>,
    #[serde(default, alias = "span_id", deserialize_with = "hex_id")]
    span_id: Vec<u8>,
    #[serde(default, alias = "event_name")]
    event_name: String,
}

#[derive(Deserialize)]
struct KeyValue {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: Option<AnyValue>,
}

/// An `AnyValue` object: at most one of its fields is set; `{}` is the empty value.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyValue {
    #[serde(default, alias = "string_value")]
    string_value: Option<String>,
    #[serde(default, alias = "bool_value")]
    bool_value: Option<bool>,
    #[serde(default, alias = "int_value", deserialize_with = "opt_int64")]
    int_value: Option<i128>,
    #[serde(default, alias = "double_value", deserialize_with = "opt_double")]
    double_value: Option<f64>,
    #[serde(default, alias = "array_value")]
    array_value: Option<Values<AnyValue>>,
    #[serde(default, alias = "kvlist_value")]
    kvlist_value: Option<Values<KeyValue>>,
    #[serde(default, alias = "bytes_value", deserialize_with = "opt_base64")]
    bytes_value: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct Values<T> {
    #[serde(default = "Vec::new")]
    values: Vec<T>,
}

impl From<Request> for ExportLogsServiceRequest {
    fn from(r: Request) -> Self {
        Self { resource_logs: r.resource_logs.into_iter().map(Into::into).collect() }
    }
}

impl From<ResourceLogs> for proto::ResourceLogs {
    fn from(r: ResourceLogs) -> Self {
        Self {
            resource: r.resource.map(|res| proto::Resource {
                attributes: kvs(res.attributes),
                dropped_attributes_count: res.dropped_attributes_count,
            }),
            scope_logs: r.scope_logs.into_iter().map(Into::into).collect(),
            schema_url: r.schema_url,
        }
    }
}

impl From<ScopeLogs> for proto::ScopeLogs {
    fn from(s: ScopeLogs) -> Self {
        Self {
            scope: s.scope.map(|sc| proto::InstrumentationScope {
                name: sc.name,
                version: sc.version,
                attributes: kvs(sc.attributes),
                dropped_attributes_count: sc.dropped_attributes_count,
            }),
            log_records: s.log_records.into_iter().map(Into::into).collect(),
            schema_url: s.schema_url,
        }
    }
}

impl From<LogRecord> for proto::LogRecord {
    fn from(r: LogRecord) -> Self {
        Self {
            // fixed64 on the wire: negative JSON values wrap as protobuf's unsigned field would.
            time_unix_nano: r.time_unix_nano as u64,
            observed_time_unix_nano: r.observed_time_unix_nano as u64,
            severity_number: r.severity_number,
            severity_text: r.severity_text,
            body: r.body.map(Into::into),
            attributes: kvs(r.attributes),
            dropped_attributes_count: r.dropped_attributes_count,
            flags: r.flags as u32,
            trace_id: Bytes::from(r.trace_id),
            span_id: Bytes::from(r.span_id),
            event_name: r.event_name,
        }
    }
}

fn kvs(v: Vec<KeyValue>) -> Vec<proto::KeyValue> {
    v.into_iter().map(|kv| proto::KeyValue { key: kv.key, value: kv.value.map(Into::into) }).collect()
}

impl From<AnyValue> for proto::AnyValue {
    fn from(v: AnyValue) -> Self {
        use proto::Value as V;
        let value = if let Some(s) = v.string_value {
            Some(V::StringValue(Bytes::from(s)))
        } else if let Some(b) = v.bool_value {
            Some(V::BoolValue(b))
        } else if let Some(i) = v.int_value {
            Some(V::IntValue(i as i64))
        } else if let Some(d) = v.double_value {
            Some(V::DoubleValue(d))
        } else if let Some(a) = v.array_value {
            Some(V::ArrayValue(proto::ArrayValue { values: a.values.into_iter().map(Into::into).collect() }))
        } else if let Some(m) = v.kvlist_value {
            Some(V::KvlistValue(proto::KeyValueList { values: kvs(m.values) }))
        } else {
            v.bytes_value.map(|b| V::BytesValue(Bytes::from(b)))
        };
        proto::AnyValue { value }
    }
}

/// An integer given as a JSON number or a decimal string (how protobuf's JSON mapping writes
/// 64-bit integers). Kept as `i128` so both `int64` and `fixed64` ranges fit.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = i128;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer or a string holding one")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i128, E> {
            Ok(v.into())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i128, E> {
            Ok(v.into())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i128, E> {
            if v.fract() == 0.0 && v.abs() < 2f64.powi(64) {
                Ok(v as i128)
            } else {
                Err(E::custom(format!("{v} is not an integer")))
            }
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<i128, E> {
            s.trim().parse::<i128>().map_err(|_| E::custom(format!("invalid integer {s:?}")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<i128, E> {
            Ok(0)
        }
    }
    d.deserialize_any(V)
}

fn opt_int64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i128>, D::Error> {
    int64(d).map(Some)
}

/// A double as a JSON number, or one of the strings the protobuf JSON mapping uses.
fn opt_double<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number, or \"NaN\", \"Infinity\", \"-Infinity\"")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<f64, E> {
            match s {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                _ => s.parse().map_err(|_| E::custom(format!("invalid double {s:?}"))),
            }
        }
    }
    d.deserialize_any(V).map(Some)
}

/// `SeverityNumber` as its integer or its enum name (`SEVERITY_NUMBER_INFO`).
fn severity<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = i32;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a SeverityNumber: an integer or a SEVERITY_NUMBER_* name")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
            i32::try_from(v).map_err(|_| E::custom(format!("severity number {v} out of range")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
            i32::try_from(v).map_err(|_| E::custom(format!("severity number {v} out of range")))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<i32, E> {
            severity_from_name(s).ok_or_else(|| E::custom(format!("unknown severity number {s:?}")))
        }
    }
    d.deserialize_any(V)
}

/// The number of a `SEVERITY_NUMBER_*` enum name.
fn severity_from_name(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let rest = s.strip_prefix("SEVERITY_NUMBER_")?;
    if rest == "UNSPECIFIED" {
        return Some(0);
    }
    let levels = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    let (name, step) = match rest.find(|c: char| c.is_ascii_digit()) {
        Some(i) => (&rest[..i], rest[i..].parse::<i32>().ok().filter(|n| (2..=4).contains(n))?),
        None => (rest, 1),
    };
    let base = levels.iter().position(|l| *l == name)? as i32;
    Some(base * 4 + step)
}

/// A trace or span id as hex (OTLP/JSON's exception to protobuf's base64 for bytes).
fn hex_id<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    let s = s.unwrap_or_default();
    if !s.len().is_multiple_of(2) {
        return Err(de::Error::custom(format!("invalid hex id {s:?}: odd length")));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(s.get(i..i + 2).unwrap_or("x"), 16)
                .map_err(|_| de::Error::custom(format!("invalid hex id {s:?}")))
        })
        .collect()
}

/// Bytes as standard (or URL-safe) base64, padded or not.
fn opt_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    let s = String::deserialize(d)?;
    decode_base64(&s).map(Some).ok_or_else(|| de::Error::custom(format!("invalid base64 {s:?}")))
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::Value as V;

    #[test]
    fn the_otlp_json_example_decodes() {
        let body = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
          "scopeLogs":[{"scope":{"name":"my.library","version":"1.0.0","attributes":[{"key":"my.scope.attribute","value":{"stringValue":"some scope attribute"}}]},
          "logRecords":[{"timeUnixNano":"1544712660300000000","observedTimeUnixNano":1544712660300000001,
            "severityNumber":10,"severityText":"Information","traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
            "body":{"stringValue":"Example log record"},
            "attributes":[{"key":"int.attribute","value":{"intValue":"10"}},{"key":"double.attribute","value":{"doubleValue":637.704}},
              {"key":"array.attribute","value":{"arrayValue":{"values":[{"stringValue":"many"},{"intValue":2}]}}},
              {"key":"map.attribute","value":{"kvlistValue":{"values":[{"key":"some.map.key","value":{"boolValue":true}}]}}},
              {"key":"bytes.attribute","value":{"bytesValue":"aGVsbG8="}},{"key":"empty","value":{}}],
            "flags":1,"someFutureField":{"x":1}}]}]}]}"#;
        let req = decode(body).unwrap();
        let rec = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(rec.time_unix_nano, 1_544_712_660_300_000_000);
        assert_eq!(rec.observed_time_unix_nano, 1_544_712_660_300_000_001);
        assert_eq!(rec.severity_number, 10);
        assert_eq!(
            &rec.trace_id[..],
            &[0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c]
        );
        assert_eq!(rec.span_id.len(), 8);
        assert_eq!(rec.flags, 1);
        let attr = |i: usize| rec.attributes[i].value.clone().unwrap().value;
        assert_eq!(attr(0), Some(V::IntValue(10)));
        assert_eq!(attr(1), Some(V::DoubleValue(637.704)));
        assert!(matches!(attr(2), Some(V::ArrayValue(a)) if a.values.len() == 2));
        assert!(matches!(attr(3), Some(V::KvlistValue(m)) if m.values[0].key == "some.map.key"));
        assert_eq!(attr(4), Some(V::BytesValue(Bytes::from_static(b"hello"))));
        assert_eq!(attr(5), None);
        let scope = req.resource_logs[0].scope_logs[0].scope.as_ref().unwrap();
        assert_eq!((scope.name.as_str(), scope.version.as_str()), ("my.library", "1.0.0"));
    }

    #[test]
    fn proto_field_names_and_enum_names_are_accepted() {
        let body = br#"{"resource_logs":[{"scope_logs":[{"log_records":[{"time_unix_nano":"5","severity_number":"SEVERITY_NUMBER_WARN3","body":{"string_value":"x"}}]}]}]}"#;
        let req = decode(body).unwrap();
        let rec = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(rec.time_unix_nano, 5);
        assert_eq!(rec.severity_number, 15);
        assert_eq!(severity_from_name("SEVERITY_NUMBER_TRACE"), Some(1));
        assert_eq!(severity_from_name("SEVERITY_NUMBER_FATAL4"), Some(24));
        assert_eq!(severity_from_name("SEVERITY_NUMBER_LOUD"), None);
    }

    #[test]
    fn malformed_ids_and_numbers_are_errors() {
        for body in [
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"abc"}]}]}]}"#,
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}"#,
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"soon"}]}]}]}"#,
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"bytesValue":"!!"}}]}]}]}"#,
            r#"{"resourceLogs":"#,
        ] {
            assert!(decode(body.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn base64_variants() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_base64("").unwrap(), Vec::<u8>::new());
    }
}
