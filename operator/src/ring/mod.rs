//! What the operator does to the ring in etcd when a LogCluster is deleted.
//!
//! Every key Norn's pods write for a cluster lives under the cluster's ring prefix
//! (`--ring.prefix`, always ending in `/`), so forgetting a cluster is deleting that prefix in its
//! etcd: [`EtcdRingCleanup`]. With a managed etcd there is nothing to do: the etcd and its volumes
//! are deleted with the cluster.
//!
//! Only plain-HTTP etcd endpoints are supported for now: the spec has no fields for a CA or
//! client certificates yet.

use std::time::Duration;

use async_trait::async_trait;
use norn::etcd::proto::DeleteRangeRequest;
use norn::etcd::{Client, ClientOptions, prefix_range};
use norn::tls::ClientTlsConfig;

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
    #[error("etcd at {endpoints}: {source}")]
    Unavailable {
        /// The endpoints tried.
        endpoints: String,
        /// What failed.
        #[source]
        source: norn::etcd::EtcdError,
    },
}

/// Removes a deleted cluster's ring from its etcd.
#[async_trait]
pub trait RingCleanup: Send + Sync {
    /// Deletes every key of the ring at `ring`. Must be idempotent: it runs again when the
    /// finalizer is retried.
    async fn forget_cluster(&self, ring: &RingLocation) -> Result<(), RingError>;
}

/// Deletes the cluster's prefix in an external etcd.
#[derive(Clone, Debug)]
pub struct EtcdRingCleanup {
    /// How long to wait for a connection to etcd.
    pub connect_timeout: Duration,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// Client certificate and authorities for rings at `https://` endpoints (the operator's
    /// `--etcd-tls-*` flags); `tls_enabled` is ignored, the endpoints' scheme decides.
    pub tls: ClientTlsConfig,
}

impl Default for EtcdRingCleanup {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            tls: ClientTlsConfig::default(),
        }
    }
}

/// `tls` for a ring at `endpoints`: on exactly when they are `https://` URLs.
pub fn tls_for(endpoints: &[String], tls: &ClientTlsConfig) -> ClientTlsConfig {
    ClientTlsConfig { tls_enabled: endpoints.iter().any(|e| e.starts_with("https://")), ..tls.clone() }
}

#[async_trait]
impl RingCleanup for EtcdRingCleanup {
    async fn forget_cluster(&self, ring: &RingLocation) -> Result<(), RingError> {
        if ring.managed || ring.endpoints.is_empty() {
            return Ok(());
        }
        // A prefix without the trailing '/' would also match other clusters' keys ("a" matches
        // "ab/..."); validation refuses such prefixes, so this only guards objects from before.
        if !ring.prefix.ends_with('/') {
            tracing::warn!(prefix = %ring.prefix, "ring prefix does not end with '/'; leaving its keys in etcd");
            return Ok(());
        }
        let endpoints = ring.endpoints.join(",");
        let unavailable = |source| RingError::Unavailable { endpoints: endpoints.clone(), source };
        let options = ClientOptions {
            endpoints: ring.endpoints.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            credentials: None,
            tls: tls_for(&ring.endpoints, &self.tls),
        };
        let client = Client::connect(&options).await.map_err(unavailable)?;
        let (key, range_end) = prefix_range(ring.prefix.as_bytes());
        let deleted = client.delete_range(DeleteRangeRequest { key, range_end }).await.map_err(unavailable)?.deleted;
        tracing::info!(prefix = %ring.prefix, endpoints = %endpoints, deleted, "forgot the ring of a deleted cluster");
        Ok(())
    }
}

/// A cleanup that does nothing: for running the operator without access to the clusters' etcd
/// (`--no-ring-cleanup`), and for tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRingCleanup;

#[async_trait]
impl RingCleanup for NoRingCleanup {
    async fn forget_cluster(&self, ring: &RingLocation) -> Result<(), RingError> {
        if !ring.managed {
            tracing::info!(prefix = %ring.prefix, "ring cleanup is disabled; keys under the prefix are left in etcd");
        }
        Ok(())
    }
}

pub mod members;

pub use members::{ClusterRing, EtcdRings, RingConnector, Slot};
