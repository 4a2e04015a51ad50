//! The hash ring: which ingester holds which streams, and how instances join and leave.
//!
//! - [`kv`]: the key-value stores the ring lives in ([`kv::MemoryKv`] for one process,
//!   [`kv::EtcdKv`] for a cluster), with compare-and-swap and watches.
//! - [`model`]: what is stored — instances with address, zone, tokens, state and heartbeat — and
//!   how health is derived from the heartbeat.
//! - [`tokens`]: random tokens, deterministic spread-minimizing tokens for StatefulSet ordinals,
//!   and the tokens file that keeps them across restarts.
//! - [`replication`]: the replicas of a key and the instances a read asks, over a precomputed
//!   token table.
//! - [`lifecycler`]: one instance's life in the ring: register, join, heartbeat, leave.
//! - [`client`]: a process's view of a ring, kept current by a watch and kept as it was while the
//!   store is unreachable.
//! - [`http`]: the `/ring` page (HTML and JSON) with its forget action.
//! - [`testing`]: a real etcd for tests, and the conformance suite of the KV stores.
//!
//! `docs/ring.md` describes the design for operators.

pub mod client;
pub mod config;
pub mod http;
pub mod kv;
pub mod lifecycler;
pub mod model;
pub mod replication;
pub mod testing;
pub mod tokens;

pub use client::RingClient;
pub use config::{EtcdConfig, InstanceConfig, RingConfig, StoreKind};
pub use kv::{KvError, KvStore};
pub use lifecycler::{Lifecycler, LifecyclerConfig};
pub use model::{InstanceDesc, InstanceState, RingDesc};
pub use replication::{Operation, ReplicaSet, ReplicationConfig, RingSnapshot};

use crate::error::{ErrorKind, HasKind};

/// Why a ring operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// The KV store failed; see [`KvError::is_retryable`].
    #[error(transparent)]
    Kv(#[from] KvError),
    /// No instance in the ring can take the operation.
    #[error("empty ring")]
    EmptyRing,
    /// Fewer healthy replicas than a quorum.
    #[error("at least {needed} live replicas required, could only find {found}")]
    TooFewReplicas {
        /// The quorum.
        needed: usize,
        /// Healthy replicas found.
        found: usize,
    },
    /// More instances are unhealthy than a read can do without.
    #[error("too many unhealthy instances in the ring")]
    TooManyUnhealthy,
    /// The instance is not in the ring.
    #[error("instance {0} is not in the ring")]
    NotFound(String),
    /// The request does not apply (forgetting a healthy instance, a state change that is not a
    /// transition).
    #[error("{0}")]
    Invalid(String),
    /// The tokens file could not be read or written.
    #[error(transparent)]
    TokensFile(#[from] tokens::TokensFileError),
    /// The lifecycler was stopped before the operation completed.
    #[error("ring lifecycler stopped")]
    Stopped,
}

impl HasKind for RingError {
    fn kind(&self) -> ErrorKind {
        match self {
            RingError::Kv(e) => e.kind(),
            RingError::EmptyRing | RingError::TooFewReplicas { .. } | RingError::TooManyUnhealthy => {
                ErrorKind::Unavailable
            }
            RingError::NotFound(_) => ErrorKind::NotFound,
            RingError::Invalid(_) => ErrorKind::Invalid,
            RingError::TokensFile(_) => ErrorKind::Internal,
            RingError::Stopped => ErrorKind::Unavailable,
        }
    }
}

/// The ring codec: [`RingDesc`] as protobuf.
pub fn ring_codec() -> std::sync::Arc<dyn kv::Codec<RingDesc>> {
    std::sync::Arc::new(kv::ProtoCodec::<RingDesc>::new())
}

/// A typed view of `store` for ring values, with `cas_retries` retries of a lost CAS.
pub fn ring_kv(store: std::sync::Arc<dyn KvStore>, cas_retries: usize) -> kv::TypedKv<RingDesc> {
    kv::TypedKv::new(store, ring_codec()).with_cas_retries(cas_retries)
}
