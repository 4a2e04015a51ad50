//! Damage on disk: torn tails, bit flips, bad headers, damaged checkpoints.

use std::fs;
use std::path::Path;

use super::*;
use crate::wal::format::Corruption;

/// Segment 0 holds r0 (10 bytes at offset 16), r1 (300 bytes at 34), r2 (57 bytes at 342,
/// ending at 407); segment 1 holds r3.
fn two_segments(dir: &Path) -> [Bytes; 4] {
    let records = [payload(0, 10), payload(1, 300), payload(2, 57), payload(3, 20)];
    let wal = Wal::open(config(dir, SyncPolicy::Never)).unwrap();
    append(&wal, &records[..3]);
    assert_eq!(wal.rotate().unwrap(), 1);
    append(&wal, &records[3..]);
    wal.close().unwrap();
    assert_eq!(seg_len(dir, 0), 407);
    records
}

fn seg_path(dir: &Path, n: u64) -> std::path::PathBuf {
    dir.join(segment_file_name(n))
}

fn seg_len(dir: &Path, n: u64) -> u64 {
    fs::metadata(seg_path(dir, n)).unwrap().len()
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

fn flip_bit(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 1 << (offset % 8);
    fs::write(path, bytes).unwrap();
}

#[test]
fn torn_tail_at_every_offset_of_the_last_record() {
    let src = tempfile::tempdir().unwrap();
    let [r0, r1, r2, r3] = two_segments(src.path());
    for cut in 342..407u64 {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(src.path(), tmp.path());
        truncate(&seg_path(tmp.path(), 0), cut);
        let (got, report) = replay_all(tmp.path());
        assert_eq!(payloads(&got), vec![r0.clone(), r1.clone(), r3.clone()], "cut {cut}");
        assert_eq!(got[2].0, RecordSource::Segment(1));
        assert_eq!(report.segments, vec![0, 1]);
        if cut == 342 {
            assert_eq!(report.issues, vec![], "cut on a record boundary is clean");
            continue;
        }
        let needed = if cut < 350 { 8 } else { 65 };
        assert_eq!(
            report.issues,
            vec![ReplayIssue::Segment {
                segment: 0,
                offset: 342,
                reason: Corruption::TornRecord { needed, available: cut - 342 },
            }],
            "cut {cut}"
        );
    }
    let (got, _) = replay_all(src.path());
    assert_eq!(payloads(&got), vec![r0, r1, r2, r3]);
}

#[test]
fn torn_segment_header_skips_only_that_segment() {
    let src = tempfile::tempdir().unwrap();
    let records = two_segments(src.path());
    for cut in 0..16u64 {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(src.path(), tmp.path());
        truncate(&seg_path(tmp.path(), 0), cut);
        let (got, report) = replay_all(tmp.path());
        assert_eq!(payloads(&got), vec![records[3].clone()]);
        assert_eq!(
            report.issues,
            vec![ReplayIssue::Segment { segment: 0, offset: 0, reason: Corruption::TruncatedHeader { len: cut } }]
        );
    }
}

#[test]
fn bad_segment_header_is_reported() {
    let src = tempfile::tempdir().unwrap();
    let records = two_segments(src.path());
    for (offset, reason) in [(3, Corruption::BadMagic), (8, Corruption::UnsupportedVersion { version: 0 })] {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(src.path(), tmp.path());
        flip_bit(&seg_path(tmp.path(), 0), offset);
        let (got, report) = replay_all(tmp.path());
        assert_eq!(payloads(&got), vec![records[3].clone()]);
        assert_eq!(report.issues, vec![ReplayIssue::Segment { segment: 0, offset: 0, reason }]);
    }
}

#[test]
fn a_bit_flip_anywhere_in_a_record_is_caught() {
    let src = tempfile::tempdir().unwrap();
    let [r0, _, _, r3] = two_segments(src.path());
    // r1's frame: header at 34..42, payload 42..342.
    for offset in 34..342usize {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(src.path(), tmp.path());
        flip_bit(&seg_path(tmp.path(), 0), offset);
        let (got, report) = replay_all(tmp.path());
        assert_eq!(payloads(&got), vec![r0.clone(), r3.clone()], "flip at {offset}");
        let [ReplayIssue::Segment { segment: 0, offset: 34, reason }] = report.issues.as_slice() else {
            panic!("flip at {offset}: unexpected issues {:?}", report.issues);
        };
        assert!(
            matches!(reason, Corruption::CrcMismatch { .. } | Corruption::TornRecord { .. }),
            "flip at {offset}: {reason:?}"
        );
    }
}

#[test]
fn zeroed_tail_is_not_read_as_empty_records() {
    let tmp = tempfile::tempdir().unwrap();
    let records = two_segments(tmp.path());
    let path = seg_path(tmp.path(), 0);
    truncate(&path, 407 + 4096);
    let (got, report) = replay_all(tmp.path());
    assert_eq!(payloads(&got), records.to_vec());
    assert!(matches!(
        report.issues.as_slice(),
        [ReplayIssue::Segment { segment: 0, offset: 407, reason: Corruption::CrcMismatch { stored: 0, .. } }]
    ));
}

/// Writes checkpoint A over segment 0, then checkpoint B over segment 1, and returns the
/// directory state as if the process died right after B was renamed into place (A and the
/// segments it covers not deleted yet).
fn two_checkpoints(dir: &Path) -> (Vec<Bytes>, u64, u64) {
    let saved = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir, SyncPolicy::Never)).unwrap();
    let mut memory = vec![payload(0, 100), payload(1, 100)];
    append(&wal, &memory);
    let a = wal.rotate().unwrap();
    wal.write_checkpoint(a, memory.clone()).unwrap();
    append(&wal, &[payload(2, 100)]);
    memory.push(payload(2, 100));
    copy_dir(dir, saved.path());
    let b = wal.rotate().unwrap();
    wal.write_checkpoint(b, memory.clone()).unwrap();
    append(&wal, &[payload(3, 100)]);
    memory.push(payload(3, 100));
    wal.close().unwrap();
    fs::copy(saved.path().join(checkpoint_file_name(a)), dir.join(checkpoint_file_name(a))).unwrap();
    fs::copy(saved.path().join(segment_file_name(a)), seg_path(dir, a)).unwrap();
    (memory, a, b)
}

#[test]
fn damaged_checkpoint_falls_back_to_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (memory, a, b) = two_checkpoints(tmp.path());
    // Undamaged: the newest checkpoint wins.
    let (got, report) = replay_all(tmp.path());
    assert_eq!(payloads(&got), memory);
    assert_eq!(report.checkpoint, Some(b));

    flip_bit(&tmp.path().join(checkpoint_file_name(b)), 24 + 8 + 50);
    let (got, report) = replay_all(tmp.path());
    assert_eq!(payloads(&got), memory, "each record exactly once");
    assert_eq!(report.checkpoint, Some(a));
    assert_eq!(report.checkpoint_records, 2);
    assert_eq!(report.segments, vec![a, b]);
    assert!(matches!(
        report.issues.as_slice(),
        [ReplayIssue::Checkpoint {
            checkpoint,
            offset: 24,
            reason: Corruption::CrcMismatch { .. }
        }] if *checkpoint == b
    ));
}

#[test]
fn damaged_only_checkpoint_replays_segments_and_reports_the_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(tmp.path(), SyncPolicy::Never)).unwrap();
    append(&wal, &[payload(0, 100)]);
    let n = wal.rotate().unwrap();
    wal.write_checkpoint(n, vec![payload(0, 100)]).unwrap();
    append(&wal, &[payload(1, 100)]);
    wal.close().unwrap();
    let path = tmp.path().join(checkpoint_file_name(n));
    let len = fs::metadata(&path).unwrap().len();
    flip_bit(&path, len as usize - 3);

    let (got, report) = replay_all(tmp.path());
    assert_eq!(payloads(&got), vec![payload(1, 100)]);
    assert_eq!(report.checkpoint, None);
    assert!(
        matches!(
            report.issues.as_slice(),
            [
                ReplayIssue::Checkpoint {
                    checkpoint,
                    offset,
                    reason: Corruption::CountMismatch { read: 1, .. },
                },
                ReplayIssue::MissingSegments { first: 0, last },
            ] if *checkpoint == n && *offset == len - 16 && *last == n - 1
        ),
        "{:?}",
        report.issues
    );
}

#[test]
fn every_kind_of_checkpoint_damage_is_rejected() {
    let src = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(src.path(), SyncPolicy::Never)).unwrap();
    let n = wal.rotate().unwrap();
    let memory: Vec<Bytes> = (0..3).map(|i| payload(i, 50)).collect();
    wal.write_checkpoint(n, memory.clone()).unwrap();
    wal.close().unwrap();
    let name = checkpoint_file_name(n);
    let len = fs::metadata(src.path().join(&name)).unwrap().len();
    assert_eq!(len, 24 + 3 * 58 + 16);

    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(Damage, u64, Corruption)> = vec![
        (Box::new(|p| flip_bit(p, 1)), 0, Corruption::BadMagic),
        (Box::new(|p| flip_bit(p, 16)), 0, Corruption::NumberMismatch { in_header: n ^ 1 }),
        (Box::new(|p| truncate(p, 24 + 2 * 58)), 24 + 58, Corruption::TornRecord { needed: 58, available: 42 }),
        (Box::new(move |p| truncate(p, len - 1)), 24 + 2 * 58, Corruption::TornRecord { needed: 58, available: 57 }),
        (Box::new(move |p| flip_bit(p, len as usize - 16)), len - 16, Corruption::BadFooter),
        (Box::new(|p| truncate(p, 30)), 0, Corruption::TruncatedHeader { len: 30 }),
    ];
    for (damage, offset, reason) in cases {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(src.path(), tmp.path());
        damage(&tmp.path().join(&name));
        let mut delivered = 0;
        let report = replay(tmp.path(), |_, _| {
            delivered += 1;
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap();
        assert_eq!(delivered, 0, "a damaged checkpoint delivers nothing");
        assert_eq!(report.checkpoint, None);
        assert_eq!(report.issues.first(), Some(&ReplayIssue::Checkpoint { checkpoint: n, offset, reason }));
    }
}

#[test]
fn callback_error_aborts_replay() {
    let tmp = tempfile::tempdir().unwrap();
    two_segments(tmp.path());
    let mut seen = 0;
    let err = replay(tmp.path(), |_, _| {
        seen += 1;
        if seen == 2 { Err("stop") } else { Ok(()) }
    })
    .unwrap_err();
    assert!(matches!(err, ReplayError::Callback("stop")));
    assert_eq!(seen, 2);
}

#[test]
fn missing_directory_replays_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (got, report) = replay_all(&tmp.path().join("absent"));
    assert!(got.is_empty());
    assert_eq!(report, ReplayReport::default());
}
