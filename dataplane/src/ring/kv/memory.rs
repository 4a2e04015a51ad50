//! [`MemoryKv`]: the key-value store of a single process.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{CasOutcome, KvError, KvStore, Versioned, WatchEvent, WatchStream, WatchTarget, check_key};

/// An in-memory [`KvStore`]: the ring of a process that runs every role itself, and the store of
/// unit tests. Clones share the same data.
///
/// Versions come from one counter bumped by every write and delete, as in etcd. Each watch has
/// its own unbounded queue: ring keys change a few times per heartbeat period, so a slow watcher
/// holds little, and no watcher can slow down a writer.
#[derive(Clone, Debug, Default)]
pub struct MemoryKv {
    /// Everything, behind one lock: writes are tiny and a write must reach watchers in order.
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The data.
    entries: BTreeMap<String, Versioned>,
    /// The revision of the last write or delete.
    revision: u64,
    /// Live watches; closed ones are dropped on the next change.
    watchers: Vec<Watcher>,
}

#[derive(Debug)]
struct Watcher {
    /// What it follows.
    target: WatchTarget,
    /// Where its events go.
    tx: mpsc::UnboundedSender<WatchEvent>,
}

impl Inner {
    fn write(&mut self, key: &str, value: Bytes) -> u64 {
        self.revision += 1;
        let v = Versioned { value, version: self.revision };
        self.entries.insert(key.to_string(), v.clone());
        self.notify(WatchEvent::Put { key: key.to_string(), value: v });
        self.revision
    }

    fn notify(&mut self, ev: WatchEvent) {
        self.watchers.retain(|w| !w.tx.is_closed());
        for w in &self.watchers {
            if w.target.matches(ev.key()) {
                // A receiver dropped since the `retain` above is simply gone.
                let _ = w.tx.send(ev.clone());
            }
        }
    }
}

impl MemoryKv {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many watches are open (closed ones are counted until the next change).
    pub fn watcher_count(&self) -> usize {
        self.inner.lock().watchers.iter().filter(|w| !w.tx.is_closed()).count()
    }
}

#[async_trait]
impl KvStore for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError> {
        check_key(key)?;
        Ok(self.inner.lock().entries.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, KvError> {
        let inner = self.inner.lock();
        Ok(inner
            .entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64, KvError> {
        check_key(key)?;
        Ok(self.inner.lock().write(key, value))
    }

    async fn put_if_version(&self, key: &str, expected: Option<u64>, value: Bytes) -> Result<CasOutcome, KvError> {
        check_key(key)?;
        let mut inner = self.inner.lock();
        let current = inner.entries.get(key);
        if current.map(|v| v.version) != expected {
            return Ok(CasOutcome::Conflict { current: current.cloned() });
        }
        Ok(CasOutcome::Written { version: inner.write(key, value) })
    }

    async fn delete(&self, key: &str) -> Result<bool, KvError> {
        check_key(key)?;
        let mut inner = self.inner.lock();
        if inner.entries.remove(key).is_none() {
            return Ok(false);
        }
        inner.revision += 1;
        let version = inner.revision;
        inner.notify(WatchEvent::Delete { key: key.to_string(), version });
        Ok(true)
    }

    async fn watch(&self, target: WatchTarget) -> Result<WatchStream, KvError> {
        if let WatchTarget::Key(k) = &target {
            check_key(k)?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.inner.lock();
        // The current state goes first, under the same lock that orders every later change.
        for (key, value) in inner.entries.iter().filter(|(k, _)| target.matches(k)) {
            let _ = tx.send(WatchEvent::Put { key: key.clone(), value: value.clone() });
        }
        inner.watchers.push(Watcher { target, tx });
        drop(inner);
        Ok(tokio_stream_from(rx))
    }
}

/// The receiver as a stream of `Ok` events; it ends when the store is dropped.
fn tokio_stream_from(mut rx: mpsc::UnboundedReceiver<WatchEvent>) -> WatchStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Ok).boxed()
}
