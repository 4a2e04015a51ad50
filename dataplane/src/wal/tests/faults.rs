//! Injected I/O failures (ENOSPC, EIO, partial writes, failed truncates and creates), stalls
//! for group commit and backpressure. The real filesystem underneath; only the failures are
//! simulated, through the same `WalIo` seam the writer uses.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use parking_lot::{Condvar, Mutex};

use super::*;
use crate::wal::io::{StdIo, WalFile, WalIo};

const ENOSPC: i32 = 28;
const EIO: i32 = 5;

/// Failure switches shared by a `FaultyIo` and the test driving it.
#[derive(Default)]
struct Faults {
    /// Fail this many upcoming writes with ENOSPC.
    fail_writes: AtomicU32,
    /// A failing write first writes half of its first buffer, like a write cut short.
    partial: AtomicBool,
    /// Fail this many upcoming `fdatasync`s with EIO.
    fail_syncs: AtomicU32,
    /// Fail this many upcoming truncates with EIO.
    fail_truncates: AtomicU32,
    /// Fail this many upcoming file creations with ENOSPC.
    fail_creates: AtomicU32,
    /// Writes block while `stall.0` is true; `stall.1` counts writes blocked there.
    stall: Mutex<(bool, u32)>,
    /// Signals changes of `stall`.
    stall_cv: Condvar,
}

impl Faults {
    fn take(counter: &AtomicU32) -> bool {
        counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }

    fn stall(&self) {
        self.stall.lock().0 = true;
    }

    fn release(&self) {
        self.stall.lock().0 = false;
        self.stall_cv.notify_all();
    }

    /// Blocks until a write is parked at the stall.
    fn wait_blocked(&self) {
        let mut stall = self.stall.lock();
        while stall.1 == 0 {
            self.stall_cv.wait(&mut stall);
        }
    }

    fn pass_stall(&self) {
        let mut stall = self.stall.lock();
        if stall.0 {
            stall.1 += 1;
            self.stall_cv.notify_all();
            while stall.0 {
                self.stall_cv.wait(&mut stall);
            }
            stall.1 -= 1;
        }
    }
}

struct FaultyIo(Arc<Faults>);

impl WalIo for FaultyIo {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        if Faults::take(&self.0.fail_creates) {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(Box::new(FaultyFile { inner: StdIo.create(path)?, faults: self.0.clone() }))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdIo.sync_dir(dir)
    }
}

struct FaultyFile {
    inner: Box<dyn WalFile>,
    faults: Arc<Faults>,
}

impl WalFile for FaultyFile {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.faults.pass_stall();
        if Faults::take(&self.faults.fail_writes) {
            if self.faults.partial.load(Ordering::SeqCst)
                && let Some(first) = bufs.first()
            {
                let half = &first[..first.len() / 2];
                self.inner.write_vectored(&[IoSlice::new(half)])?;
            }
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        self.inner.write_vectored(bufs)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        if Faults::take(&self.faults.fail_syncs) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if Faults::take(&self.faults.fail_truncates) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.truncate(len)
    }
}

fn open_faulty(dir: &Path, cfg: impl FnOnce(WalConfig) -> WalConfig) -> (Wal, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let wal = Wal::open_with_io(cfg(config(dir, SyncPolicy::Batch)), Arc::new(FaultyIo(faults.clone()))).unwrap();
    (wal, faults)
}

fn submit_one(wal: &Wal, record: &Bytes) -> Result<(), WalError> {
    block_on(wal.submit(record.clone())?)
}

fn is_io(result: Result<(), WalError>, errno: i32) -> bool {
    matches!(result, Err(WalError::Io { source, .. }) if source.raw_os_error() == Some(errno))
}

#[test]
fn failed_partial_write_is_cut_and_the_wal_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, faults) = open_faulty(tmp.path(), |c| c);
    let records: Vec<Bytes> = (0..4).map(|i| payload(i, 1000)).collect();
    submit_one(&wal, &records[0]).unwrap();
    faults.partial.store(true, Ordering::SeqCst);
    faults.fail_writes.store(1, Ordering::SeqCst);
    assert!(is_io(submit_one(&wal, &records[1]), ENOSPC));
    submit_one(&wal, &records[2]).unwrap();
    wal.close().unwrap();
    assert_eq!(wal.stats().write_errors, 1);

    let (got, report) = replay_all(tmp.path());
    assert_eq!(payloads(&got), vec![records[0].clone(), records[2].clone()]);
    assert_eq!(report.issues, vec![], "no garbage left between records");
}

#[test]
fn failed_fsync_fails_the_batch_and_drops_its_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, faults) = open_faulty(tmp.path(), |c| c);
    let records: Vec<Bytes> = (0..3).map(|i| payload(i, 1000)).collect();
    submit_one(&wal, &records[0]).unwrap();
    faults.fail_syncs.store(1, Ordering::SeqCst);
    assert!(is_io(submit_one(&wal, &records[1]), EIO));
    submit_one(&wal, &records[2]).unwrap();
    wal.close().unwrap();
    assert_eq!(wal.stats().sync_errors, 1);
    let (got, report) = replay_all(tmp.path());
    assert_eq!(payloads(&got), vec![records[0].clone(), records[2].clone()]);
    assert_eq!(report.issues, vec![]);
}

#[test]
fn failed_truncate_blocks_writes_until_it_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, faults) = open_faulty(tmp.path(), |c| c);
    let records: Vec<Bytes> = (0..4).map(|i| payload(i, 1000)).collect();
    submit_one(&wal, &records[0]).unwrap();
    faults.partial.store(true, Ordering::SeqCst);
    faults.fail_writes.store(1, Ordering::SeqCst);
    faults.fail_truncates.store(2, Ordering::SeqCst);
    assert!(is_io(submit_one(&wal, &records[1]), ENOSPC));
    // The cut failed, and fails again on the next attempt: nothing may be written after the
    // garbage, so this record fails too.
    assert!(is_io(submit_one(&wal, &records[2]), EIO));
    submit_one(&wal, &records[3]).unwrap();
    wal.close().unwrap();
    let (got, report) = replay_all(tmp.path());
    assert_eq!(payloads(&got), vec![records[0].clone(), records[3].clone()]);
    assert_eq!(report.issues, vec![]);
}

#[test]
fn failed_segment_creation_is_retried_and_keeps_rotate_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, faults) = open_faulty(tmp.path(), |c| c);
    let records: Vec<Bytes> = (0..3).map(|i| payload(i, 100)).collect();
    submit_one(&wal, &records[0]).unwrap();
    faults.fail_creates.store(2, Ordering::SeqCst);
    let n = wal.rotate().unwrap();
    // Creation fails at the rotation and again on this record's retry; the record must not
    // fall back into the old segment (the checkpoint at `n` would delete it).
    assert!(is_io(submit_one(&wal, &records[1]), ENOSPC));
    submit_one(&wal, &records[2]).unwrap();
    assert_eq!(wal.stats().current_segment, n);
    wal.close().unwrap();
    let (got, report) = replay_all(tmp.path());
    assert_eq!(
        got,
        vec![(RecordSource::Segment(0), records[0].clone()), (RecordSource::Segment(n), records[2].clone()),]
    );
    assert_eq!(report.issues, vec![]);
}

#[test]
fn failed_checkpoint_write_deletes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, faults) = open_faulty(tmp.path(), |c| c);
    submit_one(&wal, &payload(0, 100)).unwrap();
    let n = wal.rotate().unwrap();
    // Let the writer create segment `n` first, so that the fault hits the checkpoint.
    wait_until("segment creation", || wal.stats().current_segment == n);
    faults.fail_writes.store(1, Ordering::SeqCst);
    let err = wal.write_checkpoint(n, vec![payload(0, 100)]).unwrap_err();
    assert!(matches!(err, WalError::Io { .. }));
    let listing = list_dir(tmp.path()).unwrap();
    assert!(listing.checkpoints.is_empty() && listing.temporaries.is_empty());
    submit_one(&wal, &payload(1, 100)).unwrap();
    wal.close().unwrap();
    let (got, _) = replay_all(tmp.path());
    assert_eq!(payloads(&got), vec![payload(0, 100), payload(1, 100)]);
}

#[test]
fn one_fsync_covers_everything_queued_during_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, faults) = open_faulty(tmp.path(), |c| c);
    faults.stall();
    let first = wal.submit(payload(0, 100)).unwrap();
    faults.wait_blocked();
    // The writer is inside the first batch's write: all of these queue up behind it.
    let tickets: Vec<_> = (1..=100).map(|i| wal.submit(payload(i, 100)).unwrap()).collect();
    faults.release();
    block_on(first).unwrap();
    for t in tickets {
        block_on(t).unwrap();
    }
    let stats = wal.stats();
    assert_eq!(stats.records_written, 101);
    assert_eq!(stats.batches, 2);
    assert_eq!(stats.fsyncs, 2);
    wal.close().unwrap();
}

#[tokio::test]
async fn queue_bound_applies_backpressure() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, faults) = open_faulty(tmp.path(), |c| WalConfig { max_queued_bytes: 1000, ..c });
    faults.stall();
    // Frames are 108 bytes; the first is taken by the (stalled) writer but still counts.
    let mut tickets = vec![wal.submit(payload(0, 100)).unwrap()];
    faults.wait_blocked();
    for i in 1..=8 {
        tickets.push(wal.submit(payload(i, 100)).unwrap());
    }
    assert_eq!(wal.stats().queued_bytes, 9 * 108);
    assert!(matches!(wal.submit(payload(9, 100)), Err(WalError::QueueFull)));
    let waiting = wal.submit_async(payload(9, 100));
    tokio::pin!(waiting);
    assert!(futures::poll!(&mut waiting).is_pending());
    faults.release();
    tickets.push(waiting.await.unwrap());
    for t in tickets {
        t.await.unwrap();
    }
    assert_eq!(wal.stats().queued_bytes, 0);

    // A record larger than the whole budget is admitted alone.
    wal.submit(payload(10, 5000)).unwrap().await.unwrap();
    wal.close().unwrap();
    let (got, _) = replay_all(tmp.path());
    assert_eq!(got.len(), 11);
}

#[tokio::test]
async fn close_wakes_submitters_waiting_for_room() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, faults) = open_faulty(tmp.path(), |c| WalConfig { max_queued_bytes: 200, ..c });
    faults.stall();
    let first = wal.submit(payload(0, 150)).unwrap();
    faults.wait_blocked();
    let waiting = wal.submit_async(payload(1, 150));
    tokio::pin!(waiting);
    assert!(futures::poll!(&mut waiting).is_pending());
    let closer = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.close())
    };
    assert!(matches!(waiting.await, Err(WalError::Closed)));
    faults.release();
    first.await.unwrap();
    closer.join().unwrap().unwrap();
}

/// The same recovery on a real full filesystem. Needs a small dedicated filesystem, e.g.
/// `mount -t tmpfs -o size=2m tmpfs /mnt/walfull`, then
/// `NORN_WAL_SMALL_FS_DIR=/mnt/walfull cargo test -- --ignored real_enospc`.
#[test]
#[ignore = "needs a small filesystem in NORN_WAL_SMALL_FS_DIR"]
fn real_enospc_fails_the_batch_and_recovers_once_space_is_freed() {
    let root = std::env::var_os("NORN_WAL_SMALL_FS_DIR").expect("set NORN_WAL_SMALL_FS_DIR");
    let tmp = tempfile::tempdir_in(root).unwrap();
    let ballast = tmp.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 512 << 10]).unwrap();
    let wal = Wal::open(config(&tmp.path().join("wal"), SyncPolicy::Batch)).unwrap();
    let mut acked = Vec::new();
    let mut failed = 0;
    for id in 0..10_000 {
        let record = payload(id, 100 << 10);
        match submit_one(&wal, &record) {
            Ok(()) => acked.push(record),
            Err(e) => {
                assert!(is_io(Err(e), ENOSPC), "expected ENOSPC");
                failed += 1;
                break;
            }
        }
    }
    assert_eq!(failed, 1, "the filesystem never filled up");
    assert!(is_io(submit_one(&wal, &payload(20_000, 100 << 10)), ENOSPC));
    std::fs::remove_file(&ballast).unwrap();
    for id in 30_000..30_003 {
        let record = payload(id, 100 << 10);
        submit_one(&wal, &record).unwrap();
        acked.push(record);
    }
    wal.close().unwrap();
    let (got, report) = replay_all(&tmp.path().join("wal"));
    assert_eq!(payloads(&got), acked);
    assert_eq!(report.issues, vec![]);
}
