//! The list of cut blocks shared by [`Chunk`](super::Chunk) and [`MemChunk`](super::MemChunk),
//! and its encoded form (the byte layout is documented on the [`chunk`](super) module).

use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};

use super::ChunkError;
use super::block::{
    Block, BlockHandle, BlockMeta, BlockSections, DecodedBlock, FLAG_METADATA, FLAG_METADATA_IN_COLUMNS, KNOWN_FLAGS,
};
use super::codec::{self, Codec, MAX_BLOCK_UNCOMPRESSED};
use super::head::HeadBlock;
use super::needle::{self, NeedleIndex};

/// First bytes of every encoded chunk.
pub const MAGIC: [u8; 4] = *b"NRNC";
/// The encoding version written by this code. Readers accept it and [`FORMAT_VERSION_V1`].
pub const FORMAT_VERSION: u8 = 2;
/// The first encoding version (one compressed payload per block), still read.
pub const FORMAT_VERSION_V1: u8 = 1;
/// Magic, version, codec, flags and block count.
const FIXED_HEADER_LEN: usize = 12;
/// One encoded format-1 [`BlockMeta`].
const BLOCK_META_LEN_V1: usize = 40;
/// One encoded format-2 [`BlockMeta`]: the format-1 fields and [`BlockSections`].
const BLOCK_META_LEN_V2: usize = 60;
/// The CRC32C closing the metadata section.
const CRC_LEN: usize = 4;
/// Scratch buffers above this capacity are released after use instead of kept per thread.
const SCRATCH_KEEP: usize = 8 << 20;

/// Per-thread buffers for cutting blocks, so a cut allocates only the exact-size block it keeps.
#[derive(Default)]
struct Scratch {
    /// The uncompressed payload (format-1 layout: columns, metadata, lines).
    payload: Vec<u8>,
    /// The compressed column section.
    columns: Vec<u8>,
    /// The compressed line section.
    lines: Vec<u8>,
    /// The encoded needle index.
    index: Vec<u8>,
    /// Token hashes of the needle index.
    tokens: needle::TokenSet,
    /// Byte-class masks of the tokenizer.
    masks: Vec<(u64, u64)>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Encodes and compresses `head` into a format-2 block (column section, line section, needle
/// index); `None` when the head is empty. Does not change the head.
pub(crate) fn compress_head(head: &HeadBlock, codec: Codec) -> Result<Option<Block>, ChunkError> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let Scratch { payload, columns, lines, index, tokens, masks } = &mut *scratch;
        let result = (|| {
            let Some((mut meta, lengths_end, metadata_end)) = head.write_payload_split(payload) else {
                return Ok(None);
            };
            // With metadata, its column goes with timestamps and lengths: a counting query then
            // reads every entry's labels without decompressing a line.
            let has_metadata = head.has_metadata();
            let columns_end = if has_metadata { metadata_end } else { lengths_end };
            codec::compress(codec, &payload[..columns_end], columns)?;
            codec::compress(codec, &payload[columns_end..], lines)?;
            tokens.clear();
            let (buf, ends) = head.lines_and_ends();
            needle::for_each_token_in_lines(buf, ends, masks, |t| tokens.insert(t));
            index.clear();
            needle::encode(&tokens.hashes, index);
            let too_big = || ChunkError::Compress("compressed block exceeds 4 GiB".into());
            let total = columns.len() + lines.len() + index.len();
            meta.compressed_len = u32::try_from(total).map_err(|_| too_big())?;
            meta.crc32c = crc32c::crc32c(lines);
            meta.sections = Some(BlockSections {
                columns_len: u32::try_from(columns.len()).map_err(|_| too_big())?,
                columns_uncompressed_len: columns_end as u32,
                columns_crc32c: crc32c::crc32c(columns),
                index_len: index.len() as u32,
                flags: if has_metadata { FLAG_METADATA | FLAG_METADATA_IN_COLUMNS } else { 0 },
            });
            let mut data = BytesMut::with_capacity(total);
            data.put_slice(columns);
            data.put_slice(lines);
            data.put_slice(index);
            Ok(Some(Block { meta, data: data.freeze() }))
        })();
        for buf in [payload, columns, lines, index] {
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
        }
        if tokens.hashes.capacity() > SCRATCH_KEEP / 8 {
            tokens.hashes = Vec::new();
        }
        if masks.capacity() > SCRATCH_KEEP / 16 {
            *masks = Vec::new();
        }
        result
    })
}

/// The cut blocks of a chunk: headers and compressed payloads, plus running totals.
#[derive(Clone, Debug, Default)]
pub(crate) struct BlockList {
    /// Codec of every block.
    pub(crate) codec: Codec,
    /// Block headers, in the order the blocks were cut (which is append order).
    pub(crate) metas: Vec<BlockMeta>,
    /// Compressed payloads, parallel to `metas`.
    pub(crate) data: Vec<Bytes>,
    /// Total entries.
    pub(crate) entries: usize,
    /// Total compressed payload bytes (also the payload section's length).
    pub(crate) compressed: usize,
    /// Total uncompressed payload bytes.
    pub(crate) uncompressed: usize,
    /// Smallest and largest timestamp over all blocks.
    pub(crate) bounds: Option<(i64, i64)>,
}

impl BlockList {
    pub(crate) fn new(codec: Codec) -> Self {
        BlockList { codec, ..Default::default() }
    }

    /// Adds a block at the end, assigning its offset in the payload section.
    pub(crate) fn push(&mut self, mut block: Block) {
        block.meta.offset = self.compressed as u64;
        let m = block.meta;
        self.entries += m.count as usize;
        self.compressed += m.compressed_len as usize;
        self.uncompressed += m.uncompressed_len as usize;
        self.bounds = Some(match self.bounds {
            None => (m.min_ts, m.max_ts),
            Some((lo, hi)) => (lo.min(m.min_ts), hi.max(m.max_ts)),
        });
        self.metas.push(m);
        self.data.push(block.data);
    }

    /// Block `i` as a [`Block`] (a cheap clone of its payload view).
    pub(crate) fn block(&self, i: usize) -> Block {
        Block { meta: self.metas[i], data: self.data[i].clone() }
    }

    /// Decompresses and parses block `i`.
    pub(crate) fn decode_block(&self, i: usize) -> Result<DecodedBlock, ChunkError> {
        self.block(i).decode(self.codec)
    }

    /// Handles of the blocks that may hold entries in `[from, through)`, in cut order.
    pub(crate) fn handles(&self, from: i64, through: i64) -> Vec<BlockHandle> {
        (0..self.metas.len())
            .filter(|&i| self.metas[i].overlaps(from, through))
            .map(|i| BlockHandle::compressed(self.codec, &self.block(i)))
            .collect()
    }

    /// Serializes the blocks, followed by `extra` (the compressed head) when given, as a
    /// format-2 chunk. Format-1 blocks (a chunk decoded from version 1 and appended to) are
    /// written with their single payload as a line section after an empty column section, so
    /// they stay readable, see [`BlockSections`].
    pub(crate) fn encode(&self, extra: Option<&Block>) -> Bytes {
        let n = self.metas.len() + usize::from(extra.is_some());
        let header_len = FIXED_HEADER_LEN + n * BLOCK_META_LEN_V2 + CRC_LEN;
        let payload_len = self.compressed + extra.map_or(0, |b| b.data.len());
        let mut out = BytesMut::with_capacity(header_len + payload_len);
        out.put_slice(&MAGIC);
        out.put_u8(FORMAT_VERSION);
        out.put_u8(self.codec.id());
        out.put_u16_le(0);
        out.put_u32_le(n as u32);
        let extra_meta = extra.map(|b| BlockMeta { offset: self.compressed as u64, ..b.meta });
        for m in self.metas.iter().chain(extra_meta.as_ref()) {
            out.put_u32_le(m.count);
            out.put_i64_le(m.min_ts);
            out.put_i64_le(m.max_ts);
            out.put_u32_le(m.uncompressed_len);
            out.put_u32_le(m.compressed_len);
            out.put_u32_le(m.crc32c);
            out.put_u64_le(m.offset);
            // A format-1 block: no column section, no index, the payload as the line section.
            let s = m.sections.unwrap_or(BlockSections { flags: FLAG_SINGLE_PAYLOAD, ..Default::default() });
            out.put_u32_le(s.columns_len);
            out.put_u32_le(s.columns_uncompressed_len);
            out.put_u32_le(s.columns_crc32c);
            out.put_u32_le(s.index_len);
            out.put_u32_le(s.flags);
        }
        let crc = crc32c::crc32c(&out);
        out.put_u32_le(crc);
        for d in self.data.iter().chain(extra.map(|b| &b.data)) {
            out.put_slice(d);
        }
        out.freeze()
    }

    /// Parses an encoded chunk of format 1 or 2. Block payloads are slices of `data` (no
    /// copy); with `verify_payloads` their checksums are checked now rather than at
    /// decompression.
    pub(crate) fn decode(data: Bytes, verify_payloads: bool) -> Result<BlockList, ChunkError> {
        if data.len() < FIXED_HEADER_LEN + CRC_LEN {
            return Err(ChunkError::corrupt(format!("{} bytes is shorter than a chunk header", data.len())));
        }
        if data[0..4] != MAGIC {
            return Err(ChunkError::corrupt("bad magic: not a norn chunk"));
        }
        let meta_len = match data[4] {
            FORMAT_VERSION_V1 => BLOCK_META_LEN_V1,
            FORMAT_VERSION => BLOCK_META_LEN_V2,
            v => return Err(ChunkError::corrupt(format!("unsupported chunk format version {v}"))),
        };
        let codec =
            Codec::from_id(data[5]).ok_or_else(|| ChunkError::corrupt(format!("unknown codec id {}", data[5])))?;
        if data[6] != 0 || data[7] != 0 {
            return Err(ChunkError::corrupt("unknown chunk flags"));
        }
        let n = le_u32(&data, 8) as usize;
        let header_len = n
            .checked_mul(meta_len)
            .and_then(|m| m.checked_add(FIXED_HEADER_LEN + CRC_LEN))
            .filter(|&h| h <= data.len())
            .ok_or_else(|| ChunkError::corrupt(format!("{n} block headers do not fit in {} bytes", data.len())))?;
        let meta_end = header_len - CRC_LEN;
        let want = le_u32(&data, meta_end);
        let got = crc32c::crc32c(&data[..meta_end]);
        if want != got {
            return Err(ChunkError::corrupt(format!(
                "header checksum mismatch: crc32c {got:#010x}, stored {want:#010x}"
            )));
        }
        let payloads = data.slice(header_len..);
        let mut list = BlockList::new(codec);
        list.metas.reserve_exact(n);
        list.data.reserve_exact(n);
        for i in 0..n {
            let at = FIXED_HEADER_LEN + i * meta_len;
            let mut meta = BlockMeta {
                count: le_u32(&data, at),
                min_ts: le_u64(&data, at + 4) as i64,
                max_ts: le_u64(&data, at + 12) as i64,
                uncompressed_len: le_u32(&data, at + 20),
                compressed_len: le_u32(&data, at + 24),
                crc32c: le_u32(&data, at + 28),
                offset: le_u64(&data, at + 32),
                sections: None,
            };
            if meta_len == BLOCK_META_LEN_V2 {
                let s = BlockSections {
                    columns_len: le_u32(&data, at + 40),
                    columns_uncompressed_len: le_u32(&data, at + 44),
                    columns_crc32c: le_u32(&data, at + 48),
                    index_len: le_u32(&data, at + 52),
                    flags: le_u32(&data, at + 56),
                };
                meta.sections = check_sections(i, &meta, s)?;
            }
            check_meta(i, &meta, list.compressed, payloads.len())?;
            let start = meta.offset as usize;
            let block = Block { meta, data: payloads.slice(start..start + meta.compressed_len as usize) };
            if verify_payloads {
                verify_block(i, &block)?;
            }
            list.push(block);
        }
        if list.compressed != payloads.len() {
            return Err(ChunkError::corrupt(format!(
                "blocks end at {} bytes into the payload section, which has {}",
                list.compressed,
                payloads.len()
            )));
        }
        Ok(list)
    }
}

/// [`BlockSections::flags`] bit of a format-2 block header only: the block is a format-1 block
/// (one payload, covered by the header's `crc32c`) carried over into a format-2 chunk; every
/// other section field is 0. Such a block is read as [`BlockMeta::sections`] `None`.
const FLAG_SINGLE_PAYLOAD: u32 = 1 << 31;

/// Checks the sections of a format-2 block header; `None` for a carried-over format-1 block.
fn check_sections(i: usize, m: &BlockMeta, s: BlockSections) -> Result<Option<BlockSections>, ChunkError> {
    let bad = |what: &str| Err(ChunkError::corrupt(format!("block {i}: {what}")));
    if s.flags == FLAG_SINGLE_PAYLOAD {
        if s != (BlockSections { flags: FLAG_SINGLE_PAYLOAD, ..Default::default() }) {
            return bad("single-payload block with sections");
        }
        return Ok(None);
    }
    if s.flags & !KNOWN_FLAGS != 0 {
        return bad(&format!("unknown block flags {:#x}", s.flags));
    }
    if s.lines_len(m.compressed_len).is_none() {
        return bad(&format!(
            "sections of {} and {} bytes do not fit in {}",
            s.columns_len, s.index_len, m.compressed_len
        ));
    }
    if s.columns_uncompressed_len > m.uncompressed_len || (m.count as usize) > s.columns_uncompressed_len as usize / 2 {
        return bad(&format!(
            "column section of {} bytes for {} entries in {}",
            s.columns_uncompressed_len, m.count, m.uncompressed_len
        ));
    }
    Ok(Some(s))
}

/// Checks every checksum of a block: its payload, or its sections and needle index.
fn verify_block(i: usize, block: &Block) -> Result<(), ChunkError> {
    let m = &block.meta;
    let ok = match m.sections {
        None => crc32c::crc32c(&block.data) == m.crc32c,
        Some(s) => {
            let cols = s.columns_len as usize;
            let lines_end = block.data.len() - s.index_len as usize;
            crc32c::crc32c(&block.data[..cols]) == s.columns_crc32c
                && crc32c::crc32c(&block.data[cols..lines_end]) == m.crc32c
                && (s.index_len == 0 || NeedleIndex::parse(&block.data[lines_end..]).is_ok())
        }
    };
    if ok { Ok(()) } else { Err(ChunkError::corrupt(format!("block {i} fails its checksum"))) }
}

/// Checks one decoded block header: sane counts and sizes, and a payload that starts where the
/// previous one ended (`expected_offset`) and fits in the `available` payload bytes.
fn check_meta(i: usize, m: &BlockMeta, expected_offset: usize, available: usize) -> Result<(), ChunkError> {
    let bad = |what: String| Err(ChunkError::corrupt(format!("block {i}: {what}")));
    if m.count == 0 || m.count as usize > m.uncompressed_len as usize / 2 {
        return bad(format!("{} entries in {} bytes", m.count, m.uncompressed_len));
    }
    if m.min_ts > m.max_ts {
        return bad(format!("min ts {} above max ts {}", m.min_ts, m.max_ts));
    }
    if m.uncompressed_len as usize > MAX_BLOCK_UNCOMPRESSED {
        return bad(format!("uncompressed length {}", m.uncompressed_len));
    }
    if m.offset != expected_offset as u64 {
        return bad(format!("payload offset {} where {expected_offset} was expected", m.offset));
    }
    if expected_offset + m.compressed_len as usize > available {
        return bad(format!("payload of {} bytes at {} runs past the end", m.compressed_len, m.offset));
    }
    Ok(())
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
