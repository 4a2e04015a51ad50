//! Calling ingesters: one HTTP/2 connection per ingester address, shared by every call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

use super::codec::PreEncoded;
use super::proto::{
    PatternsRequest, PatternsResponse, PushResponse, SelectRequest, SelectResponse, SeriesRequest, SeriesResponse,
};
use super::{PATTERNS_PATH, PUSH_PATH, RpcError, SELECT_PATH, SERIES_PATH};
use crate::config::units::{ByteSize, Dur};
use crate::error::ErrorKind;
use crate::ring::client::RingView;

/// `ingester_client:` settings: how distributors and queriers call ingesters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Deadline of a push or a series lookup sent to one ingester. A log query's blocks are
    /// bounded by the query's own timeout instead.
    pub remote_timeout: Dur,
    /// Deadline of establishing a connection to an ingester.
    pub connect_timeout: Dur,
    /// Largest message sent or received (a replica's share of a push, a batch of blocks).
    pub max_msg_size: ByteSize,
    /// TLS to the ingesters' gRPC servers (Loki's `ingester_client.grpc_client_config`).
    pub grpc_client_config: crate::tls::ClientTlsConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            remote_timeout: Dur::secs(5),
            connect_timeout: Dur::secs(2),
            max_msg_size: ByteSize::mib(128),
            grpc_client_config: Default::default(),
        }
    }
}

impl ClientConfig {
    /// Checks the section; messages name the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.remote_timeout.get().is_zero() {
            return Err("ingester_client.remote_timeout must be greater than 0".into());
        }
        if self.connect_timeout.get().is_zero() {
            return Err("ingester_client.connect_timeout must be greater than 0".into());
        }
        if self.max_msg_size.bytes() < 1 << 20 {
            return Err("ingester_client.max_msg_size must be at least 1MiB".into());
        }
        self.grpc_client_config.validate("ingester_client.grpc_client_config")
    }
}

/// HTTP/2 flow-control windows: large enough that a push or a batch of blocks is not throttled
/// to a round trip per 64 KiB (the protocol's default).
pub(crate) const STREAM_WINDOW: u32 = 8 << 20;
pub(crate) const CONNECTION_WINDOW: u32 = 32 << 20;
/// Keep-alive pings find a peer that vanished without closing its connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to one ingester. Cheap to clone; clones share the connection.
#[derive(Clone, Debug)]
pub struct IngesterClient {
    addr: Arc<str>,
    grpc: tonic::client::Grpc<Channel>,
    timeout: Duration,
}

impl IngesterClient {
    /// A client for `addr` (`host:port`). Connects on first use, and again after the
    /// connection broke.
    pub fn new(addr: &str, cfg: &ClientConfig) -> Result<Self, RpcError> {
        let tls = &cfg.grpc_client_config;
        let invalid = |message: String| RpcError { addr: addr.to_string(), kind: ErrorKind::Invalid, message };
        let endpoint = Endpoint::from_shared(format!("{}://{addr}", tls.scheme()))
            .map_err(|e| invalid(format!("invalid address: {e}")))?;
        let endpoint = tls.apply("ingester_client.grpc_client_config", endpoint).map_err(|e| invalid(e.to_string()))?;
        let channel = endpoint
            .connect_timeout(cfg.connect_timeout.get())
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .connect_lazy();
        let max = cfg.max_msg_size.as_usize();
        let grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(max).max_encoding_message_size(max);
        Ok(Self { addr: Arc::from(addr), grpc, timeout: cfg.remote_timeout.get() })
    }

    /// The ingester's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn error(&self, status: &tonic::Status) -> RpcError {
        RpcError::from_status(&self.addr, status)
    }

    fn timed_out(&self, what: &str) -> RpcError {
        RpcError {
            addr: self.addr.to_string(),
            kind: ErrorKind::Timeout,
            message: format!("{what} did not answer within {:?}", self.timeout),
        }
    }

    async fn ready(&mut self) -> Result<(), RpcError> {
        self.grpc.ready().await.map_err(|e| RpcError {
            addr: self.addr.to_string(),
            kind: ErrorKind::Unavailable,
            message: format!("connection not ready: {e}"),
        })
    }

    /// Sends a push, already encoded as a `PushRequest` (see [`crate::distributor::replicate`]).
    pub async fn push(&self, request: Bytes) -> Result<PushResponse, RpcError> {
        let mut me = self.clone();
        let call = async move {
            me.ready().await?;
            let mut req = tonic::Request::new(request);
            req.set_timeout(me.timeout);
            let path = PathAndQuery::from_static(PUSH_PATH);
            me.grpc
                .unary(req, path, PreEncoded::<PushResponse>::default())
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| me.error(&s))
        };
        tokio::time::timeout(self.timeout, call).await.map_err(|_| self.timed_out("push"))?
    }

    /// Asks for the blocks of matching streams; the answer is a stream of batches.
    pub async fn select(&self, request: SelectRequest) -> Result<tonic::Streaming<SelectResponse>, RpcError> {
        let mut me = self.clone();
        me.ready().await?;
        let path = PathAndQuery::from_static(SELECT_PATH);
        me.grpc
            .server_streaming(tonic::Request::new(request), path, tonic_prost::ProstCodec::default())
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| me.error(&s))
    }

    /// Label sets of matching streams.
    pub async fn series(&self, request: SeriesRequest) -> Result<SeriesResponse, RpcError> {
        self.unary(request, SERIES_PATH, "series").await
    }

    /// The pattern detector's templates of matching streams.
    pub async fn patterns(&self, request: PatternsRequest) -> Result<PatternsResponse, RpcError> {
        self.unary(request, PATTERNS_PATH, "patterns").await
    }

    /// A unary read within the client's deadline.
    async fn unary<Req, Resp>(&self, request: Req, path: &'static str, what: &str) -> Result<Resp, RpcError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut me = self.clone();
        let call = async move {
            me.ready().await?;
            let mut req = tonic::Request::new(request);
            req.set_timeout(me.timeout);
            let path = PathAndQuery::from_static(path);
            me.grpc
                .unary(req, path, tonic_prost::ProstCodec::default())
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| me.error(&s))
        };
        tokio::time::timeout(self.timeout, call).await.map_err(|_| self.timed_out(what))?
    }

    /// Turns a failed read of a response stream into an error naming this ingester.
    pub fn stream_error(&self, status: &tonic::Status) -> RpcError {
        self.error(status)
    }
}

/// Clients by address, created on first use. An ingester that restarts on another address
/// gets a new client; clients of addresses no longer in the ring are dropped by
/// [`IngesterPool::retain`].
#[derive(Debug)]
pub struct IngesterPool {
    cfg: ClientConfig,
    clients: Mutex<HashMap<Arc<str>, IngesterClient>>,
    /// The ring version the clients were last pruned against.
    pruned_at: AtomicU64,
}

impl IngesterPool {
    pub fn new(cfg: ClientConfig) -> Arc<Self> {
        Arc::new(Self { cfg, clients: Mutex::new(HashMap::new()), pruned_at: AtomicU64::new(0) })
    }

    /// Drops clients of addresses not in `view`, once per ring version.
    pub fn prune(&self, view: &RingView) {
        if self.pruned_at.swap(view.version, Ordering::Relaxed) == view.version {
            return;
        }
        self.retain(|addr| view.desc.instances.values().any(|i| i.addr == addr));
    }

    /// The client of `addr`.
    pub fn get(&self, addr: &str) -> Result<IngesterClient, RpcError> {
        if let Some(c) = self.clients.lock().get(addr) {
            return Ok(c.clone());
        }
        let client = IngesterClient::new(addr, &self.cfg)?;
        Ok(self.clients.lock().entry(Arc::from(addr)).or_insert(client).clone())
    }

    /// Drops the clients of addresses `keep` rejects (instances that left the ring or moved).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.clients.lock().retain(|addr, _| keep(addr));
    }

    /// Number of clients held.
    pub fn len(&self) -> usize {
        self.clients.lock().len()
    }

    /// Whether no client is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
