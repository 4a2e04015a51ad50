//! An object store in a directory tree: the single-process default.
//!
//! A key maps to the file `<root>/<key>`. Writes go to a temporary file in the destination
//! directory (named `.norn-tmp.*`, a segment no valid key may use), which is fsynced, renamed
//! over the destination and followed by an fsync of the directory: after `put` returns the object
//! survives a crash, and a reader sees either the old file or the new one. Directories that a
//! `put` creates are fsynced into their parents; directories emptied by `delete` are removed.
//!
//! Unlike S3, a filesystem cannot hold both `a` and `a/b`: writing one when the other exists is
//! [`StorageError::Invalid`]. Norn's own key layout never does that.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use tracing::{debug, warn};

use super::{
    ObjectMeta, ObjectStore, StorageError, TEMP_MARKER, check_range, resolve_range, validate_key, validate_prefix,
};

/// How many times `put` retries when a concurrent `delete` removed the directory it was writing
/// into.
const PUT_ATTEMPTS: usize = 5;

/// Temporary files older than this, found while listing, are leftovers of a crash and removed.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// Makes temporary file names unique among the stores of this process (the pid covers others).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Objects as files under a root directory.
#[derive(Debug, Clone)]
pub struct FilesystemStore {
    /// The directory every key is relative to; shared with the blocking tasks doing the I/O.
    root: Arc<PathBuf>,
}

impl FilesystemStore {
    /// A store rooted at `root`, which is created if missing.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| io_error(&root, e))?;
        Ok(Self { root: Arc::new(root) })
    }

    /// The directory objects are stored under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs blocking filesystem work off the async runtime.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T, StorageError> + Send + 'static,
    {
        let root = Arc::clone(&self.root);
        tokio::task::spawn_blocking(move || f(&root)).await.map_err(|e| StorageError::Io {
            path: self.root.display().to_string(),
            source: io::Error::other(format!("filesystem task failed: {e}")),
        })?
    }
}

#[async_trait]
impl ObjectStore for FilesystemStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        validate_key(key)?;
        let key = key.to_string();
        self.blocking(move |root| put_blocking(root, &key, &data)).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        validate_key(key)?;
        let key = key.to_string();
        self.blocking(move |root| {
            let path = root.join(&key);
            match fs::read(&path) {
                Ok(data) => Ok(Bytes::from(data)),
                Err(e) if is_absent(&e) => Err(StorageError::NotFound { key }),
                Err(e) => Err(io_error(&path, e)),
            }
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        validate_key(key)?;
        check_range(key, &range)?;
        let key = key.to_string();
        self.blocking(move |root| {
            let path = root.join(&key);
            let not_found = || StorageError::NotFound { key: key.clone() };
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if is_absent(&e) => return Err(not_found()),
                Err(e) => return Err(io_error(&path, e)),
            };
            let meta = file.metadata().map_err(|e| io_error(&path, e))?;
            if meta.is_dir() {
                return Err(not_found());
            }
            let r = resolve_range(&key, &range, meta.len())?;
            let len = usize::try_from(r.end - r.start)
                .map_err(|_| StorageError::Invalid(format!("range of {key:?} is too large for memory")))?;
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, r.start).map_err(|e| io_error(&path, e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        validate_key(key)?;
        let key = key.to_string();
        self.blocking(move |root| {
            let path = root.join(&key);
            match fs::metadata(&path) {
                Ok(m) if m.is_file() => Ok(Some(object_meta(key, &m))),
                Ok(_) => Ok(None),
                Err(e) if is_absent(&e) => Ok(None),
                Err(e) => Err(io_error(&path, e)),
            }
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        validate_prefix(prefix)?;
        let prefix = prefix.to_string();
        self.blocking(move |root| list_blocking(root, &prefix)).await
    }

    async fn list_prefixes(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        validate_prefix(prefix)?;
        let prefix = prefix.to_string();
        self.blocking(move |root| list_prefixes_blocking(root, &prefix)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        let key = key.to_string();
        self.blocking(move |root| {
            let path = root.join(&key);
            match fs::remove_file(&path) {
                Ok(()) => {}
                // A directory at `key` means there is no object there either.
                Err(e) if is_absent(&e) => return Ok(()),
                Err(e) => return Err(io_error(&path, e)),
            }
            remove_empty_parents(root, &path);
            Ok(())
        })
        .await
    }
}

fn put_blocking(root: &Path, key: &str, data: &[u8]) -> Result<(), StorageError> {
    let path = root.join(key);
    let dir = path.parent().unwrap_or(root).to_path_buf();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_put(root, &dir, &path, data) {
            // The directory disappeared between creating it and using it: a concurrent delete
            // removed it as empty. Create it again.
            Err(e) if e.kind() == ErrorKind::NotFound && attempt < PUT_ATTEMPTS => {
                debug!(key, attempt, "directory removed during put, retrying");
            }
            Err(e) => {
                return Err(match e.kind() {
                    ErrorKind::IsADirectory | ErrorKind::DirectoryNotEmpty => {
                        StorageError::Invalid(format!("key {key:?} is a prefix of existing objects on the filesystem"))
                    }
                    ErrorKind::NotADirectory | ErrorKind::AlreadyExists => StorageError::Invalid(format!(
                        "a prefix of key {key:?} is an existing object on the filesystem"
                    )),
                    _ => io_error(&path, e),
                });
            }
            Ok(()) => return Ok(()),
        }
    }
}

/// One attempt at an atomic, durable write.
fn try_put(root: &Path, dir: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
    create_dirs_durably(root, dir)?;
    let tmp =
        dir.join(format!("{TEMP_MARKER}.{}.{}", std::process::id(), TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // Best effort: the file may not exist (open failed), and a leftover is swept by `list`.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

/// `create_dir_all`, with each new directory fsynced into its parent so that a file renamed into
/// it is reachable after a crash.
fn create_dirs_durably(root: &Path, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = dir;
    while cur != root {
        match fs::metadata(cur) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => return Err(io::Error::from(ErrorKind::NotADirectory)),
            Err(e) if e.kind() == ErrorKind::NotFound => missing.push(cur),
            Err(e) => return Err(e),
        }
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            // Another writer created it; that writer fsyncs the parent.
            Err(e) if e.kind() == ErrorKind::AlreadyExists && d.is_dir() => continue,
            Err(e) => return Err(e),
        }
        if let Some(parent) = d.parent() {
            File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

/// Removes the now-empty directories between `path` and `root`, stopping at the first one that
/// still holds something.
fn remove_empty_parents(root: &Path, path: &Path) {
    let mut cur = path.parent();
    while let Some(dir) = cur {
        if dir == root || !dir.starts_with(root) || fs::remove_dir(dir).is_err() {
            break;
        }
        cur = dir.parent();
    }
}

/// Splits a listing prefix into the directory that holds every match and the start that the
/// names in that directory must have: `"a/b/c"` → (`<root>/a/b`, `"a/b/"`, `"c"`).
fn split_prefix<'a>(root: &Path, prefix: &'a str) -> (PathBuf, &'a str, &'a str) {
    match prefix.rfind('/') {
        Some(i) => (root.join(&prefix[..i]), &prefix[..=i], &prefix[i + 1..]),
        None => (root.to_path_buf(), "", prefix),
    }
}

fn list_blocking(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
    let (dir, dir_key, name_start) = split_prefix(root, prefix);
    let mut out = Vec::new();
    // Directories still to visit, with the key prefix of their entries.
    let mut stack = vec![(dir, dir_key.to_string(), name_start)];
    while let Some((dir, dir_key, name_start)) = stack.pop() {
        let Some(entries) = read_dir(&dir)? else {
            continue;
        };
        for (name, path, meta) in entries {
            if !name.starts_with(name_start) {
                continue;
            }
            let key = format!("{dir_key}{name}");
            if meta.is_dir() {
                stack.push((path, format!("{key}/"), ""));
            } else if meta.is_file() {
                out.push(object_meta(key, &meta));
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn list_prefixes_blocking(root: &Path, prefix: &str) -> Result<Vec<String>, StorageError> {
    let (dir, dir_key, name_start) = split_prefix(root, prefix);
    let mut out = Vec::new();
    for (name, path, meta) in read_dir(&dir)?.unwrap_or_default() {
        // S3 only reports prefixes that have objects under them; so do we.
        if meta.is_dir() && name.starts_with(name_start) && holds_object(&path)? {
            out.push(format!("{dir_key}{name}/"));
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a directory tree contains at least one object. Reads directories lazily and stops
/// at the first object, so a tenant with millions of chunks costs a few directory reads.
fn holds_object(dir: &Path) -> Result<bool, StorageError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if is_absent(&e) => return Ok(false),
        Err(e) => return Err(io_error(dir, e)),
    };
    let mut subdirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(TEMP_MARKER) {
            continue;
        }
        match fs::metadata(entry.path()) {
            Ok(m) if m.is_file() => return Ok(true),
            Ok(m) if m.is_dir() => {
                // Look into the first subdirectory right away: it is almost never empty.
                if subdirs.is_empty() && holds_object(&entry.path())? {
                    return Ok(true);
                }
                subdirs.push(entry.path());
            }
            Ok(_) => {}
            Err(e) if is_absent(&e) => {}
            Err(e) => return Err(io_error(&entry.path(), e)),
        }
    }
    for sub in subdirs.iter().skip(1) {
        if holds_object(sub)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The entries of a directory that can be objects or prefixes: UTF-8 names, no temporary files
/// (stale ones are removed). `None` if the directory does not exist.
#[allow(clippy::type_complexity)]
fn read_dir(dir: &Path) -> Result<Option<Vec<(String, PathBuf, fs::Metadata)>>, StorageError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if is_absent(&e) => return Ok(None),
        Err(e) => return Err(io_error(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let path = entry.path();
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // Follows symlinks; an entry that vanished since `read_dir` is skipped.
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if is_absent(&e) => continue,
            Err(e) => return Err(io_error(&path, e)),
        };
        if name.starts_with(TEMP_MARKER) {
            sweep_temp_file(&path, &meta);
            continue;
        }
        out.push((name, path, meta));
    }
    Ok(Some(out))
}

/// Removes a temporary file left behind by a crashed write.
fn sweep_temp_file(path: &Path, meta: &fs::Metadata) {
    let age = meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok());
    if meta.is_file() && age.is_some_and(|a| a > STALE_TEMP_AGE) {
        match fs::remove_file(path) {
            Ok(()) => debug!(path = %path.display(), "removed stale temporary file"),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot remove stale temporary file")
            }
        }
    }
}

fn object_meta(key: String, meta: &fs::Metadata) -> ObjectMeta {
    ObjectMeta { key, size: meta.len(), last_modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH) }
}

/// Whether an error means "there is no object here": the file, or a directory on its path, does
/// not exist, a path component is a file, or the path is a directory.
fn is_absent(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory)
}

fn io_error(path: &Path, e: io::Error) -> StorageError {
    if e.kind() == ErrorKind::PermissionDenied {
        return StorageError::PermissionDenied(format!("{}: {e}", path.display()));
    }
    StorageError::Io { path: path.display().to_string(), source: e }
}
