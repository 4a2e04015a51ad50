//! Starting the roles a process runs and serving Loki's HTTP API and the ops endpoints.

pub(crate) mod app;
pub mod http;
mod lifecycle;
mod rings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::BytesMut;
use futures::StreamExt;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Role};
use crate::distributor::decode::DecodeError;
use crate::distributor::replicate::Replicator;
use crate::distributor::{Distributor, PushBody, PushError, PushTarget};
use crate::error::HasKind;
use crate::frontend::Frontend;
use crate::ingester::lifecycle::Member;
use crate::ingester::{Ingester, RingShare};
use crate::limits::TenantLimits;
use crate::metrics::{Metrics, RouteLabels};
use crate::querier::{IngesterData, Querier, RingIngesters};
use crate::ring::model::SystemClock;
use crate::ring::{self, InstanceState, Lifecycler};
use crate::rpc::IngesterService;
use crate::storage::{self, Index};
pub use app::DEFAULT_TENANT;
pub(crate) use app::{ApiError, App, tenant, text};
use rings::Rings;

/// Sockets the process serves on, bound by the caller (tests bind `127.0.0.1:0`).
#[derive(Debug)]
pub struct Listeners {
    pub http: TcpListener,
    /// The ingester's gRPC server; bound only when the configuration needs one
    /// ([`Listeners::needs_grpc`]).
    pub grpc: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of the configuration.
    pub async fn bind(cfg: &Config) -> std::io::Result<Self> {
        let http = TcpListener::bind(cfg.http.addr).await?;
        let grpc = if Self::needs_grpc(cfg) { Some(TcpListener::bind(cfg.grpc.addr).await?) } else { None };
        Ok(Self { http, grpc })
    }

    /// An ingester in a shared ring serves gRPC, and a query frontend in a cluster (queriers
    /// pull work from it); nothing else does.
    pub fn needs_grpc(cfg: &Config) -> bool {
        (cfg.target.has(Role::Ingester) || cfg.target.has(Role::QueryFrontend)) && cfg.distributed()
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
    #[error("ring: {0}")]
    Ring(#[from] crate::ring::RingError),
    #[error("ring store: {0}")]
    Kv(#[from] crate::ring::KvError),
    #[error("leaving the ring: {0}")]
    Leave(#[from] crate::ingester::lifecycle::LeaveError),
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
    #[error("grpc server: {0}")]
    Grpc(String),
    #[error("{0}")]
    Ruler(#[from] crate::ruler::StartError),
}

/// Runs the configured roles until `shutdown` fires, then drains HTTP requests and stops the
/// ingester (leaving the ring, flushing or checkpointing: see [`Member::stop`]).
pub async fn serve(cfg: Config, listeners: Listeners, shutdown: CancellationToken) -> Result<(), ServeError> {
    let Listeners { http, grpc } = listeners;
    let https = cfg.http.tls_config.rustls("http.tls_config").map_err(|e| ServeError::Config(e.to_string()))?;
    // Until every role is up (ring joined, WAL replayed), HTTP answers 503 rather than refusing
    // connections: probes and clients see "not ready", not a dead process.
    let (http, starting) = Starting::serve(http, &cfg.http, https.clone())?;
    let cfg = Arc::new(cfg);
    let metrics = Arc::new(Metrics::new());
    let limits = Arc::new(TenantLimits::new(cfg.limits.clone(), &cfg.overrides).map_err(ServeError::Config)?);
    let grpc_addr = match &grpc {
        Some(l) => l.local_addr()?,
        None => cfg.grpc.addr,
    };
    // Background work that lives as long as the process: ring watches, heartbeats.
    let background = CancellationToken::new();
    let http_addr: SocketAddr = http.local_addr()?;
    let mut rings = Rings::start(&cfg, background.clone()).await?;
    let store = storage::from_config(&cfg.storage, &cfg.data.dir).await?;
    let index = Arc::new(Index::with_config(store.clone(), &cfg.storage.index));
    let pool = crate::rpc::IngesterPool::new(cfg.ingester_client.clone());
    let deletes = Arc::new(crate::compactor::DeleteRequests::new(store.clone()));

    let member = if cfg.target.has(Role::Ingester) {
        Some(start_ingester(&cfg, &rings, grpc_addr, &limits, &metrics, &store, &index, &background, &shutdown).await?)
    } else {
        None
    };
    let ingester = member.as_ref().map(|m| m.ingester().clone());
    // With the in-memory ring the only ingester is this process's: call it directly. With a
    // shared ring every push and read goes through the ring, to whichever ingesters it names.
    let local = ingester.clone().filter(|_| !cfg.distributed());

    let (distributor, distributor_lifecycler) = if cfg.target.has(Role::Distributor) {
        let (lifecycler, count) = rings.join_distributors(&cfg, http_addr, &shutdown).await?;
        let target: Arc<dyn PushTarget> = match &local {
            Some(ing) => ing.clone(),
            None => Arc::new(Replicator::new(rings.ingesters.clone(), pool.clone(), metrics.clone())),
        };
        let d = Distributor::new(
            limits.clone(),
            count,
            target,
            metrics.clone(),
            cfg.distributor.max_recv_msg_size.as_usize(),
        );
        (Some(Arc::new(d)), Some(lifecycler))
    } else {
        (None, None)
    };
    let build_querier = || {
        let recent: Arc<dyn IngesterData> = match &local {
            Some(ing) => ing.clone(),
            None => Arc::new(RingIngesters::new(rings.ingesters.clone(), pool.clone())),
        };
        let hide = crate::compactor::ReadFilter::new(
            limits.clone(),
            deletes.clone(),
            cfg.compactor.retention_enabled,
            Arc::new(SystemClock),
        );
        Querier::new(cfg.querier.clone(), Some(recent), store.clone(), index.clone(), limits.clone())
            .with_read_filter(Arc::new(hide))
            .with_chunk_cache(crate::querier::ChunkCache::from_config(&cfg.chunk_store_config.chunk_cache_config))
            .with_needle_cache(crate::querier::NeedleCache::from_config(&cfg.chunk_store_config.needle_cache_config))
    };
    let querier = cfg.target.serves_queries().then(build_querier);
    // The ruler evaluates through the querier of the process, or one of its own.
    let ruler = if cfg.target.has(Role::Ruler) {
        let q = querier.clone().unwrap_or_else(build_querier);
        let kv = rings.kv.clone();
        let (s, m, b) = (store.clone(), &metrics, background.clone());
        Some(crate::ruler::start(&cfg, q, s, kv, http_addr, m, b, shutdown.clone()).await?)
    } else {
        None
    };
    let compactor = cfg.target.has(Role::Compactor).then(|| {
        let kv = rings.kv.store().clone();
        let (s, i, l, d) = (store.clone(), index.clone(), limits.clone(), deletes.clone());
        crate::compactor::start(&cfg, s, i, l, d, kv, &metrics, shutdown.clone())
    });
    let frontend = cfg
        .target
        .has(Role::QueryFrontend)
        .then(|| start_frontend(&cfg, &limits, &metrics).with_cache_generation(deletes.clone()));
    // Workers that run the frontend's sub-queries: in-process when this process also runs the
    // querier, over gRPC to the frontends named by `frontend_worker.frontend_address`.
    let workers = CancellationToken::new();
    let jobs = cfg.target.has(Role::Querier).then(|| crate::frontend::worker::jobs_counter(&metrics));
    if let (Some(f), Some(q), Some(jobs)) = (&frontend, &querier, &jobs) {
        let n = cfg.querier.max_concurrent;
        crate::frontend::worker::spawn_local(f, q.clone(), &cfg.instance.id, n, jobs.clone(), workers.clone());
    }
    if let (Some(q), Some(jobs)) = (&querier, &jobs)
        && !cfg.frontend_worker.frontend_address.is_empty()
    {
        tokio::spawn(crate::frontend::worker::run_remote(
            cfg.frontend_worker.clone(),
            q.clone(),
            cfg.instance.id.clone(),
            cfg.querier.max_concurrent,
            cfg.grpc.max_recv_msg_size.as_usize(),
            jobs.clone(),
            workers.clone(),
        ));
    }
    let flush_loop = CancellationToken::new();
    let bg_task = ingester.clone().map(|ing| tokio::spawn(ing.run_background(flush_loop.clone())));

    // The gRPC server outlives the HTTP server: a leaving ingester serves reads until it left.
    let grpc_stop = CancellationToken::new();
    let grpc_server = match grpc {
        Some(listener) => Some(serve_grpc(&cfg, listener, ingester.clone(), frontend.clone(), grpc_stop.clone())?),
        None => None,
    };
    let app = App {
        cfg: cfg.clone(),
        metrics,
        distributor,
        ingester: ingester.clone(),
        member: member.clone(),
        distributor_lifecycler: distributor_lifecycler.clone(),
        querier,
        frontend: frontend.clone(),
        compactor: compactor.as_ref().map(|(c, _)| c.clone()),
        ruler: ruler.as_ref().map(|(r, _)| r.clone()),
        shutdown: shutdown.clone(),
    };
    starting.stop().await;
    let addr = http_addr;
    tracing::info!(%addr, target = %cfg.target, "norn serving http");
    let http_shutdown = shutdown.clone();
    let mut routes = router(app).merge(rings.pages());
    if let Some((r, _)) = &ruler {
        let page = crate::ring::http::RingPage {
            client: r.ring().client.clone(),
            title: "Ruler ring".into(),
            path: "/ruler/ring".into(),
        };
        routes = routes.merge(crate::ring::http::routes(page));
    }
    let server = http::serve(http, routes, &cfg.http, https, http_shutdown);
    // Once shutdown starts, stop taking writes right away: in-flight requests drain while new
    // pushes get 503, and distributors see LEAVING and stop sending.
    let stopper = {
        let (shutdown, member) = (shutdown.clone(), member.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            if let Some(m) = member
                && let Err(err) = m.stop().await
            {
                tracing::error!(%err, "leaving the ring on shutdown failed");
            }
        })
    };
    // Drain in-flight requests, but not for longer than `http.shutdown_timeout` once shutdown
    // has begun.
    let drain = cfg.http.shutdown_timeout.get();
    let served = {
        tokio::pin!(server);
        tokio::select! {
            r = &mut server => r,
            _ = async { shutdown.cancelled().await; tokio::time::sleep(drain).await } => {
                tracing::warn!(timeout = ?drain, "in-flight requests did not finish in time; closing them");
                Ok(())
            }
        }
    };
    let stopped = stopper.await;
    if let Some(f) = &frontend {
        f.stop();
    }
    workers.cancel();
    flush_loop.cancel();
    grpc_stop.cancel();
    if let Some(t) = bg_task {
        let _ = t.await;
    }
    if let Some(t) = grpc_server {
        let _ = t.await;
    }
    if let Some((_, t)) = compactor {
        let _ = t.await;
    }
    if let Some((_, t)) = ruler {
        let _ = t.await;
    }
    if let Some(l) = distributor_lifecycler
        && let Err(err) = l.leave(cfg.ring.leave_timeout.get()).await
    {
        tracing::warn!(%err, "distributor could not leave its ring");
    }
    if let Some(ing) = ingester {
        let flush = cfg.ingester.flush_on_shutdown;
        tracing::info!(flush, "stopping ingester");
        ing.shutdown(flush).await?;
    }
    background.cancel();
    if let Err(e) = stopped {
        tracing::error!(err = %e, "shutdown task failed");
    }
    tracing::info!("norn stopped");
    served.map_err(ServeError::Http)
}

/// The HTTP server of a starting process: every request gets 503 `starting`. It serves a
/// duplicate of the HTTP listener, so the real server takes over the same socket; dropping it
/// (a failed start) stops it too.
struct Starting {
    _stop: tokio_util::sync::DropGuard,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Starting {
    /// Serves `http` until stopped; returns the listener for the real server.
    fn serve(
        http: TcpListener,
        cfg: &crate::config::HttpConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<(TcpListener, Starting)> {
        let http = http.into_std()?;
        let duplicate = TcpListener::from_std(http.try_clone()?)?;
        tracing::info!(addr = %http.local_addr()?, "norn starting: serving http, 503 until ready");
        let stop = CancellationToken::new();
        let routes = Router::new().fallback(|| async { text(StatusCode::SERVICE_UNAVAILABLE, "starting") });
        let (until, cfg) = (stop.clone(), cfg.clone());
        let task = tokio::spawn(async move {
            if let Err(err) = http::serve(duplicate, routes, &cfg, tls, until).await {
                tracing::warn!(%err, "http server of the starting process failed");
            }
        });
        Ok((TcpListener::from_std(http)?, Starting { _stop: stop.clone().drop_guard(), stop, task }))
    }

    /// Stops taking connections and finishes the answers under way.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Registers the ingester in the ring (JOINING), replays its WAL and goes ACTIVE.
#[allow(clippy::too_many_arguments)]
async fn start_ingester(
    cfg: &Arc<Config>,
    rings: &Rings,
    grpc_addr: SocketAddr,
    limits: &Arc<TenantLimits>,
    metrics: &Arc<Metrics>,
    store: &Arc<dyn storage::ObjectStore>,
    index: &Arc<Index>,
    background: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<Arc<Member>, ServeError> {
    let mut lc_cfg = ring::config::ingester_lifecycler_config(cfg);
    lc_cfg.addr = cfg.instance.advertised_addr(grpc_addr);
    let lifecycler = Lifecycler::new(lc_cfg, rings.kv.clone(), Arc::new(SystemClock));
    // Registering retries while the store is unreachable; a shutdown meanwhile ends it.
    let stop_registering = {
        let (l, s) = (lifecycler.clone(), shutdown.clone());
        tokio::spawn(async move {
            s.cancelled().await;
            l.stop();
        })
    };
    let registered = lifecycler.register().await;
    stop_registering.abort();
    let source = registered?;
    tracing::info!(id = %cfg.instance.id, tokens = ?source, "ingester joined the ring; replaying the wal");
    let heartbeat = CancellationToken::new();
    tokio::spawn(lifecycler.clone().run_heartbeat(heartbeat.clone()));
    let share: Arc<dyn RingShare> =
        if cfg.distributed() { rings.ingesters.clone() } else { Arc::new(crate::ingester::SingleProcess) };
    let (c, dir, l, m) = (cfg.ingester.clone(), cfg.wal_dir(), limits.clone(), metrics.clone());
    let (s, i) = (store.clone(), index.clone());
    let opened = tokio::task::spawn_blocking(move || Ingester::open(c, dir, l, share, s, i, m))
        .await
        .map_err(|e| ServeError::Config(format!("ingester start task failed: {e}")))?;
    let ing = match opened {
        Ok(ing) => ing,
        Err(e) => {
            heartbeat.cancel();
            lifecycler.stop();
            return Err(e.into());
        }
    };
    if cfg.pattern_ingester.enabled {
        ing.attach_patterns(crate::pattern::PatternIngester::start(cfg.pattern_ingester.clone()));
    }
    lifecycler.set_state(InstanceState::Active).await?;
    // Heartbeats outlive the HTTP server: a leaving ingester keeps heartbeating while it
    // flushes, until it leaves the ring or the process ends.
    let bg = background.clone();
    tokio::spawn(async move {
        bg.cancelled().await;
        heartbeat.cancel();
    });
    let marker = cfg.ring.tokens_file(&cfg.data.dir).with_file_name("shutdown_requested");
    Ok(Member::new(ing, lifecycler, cfg.ring.leave_timeout.get(), marker))
}

/// The query frontend with the results cache its configuration asks for.
fn start_frontend(cfg: &Config, limits: &Arc<TenantLimits>, metrics: &Arc<Metrics>) -> Frontend {
    use crate::frontend::cache::{CacheBackend, EmbeddedCache, ResultsCache};
    let c = &cfg.query_range.results_cache.cache;
    let servers = c.memcached_client.servers();
    let backend: Option<Arc<dyn CacheBackend>> = if !servers.is_empty() {
        tracing::info!(servers = ?servers, "results cache in memcached");
        Some(Arc::new(crate::frontend::memcached::Memcached::new(
            servers,
            c.memcached_client.timeout.get(),
            c.memcached_client.max_idle_conns,
            c.memcached_client.max_item_size.as_usize(),
            c.memcached.expiration.get(),
        )))
    } else if c.embedded_cache.enabled {
        let bytes = usize::try_from(c.embedded_cache.max_size_mb.saturating_mul(1_000_000)).unwrap_or(usize::MAX);
        Some(Arc::new(EmbeddedCache::new(bytes, c.embedded_cache.ttl.get())))
    } else {
        None
    };
    let cache = backend.map(|b| ResultsCache::new(b, metrics));
    Frontend::new(
        cfg.frontend.clone(),
        cfg.query_range.clone(),
        cfg.querier.max_query_memory.bytes(),
        limits.clone(),
        cache,
        metrics,
    )
}

/// Starts the gRPC server on `listener` until `shutdown`: the ingester service and the query
/// frontend's, whichever the process runs.
fn serve_grpc(
    cfg: &Config,
    listener: TcpListener,
    ingester: Option<Arc<Ingester>>,
    frontend: Option<Frontend>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let addr = listener.local_addr()?;
    let max = cfg.grpc.max_recv_msg_size.as_usize();
    let ingester = ingester.map(|i| IngesterService::new(i, max));
    let frontend = frontend.map(|f| crate::frontend::rpc::FrontendService::new(f, max));
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = cfg.grpc.tls_config.tonic("grpc.tls_config").map_err(|e| ServeError::Config(e.to_string()))? {
        server = server.tls_config(tls).map_err(|e| ServeError::Grpc(e.to_string()))?;
    }
    let server = server
        .initial_stream_window_size(crate::rpc::client::STREAM_WINDOW)
        .initial_connection_window_size(crate::rpc::client::CONNECTION_WINDOW)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .add_optional_service(ingester)
        .add_optional_service(frontend);
    tracing::info!(%addr, "norn serving grpc");
    Ok(tokio::spawn(async move {
        // Reads keep being served while the ingester leaves; the server stops with the process.
        if let Err(err) = server.serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned()).await {
            tracing::error!(%err, "grpc server failed");
        }
    }))
}

fn router(app: App) -> Router {
    let max_body = app.cfg.distributor.max_recv_msg_size.as_usize();
    Router::new()
        .route("/loki/api/v1/push", post(push))
        .route("/api/prom/push", post(push))
        .merge(crate::otlp::routes())
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/config", get(config))
        .route("/flush", post(flush).get(flush))
        .route("/loki/api/v1/status/buildinfo", get(buildinfo))
        .merge(crate::api::routes())
        .merge(crate::compactor::http::routes())
        .merge(crate::ruler::http::routes())
        .merge(crate::drilldown::routes())
        .merge(lifecycle::routes())
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

async fn push(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    let Some(d) = app.distributor.clone() else {
        return text(StatusCode::NOT_FOUND, "this process does not run a distributor");
    };
    let tenant = match tenant(&app, &headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let body = match read_push_body(body, &headers, app.cfg.distributor.max_recv_msg_size.as_usize()).await {
        Ok(b) => b,
        Err(e) => return push_error(&tenant, e),
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

/// Reads a push body of at most `limit` bytes. Of a larger one, up to `limit` more bytes are
/// read and dropped before the 413 goes out, so a client still sending its body gets the answer
/// instead of a reset connection; a body larger than that has its connection closed early.
pub(crate) async fn read_push_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, PushError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let mut size = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| PushError::Invalid(format!("reading the request body: {e}")))?;
        size += chunk.len();
        if size <= limit {
            buf.extend_from_slice(&chunk);
        } else if size > limit.saturating_mul(2) {
            break;
        }
    }
    if size > limit {
        return Err(PushError::Decode(DecodeError::TooLarge { size: declared.unwrap_or(size).max(size), limit }));
    }
    Ok(buf.freeze())
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

/// Ready when the ingester is ACTIVE in the ring and taking writes, and the distributor is
/// ACTIVE in its ring.
async fn ready(State(app): State<App>) -> Response {
    if let Some(m) = &app.member
        && !m.is_ready()
    {
        let state = m.lifecycler().state().name();
        return text(StatusCode::SERVICE_UNAVAILABLE, format!("Ingester not ready: this ingester is {state}"));
    }
    if let Some(l) = &app.distributor_lifecycler
        && !l.is_ready()
    {
        return text(StatusCode::SERVICE_UNAVAILABLE, "Distributor not ready: not ACTIVE in the distributor ring");
    }
    text(StatusCode::OK, "ready")
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
