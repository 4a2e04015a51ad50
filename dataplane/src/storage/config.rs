//! The `storage:` section of Norn's configuration, and building a store from it.
//!
//! ```yaml
//! storage:
//!   backend: s3            # filesystem (default) | s3 | memory
//!   filesystem:
//!     dir: /var/lib/norn/chunks   # default: <data_dir>/chunks
//!   s3:
//!     endpoint: http://minio:9000 # default: AWS
//!     bucket: logs
//!     region: us-east-1
//!     force_path_style: true      # default: true when an endpoint is set
//!     prefix: norn
//!   index:
//!     period: 24h
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::units::{ByteSize, Dur};

use serde::{Deserialize, Serialize};

use super::{FilesystemStore, MemoryStore, ObjectStore, S3Store, StorageError, validate_prefix};

/// Which object store holds chunks and the index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A directory on local disk: the single-process default.
    #[default]
    Filesystem,
    /// An S3 bucket or an S3-compatible service: what several processes share.
    S3,
    /// Process memory: nothing survives a restart (tests, demos).
    Memory,
}

/// `storage:`: where chunks and the index live.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `storage.backend`: which store to use.
    pub backend: Backend,
    /// `storage.filesystem`: settings of the filesystem backend.
    pub filesystem: FilesystemConfig,
    /// `storage.s3`: settings of the S3 backend.
    pub s3: S3Config,
    /// `storage.index`: settings of the chunk index.
    pub index: IndexConfig,
}

/// `storage.filesystem`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemConfig {
    /// `storage.filesystem.dir`: the directory objects go in; `<data_dir>/chunks` when unset so
    /// that a bare `norn` keeps everything under one data directory.
    pub dir: Option<PathBuf>,
}

/// `storage.s3`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// `storage.s3.endpoint`: URL of an S3-compatible service (`http://minio:9000`); unset means
    /// AWS (or `AWS_ENDPOINT_URL` from the environment).
    pub endpoint: Option<String>,
    /// `storage.s3.bucket`: the bucket, which must exist. Required with the s3 backend.
    pub bucket: String,
    /// `storage.s3.region`: signing region; most S3-compatible services accept the default.
    pub region: String,
    /// `storage.s3.force_path_style`: address buckets as `endpoint/bucket/key` instead of
    /// `bucket.endpoint/key`. Unset means true when an endpoint is set (MinIO, Ceph and moto
    /// need it) and false for AWS.
    pub force_path_style: Option<bool>,
    /// `storage.s3.prefix`: a key prefix inside the bucket, so several clusters can share one.
    pub prefix: Option<String>,
    /// `storage.s3.connect_timeout`: how long to wait for a TCP/TLS connection.
    pub connect_timeout: Dur,
    /// `storage.s3.operation_timeout`: the limit for one call including the SDK's retries.
    pub operation_timeout: Dur,
    /// `storage.s3.max_attempts`: attempts per call (the SDK's standard retry with exponential
    /// backoff), 1 disables retries.
    pub max_attempts: u32,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: None,
            bucket: String::new(),
            region: "us-east-1".to_string(),
            force_path_style: None,
            prefix: None,
            connect_timeout: Dur::secs(5),
            operation_timeout: Dur::secs(60),
            max_attempts: 3,
        }
    }
}

/// `storage.index`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// `storage.index.period`: the time span one index directory covers. Part of the storage
    /// layout: it must not change once data has been written.
    pub period: Dur,
    /// `storage.index.cache_bytes`: memory for parsed index objects kept by queriers.
    pub cache_bytes: ByteSize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self { period: Dur::hours(24), cache_bytes: ByteSize::mib(64) }
    }
}

/// A configuration value that cannot work; the message names the YAML key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StorageConfigError(pub String);

impl From<StorageConfigError> for String {
    fn from(e: StorageConfigError) -> Self {
        e.0
    }
}

impl StorageConfig {
    /// `storage.index.period`, what [`Index::new`](super::Index::new) takes.
    pub fn index_period(&self) -> Duration {
        self.index.period.get()
    }

    /// Checks the settings of the selected backend and of the index.
    pub fn validate(&self) -> Result<(), StorageConfigError> {
        if self.backend == Backend::S3 {
            if self.s3.bucket.is_empty() {
                return Err(StorageConfigError("storage.s3.bucket must be set when storage.backend is s3".into()));
            }
            self.s3.validate()?;
        }
        if let Some(dir) = &self.filesystem.dir
            && dir.as_os_str().is_empty()
        {
            return Err(StorageConfigError(
                "storage.filesystem.dir must not be empty (leave it unset for <data_dir>/chunks)".into(),
            ));
        }
        self.index.validate()
    }
}

impl S3Config {
    /// Whether requests use path-style addressing.
    pub fn path_style(&self) -> bool {
        self.force_path_style.unwrap_or(self.endpoint.is_some())
    }

    /// Checks the S3 settings on their own.
    pub fn validate(&self) -> Result<(), StorageConfigError> {
        let err = |m: String| Err(StorageConfigError(m));
        let b = &self.bucket;
        if b.is_empty() {
            return err("storage.s3.bucket must be set when storage.backend is s3".into());
        }
        // Loose on purpose: legacy AWS buckets and S3-compatible services allow more than the
        // current AWS naming rules; the server has the final word.
        if b.len() > 255 || b.contains('/') || b.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return err(format!("storage.s3.bucket {b:?} is not a valid bucket name (no '/', no spaces)"));
        }
        if self.region.is_empty() {
            return err("storage.s3.region must not be empty".into());
        }
        if let Some(e) = &self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return err(format!("storage.s3.endpoint {e:?} must be an http:// or https:// URL"));
        }
        if let Some(p) = &self.prefix {
            let p = p.trim_matches('/');
            if !p.is_empty() && validate_prefix(p).is_err() {
                return err(format!(
                    "storage.s3.prefix {p:?} must be a relative path without '.', '..' or empty segments"
                ));
            }
        }
        if self.connect_timeout.get().is_zero() {
            return err("storage.s3.connect_timeout must be greater than 0".into());
        }
        if self.operation_timeout.get().is_zero() {
            return err("storage.s3.operation_timeout must be greater than 0".into());
        }
        if self.max_attempts == 0 {
            return err("storage.s3.max_attempts must be at least 1".into());
        }
        Ok(())
    }
}

impl IndexConfig {
    /// Checks the index settings on their own.
    pub fn validate(&self) -> Result<(), StorageConfigError> {
        if self.period.get() < Duration::from_secs(60) || self.period.get().subsec_nanos() != 0 {
            return Err(StorageConfigError(format!(
                "storage.index.period must be a whole number of seconds of at least 1m, got {}",
                self.period
            )));
        }
        Ok(())
    }
}

/// Builds the object store `cfg` selects. `data_dir` is Norn's data directory, under which the
/// filesystem backend keeps `chunks/` unless `storage.filesystem.dir` says otherwise.
pub async fn from_config(cfg: &StorageConfig, data_dir: &Path) -> Result<Arc<dyn ObjectStore>, StorageError> {
    cfg.validate().map_err(|e| StorageError::Config(e.to_string()))?;
    Ok(match cfg.backend {
        Backend::Filesystem => {
            let dir = cfg.filesystem.dir.clone().unwrap_or_else(|| data_dir.join("chunks"));
            Arc::new(FilesystemStore::new(dir)?)
        }
        Backend::S3 => Arc::new(S3Store::new(&cfg.s3).await?),
        Backend::Memory => Arc::new(MemoryStore::new()),
    })
}
