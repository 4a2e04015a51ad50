//! The index object decoder (what a querier runs on every index object it reads from the object
//! store): counts, string and series indexes, varints, time spans.
//!
//! Input: byte 0, bit 0 set: the trailing CRC32C is recomputed over the rest, so the fuzzer gets
//! past the checksum to the body's decoder. A decoded object encodes back to bytes that decode
//! to the same references.
#![no_main]

use libfuzzer_sys::fuzz_target;
use norn::fuzzing::{decode_index_object, encode_index_object};

const TENANT: &str = "fuzz";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else { return };
    let mut body = body.to_vec();
    if flags & 1 == 1 && body.len() >= 4 {
        let at = body.len() - 4;
        let crc = crc32c::crc32c(&body[..at]);
        body[at..].copy_from_slice(&crc.to_le_bytes());
    }
    let Ok(refs) = decode_index_object(TENANT, &body) else { return };
    let again = decode_index_object(TENANT, &encode_index_object(TENANT, &refs)).expect("a re-encoded index decodes");
    let mut expected = refs.clone();
    expected.sort_by(norn::storage::ChunkRef::storage_order);
    expected.dedup();
    assert_eq!(again.len(), expected.len(), "re-encoding changed the number of references");
});
