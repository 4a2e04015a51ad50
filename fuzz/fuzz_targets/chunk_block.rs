//! One block as it arrives from another process (`BlockHandle::from_wire`, the querier's view of
//! an ingester's `Select` answer): decompression bounded by the header's length, then the
//! timestamp, length, metadata and line columns, and every accessor of the decoded block.
//!
//! Input: codec id u8, count u32, min_ts i64, max_ts i64, uncompressed_len u32 (little-endian),
//! then the payload; the header's compressed length and CRC32C are computed from the payload.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use norn::chunk::{BlockHandle, BlockMeta, Codec};

const HEADER: usize = 1 + 4 + 8 + 8 + 4;

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER {
        return;
    }
    let Some(codec) = Codec::from_id(data[0]) else { return };
    let u32_at = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
    let i64_at = |at: usize| i64::from_le_bytes(data[at..at + 8].try_into().unwrap());
    let payload = &data[HEADER..];
    let meta = BlockMeta {
        count: u32_at(1),
        min_ts: i64_at(5),
        max_ts: i64_at(13),
        uncompressed_len: u32_at(21),
        compressed_len: payload.len() as u32,
        crc32c: crc32c::crc32c(payload),
        offset: 0,
    };
    let Ok(handle) = BlockHandle::from_wire(meta, codec, Bytes::copy_from_slice(payload)) else { return };
    let Ok(block) = handle.decode() else { return };
    assert_eq!(block.len(), meta.count as usize, "decoded entry count differs from the header");
    let ts = block.timestamps();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "timestamps not sorted");
    for i in 0..block.len() {
        let e = block.entry(i);
        assert!(block.contains(e.ts, &e.line, &e.metadata));
        assert!(block.line_range(i).end <= block.lines_buf().len());
        let _ = block.entry_index_at(block.line_range(i).start);
    }
    let _ = block.range_of(meta.min_ts, meta.max_ts);
});
