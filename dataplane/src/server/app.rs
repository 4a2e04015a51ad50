//! What every HTTP handler shares: the process's state, the tenant of a request, and Loki's
//! plain-text error answers.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::distributor::Distributor;
use crate::frontend::Frontend;
use crate::ingester::Ingester;
use crate::ingester::lifecycle::Member;
use crate::metrics::Metrics;
use crate::querier::Querier;
use crate::ring::Lifecycler;
use crate::validation::validate_tenant_id;

/// The tenant every request belongs to when auth is disabled.
pub const DEFAULT_TENANT: &str = "fake";

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) cfg: Arc<Config>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) distributor: Option<Arc<Distributor>>,
    pub(crate) ingester: Option<Arc<Ingester>>,
    /// The ingester's ring membership (lifecycle endpoints, readiness).
    pub(crate) member: Option<Arc<Member>>,
    /// The distributor's ring membership (readiness).
    pub(crate) distributor_lifecycler: Option<Arc<Lifecycler>>,
    /// Answers reads when the process runs no frontend, and `tail` always.
    pub(crate) querier: Option<Querier>,
    /// Answers every read but `tail` when the process runs a query frontend.
    pub(crate) frontend: Option<Frontend>,
    /// Retention, delete requests and index compaction (`/loki/api/v1/delete`).
    pub(crate) compactor: Option<Arc<crate::compactor::Compactor>>,
    /// Rule groups, the rules API and the Prometheus-compatible rules and alerts API.
    pub(crate) ruler: Option<Arc<crate::ruler::Ruler>>,
    /// Cancelled to stop the process (`/ingester/shutdown` with `terminate=true`).
    pub(crate) shutdown: CancellationToken,
}

/// A plain-text error response, the way Loki answers.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut body = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// An error answer: status and plain-text message.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

/// The tenant of a request: `X-Scope-OrgID` when auth is enabled, `fake` otherwise.
pub(crate) fn tenant(app: &App, headers: &HeaderMap) -> Result<String, ApiError> {
    if !app.cfg.auth.enabled {
        return Ok(DEFAULT_TENANT.to_string());
    }
    let id = headers.get("x-scope-orgid").and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("");
    if id.is_empty() {
        return Err(ApiError(StatusCode::UNAUTHORIZED, "no org id".into()));
    }
    validate_tenant_id(id).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    Ok(id.to_string())
}
