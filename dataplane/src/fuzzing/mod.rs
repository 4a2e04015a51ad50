//! Entry points for the fuzz targets in `fuzz/` (and the seed corpus generator) that are not
//! otherwise public. Not an API: each function is a thin wrapper over the crate-private code a
//! server runs on bytes it receives, so the fuzzers exercise exactly that code.

use bytes::Bytes;

use crate::chunk::{BlockHandle, BlockMeta, BlockSections, Codec};
use crate::entry::PushStream;
use crate::rpc::proto::{BlockMsg, PushRequest};
use crate::storage::ChunkRef;

/// Decodes an index object as a querier does after reading it from the object store; returns
/// the chunk references.
pub fn decode_index_object(tenant: &str, data: &[u8]) -> Result<Vec<ChunkRef>, String> {
    crate::storage::index_codec::decode(tenant, "fuzz", data).map(|o| o.refs).map_err(|e| e.to_string())
}

/// Encodes an index object as a flush does (for seed corpora).
pub fn encode_index_object<'a>(tenant: &str, refs: impl IntoIterator<Item = &'a ChunkRef>) -> Vec<u8> {
    crate::storage::index_codec::encode_index_object(tenant, refs)
}

/// The streams of an ingester `Push` request, as the ingester's gRPC service takes them.
pub fn rpc_push_streams(tenant: &str, req: PushRequest) -> Result<Vec<PushStream>, String> {
    crate::rpc::server::push_streams(tenant, req).map_err(|s| s.message().to_string())
}

/// A block of a `Select` response, as the querier takes it from an ingester.
pub fn rpc_block(b: BlockMsg) -> Result<BlockHandle, String> {
    crate::querier::ingesters::block_from_msg(b).map_err(|e| e.to_string())
}

/// Length of the header [`wire_block`] reads: codec id u8, count u32, min_ts i64, max_ts i64,
/// uncompressed_len u32, then a sectioned flag u8 (0: one payload, format 1; else format 2)
/// and, for format 2, columns_len, columns_uncompressed_len, index_len and flags (u32 each).
pub const WIRE_BLOCK_HEADER: usize = 1 + 4 + 8 + 8 + 4 + 1 + 16;

/// A block header and payload as another process sends them (the `chunk_block` target's
/// input, see [`WIRE_BLOCK_HEADER`]); the stored length and the CRC32Cs are computed from the
/// payload (each section's, for format 2). `None` when the input is too short or names no codec.
pub fn wire_block(data: &[u8]) -> Option<(BlockMeta, Codec, Bytes)> {
    let codec = Codec::from_id(*data.first()?)?;
    let payload = data.get(WIRE_BLOCK_HEADER..)?;
    let u32_at = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
    let i64_at = |at: usize| i64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
    let sections = (data[25] != 0).then(|| {
        let columns_len = u32_at(26);
        let columns = payload.get(..columns_len as usize).unwrap_or(payload);
        BlockSections {
            columns_len,
            columns_uncompressed_len: u32_at(30),
            columns_crc32c: crc32c::crc32c(columns),
            index_len: u32_at(34),
            flags: u32_at(38),
        }
    });
    // Format 1: the checksum covers the payload; format 2: the line section.
    let checked = match &sections {
        None => payload,
        Some(s) => {
            let end = payload.len().saturating_sub(s.index_len as usize);
            payload.get(s.columns_len as usize..end).unwrap_or_default()
        }
    };
    let meta = BlockMeta {
        count: u32_at(1),
        min_ts: i64_at(5),
        max_ts: i64_at(13),
        uncompressed_len: u32_at(21),
        compressed_len: payload.len() as u32,
        crc32c: crc32c::crc32c(checked),
        offset: 0,
        sections,
    };
    Some((meta, codec, Bytes::copy_from_slice(payload)))
}

/// The [`wire_block`] input for a block (for seed corpora).
pub fn wire_block_bytes(meta: &BlockMeta, codec: Codec, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![codec.id()];
    out.extend_from_slice(&meta.count.to_le_bytes());
    out.extend_from_slice(&meta.min_ts.to_le_bytes());
    out.extend_from_slice(&meta.max_ts.to_le_bytes());
    out.extend_from_slice(&meta.uncompressed_len.to_le_bytes());
    let s = meta.sections.unwrap_or_default();
    out.push(u8::from(meta.sections.is_some()));
    for v in [s.columns_len, s.columns_uncompressed_len, s.index_len, s.flags] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// Bytes of a WAL segment file holding `payloads` as records (for seed corpora).
pub fn wal_segment(payloads: &[Bytes]) -> Vec<u8> {
    let mut out = crate::wal::format::segment_header().to_vec();
    for p in payloads {
        frame(&mut out, p);
    }
    out
}

/// Bytes of a WAL checkpoint file covering segments `< n` holding `payloads` (for seed corpora).
pub fn wal_checkpoint(n: u64, payloads: &[Bytes]) -> Vec<u8> {
    let mut out = crate::wal::format::checkpoint_header(n).to_vec();
    for p in payloads {
        frame(&mut out, p);
    }
    out.extend_from_slice(&crate::wal::format::checkpoint_footer(payloads.len() as u64));
    out
}

fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    let header = crate::wal::format::frame_header(payload).expect("seed record under the size limit");
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod seeds;
