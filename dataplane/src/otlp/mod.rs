//! OpenTelemetry logs ingestion: `POST /otlp/v1/logs` (OTLP/HTTP, protobuf or JSON bodies),
//! mapped onto streams the way Loki maps them and stored through the distributor's push path —
//! the same validation, limits, rate limits, WAL and replication as `/loki/api/v1/push`.

pub mod config;
mod http;
pub mod json;
pub mod mapping;
pub mod proto;

use bytes::Bytes;
use prost::Message;

use crate::distributor::decode::{DecodeError, RawPush};
use crate::distributor::{Distributor, Ingested, PushBody, PushError};
use crate::timeutil::now_nanos;
pub use config::OtlpConfig;
pub(crate) use http::routes;
use proto::ExportLogsServiceRequest;

/// The body encoding of an OTLP/HTTP request, and so of its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// JSON for `application/json`, protobuf otherwise (`application/x-protobuf`, or no header).
    pub fn from_content_type(ct: Option<&str>) -> Self {
        match crate::distributor::decode::Format::from_content_type(ct) {
            crate::distributor::decode::Format::Json => Encoding::Json,
            crate::distributor::decode::Format::Protobuf => Encoding::Protobuf,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Decodes an (already decompressed) export request.
pub fn decode_request(body: &Bytes, encoding: Encoding) -> Result<ExportLogsServiceRequest, DecodeError> {
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(body.clone())
            .map_err(|e| DecodeError::Protobuf(format!("decoding OTLP logs export request: {e}"))),
        Encoding::Json => {
            json::decode(body).map_err(|e| DecodeError::Json(format!("decoding OTLP logs export request: {e}")))
        }
    }
}

/// What became of an export request.
#[derive(Debug)]
pub struct Exported {
    /// Log records in the request.
    pub records: u64,
    pub ingested: Ingested,
}

/// Decodes an OTLP export for `tenant`, maps it with the tenant's `otlp_config` and pushes it.
pub async fn export(d: &Distributor, tenant: &str, req: PushBody) -> Result<Exported, PushError> {
    let encoding = Encoding::from_content_type(req.content_type.as_deref());
    let limits = d.tenant_limits(tenant);
    let (push, records): (RawPush, u64) = d
        .decode_body(tenant, req, move |body| {
            let export = decode_request(&body, encoding)?;
            Ok(mapping::to_push(export, &limits.otlp_config, now_nanos()))
        })
        .await?;
    let ingested = d.ingest(tenant, push).await?;
    Ok(Exported { records, ingested })
}
