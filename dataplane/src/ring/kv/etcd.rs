//! [`EtcdKv`]: the key-value store shared by the processes of a cluster, on etcd v3.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, KeyValue, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use futures::StreamExt;

use super::{CasOutcome, KvError, KvStore, Versioned, WatchEvent, WatchStream, WatchTarget, check_key};
use crate::ring::config::EtcdConfig;

/// HTTP/2 keep-alive ping period while a stream (a watch) is open: how fast a silently dead
/// etcd is noticed by a watcher. etcd refuses pings more frequent than its
/// `--grpc-keepalive-min-time` (5s by default) and pings on idle connections, so the period is
/// above that and idle connections do not ping (their requests have deadlines instead).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a keep-alive ping may go unanswered before the connection is dropped.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`KvStore`] on an etcd v3 cluster.
///
/// - Versions are etcd's `mod_revision`: cluster-wide, growing with every write.
/// - A CAS is one transaction: compare the key's `mod_revision` (or `version == 0` for "absent"),
///   put on success, read the key on failure, so a lost race costs no extra round trip.
/// - A watch reads the current value(s) and opens an etcd watch from the next revision, so no
///   change between the two is missed. When etcd goes away the stream reports
///   [`KvError::Unavailable`] and ends.
/// - Every request is bounded by `request_timeout`: while no endpoint is reachable, requests fail
///   fast instead of queueing forever. Open watches send HTTP/2 keep-alive pings, so a watch on
///   a silently dead etcd fails within about 15 seconds.
///
/// The client connects lazily, so a store can be built while etcd is down (unless credentials
/// are configured: authenticating needs etcd).
#[derive(Clone)]
pub struct EtcdKv {
    /// The etcd client (cheap to clone: clones share the connections).
    client: Client,
    /// Deadline of each request.
    request_timeout: Duration,
    /// The configured endpoints, for messages.
    endpoints: Vec<String>,
}

impl fmt::Debug for EtcdKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdKv")
            .field("endpoints", &self.endpoints)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl EtcdKv {
    /// A store on the etcd cluster of `cfg.endpoints` (`host:port` or `http://host:port`).
    pub async fn connect(cfg: &EtcdConfig) -> Result<Self, KvError> {
        if cfg.endpoints.is_empty() {
            return Err(KvError::Invalid("no etcd endpoints configured".into()));
        }
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(cfg.dial_timeout.get())
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_keep_alive_while_idle(false)
            // A member cut off from the leader fails requests and watches instead of serving
            // stale data forever.
            .with_require_leader(true);
        if !cfg.username.is_empty() {
            opts = opts.with_user(cfg.username.clone(), cfg.password.clone());
        }
        let client = tokio::time::timeout(cfg.dial_timeout.get(), Client::connect(&cfg.endpoints, Some(opts)))
            .await
            .map_err(|_| KvError::Unavailable(format!("connecting to etcd {:?} timed out", cfg.endpoints)))?
            .map_err(map_err)?;
        Ok(Self { client, request_timeout: cfg.request_timeout.get(), endpoints: cfg.endpoints.clone() })
    }

    /// Runs one request under the request deadline.
    async fn timed<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, KvError> {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(r) => r.map_err(map_err),
            Err(_) => Err(KvError::Unavailable(format!(
                "etcd {what} timed out after {:?} (endpoints {:?})",
                self.request_timeout, self.endpoints
            ))),
        }
    }
}

/// Maps client errors to what a caller can do about them.
fn map_err(e: etcd_client::Error) -> KvError {
    use etcd_client::Error as E;
    match e {
        E::InvalidArgs(m) => KvError::Invalid(m),
        E::InvalidUri(u) => KvError::Invalid(format!("invalid etcd endpoint: {u}")),
        E::GRpcStatus(s) => match s.code() {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange | tonic::Code::FailedPrecondition => {
                KvError::Invalid(format!("etcd refused the request: {}", s.message()))
            }
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                KvError::Invalid(format!("etcd refused the credentials: {}", s.message()))
            }
            code => KvError::Unavailable(format!("etcd: {code:?}: {}", s.message())),
        },
        other => KvError::Unavailable(format!("etcd: {other}")),
    }
}

/// A key from etcd: ours are UTF-8; anything else is shown lossily.
fn key_of(kv: &KeyValue) -> String {
    String::from_utf8_lossy(kv.key()).into_owned()
}

fn versioned(kv: &KeyValue) -> Versioned {
    Versioned { value: Bytes::copy_from_slice(kv.value()), version: revision(kv.mod_revision()) }
}

/// etcd revisions are positive `i64`s.
fn revision(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

/// The etcd key range of a prefix, as `GetOptions::with_prefix` computes it; an empty prefix is
/// every key.
fn prefix_options(prefix: &str) -> GetOptions {
    if prefix.is_empty() { GetOptions::new().with_all_keys() } else { GetOptions::new().with_prefix() }
}

#[async_trait]
impl KvStore for EtcdKv {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError> {
        check_key(key)?;
        let mut kv = self.client.kv_client();
        let resp = self.timed("get", kv.get(key, None)).await?;
        Ok(resp.kvs().first().map(versioned))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, KvError> {
        let mut kv = self.client.kv_client();
        let resp = self.timed("list", kv.get(prefix, Some(prefix_options(prefix)))).await?;
        Ok(resp.kvs().iter().map(|kv| (key_of(kv), versioned(kv))).collect())
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64, KvError> {
        check_key(key)?;
        let mut kv = self.client.kv_client();
        let resp = self.timed("put", kv.put(key, value.to_vec(), None)).await?;
        resp.header()
            .map(|h| revision(h.revision()))
            .ok_or_else(|| KvError::Unavailable("etcd put answered without a header".into()))
    }

    async fn put_if_version(&self, key: &str, expected: Option<u64>, value: Bytes) -> Result<CasOutcome, KvError> {
        check_key(key)?;
        let cmp = match expected {
            None => Compare::version(key, CompareOp::Equal, 0),
            Some(v) => {
                let v = i64::try_from(v).map_err(|_| KvError::Invalid(format!("version {v} out of range")))?;
                Compare::mod_revision(key, CompareOp::Equal, v)
            }
        };
        let txn =
            Txn::new().when([cmp]).and_then([TxnOp::put(key, value.to_vec(), None)]).or_else([TxnOp::get(key, None)]);
        let mut kv = self.client.kv_client();
        let resp = self.timed("transaction", kv.txn(txn)).await?;
        if resp.succeeded() {
            let version = resp
                .header()
                .map(|h| revision(h.revision()))
                .ok_or_else(|| KvError::Unavailable("etcd transaction answered without a header".into()))?;
            return Ok(CasOutcome::Written { version });
        }
        let current = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g.kvs().first().map(versioned)),
            _ => None,
        });
        match current {
            Some(current) => Ok(CasOutcome::Conflict { current }),
            None => Err(KvError::Unavailable("etcd transaction answered without the current value".into())),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool, KvError> {
        check_key(key)?;
        let mut kv = self.client.kv_client();
        let resp = self.timed("delete", kv.delete(key, None::<DeleteOptions>)).await?;
        Ok(resp.deleted() > 0)
    }

    async fn watch(&self, target: WatchTarget) -> Result<WatchStream, KvError> {
        let (key, get_opts, watch_opts) = match &target {
            WatchTarget::Key(k) => {
                check_key(k)?;
                (k.clone(), None, WatchOptions::new())
            }
            WatchTarget::Prefix(p) if p.is_empty() => {
                (String::new(), Some(prefix_options(p)), WatchOptions::new().with_all_keys())
            }
            WatchTarget::Prefix(p) => (p.clone(), Some(prefix_options(p)), WatchOptions::new().with_prefix()),
        };
        let mut kv = self.client.kv_client();
        let resp = self.timed("get", kv.get(key.as_str(), get_opts)).await?;
        let start = resp
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| KvError::Unavailable("etcd get answered without a header".into()))?;
        let initial: Vec<Result<WatchEvent, KvError>> =
            resp.kvs().iter().map(|kv| Ok(WatchEvent::Put { key: key_of(kv), value: versioned(kv) })).collect();
        let mut wc = self.client.watch_client();
        let stream =
            self.timed("watch", wc.watch(key.as_str(), Some(watch_opts.with_start_revision(start + 1)))).await?;
        let state = Follow { stream, pending: VecDeque::new(), done: false };
        let changes = futures::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(ev) = st.pending.pop_front() {
                    return Some((Ok(ev), st));
                }
                if st.done {
                    return None;
                }
                match st.stream.message().await {
                    Ok(Some(resp)) if resp.canceled() => {
                        st.done = true;
                        let why = format!(
                            "etcd canceled the watch: {} (compact revision {})",
                            resp.cancel_reason(),
                            resp.compact_revision()
                        );
                        return Some((Err(KvError::Unavailable(why)), st));
                    }
                    Ok(Some(resp)) => {
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            st.pending.push_back(match ev.event_type() {
                                EventType::Put => WatchEvent::Put { key: key_of(kv), value: versioned(kv) },
                                EventType::Delete => {
                                    WatchEvent::Delete { key: key_of(kv), version: revision(kv.mod_revision()) }
                                }
                            });
                        }
                    }
                    Ok(None) => {
                        st.done = true;
                        return Some((Err(KvError::Unavailable("etcd closed the watch stream".into())), st));
                    }
                    Err(e) => {
                        st.done = true;
                        return Some((Err(map_err(e)), st));
                    }
                }
            }
        });
        Ok(futures::stream::iter(initial).chain(changes).boxed())
    }
}

/// The state of a watch stream after its initial values.
struct Follow {
    /// The etcd watch; it also holds the request side, which must stay open.
    stream: etcd_client::WatchStream,
    /// Events of the last response not yet handed out.
    pending: VecDeque<WatchEvent>,
    /// The stream failed or ended; nothing more comes.
    done: bool,
}
