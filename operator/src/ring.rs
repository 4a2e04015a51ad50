//! What the operator does to the ring in etcd when a LogCluster is deleted.
//!
//! Every key Norn's pods write for a cluster lives under the cluster's ring prefix
//! (`--ring.prefix`), so forgetting a cluster is deleting that prefix in its etcd. With a managed
//! etcd there is nothing to do: the etcd and its volumes are deleted with the cluster.
//!
//! **Status:** the data plane's etcd ring (issue 4) has not landed yet, so the only
//! implementation today is [`NoRingCleanup`], which logs what it would forget and succeeds. The
//! etcd implementation (etcd-client, `delete` with `with_prefix`) belongs next to the ring client
//! and is wired in `main` when it exists; the finalizer already calls through this trait.

use async_trait::async_trait;

use crate::crd::LogCluster;
use kube::ResourceExt;

/// Where a cluster's ring lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingLocation {
    /// etcd client URLs of an existing etcd; empty with a managed etcd.
    pub endpoints: Vec<String>,
    /// Key prefix of the cluster's ring.
    pub prefix: String,
    /// True when the etcd is run by the operator (and deleted with the cluster).
    pub managed: bool,
}

impl RingLocation {
    /// The ring of `lc`, from its spec alone (it must work for specs that fail validation too).
    pub fn of(lc: &LogCluster) -> Self {
        let prefix = lc
            .spec
            .ring
            .prefix
            .clone()
            .unwrap_or_else(|| format!("norn/{}/{}/", lc.namespace().unwrap_or_default(), lc.name_any()));
        Self { endpoints: lc.spec.ring.etcd.endpoints.clone(), prefix, managed: lc.spec.ring.etcd.managed.is_some() }
    }
}

/// Why ring keys could not be forgotten; the finalizer stays and the deletion is retried.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// etcd could not be reached or refused the request.
    #[error("etcd at {endpoints}: {message}")]
    Unavailable {
        /// The endpoints tried.
        endpoints: String,
        /// What failed.
        message: String,
    },
}

/// Removes a deleted cluster's ring from its etcd.
#[async_trait]
pub trait RingCleanup: Send + Sync {
    /// Deletes every key of the ring at `ring`. Must be idempotent: it runs again when the
    /// finalizer is retried.
    async fn forget_cluster(&self, ring: &RingLocation) -> Result<(), RingError>;
}

/// The cleanup used until the data plane's etcd ring exists: logs and succeeds, so deleting a
/// LogCluster never hangs on it.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRingCleanup;

#[async_trait]
impl RingCleanup for NoRingCleanup {
    async fn forget_cluster(&self, ring: &RingLocation) -> Result<(), RingError> {
        if !ring.managed {
            tracing::info!(
                prefix = %ring.prefix,
                endpoints = %ring.endpoints.join(","),
                "ring cleanup is not implemented yet; keys under the prefix are left in etcd"
            );
        }
        Ok(())
    }
}
