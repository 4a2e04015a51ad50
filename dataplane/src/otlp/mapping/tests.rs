use super::*;
use crate::otlp::proto::{ArrayValue, InstrumentationScope, KeyValueList, Resource, ResourceLogs, ScopeLogs};

fn record(body: Value) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_001,
        body: Some(AnyValue { value: Some(body) }),
        ..Default::default()
    }
}

fn request(
    resource: Vec<KeyValue>,
    scope: Option<InstrumentationScope>,
    records: Vec<LogRecord>,
) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: resource, dropped_attributes_count: 0 }),
            scope_logs: vec![ScopeLogs { scope, log_records: records, schema_url: String::new() }],
            schema_url: String::new(),
        }],
    }
}

fn labels_of(push: &RawPush) -> Vec<(String, String)> {
    match &push.streams[0].labels {
        RawLabels::Map(m) => {
            let mut m = m.clone();
            m.sort();
            m
        }
        RawLabels::Text(_) => panic!("otlp streams carry label maps"),
    }
}

fn meta(e: &Entry) -> Vec<(&str, &str)> {
    e.metadata.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect()
}

#[test]
fn default_index_labels_and_everything_else_as_metadata() {
    let mut rec = record(Value::StringValue("hello world".into()));
    rec.trace_id = Bytes::from_static(&[0xab; 16]);
    rec.span_id = Bytes::from_static(&[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]);
    rec.severity_text = "WARN".into();
    rec.severity_number = 13;
    rec.flags = 1;
    rec.observed_time_unix_nano = 1_700_000_000_000_000_002;
    rec.attributes = vec![
        KeyValue::string("http.method", "GET"),
        KeyValue::new("http.status", Value::IntValue(404)),
        KeyValue::new(
            "user",
            Value::KvlistValue(KeyValueList {
                values: vec![KeyValue::string("id", "u1"), KeyValue::new("admin", Value::BoolValue(false))],
            }),
        ),
    ];
    let req = request(
        vec![
            KeyValue::string("service.name", "checkout"),
            KeyValue::string("k8s.namespace.name", "shop"),
            KeyValue::string("host.name", "node-1"),
        ],
        Some(InstrumentationScope {
            name: "app.logger".into(),
            version: "1.2".into(),
            attributes: vec![KeyValue::string("scope.attr", "s")],
            dropped_attributes_count: 0,
        }),
        vec![rec],
    );
    let (push, records) = to_push(req, &OtlpConfig::default(), 0);
    assert_eq!(records, 1);
    assert_eq!(
        labels_of(&push),
        vec![("k8s_namespace_name".to_string(), "shop".to_string()), ("service_name".into(), "checkout".into())]
    );
    let e = &push.streams[0].entries[0];
    assert_eq!(e.ts, 1_700_000_000_000_000_001);
    assert_eq!(&e.line[..], b"hello world");
    assert_eq!(
        meta(e),
        vec![
            ("host_name", "node-1"),
            ("scope_name", "app.logger"),
            ("scope_version", "1.2"),
            ("scope_attr", "s"),
            ("http_method", "GET"),
            ("http_status", "404"),
            ("user_id", "u1"),
            ("user_admin", "false"),
            ("trace_id", "abababababababababababababababab"),
            ("span_id", "0102030405060708"),
            ("severity_text", "WARN"),
            ("severity_number", "13"),
            ("flags", "1"),
            ("observed_timestamp", "1700000000000000002"),
        ]
    );
}

#[test]
fn a_resource_without_service_name_is_unknown_service() {
    let req = request(vec![KeyValue::string("host.name", "h")], None, vec![record(Value::StringValue("x".into()))]);
    let (push, _) = to_push(req, &OtlpConfig::default(), 0);
    assert_eq!(labels_of(&push), vec![("service_name".to_string(), UNKNOWN_SERVICE.to_string())]);
}

#[test]
fn otlp_config_rules_promote_and_drop() {
    let cfg: OtlpConfig = serde_norway::from_str(
        "resource_attributes:\n  ignore_defaults: true\n  attributes_config:\n    - action: index_label\n      attributes: [host.name]\n    - action: drop\n      regex: 'process\\..*'\nlog_attributes:\n  - action: drop\n    attributes: [secret]\nscope_attributes:\n  - action: drop\n    regex: '.*'\n",
    )
    .unwrap();
    let mut rec = record(Value::StringValue("x".into()));
    rec.attributes = vec![KeyValue::string("secret", "p"), KeyValue::string("kept", "k")];
    let req = request(
        vec![
            KeyValue::string("host.name", "h"),
            KeyValue::string("k8s.namespace.name", "ns"),
            KeyValue::string("process.pid", "1"),
        ],
        Some(InstrumentationScope {
            name: String::new(),
            version: String::new(),
            attributes: vec![KeyValue::string("a", "b")],
            dropped_attributes_count: 0,
        }),
        vec![rec],
    );
    let (push, _) = to_push(req, &cfg, 0);
    assert_eq!(
        labels_of(&push),
        vec![("host_name".to_string(), "h".to_string()), ("service_name".into(), UNKNOWN_SERVICE.into())]
    );
    assert_eq!(meta(&push.streams[0].entries[0]), vec![("k8s_namespace_name", "ns"), ("kept", "k")]);
}

#[test]
fn bodies_of_every_kind_render_as_loki_renders_them() {
    let cases: Vec<(Value, &str)> = vec![
        (Value::IntValue(-42), "-42"),
        (Value::BoolValue(true), "true"),
        (Value::DoubleValue(637.704), "637.704"),
        (Value::DoubleValue(3.0), "3"),
        (Value::DoubleValue(1e21), "1e+21"),
        (Value::DoubleValue(1e-7), "1e-7"),
        (Value::BytesValue(Bytes::from_static(b"hello")), "aGVsbG8="),
        (
            Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue::string("a"),
                    AnyValue { value: Some(Value::IntValue(1)) },
                    AnyValue { value: None },
                ],
            }),
            r#"["a",1,null]"#,
        ),
        (
            Value::KvlistValue(KeyValueList {
                values: vec![KeyValue::new("z", Value::DoubleValue(1.5)), KeyValue::string("a", "x")],
            }),
            r#"{"a":"x","z":1.5}"#,
        ),
    ];
    for (v, want) in cases {
        let req = request(vec![], None, vec![record(v.clone())]);
        let (push, _) = to_push(req, &OtlpConfig::default(), 0);
        assert_eq!(std::str::from_utf8(&push.streams[0].entries[0].line).unwrap(), want, "{v:?}");
    }
    let mut empty = record(Value::BoolValue(true));
    empty.body = None;
    empty.time_unix_nano = 0;
    let (push, _) = to_push(request(vec![], None, vec![empty]), &OtlpConfig::default(), 77);
    let e = &push.streams[0].entries[0];
    assert_eq!((e.ts, &e.line[..]), (77, &b""[..]), "no timestamps: the time of receipt");
}

#[test]
fn names_are_normalized_like_prometheus_labels() {
    assert_eq!(normalize_name("service.name"), "service_name");
    assert_eq!(normalize_name("http-status/code"), "http_status_code");
    assert_eq!(normalize_name("0day"), "key_0day");
    assert_eq!(normalize_name("_private"), "key_private");
    assert_eq!(normalize_name("__reserved"), "__reserved");
    assert_eq!(normalize_name("ünïcode"), "key_n_code");
}
