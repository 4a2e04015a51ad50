//! The ingester's lifecycle endpoints, as Loki has them:
//!
//! - `POST /ingester/shutdown?flush=true&delete_ring_tokens=false&terminate=true`: LEAVING, stop
//!   taking writes, flush every chunk (`flush=false`: checkpoint instead, the WAL keeps the
//!   data), leave the ring, optionally delete the tokens file, and exit (`terminate=false`: stay
//!   up, out of the ring and not ready). Answers 204 once done; 500 when the flush failed, in
//!   which case the ingester stays in the ring with its data.
//! - `GET /ingester/prepare_shutdown`: `set` or `unset`; `POST` sets it (the next SIGTERM
//!   flushes and leaves the ring; survives a restart), `DELETE` clears it.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{ApiError, App, text};
use crate::error::HasKind;
use crate::ingester::lifecycle::{LeaveOptions, Member};

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/ingester/shutdown", post(shutdown).get(shutdown))
        .route("/ingester/prepare_shutdown", get(prepare_status).post(prepare).put(prepare).delete(unprepare))
}

fn member(app: &App) -> Result<std::sync::Arc<Member>, ApiError> {
    app.member.clone().ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "this process does not run an ingester".into()))
}

fn yes() -> bool {
    true
}

/// Parameters of `/ingester/shutdown`, with Loki's defaults.
#[derive(Debug, Deserialize)]
struct ShutdownParams {
    #[serde(default = "yes")]
    flush: bool,
    #[serde(default)]
    delete_ring_tokens: bool,
    #[serde(default = "yes")]
    terminate: bool,
}

async fn shutdown(State(app): State<App>, Query(p): Query<ShutdownParams>) -> Response {
    let m = match member(&app) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    tracing::info!(
        flush = p.flush,
        delete_ring_tokens = p.delete_ring_tokens,
        terminate = p.terminate,
        "shutdown requested over http"
    );
    match m.leave(LeaveOptions { flush: p.flush, delete_ring_tokens: p.delete_ring_tokens }).await {
        Ok(()) => {
            if p.terminate {
                app.shutdown.cancel();
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            tracing::error!(err = %e, "shutdown over http failed; the ingester stays in the ring");
            text(e.kind().http_status(), e.to_string())
        }
    }
}

async fn prepare_status(State(app): State<App>) -> Response {
    match member(&app) {
        Ok(m) => text(StatusCode::OK, if m.is_prepared() { "set" } else { "unset" }),
        Err(e) => e.into_response(),
    }
}

async fn prepare(State(app): State<App>) -> Response {
    let m = match member(&app) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    match m.prepare_shutdown() {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => text(e.kind().http_status(), e.to_string()),
    }
}

async fn unprepare(State(app): State<App>) -> Response {
    let m = match member(&app) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    match m.unprepare_shutdown() {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => text(e.kind().http_status(), e.to_string()),
    }
}
