//! The key-value stores the ring lives in.
//!
//! [`KvStore`] is a small byte-oriented interface with two implementations that pass one
//! conformance suite ([`crate::ring::testing::kv_conformance_suite`]): [`MemoryKv`] (one
//! process) and [`EtcdKv`] (many processes, etcd v3). On top of it, [`TypedKv`] encodes and
//! decodes values with a [`Codec`] and runs compare-and-swap loops with retries.
//!
//! # Versions
//!
//! Every stored value carries a version. Versions come from one store-wide counter that grows
//! with every write and delete (etcd's `mod_revision`), so a key that is deleted and created again
//! never gets a version it had before: a CAS on a stale version always fails (no ABA).
//!
//! # Watches
//!
//! A watch starts with the current value(s) of what it watches, then reports every later change
//! in order. The current state and the changes are taken atomically, so nothing that happens
//! between them is lost and a consumer needs no separate `get`. A watch stream ends with an error
//! when the store becomes unreachable; the consumer starts a new watch (see
//! [`crate::ring::client::RingClient`]).

mod etcd;
mod memory;
#[cfg(test)]
mod tests;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::{ErrorKind, HasKind};

pub use etcd::EtcdKv;
pub use memory::MemoryKv;

/// How many times a compare-and-swap is retried after losing a race, unless configured.
pub const DEFAULT_CAS_RETRIES: usize = 10;

/// A stored value and the version it was written at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The value's bytes.
    pub value: Bytes,
    /// The store-wide revision of the write that stored this value (never 0).
    pub version: u64,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// `key` now holds `value` (a new key, an overwrite, or the current value at watch start).
    Put {
        /// The key that changed.
        key: String,
        /// Its new value and version.
        value: Versioned,
    },
    /// `key` was deleted.
    Delete {
        /// The deleted key.
        key: String,
        /// The revision of the delete.
        version: u64,
    },
}

impl WatchEvent {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put { key, .. } | WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn version(&self) -> u64 {
        match self {
            WatchEvent::Put { value, .. } => value.version,
            WatchEvent::Delete { version, .. } => *version,
        }
    }
}

/// What a watch follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchTarget {
    /// Exactly one key.
    Key(String),
    /// Every key starting with the prefix.
    Prefix(String),
}

impl WatchTarget {
    /// Whether `key` is watched.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            WatchTarget::Key(k) => k == key,
            WatchTarget::Prefix(p) => key.starts_with(p.as_str()),
        }
    }
}

/// The changes a watch reports; it ends (after an error item) when the store is lost.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, KvError>>;

/// The outcome of a conditional write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// The value was written at this version.
    Written {
        /// The version of the new value.
        version: u64,
    },
    /// The key's version was not the expected one; nothing was written.
    Conflict {
        /// What the key holds now (`None`: absent), to retry against without another read.
        current: Option<Versioned>,
    },
}

/// What went wrong talking to a key-value store.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The store cannot be reached or did not answer in time. Retry later.
    #[error("kv store unavailable: {0}")]
    Unavailable(String),
    /// A compare-and-swap lost the race more times than allowed.
    #[error("kv store: compare-and-swap on {key} lost {attempts} races in a row")]
    Conflict {
        /// The contended key.
        key: String,
        /// How many attempts were made.
        attempts: usize,
    },
    /// A stored value does not decode.
    #[error("kv store: value of {key} is corrupt: {reason}")]
    Corrupt {
        /// The key whose value failed to decode.
        key: String,
        /// What the decoder found wrong.
        reason: String,
    },
    /// The request or the store's configuration is wrong; retrying will not help.
    #[error("kv store: {0}")]
    Invalid(String),
}

impl KvError {
    /// Whether the same operation may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, KvError::Unavailable(_) | KvError::Conflict { .. })
    }
}

impl HasKind for KvError {
    fn kind(&self) -> ErrorKind {
        match self {
            KvError::Unavailable(_) | KvError::Conflict { .. } => ErrorKind::Unavailable,
            KvError::Corrupt { .. } => ErrorKind::Internal,
            KvError::Invalid(_) => ErrorKind::Invalid,
        }
    }
}

/// A key-value store with versioned values, compare-and-swap and watches.
///
/// Keys are non-empty UTF-8 strings; values are bytes. Implementations must pass
/// [`crate::ring::testing::kv_conformance_suite`].
#[async_trait]
pub trait KvStore: Send + Sync + fmt::Debug {
    /// The value of `key` and its version, or `None` when the key does not exist.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError>;

    /// Every key starting with `prefix`, in key order, with its value.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, KvError>;

    /// Writes `value` unconditionally and returns its version.
    async fn put(&self, key: &str, value: Bytes) -> Result<u64, KvError>;

    /// Writes `value` only if the key's version is `expected` (`None`: only if the key does not
    /// exist).
    async fn put_if_version(&self, key: &str, expected: Option<u64>, value: Bytes) -> Result<CasOutcome, KvError>;

    /// Deletes `key`; whether it existed.
    async fn delete(&self, key: &str) -> Result<bool, KvError>;

    /// The current value(s) of `target`, then every change to it (see the module docs).
    async fn watch(&self, target: WatchTarget) -> Result<WatchStream, KvError>;
}

/// Checks a key the way every store does: non-empty, no NUL.
pub(crate) fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::Invalid("empty key".into()));
    }
    if key.contains('\0') {
        return Err(KvError::Invalid(format!("key {key:?} contains NUL")));
    }
    Ok(())
}

/// Turns values into bytes and back, for [`TypedKv`].
pub trait Codec<T>: Send + Sync + fmt::Debug + 'static {
    /// Encodes a value.
    fn encode(&self, value: &T) -> Bytes;
    /// Decodes a value; the error says what is wrong with the bytes.
    fn decode(&self, bytes: &[u8]) -> Result<T, String>;
}

/// A [`Codec`] for protobuf messages (prost).
pub struct ProtoCodec<M>(PhantomData<fn() -> M>);

impl<M> ProtoCodec<M> {
    /// The codec.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<M> Default for ProtoCodec<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> fmt::Debug for ProtoCodec<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProtoCodec")
    }
}

impl<M: prost::Message + Default + 'static> Codec<M> for ProtoCodec<M> {
    fn encode(&self, value: &M) -> Bytes {
        Bytes::from(value.encode_to_vec())
    }

    fn decode(&self, bytes: &[u8]) -> Result<M, String> {
        M::decode(bytes).map_err(|e| e.to_string())
    }
}

/// A typed view of a [`KvStore`]: values go through a [`Codec`], and [`TypedKv::cas`] runs the
/// read-modify-write loop.
pub struct TypedKv<T> {
    /// The store.
    kv: Arc<dyn KvStore>,
    /// How values are encoded.
    codec: Arc<dyn Codec<T>>,
    /// Attempts of a CAS loop after the first one lost a race.
    cas_retries: usize,
}

impl<T> Clone for TypedKv<T> {
    fn clone(&self) -> Self {
        Self { kv: Arc::clone(&self.kv), codec: Arc::clone(&self.codec), cas_retries: self.cas_retries }
    }
}

impl<T> fmt::Debug for TypedKv<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedKv").field("kv", &self.kv).field("cas_retries", &self.cas_retries).finish()
    }
}

impl<T: Send + 'static> TypedKv<T> {
    /// A typed view of `kv` with [`DEFAULT_CAS_RETRIES`].
    pub fn new(kv: Arc<dyn KvStore>, codec: Arc<dyn Codec<T>>) -> Self {
        Self { kv, codec, cas_retries: DEFAULT_CAS_RETRIES }
    }

    /// Sets how many times a lost CAS race is retried.
    pub fn with_cas_retries(mut self, retries: usize) -> Self {
        self.cas_retries = retries;
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.kv
    }

    /// Decodes a stored value, naming the key on failure.
    pub fn decode(&self, key: &str, bytes: &[u8]) -> Result<T, KvError> {
        self.codec.decode(bytes).map_err(|reason| KvError::Corrupt { key: key.to_string(), reason })
    }

    /// The decoded value of `key` and its version.
    pub async fn get(&self, key: &str) -> Result<Option<(T, u64)>, KvError> {
        match self.kv.get(key).await? {
            Some(v) => Ok(Some((self.decode(key, &v.value)?, v.version))),
            None => Ok(None),
        }
    }

    /// Writes `value` unconditionally.
    pub async fn put(&self, key: &str, value: &T) -> Result<u64, KvError> {
        self.kv.put(key, self.codec.encode(value)).await
    }

    /// Read-modify-write of `key`: `update` gets the current value (`None`: absent) and returns
    /// `Ok(Some(new))` to store `new`, or `Ok(None)` to leave the key as it is. When another
    /// writer got in between, `update` runs again on the fresher value, up to the configured
    /// number of retries, with a short random pause that grows with each lost race so that
    /// contenders spread out. Returns what the key holds afterwards.
    ///
    /// A value that does not decode is passed as `None`, so an update can repair it.
    pub async fn cas<E, F>(&self, key: &str, mut update: F) -> Result<Option<T>, E>
    where
        F: FnMut(Option<T>) -> Result<Option<T>, E> + Send,
        E: From<KvError>,
    {
        let mut current = self.kv.get(key).await.map_err(E::from)?;
        for attempt in 0..=self.cas_retries {
            let expected = current.as_ref().map(|v| v.version);
            let decoded = match &current {
                Some(v) => match self.codec.decode(&v.value) {
                    Ok(t) => Some(t),
                    Err(reason) => {
                        tracing::warn!(key, %reason, "kv value does not decode; replacing it");
                        None
                    }
                },
                None => None,
            };
            let Some(new) = update(decoded)? else {
                return match current {
                    Some(v) => Ok(self.codec.decode(&v.value).ok()),
                    None => Ok(None),
                };
            };
            let bytes = self.codec.encode(&new);
            match self.kv.put_if_version(key, expected, bytes).await.map_err(E::from)? {
                CasOutcome::Written { .. } => return Ok(Some(new)),
                CasOutcome::Conflict { current: now } => {
                    current = now;
                    if attempt < self.cas_retries {
                        tokio::time::sleep(cas_backoff(attempt)).await;
                    }
                }
            }
        }
        Err(E::from(KvError::Conflict { key: key.to_string(), attempts: self.cas_retries + 1 }))
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) -> Result<bool, KvError> {
        self.kv.delete(key).await
    }

    /// Watches one key: its current value first, then each new value (`None` once deleted). A
    /// value that does not decode is reported as [`KvError::Corrupt`] without ending the stream.
    pub async fn watch_key(&self, key: &str) -> Result<BoxStream<'static, Result<Option<(T, u64)>, KvError>>, KvError> {
        let events = self.kv.watch(WatchTarget::Key(key.to_string())).await?;
        let codec = Arc::clone(&self.codec);
        Ok(events
            .map(move |ev| match ev? {
                WatchEvent::Put { key, value } => match codec.decode(&value.value) {
                    Ok(t) => Ok(Some((t, value.version))),
                    Err(reason) => Err(KvError::Corrupt { key, reason }),
                },
                WatchEvent::Delete { .. } => Ok(None),
            })
            .boxed())
    }
}

/// The pause after losing CAS race number `attempt` (0-based): random, up to 1ms, 2ms, 4ms, ...
/// capped at 128ms, so that writers that collided do not collide again in lockstep.
fn cas_backoff(attempt: usize) -> Duration {
    let cap_ms = 1u64 << attempt.min(7);
    Duration::from_micros(rand::random_range(0..cap_ms * 1000))
}
