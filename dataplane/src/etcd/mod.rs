//! Norn's etcd v3 client: the few gRPC calls the ring ([`crate::ring::kv::EtcdKv`]) and the
//! operator make, over tonic with the prost messages of [`proto`]. There is no `.proto` build
//! step, so building Norn needs no `protoc`.
//!
//! The calls are the unary `/etcdserverpb.KV/{Range,Put,DeleteRange,Txn}`, the bidirectional
//! stream `/etcdserverpb.Watch/Watch` (one watch per stream), and
//! `/etcdserverpb.Auth/Authenticate` when credentials are configured.
//!
//! # Endpoints and failover
//!
//! The client talks to one endpoint at a time, starting with the first one listed. A request
//! that fails with `UNAVAILABLE` (nothing listens there, the connection broke, or the member has
//! no leader) is sent again to the next endpoint, until every endpoint has been tried once; a
//! request that times out moves the client to the next endpoint for the following requests. So
//! a dead or partitioned member costs one failed attempt, not every request. Every attempt
//! counts against one request deadline.
//!
//! A request resent after `UNAVAILABLE` may have been applied by the member that failed (etcd
//! answers `UNAVAILABLE` to a proposal whose commit it stopped waiting for). What Norn writes
//! tolerates that: puts are overwrites, compare-and-swaps compare revisions (a second attempt
//! of an applied one loses the compare and reads the value back), deletes are idempotent.
//!
//! # Connections
//!
//! Connections are made lazily, so a client can be built while etcd is down (unless credentials
//! are configured: authenticating needs etcd), and are made again after they break. Every request
//! carries `hasleader: true`, so a member cut off from the leader fails requests and watches
//! instead of serving stale data. Open watch streams send HTTP/2 keep-alive pings, so a watch on
//! a silently dead etcd fails within about [`KEEP_ALIVE_INTERVAL`] + [`KEEP_ALIVE_TIMEOUT`].
//!
//! Endpoints are `host:port`, `http://host:port` or, with TLS on ([`ClientOptions::tls`]: the
//! `ring.etcd.tls_*` keys), `https://host:port`: the client then verifies the member's
//! certificate against `tls_ca_path` and presents `tls_cert_path` when etcd asks for client
//! certificates (`--client-cert-auth`).

pub mod proto;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use proto::{
    AuthenticateRequest, AuthenticateResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestUnion, TxnRequest, TxnResponse, WatchCreateRequest, WatchRequest,
    WatchResponse,
};

use crate::tls::ClientTlsConfig;

/// HTTP/2 keep-alive ping period while a stream (a watch) is open: how fast a silently dead
/// etcd is noticed by a watcher. etcd refuses pings more frequent than its
/// `--grpc-keepalive-min-time` (5s by default) and pings on idle connections, so the period is
/// above that and idle connections do not ping (their requests have deadlines instead).
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a keep-alive ping may go unanswered before the connection is dropped.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

const RANGE: &str = "/etcdserverpb.KV/Range";
const PUT: &str = "/etcdserverpb.KV/Put";
const DELETE_RANGE: &str = "/etcdserverpb.KV/DeleteRange";
const TXN: &str = "/etcdserverpb.KV/Txn";
const WATCH: &str = "/etcdserverpb.Watch/Watch";
const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";

/// Metadata etcd checks before serving a request: fail unless the member has a leader.
const REQUIRE_LEADER_KEY: &str = "hasleader";
/// Metadata carrying the token of [`AUTHENTICATE`].
const TOKEN_KEY: &str = "token";

/// How to reach an etcd cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// `host:port` or `http://host:port` of the members, tried in this order.
    pub endpoints: Vec<String>,
    /// Deadline of establishing a connection to one endpoint.
    pub connect_timeout: Duration,
    /// Deadline of each request, failover to other endpoints included.
    pub request_timeout: Duration,
    /// User name and password, when etcd has authentication on.
    pub credentials: Option<(String, String)>,
    /// TLS to the members (off by default).
    pub tls: ClientTlsConfig,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("endpoints", &self.endpoints)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("tls", &self.tls)
            .finish()
    }
}

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered in time, etcd has no leader, or a stream broke. Retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A malformed endpoint, or a request or credentials etcd refused; retrying will not help.
    #[error("{0}")]
    Invalid(String),
}

impl EtcdError {
    /// The error of a failed call: what a caller can do about `status`.
    fn from_status(what: &str, status: &Status) -> Self {
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
                EtcdError::Invalid(format!("etcd refused the {what}: {}", status.message()))
            }
            Code::Unauthenticated | Code::PermissionDenied => {
                EtcdError::Invalid(format!("etcd refused the credentials: {}", status.message()))
            }
            code => EtcdError::Unavailable(format!("etcd {what}: {code:?}: {}", status.message())),
        }
    }
}

/// A client of one etcd cluster. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    /// One configured endpoint per member, in the order given.
    endpoints: Vec<Endpoint>,
    /// The endpoint in use and its connection.
    current: Mutex<Current>,
    /// Deadline of each request.
    request_timeout: Duration,
    /// User and password to authenticate with, again when the token expired.
    credentials: Option<(String, String)>,
    /// The token of the last authentication, sent with every request.
    token: RwLock<Option<AsciiMetadataValue>>,
}

/// The endpoint requests go to.
struct Current {
    /// Index into [`Shared::endpoints`].
    index: usize,
    /// The (lazily connected) channel to it.
    grpc: tonic::client::Grpc<Channel>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoint_names())
            .field("request_timeout", &self.shared.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the etcd cluster at `options.endpoints`. Connects on first use (see the
    /// module docs); only authenticating, when credentials are given, talks to etcd here.
    pub async fn connect(options: &ClientOptions) -> Result<Self, EtcdError> {
        if options.endpoints.is_empty() {
            return Err(EtcdError::Invalid("no etcd endpoints configured".into()));
        }
        let endpoints = options.endpoints.iter().map(|e| endpoint(e, options)).collect::<Result<Vec<_>, _>>()?;
        let current = Current { index: 0, grpc: tonic::client::Grpc::new(endpoints[0].connect_lazy()) };
        let client = Self {
            shared: Arc::new(Shared {
                endpoints,
                current: Mutex::new(current),
                request_timeout: options.request_timeout,
                credentials: options.credentials.clone(),
                token: RwLock::new(None),
            }),
        };
        if let Some((name, password)) = &client.shared.credentials {
            let auth = AuthenticateRequest { name: name.clone(), password: password.clone() };
            let resp: AuthenticateResponse = client.unary("authentication", AUTHENTICATE, auth).await?;
            client.set_token(&resp.token)?;
        }
        Ok(client)
    }

    /// `/etcdserverpb.KV/Range`.
    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse, EtcdError> {
        self.unary("range", RANGE, request).await
    }

    /// `/etcdserverpb.KV/Put`.
    pub async fn put(&self, request: PutRequest) -> Result<PutResponse, EtcdError> {
        self.unary("put", PUT, request).await
    }

    /// `/etcdserverpb.KV/DeleteRange`.
    pub async fn delete_range(&self, request: DeleteRangeRequest) -> Result<DeleteRangeResponse, EtcdError> {
        self.unary("delete", DELETE_RANGE, request).await
    }

    /// `/etcdserverpb.KV/Txn`.
    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, EtcdError> {
        self.unary("transaction", TXN, request).await
    }

    /// Opens `/etcdserverpb.Watch/Watch` with one create request. The stream stays open until
    /// the returned [`Watch`] is dropped; establishing it is bounded by the request deadline,
    /// reading from it is not.
    pub async fn watch(&self, create: WatchCreateRequest) -> Result<Watch, EtcdError> {
        let (index, responses) = self
            .call("watch", create, |mut grpc, request| async move {
                grpc.ready().await.map_err(not_ready)?;
                // The request side stays open (pending) for as long as the stream lives: etcd
                // ends a watch stream whose request side is closed.
                let request = request.map(|create| {
                    let first = WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
                    futures::stream::iter([first]).chain(futures::stream::pending())
                });
                let path = PathAndQuery::from_static(WATCH);
                grpc.streaming(request, path, tonic_prost::ProstCodec::default()).await.map(tonic::Response::into_inner)
            })
            .await?;
        Ok(Watch { responses, client: self.clone(), index })
    }

    /// The configured endpoints, for messages.
    pub fn endpoint_names(&self) -> Vec<String> {
        self.shared.endpoints.iter().map(|e| e.uri().to_string()).collect()
    }

    async fn unary<Req, Resp>(&self, what: &'static str, path: &'static str, request: Req) -> Result<Resp, EtcdError>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        // No grpc-timeout on the request: tonic would enforce it too, and its `CANCELLED` would
        // race `call`'s own deadline, which is what moves the client off a silent member.
        let (_, resp) = self
            .call(what, request, |mut grpc, request| async move {
                grpc.ready().await.map_err(not_ready)?;
                let path = PathAndQuery::from_static(path);
                grpc.unary(request, path, tonic_prost::ProstCodec::default()).await.map(tonic::Response::into_inner)
            })
            .await?;
        Ok(resp)
    }

    /// Runs `attempt` against the current endpoint, failing over as the module docs describe,
    /// under the request deadline. Returns the index of the endpoint that answered.
    async fn call<M, T, F, Fut>(&self, what: &'static str, message: M, attempt: F) -> Result<(usize, T), EtcdError>
    where
        M: Clone,
        F: Fn(tonic::client::Grpc<Channel>, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let in_use = AtomicUsize::new(usize::MAX);
        let attempts = async {
            let mut failures = Vec::new();
            let mut reauthenticated = false;
            loop {
                let (index, grpc) = self.current();
                in_use.store(index, Ordering::Relaxed);
                match attempt(grpc.clone(), self.request(message.clone())).await {
                    Ok(v) => return Ok((index, v)),
                    Err(s) if s.code() == Code::Unavailable => {
                        failures.push(format!("{}: {}", self.shared.endpoints[index].uri(), s.message()));
                        self.fail_over(index);
                        if failures.len() >= self.shared.endpoints.len() {
                            return Err(EtcdError::Unavailable(format!(
                                "etcd {what}: no endpoint answered: {}",
                                failures.join("; ")
                            )));
                        }
                    }
                    // The token expired (etcd's simple tokens do after a while unused).
                    Err(s) if s.code() == Code::Unauthenticated && !reauthenticated => {
                        let Some((name, password)) = &self.shared.credentials else {
                            return Err(EtcdError::from_status(what, &s));
                        };
                        reauthenticated = true;
                        let auth = AuthenticateRequest { name: name.clone(), password: password.clone() };
                        let resp = authenticate(grpc, auth).await.map_err(|s| EtcdError::from_status(what, &s))?;
                        self.set_token(&resp.token)?;
                    }
                    Err(s) => return Err(EtcdError::from_status(what, &s)),
                }
            }
        };
        match tokio::time::timeout(self.shared.request_timeout, attempts).await {
            Ok(r) => r,
            Err(_) => {
                // Perhaps a member that swallows packets: try another one next time.
                let index = in_use.load(Ordering::Relaxed);
                if index != usize::MAX {
                    self.fail_over(index);
                }
                Err(EtcdError::Unavailable(format!(
                    "etcd {what} timed out after {:?} (endpoints {:?})",
                    self.shared.request_timeout,
                    self.endpoint_names()
                )))
            }
        }
    }

    /// A request with the metadata etcd wants.
    fn request<M>(&self, message: M) -> tonic::Request<M> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert(REQUIRE_LEADER_KEY, AsciiMetadataValue::from_static("true"));
        if let Some(token) = self.shared.token.read().clone() {
            metadata.insert(TOKEN_KEY, token);
        }
        request
    }

    fn set_token(&self, token: &str) -> Result<(), EtcdError> {
        let value = AsciiMetadataValue::try_from(token)
            .map_err(|_| EtcdError::Invalid("etcd answered an authentication token that is not ASCII".into()))?;
        *self.shared.token.write() = Some(value);
        Ok(())
    }

    /// The endpoint in use and its channel.
    fn current(&self) -> (usize, tonic::client::Grpc<Channel>) {
        let current = self.shared.current.lock();
        (current.index, current.grpc.clone())
    }

    /// Moves on to the endpoint after `failed`, unless another request already did.
    fn fail_over(&self, failed: usize) {
        let n = self.shared.endpoints.len();
        let mut current = self.shared.current.lock();
        if current.index != failed || n == 1 {
            return;
        }
        current.index = (failed + 1) % n;
        current.grpc = tonic::client::Grpc::new(self.shared.endpoints[current.index].connect_lazy());
        tracing::debug!(endpoint = %self.shared.endpoints[current.index].uri(), "etcd client moved to another endpoint");
    }
}

/// One `Authenticate` call on `grpc`, without a token and without failover (it runs inside a
/// failing request's attempt).
async fn authenticate(
    mut grpc: tonic::client::Grpc<Channel>,
    auth: AuthenticateRequest,
) -> Result<AuthenticateResponse, Status> {
    grpc.ready().await.map_err(not_ready)?;
    let path = PathAndQuery::from_static(AUTHENTICATE);
    grpc.unary(tonic::Request::new(auth), path, tonic_prost::ProstCodec::default())
        .await
        .map(tonic::Response::into_inner)
}

fn not_ready(e: tonic::transport::Error) -> Status {
    Status::unavailable(format!("connection not ready: {e}"))
}

/// The tonic endpoint of `host:port` or `http://host:port`.
fn endpoint(addr: &str, options: &ClientOptions) -> Result<Endpoint, EtcdError> {
    let tls = &options.tls;
    let (scheme, rest) = match addr.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => (tls.scheme(), addr),
    };
    if scheme != tls.scheme() {
        let why = if tls.tls_enabled { "TLS is on (tls_enabled)" } else { "TLS is off (tls_enabled: false)" };
        return Err(EtcdError::Invalid(format!("etcd endpoint {addr}: {scheme}:// but {why}")));
    }
    let endpoint = Endpoint::from_shared(format!("{scheme}://{rest}"))
        .map_err(|e| EtcdError::Invalid(format!("invalid etcd endpoint {addr:?}: {e}")))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(false);
    tls.apply("ring.etcd", endpoint).map_err(|e| EtcdError::Invalid(e.to_string()))
}

/// An open watch: the responses of one `/etcdserverpb.Watch/Watch` stream.
pub struct Watch {
    /// The response side; dropping it resets the stream, which cancels the watch.
    responses: tonic::Streaming<WatchResponse>,
    /// The client that opened it, to fail over when the member goes away.
    client: Client,
    /// The endpoint the stream is on.
    index: usize,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").field("index", &self.index).finish_non_exhaustive()
    }
}

impl Watch {
    /// The next response; `None` when etcd closed the stream.
    pub async fn message(&mut self) -> Result<Option<WatchResponse>, EtcdError> {
        self.responses.message().await.map_err(|s| {
            if s.code() == Code::Unavailable {
                // The member went away or lost its leader: the next watch goes elsewhere.
                self.client.fail_over(self.index);
            }
            EtcdError::from_status("watch", &s)
        })
    }
}

/// The end of the range of every key starting with `prefix` (etcd's `GetPrefixRangeEnd`): the
/// prefix with its last byte below 0xff incremented and what follows dropped; `"\0"` (no upper
/// bound) when there is no such byte.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&b| b < 0xff) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            end
        }
        None => vec![0],
    }
}

/// `(key, range_end)` of every key starting with `prefix`; an empty prefix is every key
/// (`"\0"`, `"\0"`).
pub fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() { (vec![0], vec![0]) } else { (prefix.to_vec(), prefix_range_end(prefix)) }
}
