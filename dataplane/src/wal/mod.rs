//! The ingester's write-ahead log.
//!
//! Every acknowledged push is in the WAL before the client hears back, so `kill -9` loses
//! nothing acknowledged; [`replay`] rebuilds memory on start; checkpoints bound replay time.
//! Records are opaque payloads ([`Bytes`]); the ingester decides what they contain.
//!
//! # Writing: group commit
//!
//! [`Wal::submit`] frames the payload (length and CRC computed on the caller's thread), appends
//! it to an in-memory queue and returns a [`WalTicket`]. One writer thread (a `std::thread`, so
//! disk waits never block tokio workers) takes *everything* queued at that moment, writes it
//! with one `writev` and — with [`SyncPolicy::Batch`] — one `fdatasync`, then completes those
//! tickets. While it waits on the disk the next batch accumulates, so one fsync covers every
//! push that arrived during the previous one.
//!
//! Backpressure: the bytes queued but not yet written are bounded by
//! [`WalConfig::max_queued_bytes`]. [`Wal::submit`] never waits: over the bound it fails with
//! [`WalError::QueueFull`]. [`Wal::submit_async`] waits (fairly, first come first served)
//! until the record fits, then enqueues it. A record larger than the whole budget is admitted
//! alone, once the queue is empty.
//!
//! Ordering: records are written in the order they entered the queue; [`Wal::rotate`] enters
//! the same queue, so "every record submitted before `rotate()` returned `N` is in a segment
//! `< N`" holds however far behind the writer is. Size-based rotation is decided at submit
//! time for the same reason.
//!
//! Failures: if a `write` or `fdatasync` fails (`ENOSPC`, `EIO`), every ticket of that batch
//! fails with [`WalError::Io`] and the segment is truncated back to the end of the last good
//! record, so later records never follow garbage; later submits succeed once the disk
//! recovers. If the truncate fails too it is retried before the next write, and writes are
//! refused until it succeeds.
//!
//! # Use from the ingester
//!
//! ```no_run
//! # async fn example(
//! #     wal: norn::wal::Wal,
//! #     lock: tokio::sync::RwLock<Vec<bytes::Bytes>>,
//! #     record: bytes::Bytes,
//! # ) -> Result<(), norn::wal::WalError> {
//! // Push: enqueue and apply under the shared lock, acknowledge after the ticket resolves.
//! let ticket = {
//!     let mut memory = lock.write().await; // a read lock plus per-stream locks in reality
//!     let ticket = wal.submit_async(record.clone()).await?;
//!     memory.push(record);
//!     ticket
//! };
//! ticket.await?; // durable: now answer 204
//!
//! // Checkpoint: rotate and snapshot under the exclusive lock, write outside it.
//! let (n, snapshot) = {
//!     let memory = lock.write().await;
//!     (wal.rotate()?, memory.clone())
//! };
//! let wal2 = wal.clone();
//! tokio::task::spawn_blocking(move || wal2.write_checkpoint(n, snapshot))
//!     .await
//!     .expect("checkpoint task")?;
//! # Ok(())
//! # }
//! ```
//!
//! On start: [`replay`] the directory into memory, then [`Wal::open`] it.
//!
//! # Files
//!
//! A WAL directory holds segment files `00000000000000000042.wal` (20-digit, zero-padded
//! segment number, so names sort like numbers), checkpoints `checkpoint.00000000000000000042`
//! (covering every segment `< 42`), transient `checkpoint.<N>.tmp` files, and a `LOCK` file
//! that one process holds an advisory `flock` on while the WAL is open for writing.
//! [`Wal::open`] always starts a new segment numbered after every segment and checkpoint on
//! disk: it never appends after a possibly torn tail.
//!
//! # On-disk format (version 1; all integers little-endian)
//!
//! Segment file:
//!
//! ```text
//! offset  size  field
//! 0       8     magic "NORNWAL\0" (4E 4F 52 4E 57 41 4C 00)
//! 8       4     format version, u32 = 1
//! 12      4     reserved, written as 0
//! 16      ...   records, back to back, until end of file
//! ```
//!
//! Record frame (segments and checkpoints):
//!
//! ```text
//! offset  size  field
//! 0       4     payload length L, u32
//! 4       4     CRC32C (Castagnoli), u32, over bytes 0..4 (the length) followed by the payload
//! 8       L     payload
//! ```
//!
//! The CRC covers the length so that a damaged length is detected even when it still fits in
//! the file, and so that zero-filled blocks never read as empty records. Reading a segment
//! stops at the first frame whose header or payload runs past end of file (a torn tail) or
//! whose CRC does not match; the rest of that segment is skipped and reported.
//!
//! Checkpoint file:
//!
//! ```text
//! offset  size  field
//! 0       8     magic "NORNCKP\0" (4E 4F 52 4E 43 4B 50 00)
//! 8       4     format version, u32 = 1
//! 12      4     reserved, written as 0
//! 16      8     N, u64: the checkpoint covers every segment < N (must match the file name)
//! 24      ...   record frames, as above
//! end-16  8     footer magic "NORNEND\0" (4E 4F 52 4E 45 4E 44 00)
//! end-8   8     record count, u64
//! ```
//!
//! A checkpoint is written as `checkpoint.<N>.tmp`, `fdatasync`ed, renamed into place and the
//! directory fsynced; then older checkpoints and segments `< N` are deleted. Replay validates a
//! whole checkpoint (every CRC, footer, count) before delivering any of it, and falls back to
//! an older checkpoint, or to the segments alone, if it is damaged. Deletions are not fsynced:
//! a file that reappears after a crash is below the newest checkpoint, ignored by replay and
//! deleted by the next checkpoint.

mod checkpoint;
pub(crate) mod format;
mod io;
mod replay;
mod writer;

#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{Semaphore, TryAcquireError, oneshot};
use tracing::{info, warn};

pub use format::Corruption;
pub use replay::{RecordSource, ReplayError, ReplayIssue, ReplayReport, replay};

use format::{FRAME_HEADER_LEN, MAX_PAYLOAD, SEGMENT_HEADER_LEN, frame_header, list_dir};
use io::{StdIo, WalIo, remove_if_exists};
use writer::{Op, PendingRecord, Shared, State, Writer, create_segment};

/// Default size at which a segment is closed and the next one started.
pub const DEFAULT_SEGMENT_SIZE: u64 = 128 << 20;
/// Default bound on bytes submitted but not yet written.
pub const DEFAULT_MAX_QUEUED_BYTES: u64 = 64 << 20;

/// When records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Group commit: `write` and `fdatasync` before tickets complete. Survives power loss.
    #[default]
    Batch,
    /// `write` before tickets complete (survives `kill -9`, not power loss); `fdatasync` once
    /// per interval while there is unsynced data, and when a segment is finished. A failed
    /// background fsync is logged and counted; the records it covered were already released.
    Interval(Duration),
    /// `write` before tickets complete; `fdatasync` only at [`Wal::close`]. For tests and
    /// benchmarks.
    Never,
}

/// How a [`Wal`] is opened.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Directory holding segments and checkpoints; created if missing. One WAL per directory.
    pub dir: PathBuf,
    /// A segment is finished before a record that would take it past this size (a record
    /// larger than this gets a segment of its own). Checkpoints delete whole segments, so
    /// smaller segments free disk sooner; larger ones mean fewer files and rotations.
    pub segment_size: u64,
    /// Durability of acknowledged records.
    pub sync: SyncPolicy,
    /// Bound on bytes submitted but not yet written (backpressure); at most `u32::MAX`.
    pub max_queued_bytes: u64,
}

impl WalConfig {
    /// Defaults: 128 MiB segments, [`SyncPolicy::Batch`], 64 MiB queue.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_size: DEFAULT_SEGMENT_SIZE,
            sync: SyncPolicy::Batch,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
        }
    }

    /// Checks the values; messages name the field.
    pub fn validate(&self) -> Result<(), WalError> {
        let invalid = |msg: &str| Err(WalError::InvalidConfig(msg.to_string()));
        if self.segment_size <= SEGMENT_HEADER_LEN {
            return invalid("segment_size must be larger than the 16-byte segment header");
        }
        if self.max_queued_bytes == 0 || self.max_queued_bytes > u64::from(u32::MAX) {
            return invalid("max_queued_bytes must be between 1 and 4294967295");
        }
        if self.sync == SyncPolicy::Interval(Duration::ZERO) {
            return invalid("sync interval must be greater than zero");
        }
        Ok(())
    }
}

/// WAL failures. Cloneable: one failed batch fails many tickets with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    /// A file operation failed (`ENOSPC`, `EIO`, ...). Records of the failed batch are not in
    /// the WAL; the WAL stays usable and later records succeed once the disk recovers.
    #[error("wal {op} failed: {source}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The underlying error.
        source: Arc<std::io::Error>,
    },
    /// The WAL is closed (or its writer thread is gone); nothing more is accepted.
    #[error("wal is closed")]
    Closed,
    /// `submit` found the queue over its byte budget; retry later or use `submit_async`.
    #[error("wal queue is full")]
    QueueFull,
    /// The payload is longer than a frame can describe.
    #[error("wal record of {len} bytes exceeds the maximum of {max}")]
    RecordTooLarge {
        /// Payload length.
        len: usize,
        /// Largest accepted payload.
        max: usize,
    },
    /// Another process (or handle) holds this WAL directory open.
    #[error("wal directory {0} is locked by another writer")]
    Locked(PathBuf),
    /// A configuration value is out of range.
    #[error("invalid wal config: {0}")]
    InvalidConfig(String),
    /// `write_checkpoint` was given a segment number `rotate` has not returned yet.
    #[error("checkpoint {n} covers segments not yet allocated (next segment is {next})")]
    CheckpointAhead {
        /// Requested checkpoint number.
        n: u64,
        /// Next segment number to be allocated.
        next: u64,
    },
    /// A newer checkpoint exists already; writing an older one would lose data.
    #[error("checkpoint {n} is older than existing checkpoint {existing}")]
    StaleCheckpoint {
        /// Requested checkpoint number.
        n: u64,
        /// Newest checkpoint on disk.
        existing: u64,
    },
}

impl WalError {
    fn io(op: &'static str, e: std::io::Error) -> Self {
        WalError::Io { op, source: Arc::new(e) }
    }
}

/// Resolves once the record is durable per the [`SyncPolicy`] (`Ok`), or failed to be written
/// (`Err`). Dropping it does not withdraw the record.
#[must_use = "a record is acknowledged only once its ticket resolves"]
#[derive(Debug)]
pub struct WalTicket {
    rx: oneshot::Receiver<Result<(), WalError>>,
}

impl std::future::Future for WalTicket {
    type Output = Result<(), WalError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or(Err(WalError::Closed)))
    }
}

/// Counters and gauges for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Frame bytes (headers included) written successfully.
    pub bytes_written: u64,
    /// Records written successfully.
    pub records_written: u64,
    /// Group commits: batches written (records / batches = records per fsync under `Batch`).
    pub batches: u64,
    /// Successful `fdatasync` calls on segments.
    pub fsyncs: u64,
    /// Time spent in segment `fdatasync`, in total.
    pub fsync_time: Duration,
    /// Failed segment writes (including segment creation).
    pub write_errors: u64,
    /// Failed segment `fdatasync` calls.
    pub sync_errors: u64,
    /// Bytes submitted and not yet written.
    pub queued_bytes: u64,
    /// Segment the writer appends to.
    pub current_segment: u64,
    /// Segment files in the directory.
    pub segments_on_disk: u64,
    /// Total size of those segment files.
    pub segment_bytes_on_disk: u64,
    /// Newest checkpoint in the directory (the segment number it covers up to).
    pub checkpoint: Option<u64>,
}

/// What [`Wal::write_checkpoint`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointStats {
    /// The checkpoint covers segments `< n`.
    pub n: u64,
    /// Records written into it.
    pub records: u64,
    /// Its size on disk.
    pub bytes: u64,
    /// Time taken to write and sync it (deletions excluded).
    pub duration: Duration,
    /// Segment files deleted.
    pub segments_deleted: u64,
    /// Older checkpoints deleted.
    pub checkpoints_deleted: u64,
    /// Files that could not be deleted (logged; the next checkpoint retries them).
    pub delete_errors: u64,
}

/// A handle on an open WAL. Cheap to clone; all clones share one writer thread.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    io: Arc<dyn WalIo>,
    dir: PathBuf,
    segment_size: u64,
    /// Per-record cap on budget permits, so an oversized record can still be admitted alone.
    max_permits: u32,
    writer: Mutex<Option<JoinHandle<Result<(), WalError>>>>,
    /// Serializes checkpoints (each deletes what the previous one left).
    checkpoint_lock: Mutex<()>,
    /// Holds the directory's `flock` while open.
    lock_file: Mutex<Option<File>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Without `close`, the writer still drains what is queued, but nobody waits for it.
        self.shared.begin_close();
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.inner.dir).finish()
    }
}

impl Wal {
    /// Opens `cfg.dir` for writing: creates it, takes its lock, removes leftover temporary
    /// checkpoints, starts a new segment numbered after every segment and checkpoint on disk,
    /// and spawns the writer thread. Replay (if wanted) comes first. Blocking.
    pub fn open(cfg: WalConfig) -> Result<Wal, WalError> {
        Self::open_with_io(cfg, Arc::new(StdIo))
    }

    pub(crate) fn open_with_io(cfg: WalConfig, io: Arc<dyn WalIo>) -> Result<Wal, WalError> {
        cfg.validate()?;
        let dir = cfg.dir;
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(|e| WalError::io("create wal directory", e))?;
            // The new directory's own entry must survive power loss too.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                io.sync_dir(parent).map_err(|e| WalError::io("fsync parent of wal directory", e))?;
            }
        }
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
            .map_err(|e| WalError::io("open lock file", e))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(WalError::Locked(dir)),
            Err(TryLockError::Error(e)) => return Err(WalError::io("lock wal directory", e)),
        }
        let listing = list_dir(&dir).map_err(|e| WalError::io("list wal directory", e))?;
        for tmp in &listing.temporaries {
            if let Err(e) = remove_if_exists(tmp) {
                warn!(path = %tmp.display(), error = %e, "cannot remove leftover checkpoint file");
            }
        }
        let after_segments = listing.segments.last().map_or(0, |(n, _)| n + 1);
        let after_checkpoint = listing.checkpoints.last().map_or(0, |(n, _)| *n);
        let first = after_segments.max(after_checkpoint);
        let file = create_segment(io.as_ref(), &dir, first, cfg.sync).map_err(|e| WalError::io("create segment", e))?;

        let max_permits = u32::try_from(cfg.max_queued_bytes).unwrap_or(u32::MAX);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: Vec::new(),
                closing: false,
                writer_gone: false,
                next_segment: first + 1,
                segment_bytes: SEGMENT_HEADER_LEN,
                writer_segment: first,
            }),
            wake: parking_lot::Condvar::new(),
            progress: parking_lot::Condvar::new(),
            budget: Semaphore::new(max_permits as usize),
            counters: Default::default(),
        });
        let writer = Writer::new(shared.clone(), io.clone(), dir.clone(), cfg.sync, first, file);
        let handle = std::thread::Builder::new()
            .name("norn-wal-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| WalError::io("spawn wal writer thread", e))?;
        info!(dir = %dir.display(), segment = first, sync = ?cfg.sync, "wal opened");
        Ok(Wal {
            inner: Arc::new(Inner {
                shared,
                io,
                dir,
                segment_size: cfg.segment_size,
                max_permits,
                writer: Mutex::new(Some(handle)),
                checkpoint_lock: Mutex::new(()),
                lock_file: Mutex::new(Some(lock_file)),
            }),
        })
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Enqueues one record without waiting; fails with [`WalError::QueueFull`] when the queue
    /// is over its byte budget. Records are written in submit order.
    pub fn submit(&self, payload: Bytes) -> Result<WalTicket, WalError> {
        let (header, permits) = self.frame(&payload)?;
        match self.inner.shared.budget.try_acquire_many(permits) {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => return Err(WalError::QueueFull),
            Err(TryAcquireError::Closed) => return Err(WalError::Closed),
        }
        self.enqueue(header, payload, permits)
    }

    /// Enqueues one record, first waiting (without blocking the thread) until the queue has
    /// room for it. Cancel-safe: dropped while waiting, nothing is enqueued.
    pub async fn submit_async(&self, payload: Bytes) -> Result<WalTicket, WalError> {
        let (header, permits) = self.frame(&payload)?;
        self.inner.shared.budget.acquire_many(permits).await.map_err(|_| WalError::Closed)?.forget();
        self.enqueue(header, payload, permits)
    }

    fn frame(&self, payload: &[u8]) -> Result<([u8; FRAME_HEADER_LEN], u32), WalError> {
        let header = frame_header(payload).ok_or(WalError::RecordTooLarge { len: payload.len(), max: MAX_PAYLOAD })?;
        let frame_len = FRAME_HEADER_LEN + payload.len();
        let permits = u32::try_from(frame_len).unwrap_or(u32::MAX).min(self.inner.max_permits);
        Ok((header, permits))
    }

    fn enqueue(&self, header: [u8; FRAME_HEADER_LEN], payload: Bytes, permits: u32) -> Result<WalTicket, WalError> {
        let shared = &self.inner.shared;
        let frame_len = (FRAME_HEADER_LEN + payload.len()) as u64;
        let (done, rx) = oneshot::channel();
        {
            let mut st = shared.state.lock();
            if st.closing || st.writer_gone {
                drop(st);
                shared.budget.add_permits(permits as usize);
                return Err(WalError::Closed);
            }
            if st.segment_bytes > SEGMENT_HEADER_LEN && st.segment_bytes + frame_len > self.inner.segment_size {
                let n = st.next_segment;
                st.next_segment += 1;
                st.queue.push(Op::Rotate(n));
                st.segment_bytes = SEGMENT_HEADER_LEN;
            }
            st.segment_bytes += frame_len;
            st.queue.push(Op::Record(PendingRecord { header, payload, permits, done }));
        }
        shared.wake.notify_one();
        Ok(WalTicket { rx })
    }

    /// Finishes the current segment: records submitted after this call go to a new segment.
    /// Returns that segment's number `N`; every record submitted before the call is in a
    /// segment `< N`. Does not wait for the disk (the writer creates segment `N` in order).
    pub fn rotate(&self) -> Result<u64, WalError> {
        let shared = &self.inner.shared;
        let n = {
            let mut st = shared.state.lock();
            if st.closing || st.writer_gone {
                return Err(WalError::Closed);
            }
            let n = st.next_segment;
            st.next_segment += 1;
            st.queue.push(Op::Rotate(n));
            st.segment_bytes = SEGMENT_HEADER_LEN;
            n
        };
        shared.wake.notify_one();
        Ok(n)
    }

    /// Writes a checkpoint covering every segment `< n` from `records` (the caller's snapshot
    /// of memory, taken after `rotate()` returned `n`), atomically, then — once the writer has
    /// moved on to segment `n` — deletes older checkpoints and segments `< n`. On error nothing
    /// is deleted. Blocking (large sequential write plus fsyncs): call it from a blocking
    /// thread.
    pub fn write_checkpoint(
        &self,
        n: u64,
        records: impl IntoIterator<Item = Bytes>,
    ) -> Result<CheckpointStats, WalError> {
        let _serial = self.inner.checkpoint_lock.lock();
        let dir = &self.inner.dir;
        let next = self.inner.shared.state.lock().next_segment;
        if n >= next {
            return Err(WalError::CheckpointAhead { n, next });
        }
        let listing = list_dir(dir).map_err(|e| WalError::io("list wal directory", e))?;
        if let Some((existing, _)) = listing.checkpoints.last()
            && *existing > n
        {
            return Err(WalError::StaleCheckpoint { n, existing: *existing });
        }
        let started = Instant::now();
        let written = checkpoint::write(self.inner.io.as_ref(), dir, n, records)?;
        let duration = started.elapsed();
        // A writer still behind the rotation could yet create segment n-1; wait until it is
        // past, so that everything below `n` is deleted for good. (Usually immediate.)
        self.inner.shared.wait_rotated(n);
        let listing = list_dir(dir).map_err(|e| WalError::io("list wal directory", e))?;

        let mut stats = CheckpointStats {
            n,
            records: written.records,
            bytes: written.bytes,
            duration,
            segments_deleted: 0,
            checkpoints_deleted: 0,
            delete_errors: 0,
        };
        let old_checkpoints = listing.checkpoints.iter().filter(|(c, _)| *c < n);
        for (_, path) in old_checkpoints {
            match remove_if_exists(path) {
                Ok(()) => stats.checkpoints_deleted += 1,
                Err(e) => {
                    stats.delete_errors += 1;
                    warn!(path = %path.display(), error = %e, "cannot delete old wal checkpoint");
                }
            }
        }
        for (_, path) in listing.segments.iter().filter(|(s, _)| *s < n) {
            match remove_if_exists(path) {
                Ok(()) => stats.segments_deleted += 1,
                Err(e) => {
                    stats.delete_errors += 1;
                    warn!(path = %path.display(), error = %e, "cannot delete covered wal segment");
                }
            }
        }
        info!(
            checkpoint = n,
            records = stats.records,
            bytes = stats.bytes,
            duration_ms = duration.as_millis() as u64,
            segments_deleted = stats.segments_deleted,
            checkpoints_deleted = stats.checkpoints_deleted,
            "wal checkpoint written"
        );
        Ok(stats)
    }

    /// Stops accepting records, waits until every submitted record is written and fsynced
    /// (whatever the policy), joins the writer thread and releases the directory lock.
    /// Idempotent. Blocking.
    pub fn close(&self) -> Result<(), WalError> {
        self.inner.shared.begin_close();
        let handle = self.inner.writer.lock().take();
        let result = match handle {
            Some(handle) => handle.join().unwrap_or(Err(WalError::Closed)),
            None => Ok(()),
        };
        self.inner.lock_file.lock().take();
        info!(dir = %self.inner.dir.display(), "wal closed");
        result
    }

    /// Counters and gauges for `/metrics`. Lists the directory for the on-disk figures (a
    /// handful of entries); if that fails they read 0.
    pub fn stats(&self) -> WalStats {
        let c = &self.inner.shared.counters;
        let available = self.inner.shared.budget.available_permits() as u64;
        let mut stats = WalStats {
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            records_written: c.records_written.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            fsync_time: Duration::from_nanos(c.fsync_nanos.load(Ordering::Relaxed)),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            sync_errors: c.sync_errors.load(Ordering::Relaxed),
            queued_bytes: u64::from(self.inner.max_permits).saturating_sub(available),
            current_segment: c.current_segment.load(Ordering::Relaxed),
            ..WalStats::default()
        };
        if let Ok(listing) = list_dir(&self.inner.dir) {
            stats.segments_on_disk = listing.segments.len() as u64;
            stats.segment_bytes_on_disk =
                listing.segments.iter().filter_map(|(_, path)| std::fs::metadata(path).ok()).map(|m| m.len()).sum();
            stats.checkpoint = listing.checkpoints.last().map(|(n, _)| *n);
        }
        stats
    }
}
