//! The one error type every object store and the index return.

use std::io;

/// What went wrong talking to the object store, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object does not exist. Not retryable; for a chunk named by the index it means data
    /// loss or a concurrent deletion.
    #[error("object not found: {key}")]
    NotFound {
        /// The key that was asked for.
        key: String,
    },
    /// The backend could not be reached or is overloaded (connection refused, timeouts, HTTP 5xx,
    /// throttling). Retry with backoff.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// The request itself is wrong (bad key, out-of-bounds range, a key that collides with a
    /// directory on the filesystem). Retrying will not help.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The backend refused the credentials or the operation (HTTP 403, `EACCES`).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The store is misconfigured (missing bucket, bad endpoint, invalid configuration).
    #[error("object store misconfigured: {0}")]
    Config(String),
    /// An object was read but its content is not what it should be (bad magic, checksum
    /// mismatch, truncated index object).
    #[error("corrupt object {key}: {reason}")]
    Corrupt {
        /// The object that failed to decode.
        key: String,
        /// What the decoder found wrong.
        reason: String,
    },
    /// A local I/O error (filesystem store): disk full, read-only filesystem, ...
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory the operation touched.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    /// Whether retrying the same operation later may succeed: backend outages and local I/O
    /// errors (a full disk gets space back) are; everything else is not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Io { .. })
    }

    /// Whether this is [`StorageError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}
