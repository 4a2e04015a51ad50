//! WAL tests: the write path and checkpoints here; damage on disk in `crash`, injected I/O
//! failures and backpressure in `faults`, a real `kill -9` in `kill9`, random histories in
//! `history`.

mod crash;
mod faults;
mod history;
mod kill9;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::executor::block_on;

use super::format::{checkpoint_file_name, checkpoint_tmp_name, list_dir, segment_file_name};
use super::*;

/// A config with small segments so that tests cross segment boundaries.
fn config(dir: &Path, sync: SyncPolicy) -> WalConfig {
    WalConfig { sync, ..WalConfig::new(dir) }
}

/// A recognizable payload: the id, then bytes derived from it.
fn payload(id: u64, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len.max(8));
    v.extend_from_slice(&id.to_le_bytes());
    v.extend((0..len.saturating_sub(8)).map(|i| (id as usize * 31 + i * 7) as u8));
    v.truncate(len.max(8));
    Bytes::from(v)
}

/// Submits every payload and waits for all tickets.
fn append(wal: &Wal, records: &[Bytes]) {
    let tickets: Vec<_> = records.iter().map(|r| wal.submit(r.clone()).expect("submit")).collect();
    for t in tickets {
        block_on(t).expect("ticket");
    }
}

/// Replays `dir`, returning every record with its source.
fn replay_all(dir: &Path) -> (Vec<(RecordSource, Bytes)>, ReplayReport) {
    let mut out = Vec::new();
    let report = replay(dir, |src, p| {
        out.push((src, p));
        Ok::<(), std::convert::Infallible>(())
    })
    .expect("replay");
    (out, report)
}

fn payloads(records: &[(RecordSource, Bytes)]) -> Vec<Bytes> {
    records.iter().map(|(_, p)| p.clone()).collect()
}

fn segment_numbers(dir: &Path) -> Vec<u64> {
    list_dir(dir).expect("list").segments.iter().map(|(n, _)| *n).collect()
}

/// Waits for `cond` with a deadline (for effects of the writer's own timers).
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn handles_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Wal>();
    fn assert_send<T: Send + 'static>() {}
    assert_send::<WalTicket>();
}

#[test]
fn records_round_trip_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(tmp.path(), SyncPolicy::Batch)).unwrap();
    let records: Vec<Bytes> = (0..50).map(|i| payload(i, 1 + (i as usize * 97) % 5000)).collect();
    append(&wal, &records);
    append(&wal, &[Bytes::new()]);
    wal.close().unwrap();

    let (got, report) = replay_all(tmp.path());
    let mut expected = records.clone();
    expected.push(Bytes::new());
    assert_eq!(payloads(&got), expected);
    assert!(got.iter().all(|(s, _)| *s == RecordSource::Segment(0)));
    assert_eq!(report.issues, vec![]);
    assert_eq!(report.segments, vec![0]);
    assert_eq!(report.segment_records, 51);
    assert_eq!(report.checkpoint, None);
    let bytes: usize = expected.iter().map(|r| r.len()).sum();
    assert_eq!(report.bytes, bytes as u64);
}

#[test]
fn open_starts_a_new_segment_after_existing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Wal::open(config(tmp.path(), SyncPolicy::Never)).unwrap();
    append(&first, &[payload(1, 100)]);
    first.close().unwrap();
    let second = Wal::open(config(tmp.path(), SyncPolicy::Never)).unwrap();
    append(&second, &[payload(2, 100)]);
    second.close().unwrap();
    assert_eq!(segment_numbers(tmp.path()), vec![0, 1]);
    let (got, report) = replay_all(tmp.path());
    assert_eq!(payloads(&got), vec![payload(1, 100), payload(2, 100)]);
    assert_eq!(got[1].0, RecordSource::Segment(1));
    assert_eq!(report.issues, vec![]);

    // A checkpoint numbered past every segment also pushes the next segment number.
    std::fs::write(tmp.path().join(checkpoint_tmp_name(9)), b"junk").unwrap();
    let third = Wal::open(config(tmp.path(), SyncPolicy::Never)).unwrap();
    let n = third.rotate().unwrap();
    third.write_checkpoint(n, Vec::new()).unwrap();
    third.close().unwrap();
    assert!(!tmp.path().join(checkpoint_tmp_name(9)).exists());
    let fourth = Wal::open(config(tmp.path(), SyncPolicy::Never)).unwrap();
    assert_eq!(fourth.stats().current_segment, n + 1);
    fourth.close().unwrap();
}

#[test]
fn a_directory_has_one_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data").join("wal");
    let wal = Wal::open(config(&dir, SyncPolicy::Never)).unwrap();
    assert!(matches!(Wal::open(config(&dir, SyncPolicy::Never)), Err(WalError::Locked(_))));
    wal.close().unwrap();
    Wal::open(config(&dir, SyncPolicy::Never)).unwrap().close().unwrap();
    assert_eq!(segment_numbers(&dir), vec![0, 1]);
}

#[test]
fn close_drains_and_later_submits_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(tmp.path(), SyncPolicy::Batch)).unwrap();
    let records: Vec<Bytes> = (0..200).map(|i| payload(i, 1000)).collect();
    let tickets: Vec<_> = records.iter().map(|r| wal.submit(r.clone()).unwrap()).collect();
    wal.close().unwrap();
    for t in tickets {
        block_on(t).unwrap();
    }
    assert!(matches!(wal.submit(payload(0, 10)), Err(WalError::Closed)));
    assert!(matches!(wal.rotate(), Err(WalError::Closed)));
    assert!(matches!(block_on(wal.submit_async(payload(0, 10))), Err(WalError::Closed)));
    wal.close().unwrap();
    let (got, _) = replay_all(tmp.path());
    assert_eq!(payloads(&got), records);
}

#[test]
fn size_limit_rotates_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = WalConfig { segment_size: 1000, ..config(tmp.path(), SyncPolicy::Never) };
    let wal = Wal::open(cfg).unwrap();
    // 300-byte frames: three fit in 1000 bytes with the header; the 2000-byte one is alone.
    let mut records: Vec<Bytes> = (0..7).map(|i| payload(i, 292)).collect();
    records.push(payload(7, 2000));
    records.push(payload(8, 292));
    append(&wal, &records);
    wal.close().unwrap();
    let (got, report) = replay_all(tmp.path());
    assert_eq!(payloads(&got), records);
    let sources: Vec<_> = got.iter().map(|(s, _)| *s).collect();
    use RecordSource::Segment as S;
    assert_eq!(sources, vec![S(0), S(0), S(0), S(1), S(1), S(1), S(2), S(3), S(4)]);
    assert_eq!(report.issues, vec![]);
    for (_, path) in list_dir(tmp.path()).unwrap().segments.iter().take(2) {
        assert!(std::fs::metadata(path).unwrap().len() <= 1000);
    }
}

#[test]
fn stats_count_writes_and_disk_usage() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(tmp.path(), SyncPolicy::Batch)).unwrap();
    append(&wal, &[payload(1, 100), payload(2, 200)]);
    wal.rotate().unwrap();
    append(&wal, &[payload(3, 300)]);
    let stats = wal.stats();
    assert_eq!(stats.records_written, 3);
    assert_eq!(stats.bytes_written, 600 + 3 * 8);
    assert!(stats.batches >= 2 && stats.batches <= 3);
    assert!(stats.fsyncs >= stats.batches);
    assert_eq!(stats.current_segment, 1);
    assert_eq!(stats.segments_on_disk, 2);
    assert_eq!(stats.segment_bytes_on_disk, 16 * 2 + 600 + 3 * 8);
    assert_eq!(stats.queued_bytes, 0);
    assert_eq!(stats.write_errors + stats.sync_errors, 0);
    wal.close().unwrap();
}

#[test]
fn interval_policy_syncs_in_the_background() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(tmp.path(), SyncPolicy::Interval(Duration::from_millis(20)))).unwrap();
    append(&wal, &[payload(1, 100)]);
    wait_until("an interval fsync", || wal.stats().fsyncs >= 1);
    wal.close().unwrap();
    let (got, _) = replay_all(tmp.path());
    assert_eq!(payloads(&got), vec![payload(1, 100)]);
}

#[test]
fn checkpoint_replays_each_record_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(tmp.path(), SyncPolicy::Batch)).unwrap();
    let before: Vec<Bytes> = (0..5).map(|i| payload(i, 500)).collect();
    append(&wal, &before);
    let mid = wal.rotate().unwrap();
    append(&wal, &[payload(99, 10)]);
    let n = wal.rotate().unwrap();
    assert_eq!((mid, n), (1, 2));
    let mut memory = before.clone();
    memory.push(payload(99, 10));
    let stats = wal.write_checkpoint(n, memory.clone()).unwrap();
    assert_eq!(stats.records, 6);
    assert_eq!(stats.segments_deleted, 2);
    let after: Vec<Bytes> = (100..103).map(|i| payload(i, 700)).collect();
    append(&wal, &after);
    wal.close().unwrap();

    assert_eq!(segment_numbers(tmp.path()), vec![2]);
    let listing = list_dir(tmp.path()).unwrap();
    assert_eq!(listing.checkpoints.len(), 1);
    assert_eq!(std::fs::metadata(tmp.path().join(checkpoint_file_name(n))).unwrap().len(), stats.bytes);

    let (got, report) = replay_all(tmp.path());
    let mut expected = memory.clone();
    expected.extend(after.iter().cloned());
    assert_eq!(payloads(&got), expected);
    assert!(got[..6].iter().all(|(s, _)| *s == RecordSource::Checkpoint));
    assert!(got[6..].iter().all(|(s, _)| *s == RecordSource::Segment(2)));
    assert_eq!(report.checkpoint, Some(2));
    assert_eq!(report.checkpoint_records, 6);
    assert_eq!(report.segment_records, 3);
    assert_eq!(report.issues, vec![]);
}

#[test]
fn second_checkpoint_deletes_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(tmp.path(), SyncPolicy::Never)).unwrap();
    append(&wal, &[payload(1, 10)]);
    let n1 = wal.rotate().unwrap();
    wal.write_checkpoint(n1, vec![payload(1, 10)]).unwrap();
    append(&wal, &[payload(2, 10)]);
    let n2 = wal.rotate().unwrap();
    let stats = wal.write_checkpoint(n2, vec![payload(1, 10), payload(2, 10)]).unwrap();
    assert_eq!((stats.checkpoints_deleted, stats.segments_deleted), (1, 1));
    let listing = list_dir(tmp.path()).unwrap();
    let checkpoints: Vec<u64> = listing.checkpoints.iter().map(|(n, _)| *n).collect();
    assert_eq!(checkpoints, vec![n2]);
    assert_eq!(segment_numbers(tmp.path()), vec![n2]);
    assert_eq!(wal.stats().checkpoint, Some(n2));

    assert!(matches!(wal.write_checkpoint(n1, Vec::new()), Err(WalError::StaleCheckpoint { .. })));
    assert!(matches!(wal.write_checkpoint(n2 + 1, Vec::new()), Err(WalError::CheckpointAhead { .. })));
    wal.close().unwrap();
    let (got, _) = replay_all(tmp.path());
    assert_eq!(payloads(&got), vec![payload(1, 10), payload(2, 10)]);
}

/// The ingester's protocol: submit + apply under a read lock, rotate + snapshot under the
/// write lock. Every record applied before the snapshot must be in a segment below N, and
/// every record after it in N or later, whatever the writer's progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_is_ordered_with_concurrent_submits() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(tmp.path(), SyncPolicy::Never)).unwrap();
    let lock = Arc::new(tokio::sync::RwLock::new(()));
    let memory = Arc::new(parking_lot::Mutex::new(Vec::<u64>::new()));
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let (wal, lock, memory) = (wal.clone(), lock.clone(), memory.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..200u64 {
                let id = task * 1000 + i;
                let ticket = {
                    let _shared = lock.read().await;
                    let ticket = wal.submit_async(payload(id, 64)).await.unwrap();
                    memory.lock().push(id);
                    ticket
                };
                ticket.await.unwrap();
            }
        }));
    }
    let mut snapshots = Vec::new();
    for _ in 0..5 {
        tokio::task::yield_now().await;
        let _exclusive = lock.write().await;
        let n = wal.rotate().unwrap();
        snapshots.push((n, memory.lock().clone()));
    }
    for t in tasks {
        t.await.unwrap();
    }
    wal.close().unwrap();
    let (got, report) = replay_all(tmp.path());
    assert_eq!(report.issues, vec![]);
    assert_eq!(got.len(), 1600);
    for (n, snapshot) in snapshots {
        let snap: std::collections::HashSet<u64> = snapshot.into_iter().collect();
        for (src, p) in &got {
            let RecordSource::Segment(seg) = *src else { panic!("no checkpoint written") };
            let id = u64::from_le_bytes(p[..8].try_into().unwrap());
            assert_eq!(snap.contains(&id), seg < n, "record {id} in segment {seg}, N={n}");
        }
    }
}

#[test]
fn config_is_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = [
        WalConfig { segment_size: 16, ..WalConfig::new(tmp.path()) },
        WalConfig { max_queued_bytes: 0, ..WalConfig::new(tmp.path()) },
        WalConfig { max_queued_bytes: 1 << 33, ..WalConfig::new(tmp.path()) },
        WalConfig { sync: SyncPolicy::Interval(Duration::ZERO), ..WalConfig::new(tmp.path()) },
    ];
    for cfg in bad {
        assert!(matches!(Wal::open(cfg), Err(WalError::InvalidConfig(_))));
    }
    assert!(!tmp.path().join(segment_file_name(0)).exists());
}
