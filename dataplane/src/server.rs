//! Starting the roles a process runs and serving Loki's HTTP API and the ops endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::future::IntoFuture;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Role};
use crate::distributor::{Distributor, PushBody, PushError};
use crate::error::HasKind;
use crate::ingester::{Ingester, SingleProcess};
use crate::limits::TenantLimits;
use crate::metrics::{Metrics, RouteLabels};
use crate::querier::Querier;
use crate::storage::{self, Index};
use crate::validation::validate_tenant_id;

/// The tenant every request belongs to when auth is disabled.
pub const DEFAULT_TENANT: &str = "fake";

/// Sockets the process serves on, bound by the caller (tests bind `127.0.0.1:0`).
#[derive(Debug)]
pub struct Listeners {
    pub http: TcpListener,
}

impl Listeners {
    /// Binds the addresses of the configuration.
    pub async fn bind(cfg: &Config) -> std::io::Result<Self> {
        Ok(Self { http: TcpListener::bind(cfg.http.addr).await? })
    }
}

/// Why the process could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("object store: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("ingester: {0}")]
    Ingester(#[from] crate::ingester::IngesterError),
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) cfg: Arc<Config>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) distributor: Option<Arc<Distributor>>,
    pub(crate) ingester: Option<Arc<Ingester>>,
    pub(crate) querier: Option<Querier>,
}

/// Runs the configured roles until `shutdown` fires, then drains HTTP requests and stops the
/// ingester (flushing or checkpointing, per `ingester.flush_on_shutdown`).
pub async fn serve(cfg: Config, listeners: Listeners, shutdown: CancellationToken) -> Result<(), ServeError> {
    let cfg = Arc::new(cfg);
    let metrics = Arc::new(Metrics::new());
    let limits = Arc::new(TenantLimits::new(cfg.limits.clone(), &cfg.overrides).map_err(ServeError::Config)?);
    if cfg.target.has(Role::Distributor) && !cfg.target.has(Role::Ingester) {
        return Err(ServeError::Config(
            "a distributor without an ingester in the same process needs the ring, which is not available yet: run target all or distributor,ingester".into(),
        ));
    }
    let store = storage::from_config(&cfg.storage, &cfg.data.dir).await?;
    let index = Arc::new(Index::with_config(store.clone(), &cfg.storage.index));
    let ingester = if cfg.target.has(Role::Ingester) {
        let (c, dir, l, m) = (cfg.ingester.clone(), cfg.wal_dir(), limits.clone(), metrics.clone());
        let (s, i) = (store.clone(), index.clone());
        let ing = tokio::task::spawn_blocking(move || Ingester::open(c, dir, l, Arc::new(SingleProcess), s, i, m))
            .await
            .map_err(|e| ServeError::Config(format!("ingester start task failed: {e}")))??;
        Some(ing)
    } else {
        None
    };
    let distributor = match (&ingester, cfg.target.has(Role::Distributor)) {
        (Some(ing), true) => Some(Arc::new(Distributor::new(
            limits.clone(),
            Arc::new(AtomicUsize::new(1)),
            ing.clone(),
            metrics.clone(),
            cfg.distributor.max_recv_msg_size.as_usize(),
        ))),
        _ => None,
    };
    let background = CancellationToken::new();
    let bg_task = ingester.clone().map(|ing| tokio::spawn(ing.run_background(background.clone())));

    let querier = cfg
        .target
        .has(Role::Querier)
        .then(|| Querier::new(cfg.querier.clone(), ingester.clone(), store.clone(), index.clone(), limits.clone()));
    let app = App { cfg: cfg.clone(), metrics, distributor, ingester: ingester.clone(), querier };
    let addr: SocketAddr = listeners.http.local_addr()?;
    tracing::info!(%addr, target = %cfg.target, "norn serving http");
    let http_shutdown = shutdown.clone();
    let server =
        axum::serve(listeners.http, router(app)).with_graceful_shutdown(async move { http_shutdown.cancelled().await });
    // Once shutdown starts, stop taking writes right away: in-flight requests drain while new
    // pushes get 503.
    let stopper = {
        let (shutdown, ingester) = (shutdown.clone(), ingester.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            if let Some(ing) = ingester {
                ing.stop_accepting();
            }
        })
    };
    // Drain in-flight requests, but not for longer than `http.shutdown_timeout` once shutdown
    // has begun.
    let drain = cfg.http.shutdown_timeout.get();
    let served = {
        let server = server.into_future();
        tokio::pin!(server);
        tokio::select! {
            r = &mut server => r,
            _ = async { shutdown.cancelled().await; tokio::time::sleep(drain).await } => {
                tracing::warn!(timeout = ?drain, "in-flight requests did not finish in time; closing them");
                Ok(())
            }
        }
    };
    stopper.abort();
    background.cancel();
    if let Some(t) = bg_task {
        let _ = t.await;
    }
    if let Some(ing) = ingester {
        let flush = cfg.ingester.flush_on_shutdown;
        tracing::info!(flush, "stopping ingester");
        ing.shutdown(flush).await?;
    }
    tracing::info!("norn stopped");
    served.map_err(ServeError::Http)
}

fn router(app: App) -> Router {
    let max_body = app.cfg.distributor.max_recv_msg_size.as_usize();
    Router::new()
        .route("/loki/api/v1/push", post(push))
        .route("/api/prom/push", post(push))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/config", get(config))
        .route("/flush", post(flush).get(flush))
        .route("/loki/api/v1/status/buildinfo", get(buildinfo))
        .merge(crate::api::routes())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// Records request latency by route and status.
async fn observe(State(app): State<App>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "other".into());
    let started = Instant::now();
    let resp = next.run(req).await;
    let labels = RouteLabels { route, status_code: resp.status().as_u16().to_string() };
    app.metrics.request_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    resp
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
fn tenant(app: &App, headers: &HeaderMap) -> Result<String, ApiError> {
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

async fn push(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(d) = app.distributor.clone() else {
        return text(StatusCode::NOT_FOUND, "this process does not run a distributor");
    };
    let tenant = match tenant(&app, &headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let req = PushBody {
        body,
        content_type: header(header::CONTENT_TYPE),
        content_encoding: header(header::CONTENT_ENCODING),
    };
    match d.push(&tenant, req).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => push_error(&tenant, e),
    }
}

fn push_error(tenant: &str, e: PushError) -> Response {
    let status = e.kind().http_status();
    if status.is_server_error() {
        tracing::warn!(tenant, err = %e, "push failed");
    } else {
        tracing::debug!(tenant, err = %e, "push refused");
    }
    text(status, e.to_string())
}

async fn ready(State(app): State<App>) -> Response {
    match &app.ingester {
        Some(ing) if !ing.is_ready() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "Ingester not ready: not accepting writes")
        }
        _ => text(StatusCode::OK, "ready"),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.render())
        .into_response()
}

async fn config(State(app): State<App>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], app.cfg.to_yaml()).into_response()
}

#[derive(Deserialize)]
struct FlushParams {
    /// Wait until every chunk is written instead of returning at once.
    #[serde(default)]
    wait: bool,
}

/// Closes and flushes every chunk in memory. Like Loki it answers 204 at once; with `?wait=true`
/// it answers when the flush is done (or failed).
async fn flush(State(app): State<App>, Query(p): Query<FlushParams>) -> Response {
    let Some(ing) = app.ingester.clone() else {
        return text(StatusCode::NOT_FOUND, "this process does not run an ingester");
    };
    if !p.wait {
        tokio::spawn(async move {
            if let Err(err) = ing.flush(true).await {
                tracing::warn!(%err, "requested flush failed");
            }
        });
        return StatusCode::NO_CONTENT.into_response();
    }
    match ing.flush(true).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => text(e.kind().http_status(), e.to_string()),
    }
}

async fn buildinfo() -> Response {
    axum::Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
    .into_response()
}
