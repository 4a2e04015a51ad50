//! An object store in a map: for tests and for a single process that keeps nothing.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;

use super::{ObjectMeta, ObjectStore, StorageError, common_prefix, resolve_range, validate_key, validate_prefix};

/// Objects in memory, sorted by key. Cloning the bytes out is cheap (`Bytes` is shared), so a
/// read holds the lock only for a lookup.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Key → (content, time of the last put).
    objects: RwLock<BTreeMap<String, (Bytes, SystemTime)>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lookup(&self, key: &str) -> Result<(Bytes, SystemTime), StorageError> {
        validate_key(key)?;
        self.objects.read().get(key).cloned().ok_or_else(|| StorageError::NotFound { key: key.to_string() })
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        validate_key(key)?;
        self.objects.write().insert(key.to_string(), (data, SystemTime::now()));
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        Ok(self.lookup(key)?.0)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let (data, _) = self.lookup(key)?;
        let r = resolve_range(key, &range, data.len() as u64)?;
        // Both ends are within `data.len()`, which is a usize.
        Ok(data.slice(r.start as usize..r.end as usize))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        match self.lookup(key) {
            Ok((data, last_modified)) => {
                Ok(Some(ObjectMeta { key: key.to_string(), size: data.len() as u64, last_modified }))
            }
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        validate_prefix(prefix)?;
        let objects = self.objects.read();
        Ok(under(&objects, prefix)
            .map(|(key, (data, last_modified))| ObjectMeta {
                key: key.clone(),
                size: data.len() as u64,
                last_modified: *last_modified,
            })
            .collect())
    }

    async fn list_prefixes(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        validate_prefix(prefix)?;
        let objects = self.objects.read();
        let mut out: Vec<String> = Vec::new();
        let mut from = prefix.to_string();
        // Jump from one common prefix to the next instead of visiting every key below each.
        while let Some((key, _)) = objects.range::<str, _>((Bound::Included(from.as_str()), Bound::Unbounded)).next() {
            if !key.starts_with(prefix) {
                break;
            }
            match common_prefix(key, prefix) {
                Some(p) => {
                    out.push(p.to_string());
                    // Past every key starting with `p` (which ends with '/', and '0' follows '/').
                    from = format!("{}0", &p[..p.len() - 1]);
                }
                // A key without a '/' after the prefix: step to the next key.
                None => from = format!("{key}\0"),
            }
        }
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        self.objects.write().remove(key);
        Ok(())
    }
}

/// The entries whose key starts with `prefix`, in key order.
fn under<'a>(
    objects: &'a BTreeMap<String, (Bytes, SystemTime)>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a (Bytes, SystemTime))> {
    objects.range::<str, _>((Bound::Included(prefix), Bound::Unbounded)).take_while(move |(k, _)| k.starts_with(prefix))
}
