//! The compactor's HTTP endpoints: Loki's delete API and the status page.
//!
//! - `POST`/`PUT /loki/api/v1/delete?query=...&start=...&end=...`: accepts a delete request (204).
//! - `GET /loki/api/v1/delete`: the tenant's requests with their status, as Loki lists them.
//! - `DELETE /loki/api/v1/delete?request_id=...`: cancels a request during
//!   `compactor.delete_request_cancel_period` (204).
//! - `GET /compactor/ring`: the compactor's state and last pass (HTML; JSON with
//!   `?format=json` or `Accept: application/json`).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::{Compactor, DeleteError, DeleteStatus};
use crate::api::params::{Params, parse_time};
use crate::error::HasKind;
use crate::limits::DeletionMode;
use crate::server::{ApiError, App};

/// The compactor's routes; answered 404 by processes that run no compactor.
pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/loki/api/v1/delete", get(list).post(add).put(add).delete(cancel))
        .route("/compactor/ring", get(page))
}

fn compactor(app: &App) -> Result<&Arc<Compactor>, ApiError> {
    app.compactor
        .as_ref()
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "this process does not run a compactor".into()))
}

fn params(raw: Option<String>, body: &Bytes) -> Params {
    let mut p = Params::default();
    if let Some(q) = raw {
        p.extend_urlencoded(q.as_bytes());
    }
    p.extend_urlencoded(body);
    p
}

/// The compactor and the tenant of a delete API request; refused when deletion is disabled.
fn tenant_compactor<'a>(app: &'a App, headers: &HeaderMap) -> Result<(&'a Arc<Compactor>, String), ApiError> {
    let c = compactor(app)?;
    let tenant = crate::server::tenant(app, headers)?;
    if c.limits().get(&tenant).deletion_mode == DeletionMode::Disabled {
        return Err(ApiError(StatusCode::FORBIDDEN, DeleteError::Disabled.to_string()));
    }
    Ok((c, tenant))
}

fn delete_error(e: DeleteError) -> ApiError {
    ApiError(e.kind().http_status(), e.to_string())
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

async fn add(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (c, tenant) = tenant_compactor(&app, &headers)?;
    let p = params(raw, &body);
    let query = p.get("query").filter(|q| !q.trim().is_empty()).ok_or_else(|| bad("query not set"))?;
    let now = c.now_ns();
    let start = p.get("start").map(parse_time).transpose().map_err(bad)?.unwrap_or(0);
    let end = p.get("end").map(parse_time).transpose().map_err(bad)?.unwrap_or(now);
    if end > now {
        return Err(bad("deletes in the future are not allowed"));
    }
    let req = c.deletes().add(&tenant, query, start, end, now).await.map_err(delete_error)?;
    tracing::info!(%tenant, id = %req.request_id, query, start, end, "delete request accepted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// One request as Loki lists it (times in seconds).
#[derive(Serialize)]
struct ListedRequest {
    request_id: String,
    query: String,
    start_time: f64,
    end_time: f64,
    created_at: f64,
    status: DeleteStatus,
}

fn seconds(ns: i64) -> f64 {
    (ns / 1_000_000) as f64 / 1000.0
}

async fn list(State(app): State<App>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (c, tenant) = tenant_compactor(&app, &headers)?;
    let requests = c.deletes().list(&tenant).await.map_err(|e| delete_error(e.into()))?;
    let out: Vec<ListedRequest> = requests
        .into_iter()
        .map(|(r, status)| ListedRequest {
            request_id: r.request_id.clone(),
            query: r.query.clone(),
            start_time: seconds(r.start),
            end_time: seconds(r.end),
            created_at: seconds(r.created_at),
            status,
        })
        .collect();
    Ok(axum::Json(out).into_response())
}

async fn cancel(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (c, tenant) = tenant_compactor(&app, &headers)?;
    let p = params(raw, &body);
    let id = p.get("request_id").filter(|s| !s.is_empty()).ok_or_else(|| bad("request_id not set"))?;
    let period = c.config().delete_request_cancel_period.as_nanos_i64();
    c.deletes().cancel(&tenant, id, c.now_ns(), period).await.map_err(delete_error)?;
    tracing::info!(%tenant, id, "delete request cancelled");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn page(State(app): State<App>, RawQuery(raw): RawQuery, headers: HeaderMap) -> Result<Response, ApiError> {
    let c = compactor(&app)?;
    let status = c.status();
    let p = params(raw, &Bytes::new());
    let json = p.get("format").is_some_and(|f| f.eq_ignore_ascii_case("json"))
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
    if json {
        return Ok(axum::Json(status).into_response());
    }
    let esc = crate::ring::http::escape;
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Compactor</title></head><body>\n<h1>Compactor</h1>\n",
    );
    let _ = writeln!(html, "<p>State: <b>{}</b></p>", esc(&status.state));
    let _ = writeln!(html, "<p>Lease holder id of this instance: <code>{}</code></p>", esc(&status.holder));
    let _ = writeln!(html, "<p>Passes run: {}</p>", status.passes);
    if let Some(last) = &status.last_pass {
        let _ = writeln!(
            html,
            "<p>Last pass: started {}, took {:.3}s</p>",
            esc(&crate::timeutil::format_rfc3339(last.started_at_ms.saturating_mul(1_000_000))),
            last.duration_seconds
        );
        if let Some(err) = &last.error {
            let _ = writeln!(html, "<p>Error: {}</p>", esc(err));
        }
        if let Some(s) = &last.stats {
            let _ = writeln!(html, "<pre>{}</pre>", esc(&serde_json::to_string_pretty(s).unwrap_or_default()));
        }
    }
    html.push_str("</body></html>\n");
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}
