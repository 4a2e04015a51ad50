//! The chunk decoder (`Chunk::decode`, what a querier runs on an object it read, and
//! `MemChunk::decode`, what WAL replay runs on a checkpointed chunk), then every block
//! decompressed and iterated both ways.
//!
//! Input: byte 0, bit 0 set: the block and header checksums are recomputed over the rest before
//! decoding, so the fuzzer also reaches layout checks, decompression and the block columns
//! instead of stopping at a checksum mismatch.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use norn::chunk::{Chunk, ChunkReader, MemChunk};
use norn::entry::{Direction, Entry};

/// Magic, version, codec, flags and block count (see `chunk/format.rs`).
const FIXED_HEADER_LEN: usize = 12;
const BLOCK_META_LEN: usize = 40;

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Rewrites each block's CRC32C over the payload its header points at, then the header CRC.
fn fix_checksums(data: &mut [u8]) {
    if data.len() < FIXED_HEADER_LEN + 4 {
        return;
    }
    let n = le_u32(data, 8) as usize;
    let Some(meta_end) = n.checked_mul(BLOCK_META_LEN).map(|m| m + FIXED_HEADER_LEN) else { return };
    if meta_end + 4 > data.len() {
        return;
    }
    let payloads_at = meta_end + 4;
    for i in 0..n {
        let at = FIXED_HEADER_LEN + i * BLOCK_META_LEN;
        let len = le_u32(data, at + 24) as usize;
        let offset = le_u64(data, at + 32) as usize;
        let range = payloads_at.checked_add(offset).and_then(|s| Some(s..s.checked_add(len)?));
        if let Some(range) = range.filter(|r| r.end <= data.len()) {
            let crc = crc32c::crc32c(&data[range]);
            data[at + 28..at + 32].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&data[..meta_end]);
    data[meta_end..meta_end + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Every entry, or `None` when a block fails to decode.
fn entries(reader: &impl ChunkReader, direction: Direction) -> Option<Vec<Entry>> {
    let mut it = reader.iter(i64::MIN, i64::MAX, direction);
    let out: Vec<Entry> = it.by_ref().collect();
    it.take_error().is_none().then_some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else { return };
    let mut body = body.to_vec();
    if flags & 1 == 1 {
        fix_checksums(&mut body);
    }
    let body = Bytes::from(body);

    let Ok(chunk) = Chunk::decode(body.clone()) else {
        assert!(MemChunk::decode(body).is_err(), "MemChunk decodes what Chunk refuses");
        return;
    };
    for i in 0..chunk.blocks().len() {
        if let Ok(block) = chunk.decode_block(i) {
            for j in 0..block.len() {
                let e = block.entry(j);
                assert!(block.contains(e.ts, &e.line, &e.metadata), "entry {j} of block {i} not found in it");
                let _ = block.entry_index_at(block.line_range(j).start);
            }
        }
    }
    let forward = entries(&chunk, Direction::Forward);
    let backward = entries(&chunk, Direction::Backward);
    assert_eq!(forward.is_some(), backward.is_some(), "only one direction fails");

    // What replay rebuilds from a checkpoint holds the same entries, and encodes back to them.
    if let Ok(mem) = MemChunk::decode(body) {
        let again = entries(&mem, Direction::Forward);
        assert_eq!(again.is_some(), forward.is_some());
        if let (Some(a), Some(f)) = (&again, &forward) {
            assert_eq!(a.len(), f.len(), "MemChunk and Chunk disagree");
        }
        let reencoded = Chunk::decode(mem.encode()).expect("a re-encoded chunk decodes");
        assert_eq!(entries(&reencoded, Direction::Forward).map(|e| e.len()), again.map(|e| e.len()));
    }
});
