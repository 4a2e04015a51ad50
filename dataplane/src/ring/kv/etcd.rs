//! [`EtcdKv`]: the key-value store shared by the processes of a cluster, on etcd v3 through
//! Norn's own client ([`crate::etcd`]).

use std::collections::VecDeque;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{CasOutcome, KvError, KvStore, Versioned, WatchEvent, WatchStream, WatchTarget, check_key};
use crate::etcd::proto::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, EventType, KeyValue, PutRequest, RangeRequest, Request,
    RequestOp, Response, TargetUnion, TxnRequest, WatchCreateRequest,
};
use crate::etcd::{self, Client, ClientOptions, EtcdError};
use crate::ring::config::EtcdConfig;

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
/// are configured: authenticating needs etcd). Failover between endpoints is the client's (see
/// [`crate::etcd`]).
#[derive(Clone, Debug)]
pub struct EtcdKv {
    /// The etcd client (cheap to clone: clones share the connection).
    client: Client,
}

impl EtcdKv {
    /// A store on the etcd cluster of `cfg.endpoints` (`host:port`, `http://host:port`, or `https://host:port` with TLS).
    pub async fn connect(cfg: &EtcdConfig) -> Result<Self, KvError> {
        let credentials = (!cfg.username.is_empty()).then(|| (cfg.username.clone(), cfg.password.clone()));
        let options = ClientOptions {
            endpoints: cfg.endpoints.clone(),
            connect_timeout: cfg.dial_timeout.get(),
            request_timeout: cfg.request_timeout.get(),
            credentials,
            tls: cfg.tls(),
        };
        let client = Client::connect(&options).await.map_err(map_err)?;
        Ok(Self { client })
    }
}

/// Maps client errors to what a caller can do about them.
fn map_err(e: EtcdError) -> KvError {
    match e {
        EtcdError::Invalid(m) => KvError::Invalid(m),
        EtcdError::Unavailable(m) => KvError::Unavailable(m),
    }
}

/// A key from etcd: ours are UTF-8; anything else is shown lossily.
fn key_of(kv: &KeyValue) -> String {
    String::from_utf8_lossy(&kv.key).into_owned()
}

fn versioned(kv: &KeyValue) -> Versioned {
    Versioned { value: kv.value.clone(), version: revision(kv.mod_revision) }
}

/// etcd revisions are positive `i64`s.
fn revision(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

/// The revision in a response's header, which etcd always sends.
fn header_revision(header: Option<&etcd::proto::ResponseHeader>, what: &str) -> Result<i64, KvError> {
    header.map(|h| h.revision).ok_or_else(|| KvError::Unavailable(format!("etcd {what} answered without a header")))
}

/// `(key, range_end)` of a watch target: one key, or every key with the prefix.
fn key_range(target: &WatchTarget) -> (Vec<u8>, Vec<u8>) {
    match target {
        WatchTarget::Key(k) => (k.as_bytes().to_vec(), Vec::new()),
        WatchTarget::Prefix(p) => etcd::prefix_range(p.as_bytes()),
    }
}

/// The transaction of [`KvStore::put_if_version`]: put `value` if the key is at `expected`
/// (`None`: absent), otherwise read the key.
fn cas_txn(key: &str, expected: Option<u64>, value: Bytes) -> Result<TxnRequest, KvError> {
    let (target, target_union) = match expected {
        None => (CompareTarget::Version, TargetUnion::Version(0)),
        Some(v) => {
            let v = i64::try_from(v).map_err(|_| KvError::Invalid(format!("version {v} out of range")))?;
            (CompareTarget::Mod, TargetUnion::ModRevision(v))
        }
    };
    let key = key.as_bytes().to_vec();
    Ok(TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: target as i32,
            key: key.clone(),
            target_union: Some(target_union),
        }],
        success: vec![RequestOp { request: Some(Request::RequestPut(PutRequest { key: key.clone(), value })) }],
        failure: vec![RequestOp {
            request: Some(Request::RequestRange(RangeRequest { key, ..RangeRequest::default() })),
        }],
    })
}

#[async_trait]
impl KvStore for EtcdKv {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError> {
        check_key(key)?;
        let req = RangeRequest { key: key.as_bytes().to_vec(), ..RangeRequest::default() };
        let resp = self.client.range(req).await.map_err(map_err)?;
        Ok(resp.kvs.first().map(versioned))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, KvError> {
        let (key, range_end) = etcd::prefix_range(prefix.as_bytes());
        let resp =
            self.client.range(RangeRequest { key, range_end, ..RangeRequest::default() }).await.map_err(map_err)?;
        Ok(resp.kvs.iter().map(|kv| (key_of(kv), versioned(kv))).collect())
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64, KvError> {
        check_key(key)?;
        let resp = self.client.put(PutRequest { key: key.as_bytes().to_vec(), value }).await.map_err(map_err)?;
        Ok(revision(header_revision(resp.header.as_ref(), "put")?))
    }

    async fn put_if_version(&self, key: &str, expected: Option<u64>, value: Bytes) -> Result<CasOutcome, KvError> {
        check_key(key)?;
        let resp = self.client.txn(cas_txn(key, expected, value)?).await.map_err(map_err)?;
        if resp.succeeded {
            let version = revision(header_revision(resp.header.as_ref(), "transaction")?);
            return Ok(CasOutcome::Written { version });
        }
        let current = resp.responses.iter().find_map(|r| match &r.response {
            Some(Response::ResponseRange(g)) => Some(g.kvs.first().map(versioned)),
            _ => None,
        });
        match current {
            Some(current) => Ok(CasOutcome::Conflict { current }),
            None => Err(KvError::Unavailable("etcd transaction answered without the current value".into())),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool, KvError> {
        check_key(key)?;
        let req = DeleteRangeRequest { key: key.as_bytes().to_vec(), range_end: Vec::new() };
        let resp = self.client.delete_range(req).await.map_err(map_err)?;
        Ok(resp.deleted > 0)
    }

    async fn watch(&self, target: WatchTarget) -> Result<WatchStream, KvError> {
        if let WatchTarget::Key(k) = &target {
            check_key(k)?;
        }
        let (key, range_end) = key_range(&target);
        let range = RangeRequest { key: key.clone(), range_end: range_end.clone(), ..RangeRequest::default() };
        let resp = self.client.range(range).await.map_err(map_err)?;
        let start = header_revision(resp.header.as_ref(), "get")?;
        let initial: Vec<Result<WatchEvent, KvError>> =
            resp.kvs.iter().map(|kv| Ok(WatchEvent::Put { key: key_of(kv), value: versioned(kv) })).collect();
        let create = WatchCreateRequest { key, range_end, start_revision: start + 1 };
        let stream = self.client.watch(create).await.map_err(map_err)?;
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
                    Ok(Some(resp)) if resp.canceled => {
                        st.done = true;
                        let why = format!(
                            "etcd canceled the watch: {} (compact revision {})",
                            resp.cancel_reason, resp.compact_revision
                        );
                        return Some((Err(KvError::Unavailable(why)), st));
                    }
                    Ok(Some(resp)) => {
                        for ev in resp.events {
                            let Some(kv) = ev.kv else { continue };
                            st.pending.push_back(match EventType::try_from(ev.r#type) {
                                Ok(EventType::Put) => WatchEvent::Put { key: key_of(&kv), value: versioned(&kv) },
                                Ok(EventType::Delete) => {
                                    WatchEvent::Delete { key: key_of(&kv), version: revision(kv.mod_revision) }
                                }
                                Err(_) => continue,
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
    /// The etcd watch; dropping it cancels the watch.
    stream: etcd::Watch,
    /// Events of the last response not yet handed out.
    pending: VecDeque<WatchEvent>,
    /// The stream failed or ended; nothing more comes.
    done: bool,
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// The CAS transaction on the wire, byte by byte as protobuf encodes etcd's `TxnRequest`.
    #[test]
    fn a_cas_transaction_encodes_as_etcd_expects() {
        let txn = cas_txn("k", Some(5), Bytes::from_static(b"v")).unwrap();
        #[rustfmt::skip]
        let want = [
            0x0a, 7, // compare (1): Compare, 7 bytes
                0x10, 2, // target (2) = MOD; result (1) = EQUAL is the default, not sent
                0x1a, 1, b'k', // key (3)
                0x30, 5, // mod_revision (6) = 5
            0x12, 8, // success (2): RequestOp, 8 bytes
                0x12, 6, // request_put (2): PutRequest, 6 bytes
                    0x0a, 1, b'k', // key (1)
                    0x12, 1, b'v', // value (2)
            0x1a, 5, // failure (3): RequestOp, 5 bytes
                0x0a, 3, // request_range (1): RangeRequest, 3 bytes
                    0x0a, 1, b'k', // key (1)
        ];
        assert_eq!(txn.encode_to_vec(), want);
    }

    /// "Absent" is `version == 0`; the 0 is on the wire, as a oneof member always is.
    #[test]
    fn a_create_only_compare_sends_version_zero() {
        let txn = cas_txn("k", None, Bytes::new()).unwrap();
        assert_eq!(txn.compare[0].encode_to_vec(), [0x1a, 1, b'k', 0x20, 0]);
    }

    #[test]
    fn watch_targets_map_to_etcd_key_ranges() {
        assert_eq!(key_range(&WatchTarget::Key("a/b".into())), (b"a/b".to_vec(), vec![]));
        assert_eq!(key_range(&WatchTarget::Prefix("a/".into())), (b"a/".to_vec(), b"a0".to_vec()));
        assert_eq!(key_range(&WatchTarget::Prefix(String::new())), (vec![0], vec![0]));
    }
}
