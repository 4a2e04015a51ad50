//! The OTLP/HTTP endpoint and its answers: `ExportLogsServiceResponse` (with `partial_success`
//! when some records were refused) on 200, a `google.rpc.Status` otherwise, in the request's
//! encoding. 429 and 503 tell exporters to retry; other 4xx tell them not to.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;

use super::proto::{ExportLogsPartialSuccess, ExportLogsServiceResponse, Status};
use super::{Encoding, export};
use crate::distributor::{PushBody, PushError};
use crate::error::{ErrorKind, HasKind};
use crate::server::{App, read_push_body, tenant as request_tenant};

pub(crate) fn routes() -> Router<App> {
    Router::new().route("/otlp/v1/logs", post(logs))
}

async fn logs(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let encoding = Encoding::from_content_type(header(header::CONTENT_TYPE).as_deref());
    let Some(d) = app.distributor.clone() else {
        return status(encoding, ErrorKind::NotFound, "this process does not run a distributor".into());
    };
    let tenant = match request_tenant(&app, &headers) {
        Ok(t) => t,
        Err(e) => return status_code(encoding, e.0, ErrorKind::Unauthorized, e.1),
    };
    let body = match read_push_body(body, &headers, app.cfg.distributor.max_recv_msg_size.as_usize()).await {
        Ok(b) => b,
        Err(e) => return error(encoding, &tenant, e),
    };
    let req = PushBody {
        body,
        content_type: header(header::CONTENT_TYPE),
        content_encoding: header(header::CONTENT_ENCODING),
    };
    let exported = match export(&d, &tenant, req).await {
        Ok(e) => e,
        Err(e) => return error(encoding, &tenant, e),
    };
    let ing = exported.ingested;
    if ing.discards.is_empty() {
        return success(encoding, None);
    }
    let rejected = ing.dropped_lines();
    let message = ing.discards.render(100);
    tracing::debug!(tenant, rejected, records = exported.records, "otlp export partly refused");
    if ing.limited() {
        // Retrying the request is right: what was stored is dropped as duplicates next time.
        return status(encoding, ErrorKind::RateLimited, message);
    }
    if ing.stored_lines == 0 {
        return status(encoding, ErrorKind::Invalid, message);
    }
    success(encoding, Some(ExportLogsPartialSuccess { rejected_log_records: rejected as i64, error_message: message }))
}

fn success(encoding: Encoding, partial: Option<ExportLogsPartialSuccess>) -> Response {
    let body = match encoding {
        Encoding::Protobuf => ExportLogsServiceResponse { partial_success: partial }.encode_to_vec(),
        Encoding::Json => {
            let v = match partial {
                None => serde_json::json!({}),
                Some(p) => serde_json::json!({"partialSuccess": {
                    "rejectedLogRecords": p.rejected_log_records.to_string(),
                    "errorMessage": p.error_message,
                }}),
            };
            v.to_string().into_bytes()
        }
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
}

fn error(encoding: Encoding, tenant: &str, e: PushError) -> Response {
    let kind = e.kind();
    if kind.http_status().is_server_error() {
        tracing::warn!(tenant, err = %e, "otlp export failed");
    } else {
        tracing::debug!(tenant, err = %e, "otlp export refused");
    }
    status(encoding, kind, e.to_string())
}

fn status(encoding: Encoding, kind: ErrorKind, message: String) -> Response {
    status_code(encoding, kind.http_status(), kind, message)
}

/// A `google.rpc.Status` answer with HTTP status `code`.
fn status_code(encoding: Encoding, code: StatusCode, kind: ErrorKind, message: String) -> Response {
    let grpc = kind.grpc_code() as i32;
    let body = match encoding {
        Encoding::Protobuf => Status { code: grpc, message }.encode_to_vec(),
        Encoding::Json => serde_json::json!({"code": grpc, "message": message}).to_string().into_bytes(),
    };
    (code, [(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
}
