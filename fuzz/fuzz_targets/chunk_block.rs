//! One block as it arrives from another process (`BlockHandle::from_wire`, the querier's view of
//! an ingester's `Select` answer): decompression bounded by the header's length, then the
//! timestamp, length, metadata and line columns, and every accessor of the decoded block.
//!
//! Input: see `norn::fuzzing::WIRE_BLOCK_HEADER` (codec, count, timestamps, lengths, and the
//! format-2 section lengths when the sectioned flag is set), then the payload; the stored length
//! and checksums are computed from the payload. The column-only read must agree with the full
//! decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use norn::chunk::BlockHandle;

fuzz_target!(|data: &[u8]| {
    let Some((meta, codec, payload)) = norn::fuzzing::wire_block(data) else { return };
    let Ok(handle) = BlockHandle::from_wire(meta, codec, payload) else { return };
    let columns = handle.clone().decode_columns();
    let Ok(block) = handle.decode() else { return };
    let columns = columns.expect("the column section decodes when the whole block does");
    assert_eq!(columns.timestamps(), block.timestamps(), "column timestamps differ from the block's");
    for i in 0..block.len() {
        assert_eq!(columns.line_len(i), block.line_range(i).len(), "column line length differs");
    }
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
