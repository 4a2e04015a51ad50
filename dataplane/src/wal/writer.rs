//! The submission queue and the writer thread that drains it (group commit).
//!
//! Submitters push [`Op`]s under a short mutex; the writer thread swaps the whole queue out,
//! writes every record in it with one `writev` per segment touched, runs one `fdatasync`
//! (policy `Batch`), and only then completes the records' tickets. While it waits on the disk
//! the next batch accumulates, so the fsync rate adapts to the disk instead of the push rate.

use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use tokio::sync::{Semaphore, oneshot};
use tracing::{error, info};

use super::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN, segment_file_name, segment_header};
use super::io::{WalFile, WalIo, write_all_vectored};
use super::{SyncPolicy, WalError};

/// One queued record with everything the writer needs to write and complete it.
pub(crate) struct PendingRecord {
    /// Length and CRC, computed by the submitter so the writer thread only moves bytes.
    pub header: [u8; FRAME_HEADER_LEN],
    pub payload: Bytes,
    /// Queue-budget permits this record holds; returned once it is written.
    pub permits: u32,
    /// Completes the submitter's ticket.
    pub done: oneshot::Sender<Result<(), WalError>>,
}

/// An entry of the submission queue, kept in submit order.
pub(crate) enum Op {
    Record(PendingRecord),
    /// Records after this one go to segment `n` (from [`super::Wal::rotate`] or the size limit).
    Rotate(u64),
}

/// State guarded by the queue mutex.
pub(crate) struct State {
    /// Ops not yet taken by the writer.
    pub queue: Vec<Op>,
    /// Set by `close` (or the last handle's drop): no more submits; the writer drains and exits.
    pub closing: bool,
    /// Set when the writer thread has exited, normally or not; submits fail from then on.
    pub writer_gone: bool,
    /// Number the next rotation will use. Segment numbers are only allocated here, in queue
    /// order, which is what makes `rotate`'s "everything before is in a segment < N" hold.
    pub next_segment: u64,
    /// Bytes assigned to the newest segment at submit time; drives size-based rotation.
    pub segment_bytes: u64,
    /// The newest rotation the writer has carried out: it never touches a segment below this
    /// again, so a checkpoint may delete them (see `Shared::wait_rotated`).
    pub writer_segment: u64,
}

/// Counters exported through [`super::Wal::stats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub bytes_written: AtomicU64,
    pub records_written: AtomicU64,
    pub batches: AtomicU64,
    pub fsyncs: AtomicU64,
    pub fsync_nanos: AtomicU64,
    pub write_errors: AtomicU64,
    pub sync_errors: AtomicU64,
    pub current_segment: AtomicU64,
}

/// What submitters and the writer thread share.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Wakes the writer when the queue becomes non-empty or the WAL is closing.
    pub wake: Condvar,
    /// Signals `State::writer_segment` advancing (or the writer exiting).
    pub progress: Condvar,
    /// Bounds queued bytes: one permit per byte (capped per record at the whole budget).
    pub budget: Semaphore,
    pub counters: Counters,
}

impl Shared {
    /// Asks the writer to drain and exit; fails pending `submit_async` waiters.
    pub(crate) fn begin_close(&self) {
        self.state.lock().closing = true;
        self.wake.notify_one();
        self.budget.close();
    }

    /// Blocks until the writer has carried out the rotation to segment `n` (or exited).
    pub(crate) fn wait_rotated(&self, n: u64) {
        let mut st = self.state.lock();
        while st.writer_segment < n && !st.writer_gone {
            self.progress.wait(&mut st);
        }
    }
}

/// The segment the writer appends to.
struct Segment {
    number: u64,
    file: Box<dyn WalFile>,
    /// Offset after the last successfully written record: the file's logical length.
    len: u64,
    /// Bytes were written since the last `fdatasync`.
    unsynced: bool,
    /// A failed write left bytes past `len` that a failed truncate could not remove; they are
    /// cut before anything else is written, or the write is refused.
    needs_truncate: bool,
}

enum Current {
    Open(Segment),
    /// Creating this segment failed; retried before the next write.
    Pending(u64),
}

/// The writer thread's state. Dropping it (also on panic) fails whatever is still queued.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    io: Arc<dyn WalIo>,
    dir: PathBuf,
    policy: SyncPolicy,
    current: Current,
    /// When the last `fdatasync` finished (for `SyncPolicy::Interval`).
    last_sync: Instant,
    /// Records of the batch being written, reused across batches.
    batch: Vec<PendingRecord>,
    /// Empty queue vector swapped into the state, so draining never allocates.
    spare: Vec<Op>,
}

/// Creates segment `n` in `dir` with its header, durable unless the policy is `Never`.
pub(crate) fn create_segment(
    io: &dyn WalIo,
    dir: &Path,
    n: u64,
    policy: SyncPolicy,
) -> std::io::Result<Box<dyn WalFile>> {
    let mut file = io.create(&dir.join(segment_file_name(n)))?;
    let header = segment_header();
    write_all_vectored(file.as_mut(), &mut [IoSlice::new(&header)])?;
    if !matches!(policy, SyncPolicy::Never) {
        file.sync_data()?;
        io.sync_dir(dir)?;
    }
    info!(segment = n, dir = %dir.display(), "wal segment opened");
    Ok(file)
}

impl Writer {
    /// A writer appending to `file`, the freshly created segment `number`.
    pub(crate) fn new(
        shared: Arc<Shared>,
        io: Arc<dyn WalIo>,
        dir: PathBuf,
        policy: SyncPolicy,
        number: u64,
        file: Box<dyn WalFile>,
    ) -> Self {
        shared.counters.current_segment.store(number, Ordering::Relaxed);
        Self {
            shared,
            io,
            dir,
            policy,
            current: Current::Open(Segment {
                number,
                file,
                len: SEGMENT_HEADER_LEN,
                unsynced: false,
                needs_truncate: false,
            }),
            last_sync: Instant::now(),
            batch: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// The thread body: drain, write, sync, complete, until closed and drained. The result is
    /// the final sync's.
    pub(crate) fn run(mut self) -> Result<(), WalError> {
        loop {
            let (mut ops, closing) = self.take_ops();
            let drained = ops.is_empty();
            self.process(&mut ops);
            self.spare = ops;
            if drained && closing {
                return self.final_sync();
            }
            self.interval_sync();
        }
    }

    /// Waits for work (or the interval sync deadline) and takes the whole queue.
    fn take_ops(&mut self) -> (Vec<Op>, bool) {
        let mut st = self.shared.state.lock();
        while st.queue.is_empty() && !st.closing {
            match self.sync_deadline() {
                Some(deadline) => {
                    if self.shared.wake.wait_until(&mut st, deadline).timed_out() {
                        break;
                    }
                }
                None => self.shared.wake.wait(&mut st),
            }
        }
        let mut ops = std::mem::take(&mut self.spare);
        std::mem::swap(&mut ops, &mut st.queue);
        (ops, st.closing)
    }

    fn sync_deadline(&self) -> Option<Instant> {
        match (&self.current, self.policy) {
            (Current::Open(seg), SyncPolicy::Interval(every)) if seg.unsynced => Some(self.last_sync + every),
            _ => None,
        }
    }

    fn process(&mut self, ops: &mut Vec<Op>) {
        for op in ops.drain(..) {
            match op {
                Op::Record(record) => self.batch.push(record),
                Op::Rotate(n) => {
                    self.commit_batch();
                    self.rotate_to(n);
                }
            }
        }
        self.commit_batch();
    }

    /// Writes the batch, completes its tickets with the outcome and returns its budget.
    fn commit_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let outcome = self.write_batch();
        let permits: usize = self.batch.iter().map(|r| r.permits as usize).sum();
        // Room first, then tickets: a submitter woken by its ticket finds the budget restored.
        self.shared.budget.add_permits(permits);
        for record in self.batch.drain(..) {
            // A dropped ticket is a submitter that stopped caring; nothing to do.
            let _ = record.done.send(outcome.clone());
        }
    }

    fn write_batch(&mut self) -> Result<(), WalError> {
        let counters = &self.shared.counters;
        if let Current::Pending(n) = self.current {
            let file = create_segment(self.io.as_ref(), &self.dir, n, self.policy)
                .map_err(|e| WalError::io("create segment", e))?;
            self.current = Current::Open(Segment {
                number: n,
                file,
                len: SEGMENT_HEADER_LEN,
                unsynced: false,
                needs_truncate: false,
            });
            counters.current_segment.store(n, Ordering::Relaxed);
        }
        let Current::Open(seg) = &mut self.current else {
            return Err(WalError::Closed);
        };
        if seg.needs_truncate {
            seg.file.truncate(seg.len).map_err(|e| WalError::io("truncate segment after failed write", e))?;
            seg.needs_truncate = false;
        }
        let start = seg.len;
        let mut total = 0u64;
        let mut slices = Vec::with_capacity(self.batch.len() * 2);
        for record in &self.batch {
            total += (FRAME_HEADER_LEN + record.payload.len()) as u64;
            slices.push(IoSlice::new(&record.header));
            slices.push(IoSlice::new(&record.payload));
        }
        if let Err(e) = write_all_vectored(seg.file.as_mut(), &mut slices) {
            counters.write_errors.fetch_add(1, Ordering::Relaxed);
            error!(segment = seg.number, offset = start, error = %e, "wal write failed");
            cut_back(seg, start);
            return Err(WalError::io("write segment", e));
        }
        seg.len = start + total;
        seg.unsynced = true;
        if matches!(self.policy, SyncPolicy::Batch) {
            if let Err(e) = sync(seg, counters) {
                error!(segment = seg.number, offset = start, error = %e, "wal fdatasync failed");
                cut_back(seg, start);
                return Err(WalError::io("fdatasync segment", e));
            }
            self.last_sync = Instant::now();
        }
        counters.bytes_written.fetch_add(total, Ordering::Relaxed);
        counters.records_written.fetch_add(self.batch.len() as u64, Ordering::Relaxed);
        counters.batches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Finishes the current segment and starts segment `n`.
    fn rotate_to(&mut self, n: u64) {
        if let Current::Open(seg) = &mut self.current {
            if seg.unsynced
                && !matches!(self.policy, SyncPolicy::Never)
                && let Err(e) = sync(seg, &self.shared.counters)
            {
                // Records in it were already released (Interval): report loudly.
                error!(segment = seg.number, error = %e, "wal fdatasync of finished segment failed");
            }
            info!(segment = seg.number, bytes = seg.len, next = n, "wal segment closed");
        }
        self.current = Current::Pending(n);
        self.shared.state.lock().writer_segment = n;
        self.shared.progress.notify_all();
        match create_segment(self.io.as_ref(), &self.dir, n, self.policy) {
            Ok(file) => {
                self.current = Current::Open(Segment {
                    number: n,
                    file,
                    len: SEGMENT_HEADER_LEN,
                    unsynced: false,
                    needs_truncate: false,
                });
                self.shared.counters.current_segment.store(n, Ordering::Relaxed);
            }
            Err(e) => {
                self.shared.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                error!(segment = n, error = %e, "cannot create wal segment, retrying on next write");
            }
        }
    }

    /// `SyncPolicy::Interval`: syncs when the interval since the last sync has passed.
    fn interval_sync(&mut self) {
        let SyncPolicy::Interval(every) = self.policy else {
            return;
        };
        if self.last_sync.elapsed() < every {
            return;
        }
        if let Current::Open(seg) = &mut self.current
            && seg.unsynced
            && let Err(e) = sync(seg, &self.shared.counters)
        {
            error!(segment = seg.number, error = %e, "wal interval fdatasync failed");
        }
        self.last_sync = Instant::now();
    }

    fn final_sync(&mut self) -> Result<(), WalError> {
        match &mut self.current {
            Current::Open(seg) if seg.unsynced => {
                sync(seg, &self.shared.counters).map_err(|e| WalError::io("final fdatasync", e))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Tickets of everything still queued (possible only after a panic) resolve to `Closed`
        // when their senders drop here.
        let leftover = {
            let mut st = self.shared.state.lock();
            st.writer_gone = true;
            std::mem::take(&mut st.queue)
        };
        self.shared.progress.notify_all();
        drop(leftover);
        self.shared.budget.close();
    }
}

fn sync(seg: &mut Segment, counters: &Counters) -> std::io::Result<()> {
    let started = Instant::now();
    let result = seg.file.sync_data();
    counters.fsync_nanos.fetch_add(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    match result {
        Ok(()) => {
            counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            seg.unsynced = false;
            Ok(())
        }
        Err(e) => {
            counters.sync_errors.fetch_add(1, Ordering::Relaxed);
            Err(e)
        }
    }
}

/// After a failed write or sync: drops everything past `start` so later records never follow
/// garbage. If even that fails, the next write retries it first.
fn cut_back(seg: &mut Segment, start: u64) {
    seg.len = start;
    if let Err(e) = seg.file.truncate(start) {
        error!(segment = seg.number, offset = start, error = %e, "wal truncate after failed write failed");
        seg.needs_truncate = true;
    }
}
