//! `POST /otlp/v1/logs` over real HTTP: protobuf and JSON bodies, gzip, Loki's label and
//! structured metadata mapping, and OTLP's answers (partial success, 400, 429) — then the
//! records queried back.

mod common;

use std::io::Write;

use bytes::Bytes;
use common::{TestServer, now_ns, urlencode};
use norn::otlp::proto::{
    AnyValue, ExportLogsServiceRequest, ExportLogsServiceResponse, InstrumentationScope, KeyValue, LogRecord, Resource,
    ResourceLogs, ScopeLogs, Status, Value,
};
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value as Json, json};

fn record(ts: i64, body: &str) -> LogRecord {
    LogRecord { time_unix_nano: ts as u64, body: Some(AnyValue::string(body)), ..Default::default() }
}

fn resource_logs(attrs: Vec<KeyValue>, records: Vec<LogRecord>) -> ResourceLogs {
    ResourceLogs {
        resource: Some(Resource { attributes: attrs, dropped_attributes_count: 0 }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope { name: "shop.logger".into(), ..Default::default() }),
            log_records: records,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

/// Posts an OTLP body: (status, content type, body).
async fn post(s: &TestServer, body: Vec<u8>, content_type: &str, gzipped: bool) -> (StatusCode, String, Bytes) {
    let mut req = reqwest::Client::new().post(s.url("/otlp/v1/logs")).header("Content-Type", content_type);
    let body = if gzipped {
        req = req.header("Content-Encoding", "gzip");
        gzip(&body)
    } else {
        body
    };
    let r = req.body(body).send().await.unwrap();
    let status = r.status();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ct, r.bytes().await.unwrap())
}

async fn query(s: &TestServer, q: &str, start: i64) -> Json {
    s.get_json(&format!("/loki/api/v1/query_range?query={}&start={start}&direction=forward", urlencode(q)), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_export_is_stored_with_lokis_labels_and_metadata() {
    let s = TestServer::start(common::DISCOVERY).await;
    let t = now_ns() - 60_000_000_000;
    let mut rec = record(t, "payment accepted");
    rec.trace_id = Bytes::from_static(&[0x0a; 16]);
    rec.span_id = Bytes::from_static(&[0x0b; 8]);
    rec.severity_text = "INFO".into();
    rec.severity_number = 9;
    rec.attributes = vec![KeyValue::string("order.id", "o-17"), KeyValue::new("amount", Value::IntValue(42))];
    let req = ExportLogsServiceRequest {
        resource_logs: vec![
            resource_logs(
                vec![
                    KeyValue::string("service.name", "checkout"),
                    KeyValue::string("k8s.namespace.name", "shop"),
                    KeyValue::string("host.name", "node-1"),
                ],
                vec![rec, record(t + 1, "second")],
            ),
            resource_logs(vec![KeyValue::string("host.name", "node-2")], vec![record(t, "anonymous")]),
        ],
    };
    let (status, ct, body) = post(&s, req.encode_to_vec(), "application/x-protobuf", true).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(ct, "application/x-protobuf");
    assert_eq!(ExportLogsServiceResponse::decode(body).unwrap(), ExportLogsServiceResponse { partial_success: None });

    for phase in ["memory", "store"] {
        if phase == "store" {
            s.flush().await;
        }
        let out = query(&s, r#"{service_name="checkout"} | trace_id != """#, t - 1).await;
        let result = out["data"]["result"].as_array().unwrap();
        assert_eq!(result.len(), 1, "{phase}: {out}");
        assert_eq!(
            result[0]["stream"],
            json!({
                "service_name": "checkout", "k8s_namespace_name": "shop", "host_name": "node-1",
                "scope_name": "shop.logger", "order_id": "o-17", "amount": "42",
                "trace_id": "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a", "span_id": "0b0b0b0b0b0b0b0b",
                "severity_text": "INFO", "severity_number": "9", "detected_level": "info",
            }),
            "{phase}"
        );
        assert_eq!(result[0]["values"], json!([[t.to_string(), "payment accepted"]]), "{phase}");
        let names = s.get_json("/loki/api/v1/labels", None).await;
        assert_eq!(names["data"], json!(["k8s_namespace_name", "service_name"]), "{phase}: only index labels");
        let services = s.get_json("/loki/api/v1/label/service_name/values", None).await;
        assert_eq!(services["data"], json!(["checkout", "unknown_service"]), "{phase}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_export_and_otlp_answers() {
    let s = TestServer::start(common::DISCOVERY).await;
    let t = now_ns() - 60_000_000_000;
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cart"}}]},
        "scopeLogs": [{"logRecords": [
            {"timeUnixNano": t.to_string(), "severityNumber": 17, "traceId": "5B8EFFF798038103D269B633813FC60C",
             "body": {"kvlistValue": {"values": [{"key": "msg", "value": {"stringValue": "out of stock"}}, {"key": "code", "value": {"intValue": "7"}}]}}}
        ]}]
    }]});
    let (status, ct, resp) = post(&s, body.to_string().into_bytes(), "application/json", false).await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "application/json"), "{resp:?}");
    assert_eq!(serde_json::from_slice::<Json>(&resp).unwrap(), json!({}));
    let out = query(&s, r#"{service_name="cart"}"#, t - 1).await;
    let stream = &out["data"]["result"][0];
    assert_eq!(stream["values"][0][1], json!(r#"{"code":7,"msg":"out of stock"}"#), "{out}");
    assert_eq!(stream["stream"]["trace_id"], json!("5b8efff798038103d269b633813fc60c"));
    assert_eq!(stream["stream"]["detected_level"], json!("error"), "from severity_number 17");

    // Undecodable bodies: 400 with a google.rpc.Status in the request's encoding.
    let (status, ct, resp) = post(&s, vec![0xff; 16], "application/x-protobuf", false).await;
    assert_eq!((status, ct.as_str()), (StatusCode::BAD_REQUEST, "application/x-protobuf"));
    let st = Status::decode(resp).unwrap();
    assert_eq!(st.code, tonic::Code::InvalidArgument as i32);
    assert!(st.message.contains("decoding OTLP logs export request"), "{}", st.message);
    let (status, _, resp) = post(&s, b"{\"resourceLogs\":".to_vec(), "application/json", false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let st: Json = serde_json::from_slice(&resp).unwrap();
    assert_eq!(st["code"], json!(3), "{st}");

    // Some records refused: 200 with partial_success counting them.
    let old = now_ns() - 8 * 24 * 3600 * 1_000_000_000;
    let req = ExportLogsServiceRequest {
        resource_logs: vec![resource_logs(
            vec![KeyValue::string("service.name", "cart")],
            vec![record(t + 5, "fresh"), record(old, "ancient"), record(old + 1, "ancient too")],
        )],
    };
    let (status, _, resp) = post(&s, req.encode_to_vec(), "application/x-protobuf", false).await;
    assert_eq!(status, StatusCode::OK);
    let partial = ExportLogsServiceResponse::decode(resp).unwrap().partial_success.expect("partial success");
    assert_eq!(partial.rejected_log_records, 2);
    assert!(partial.error_message.contains("timestamp too old"), "{}", partial.error_message);
    // Every record refused: 400, not retryable.
    let req = ExportLogsServiceRequest {
        resource_logs: vec![resource_logs(vec![KeyValue::string("service.name", "cart")], vec![record(old, "x")])],
    };
    let (status, _, _) = post(&s, req.encode_to_vec(), "application/x-protobuf", false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_and_tenants_come_from_the_header() {
    let s = TestServer::start(&[
        "--auth.enabled=true",
        "--limits.ingestion-rate-mb=0.00001",
        "--limits.ingestion-burst-size-mb=0.00001",
    ])
    .await;
    let t = now_ns() - 60_000_000_000;
    let req = ExportLogsServiceRequest {
        resource_logs: vec![resource_logs(
            vec![KeyValue::string("service.name", "a")],
            vec![record(t, &"x".repeat(100))],
        )],
    };
    let r = reqwest::Client::new().post(s.url("/otlp/v1/logs")).body(req.encode_to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no X-Scope-OrgID");
    let r = reqwest::Client::new()
        .post(s.url("/otlp/v1/logs"))
        .header("X-Scope-OrgID", "team-a")
        .header("Content-Type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let st = Status::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(st.code, tonic::Code::ResourceExhausted as i32);
    assert!(st.message.contains("Ingestion rate limit exceeded for user team-a"), "{}", st.message);
    s.stop().await;
}
