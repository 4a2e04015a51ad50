//! The HTTP server under the API: accepts connections (plain or TLS), serves HTTP/1.1 and
//! HTTP/2 with upgrades (tail's WebSockets), and bounds what one client can hold:
//!
//! - `http.read_timeout`: a request's headers, once begun, and its body must arrive within it
//!   (a slowloris client, or one sending its body a byte at a time, is cut off);
//! - `http.idle_timeout`: a connection with no request in flight and no bytes moving is closed;
//! - `http.max_header_bytes`: larger request heads get 431;
//! - `http.conn_limit`: connections past it get one 503 and are closed;
//! - `http.max_concurrent_requests`: requests past it get 503 at once (not `/ready` and
//!   `/metrics`, which probes and scrapers must reach on a busy server).
//!
//! Graceful shutdown: the listener closes, every connection finishes its requests in flight
//! and closes; [`serve`] returns when the last one has.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::HttpConfig;

/// Serves `routes` on `listener` until `shutdown`, then drains. `tls` turns HTTPS on.
pub async fn serve(
    listener: TcpListener,
    routes: Router,
    cfg: &HttpConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limits = Limits::new(cfg);
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let conns = Arc::new(Semaphore::new(if cfg.conn_limit == 0 { Semaphore::MAX_PERMITS } else { cfg.conn_limit }));
    let requests = Arc::new(Semaphore::new(match cfg.max_concurrent_requests {
        0 => Semaphore::MAX_PERMITS,
        n => n,
    }));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Head timeouts are this module's (see `Activity`): hyper's would also close keep-alive
    // connections idle for that long.
    builder.http1().header_read_timeout(None).max_buf_size(cfg.max_header_bytes.as_usize().max(8192));
    builder.http2().max_header_list_size(cfg.max_header_bytes.as_usize().min(u32::MAX as usize) as u32);
    let builder = Arc::new(builder);
    let open = Arc::new(AtomicUsize::new(0));
    let all_closed = Arc::new(tokio::sync::Notify::new());
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%err, "accepting an http connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let permit = conns.clone().try_acquire_owned().ok();
        let conn = Connection {
            builder: builder.clone(),
            routes: routes.clone(),
            requests: requests.clone(),
            limits,
            shutdown: shutdown.clone(),
        };
        let (tls, open, all_closed) = (tls.clone(), open.clone(), all_closed.clone());
        open.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            conn.run(tcp, tls, permit.is_some()).await;
            drop(permit);
            if open.fetch_sub(1, Ordering::SeqCst) == 1 {
                all_closed.notify_waiters();
            }
        });
    }
    drop(listener);
    loop {
        let closed = all_closed.notified();
        if open.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        closed.await;
    }
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    read_timeout: Duration,
    idle_timeout: Duration,
}

impl Limits {
    fn new(cfg: &HttpConfig) -> Self {
        let forever = Duration::from_secs(u64::from(u32::MAX));
        let or_forever = |d: Duration| if d.is_zero() { forever } else { d };
        Self { read_timeout: or_forever(cfg.read_timeout.get()), idle_timeout: or_forever(cfg.idle_timeout.get()) }
    }

    /// How often a connection's watchdog looks at it.
    fn tick(&self) -> Duration {
        (self.read_timeout.min(self.idle_timeout) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    routes: Router,
    requests: Arc<Semaphore>,
    limits: Limits,
    shutdown: CancellationToken,
}

impl Connection {
    async fn run(self, tcp: tokio::net::TcpStream, tls: Option<tokio_rustls::TlsAcceptor>, admitted: bool) {
        let activity = Arc::new(Activity::new());
        let io = Watched { inner: tcp, activity: activity.clone() };
        match tls {
            None => self.serve(io, activity, admitted).await,
            Some(acceptor) => match tokio::time::timeout(self.limits.read_timeout, acceptor.accept(io)).await {
                Ok(Ok(stream)) => self.serve(stream, activity, admitted).await,
                Ok(Err(err)) => tracing::debug!(%err, "tls handshake failed"),
                Err(_) => tracing::debug!("tls handshake timed out"),
            },
        }
    }

    async fn serve<IO>(self, io: IO, activity: Arc<Activity>, admitted: bool)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        if !admitted {
            // Past `http.conn_limit`: one answer saying so, then the connection closes.
            let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                let mut r = unavailable("too many open connections (http.conn_limit)");
                r.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
                Ok::<_, Infallible>(r)
            });
            let conn = self.builder.serve_connection(io, svc);
            let _ = tokio::time::timeout(self.limits.read_timeout, conn).await;
            return;
        }
        let svc =
            Service { routes: self.routes, requests: self.requests, limits: self.limits, activity: activity.clone() };
        let conn =
            self.builder.serve_connection_with_upgrades(io, hyper::service::service_fn(move |r| svc.clone().call(r)));
        tokio::pin!(conn);
        let mut tick = tokio::time::interval(self.limits.tick());
        let mut draining = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(%err, "http connection ended with an error");
                    }
                    return;
                }
                _ = self.shutdown.cancelled(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = tick.tick() => {
                    if let Some(why) = activity.overdue(&self.limits) {
                        tracing::debug!(why, "closing http connection");
                        return;
                    }
                }
            }
        }
    }
}

fn unavailable(msg: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(msg));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// What a connection's watchdog knows: requests in flight, and when bytes last moved and the
/// head of the next request began, in milliseconds since the connection opened (0: never).
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    last: AtomicU64,
    head_started: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(1),
            head_started: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64 + 1
    }

    fn read(&self) {
        let now = self.now();
        self.last.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ = self.head_started.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
    }

    fn request_done(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.wrote();
    }

    /// Why the connection should close now, if it should: only ever with no request in flight.
    fn overdue(&self, limits: &Limits) -> Option<&'static str> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let now = self.now();
        let head = self.head_started.load(Ordering::Relaxed);
        if head > 0 && now - head > limits.read_timeout.as_millis() as u64 {
            return Some("request head not received within http.read_timeout");
        }
        if now - self.last.load(Ordering::Relaxed) > limits.idle_timeout.as_millis() as u64 {
            return Some("idle past http.idle_timeout");
        }
        None
    }
}

/// The connection's socket, telling [`Activity`] when bytes move.
struct Watched<IO> {
    inner: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One connection's requests: admitted by `http.max_concurrent_requests`, their bodies bounded
/// by `http.read_timeout`, routed.
#[derive(Clone)]
struct Service {
    routes: Router,
    requests: Arc<Semaphore>,
    limits: Limits,
    activity: Arc<Activity>,
}

impl Service {
    async fn call(self, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        use tower::ServiceExt;
        let exempt = matches!(req.uri().path(), "/ready" | "/metrics");
        let permit = match self.requests.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) if exempt => None,
            Err(_) => return Ok(unavailable("too many requests in flight (http.max_concurrent_requests)")),
        };
        self.activity.request_started();
        let _done = RequestDone(self.activity.clone());
        let deadline = tokio::time::Instant::now() + self.limits.read_timeout;
        let req =
            req.map(|body| Body::new(Deadline { inner: body, deadline: Box::pin(tokio::time::sleep_until(deadline)) }));
        let resp = self.routes.oneshot(req).await;
        drop(permit);
        resp
    }
}

/// Marks the request done however its future ends (answered, or dropped with the connection).
struct RequestDone(Arc<Activity>);

impl Drop for RequestDone {
    fn drop(&mut self) {
        self.0.request_done();
    }
}

/// A request body that fails once `http.read_timeout` has passed since its request began.
struct Deadline {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

#[derive(Debug, thiserror::Error)]
#[error("request body not received within http.read_timeout")]
struct BodyTimeout;

impl http_body::Body for Deadline {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
