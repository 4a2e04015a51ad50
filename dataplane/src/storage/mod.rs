//! Where flushed chunks live and how queriers find them.
//!
//! Everything Norn keeps in long-term storage goes through one small trait, [`ObjectStore`], with
//! three implementations that pass the same conformance suite ([`testing::conformance_suite`]):
//! [`FilesystemStore`] (the single-process default), [`S3Store`] (any S3-compatible service) and
//! [`MemoryStore`] (unit tests). The rest of Norn only ever sees an `Arc<dyn ObjectStore>`, built
//! by [`from_config`].
//!
//! On top of the store sits the [`Index`]: a map from (tenant, period, series) to the chunks that
//! hold the series' entries, written by ingesters after each flush and read by queriers.
//!
//! # Keys
//!
//! Keys are `/`-separated relative paths: no leading `/`, no empty segments, no `.` or `..`
//! segments, no ASCII control characters, at most 1024 bytes, and no segment starting with
//! `.norn-tmp` (the filesystem store's in-flight writes). [`validate_key`] enforces this in every
//! store, so a key that works on one backend works on all of them.
//!
//! # Layout
//!
//! ```text
//! {tenant}/chunks/{fingerprint:016x}/{from:x}-{through:x}-{checksum:08x}   a chunk object
//! {tenant}/index/{period}/{content_hash:016x}.idx                          an index object
//! ```
//!
//! - A chunk key ([`chunk_key`]) is derived from the tenant, the stream fingerprint, the time range
//!   and the checksum of the content, so two replicas flushing the same chunk, or one ingester
//!   retrying a flush, write the same object once.
//! - `period` is `floor(ts / index.period)` (a signed decimal number, 24h periods by default). A
//!   chunk whose time range crosses a period boundary is listed in every period it overlaps.
//! - Each [`Index::write`] call writes one index object per period it touches, named by the hash
//!   of its content, so a retried write produces the same object instead of a duplicate. Index
//!   objects never change after they are written, which is what lets queriers cache them.
//! - The top-level segment is the tenant, so [`Index::tenants`] is one delimiter listing.
//!
//! The index period is part of the layout: changing `storage.index.period` after data was written
//! makes the existing index objects invisible to queries.

mod config;
mod error;
mod fs;
mod index;
pub(crate) mod index_codec;
mod memory;
mod s3;
pub mod testing;

#[cfg(test)]
mod index_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

/// Hits, misses and occupancy of the index cache.
pub use crate::lru::LruStats as IndexCacheStats;
pub use config::{Backend, FilesystemConfig, IndexConfig, S3Config, StorageConfig, StorageConfigError, from_config};
pub use error::StorageError;
pub use fs::FilesystemStore;
pub use index::{ChunkRef, CompactionStats, Index, chunk_key};
pub use memory::MemoryStore;
pub use s3::{S3Store, StaticCredentials};

/// What a listing or a `head` tells about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key, relative to the store's root (never the S3 prefix or the directory).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written, as the backend reports it (S3 has second precision).
    pub last_modified: SystemTime,
}

/// A flat key → bytes store: where chunks and index objects live.
///
/// Every implementation behaves the same way, which the conformance suite in [`testing`] checks:
/// - `put` is atomic: a reader sees the old object, the new one, or nothing, never a partial
///   write; overwriting is allowed and the last write wins.
/// - `get`, `get_range` return [`StorageError::NotFound`] for a missing key; `head` returns
///   `None`; `delete` of a missing key succeeds.
/// - `get_range` returns the bytes in `range` clamped to the object's end; a non-empty range that
///   starts at or past the end, or a range with `start > end`, is [`StorageError::Invalid`]. An
///   empty range returns no bytes if the object exists.
/// - `list(prefix)` matches keys by plain string prefix (`"a/b"` matches `"a/bc"`), returns every
///   match (paging through the backend as needed), sorted by key.
/// - Keys are checked with [`validate_key`]; a bad key is [`StorageError::Invalid`].
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Writes `data` under `key`, replacing any previous object.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError>;

    /// Reads a whole object.
    async fn get(&self, key: &str) -> Result<Bytes, StorageError>;

    /// Reads the bytes of `range` (clamped to the object's size).
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError>;

    /// Size and modification time of an object, `None` if it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError>;

    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError>;

    /// The distinct "directories" directly below `prefix`: for each object whose key starts with
    /// `prefix` and has another `/` after it, the key up to and including that `/`. Sorted,
    /// deduplicated. Lets callers enumerate tenants or periods without listing every object.
    ///
    /// The default implementation derives the answer from [`ObjectStore::list`]; stores override
    /// it with a delimiter listing.
    async fn list_prefixes(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let objects = self.list(prefix).await?;
        let mut out: Vec<String> = Vec::new();
        for meta in objects {
            if let Some(p) = common_prefix(&meta.key, prefix)
                && out.last().map(String::as_str) != Some(p)
            {
                out.push(p.to_string());
            }
        }
        Ok(out)
    }

    /// Removes an object; succeeds if it does not exist.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
}

/// The longest key allowed, the same as S3's limit.
pub const MAX_KEY_LEN: usize = 1024;

/// Segment prefix reserved for the filesystem store's temporary files.
pub(crate) const TEMP_MARKER: &str = ".norn-tmp";

/// Checks that `key` is a valid object key (see the module documentation for the rules).
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() {
        return Err(StorageError::Invalid("object key is empty".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(StorageError::Invalid(format!(
            "object key is {} bytes long, the limit is {MAX_KEY_LEN}",
            key.len()
        )));
    }
    check_segments(key, key.split('/'))
}

/// Checks a listing prefix: empty (everything), or a key, optionally ending with `/`.
pub fn validate_prefix(prefix: &str) -> Result<(), StorageError> {
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.len() > MAX_KEY_LEN {
        return Err(StorageError::Invalid(format!(
            "prefix is {} bytes long, the limit is {MAX_KEY_LEN}",
            prefix.len()
        )));
    }
    let body = prefix.strip_suffix('/').unwrap_or(prefix);
    if body.is_empty() {
        return Err(StorageError::Invalid(format!("invalid prefix {prefix:?}: must not start with '/'")));
    }
    check_segments(prefix, body.split('/'))
}

fn check_segments<'a>(key: &str, segments: impl Iterator<Item = &'a str>) -> Result<(), StorageError> {
    let bad = |why: &str| Err(StorageError::Invalid(format!("invalid key {key:?}: {why}")));
    if key.starts_with('/') {
        return bad("must not start with '/'");
    }
    if key.chars().any(|c| c.is_ascii_control()) {
        return bad("must not contain control characters");
    }
    for segment in segments {
        match segment {
            "" => return bad("empty path segment"),
            "." | ".." => return bad("'.' and '..' segments are not allowed"),
            s if s.starts_with(TEMP_MARKER) => {
                return bad("segments starting with '.norn-tmp' are reserved");
            }
            _ => {}
        }
    }
    Ok(())
}

/// For a `key` under `prefix`, the part up to and including the first `/` after the prefix.
pub(crate) fn common_prefix<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = key.strip_prefix(prefix)?;
    let slash = rest.find('/')?;
    Some(&key[..prefix.len() + slash + 1])
}

/// Resolves a `get_range` request against an object of `size` bytes: the byte range to return.
pub(crate) fn resolve_range(key: &str, range: &Range<u64>, size: u64) -> Result<Range<u64>, StorageError> {
    check_range(key, range)?;
    if range.start == range.end {
        return Ok(0..0);
    }
    if range.start >= size {
        return Err(StorageError::Invalid(format!(
            "range {}..{} of {key:?} starts at or past the end of the object ({size} bytes)",
            range.start, range.end
        )));
    }
    Ok(range.start..range.end.min(size))
}

/// Rejects a range whose start is past its end.
pub(crate) fn check_range(key: &str, range: &Range<u64>) -> Result<(), StorageError> {
    if range.start > range.end {
        return Err(StorageError::Invalid(format!(
            "range {}..{} of {key:?} ends before it starts",
            range.start, range.end
        )));
    }
    Ok(())
}
