//! `Content-Encoding` of push bodies: gzip (also `x-gzip`, multi-member), deflate (zlib or raw)
//! and the pass-through encodings, each bounded by the body limit (zip bombs), then the body
//! in the format chosen by the first byte.
//!
//! Input: byte 0 picks the encoding (bits 0-2) and the format (bit 3); the rest is the body.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use norn::distributor::decode::{Format, decode, decode_content_encoding};
use norn::limits::Limits;

const NOW_NS: i64 = 1_700_000_000_000_000_000;
const MAX_SIZE: usize = 1 << 20;
const ENCODINGS: [&str; 6] = ["gzip", "deflate", "x-gzip", "identity", "snappy", "br"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let encoding = ENCODINGS[usize::from(selector & 7) % ENCODINGS.len()];
    let format = if selector & 8 == 0 { Format::Json } else { Format::Protobuf };
    let Ok(plain) = decode_content_encoding(Bytes::copy_from_slice(body), Some(encoding), MAX_SIZE) else { return };
    assert!(plain.len() <= MAX_SIZE, "decompressed {} bytes past the {MAX_SIZE} limit", plain.len());
    if let Ok(push) = decode(plain, format, MAX_SIZE) {
        let _ = norn::validation::validate("fuzz", push, &Limits::default(), NOW_NS);
    }
});
