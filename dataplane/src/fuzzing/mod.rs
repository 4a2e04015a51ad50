//! Entry points for the fuzz targets in `fuzz/` (and the seed corpus generator) that are not
//! otherwise public. Not an API: each function is a thin wrapper over the crate-private code a
//! server runs on bytes it receives, so the fuzzers exercise exactly that code.

use bytes::Bytes;

use crate::chunk::BlockHandle;
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
