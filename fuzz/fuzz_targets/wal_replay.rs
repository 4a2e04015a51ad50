//! WAL replay over a damaged directory: the segment and checkpoint framing (headers, lengths,
//! CRC32C, footers, torn tails) and every record replay hands over, decoded as the ingester does.
//!
//! Input: byte 0 says what the rest is: a segment file (bit 0 clear) or a checkpoint covering
//! segments `< 1` (bit 0 set; replay then also reads an empty segment 1 after it).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use norn::chunk::MemChunk;
use norn::entry::Direction;
use norn::ingester::walrec::Record;

const SEGMENT_0: &str = "00000000000000000000.wal";
const SEGMENT_1: &str = "00000000000000000001.wal";
const CHECKPOINT_1: &str = "checkpoint.00000000000000000001";

/// One directory per fuzzing process, on tmpfs when there is one.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let d = DIR.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("temp dir")
    });
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| d.path().to_path_buf())
}

fn record(payload: Bytes) {
    if let Ok(Record::Checkpoint(cs)) = Record::decode(payload) {
        for (_, chunk) in cs.chunks {
            if let Ok(c) = MemChunk::decode(chunk) {
                c.iter(i64::MIN, i64::MAX, Direction::Forward).for_each(drop);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, file)) = data.split_first() else { return };
    let dir = dir();
    for name in [SEGMENT_0, SEGMENT_1, CHECKPOINT_1] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    if kind & 1 == 0 {
        std::fs::write(dir.join(SEGMENT_0), file).expect("write segment");
    } else {
        std::fs::write(dir.join(CHECKPOINT_1), file).expect("write checkpoint");
        std::fs::write(dir.join(SEGMENT_1), b"").expect("write segment");
    }
    let report = norn::wal::replay(dir, |_, payload| {
        record(payload);
        Ok::<(), std::convert::Infallible>(())
    });
    // Damage is reported, never an error: only I/O or the callback fail a replay.
    if let Err(e) = report {
        panic!("replay failed: {e}");
    }
});
