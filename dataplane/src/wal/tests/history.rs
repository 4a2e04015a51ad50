//! Random histories of submits, rotations, checkpoints and reopenings: replay always returns
//! exactly the acknowledged records, in order, once each; a torn newest segment yields a prefix.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Step {
    Submit(usize),
    Rotate,
    Checkpoint,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0usize..3000).prop_map(Step::Submit),
        1 => Just(Step::Rotate),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Reopen),
    ]
}

fn replayed(dir: &Path) -> (Vec<Bytes>, ReplayReport) {
    let (got, report) = replay_all(dir);
    (payloads(&got), report)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn replay_returns_exactly_the_history(
        steps in prop::collection::vec(step(), 1..40),
        segment_size in 64u64..8000,
        cut in any::<prop::sample::Index>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = WalConfig { segment_size, ..config(tmp.path(), SyncPolicy::Never) };
        let mut wal = Wal::open(cfg.clone()).unwrap();
        let mut memory: Vec<Bytes> = Vec::new();
        for (id, step) in steps.into_iter().enumerate() {
            match step {
                Step::Submit(len) => {
                    let record = payload(id as u64, len);
                    append(&wal, std::slice::from_ref(&record));
                    memory.push(record);
                }
                Step::Rotate => {
                    wal.rotate().unwrap();
                }
                Step::Checkpoint => {
                    let n = wal.rotate().unwrap();
                    wal.write_checkpoint(n, memory.clone()).unwrap();
                    let listing = list_dir(tmp.path()).unwrap();
                    prop_assert!(listing.segments.iter().all(|(s, _)| *s >= n));
                    let checkpoints: Vec<u64> = listing.checkpoints.iter().map(|(c, _)| *c).collect();
                    prop_assert_eq!(checkpoints, vec![n]);
                }
                Step::Reopen => {
                    wal.close().unwrap();
                    let (got, report) = replayed(tmp.path());
                    prop_assert_eq!(&got, &memory);
                    prop_assert_eq!(report.issues, vec![]);
                    wal = Wal::open(cfg.clone()).unwrap();
                }
            }
        }
        wal.close().unwrap();
        let (got, report) = replayed(tmp.path());
        prop_assert_eq!(&got, &memory);
        prop_assert_eq!(report.issues, vec![]);

        // Tear the newest segment anywhere: replay returns a prefix of the history that keeps
        // everything before that segment.
        let listing = list_dir(tmp.path()).unwrap();
        let (newest, path) = listing.segments.last().unwrap().clone();
        let len = std::fs::metadata(&path).unwrap().len();
        let in_newest = replay_all(tmp.path())
            .0
            .iter()
            .filter(|(s, _)| *s == RecordSource::Segment(newest))
            .count();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut.index(len as usize + 1) as u64)
            .unwrap();
        let (got, report) = replayed(tmp.path());
        prop_assert!(got.len() >= memory.len() - in_newest);
        prop_assert_eq!(&got[..], &memory[..got.len()]);
        prop_assert!(report.issues.len() <= 1);
    }
}
