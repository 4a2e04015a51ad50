//! Chunks: the in-memory and on-storage format of one stream's log entries.
//!
//! A chunk holds the entries of a single stream (the stream's labels are kept elsewhere) as a
//! list of compressed, columnar **blocks** plus, while it is being written, an uncompressed
//! **head block**. The ingester appends to a [`MemChunk`], checkpoints it with
//! [`MemChunk::encode`] / [`MemChunk::decode`], and flushes the encoded bytes to the object
//! store; queriers read them back as a [`Chunk`] without copying the blocks. Both implement
//! [`ChunkReader`]: take [`BlockHandle`]s for a time range and decode them into
//! [`DecodedBlock`]s (timestamps, one buffer holding all lines, a line-offset array and the
//! structured metadata column) to scan whole blocks with `memchr::memmem`, or walk entries in
//! timestamp order with [`ChunkReader::iter`]. Queries that only count entries or sum line
//! lengths read a block's timestamp and length columns alone
//! ([`BlockHandle::decode_columns`]), and substring filters on high-cardinality tokens skip
//! blocks by their [`needle`] index ([`BlockHandle::may_contain_tokens`]) before decompressing
//! anything.
//!
//! # Encoded chunk layout
//!
//! All integers little-endian. `N` is the number of blocks, `H` the size of one block header
//! (60 in format 2, 40 in format 1), `P = 16 + H * N` the start of the payload section. The
//! full description, with the reasons, is `docs/storage-format.md`.
//!
//! | offset          | size   | field                                                     |
//! |-----------------|--------|-----------------------------------------------------------|
//! | 0               | 4      | magic `NRNC` (`4e 52 4e 43`)                              |
//! | 4               | 1      | format version: `2` written, `1` and `2` read             |
//! | 5               | 1      | codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd         |
//! | 6               | 2      | flags, `0` (readers reject anything else)                 |
//! | 8               | 4      | `N`, u32                                                  |
//! | 12 + H * i      | H      | header of block `i`, see below                            |
//! | 12 + H * N      | 4      | CRC32C (Castagnoli) of bytes `[0, 12 + H * N)`            |
//! | `P`             | rest   | stored blocks, back to back, in block order               |
//!
//! Block header (one [`BlockMeta`]), relative to its start. Format 1 has the first 40 bytes
//! only, and its block is one compressed payload:
//!
//! | offset | size | field                                                                |
//! |--------|------|----------------------------------------------------------------------|
//! | 0      | 4    | entry count, u32, at least 1                                         |
//! | 4      | 8    | min timestamp, i64 nanoseconds                                       |
//! | 12     | 8    | max timestamp, i64 nanoseconds                                       |
//! | 20     | 4    | uncompressed length of both sections (v1: of the payload), u32, at most 128 MiB |
//! | 24     | 4    | stored length: both sections and the needle index (v1: payload), u32 |
//! | 28     | 4    | CRC32C of the compressed line section (v1: of the payload)           |
//! | 32     | 8    | offset of the stored block from `P`, u64                             |
//! | 40     | 4    | v2: compressed length of the column section, u32                     |
//! | 44     | 4    | v2: uncompressed length of the column section, u32                   |
//! | 48     | 4    | v2: CRC32C of the compressed column section                          |
//! | 52     | 4    | v2: length of the needle index, u32 (0: no index)                    |
//! | 56     | 4    | v2: flags: bit 0 some entry has structured metadata; bit 1 the metadata column is in the column section; bit 31 alone (every other v2 field 0) marks a format-1 block carried into a format-2 chunk |
//!
//! A format-2 block is stored as `[column section][line section][needle index]`: the column
//! section is the compressed timestamp and line-length columns, the line section the
//! compressed metadata and line columns (see [`block`]), the index a Bloom filter of the
//! block's high-cardinality tokens (see [`needle`]). The line section's length is the stored
//! length minus the other two.
//!
//! Blocks are contiguous: block 0 is at offset 0, each next one where the previous ended, and
//! the last one ends at the end of the chunk, so truncation is always detected. The header
//! section is verified when a chunk is decoded; a block's section checksums when it is
//! decompressed (and, for [`MemChunk::decode`], at decode time). The layout of the decompressed
//! columns (timestamp deltas, line lengths, metadata with a per-block symbol table, line bytes)
//! is documented in [`block`].
//!
//! # Codecs
//!
//! The codec is a property of the chunk. [`Codec::default`] is zstd (level 3): see [`Codec`] and
//! the chunk bench for the measurements behind that choice.

pub mod block;
pub mod codec;
mod filter;
mod format;
pub mod head;
pub mod iter;
pub mod needle;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v2;

use std::sync::OnceLock;

use bytes::Bytes;
use tracing::warn;

pub use block::{
    BlockColumns, BlockHandle, BlockMeta, BlockSections, DecodedBlock, FLAG_METADATA, FLAG_METADATA_IN_COLUMNS,
};
pub use codec::{Codec, MAX_BLOCK_UNCOMPRESSED, ParseCodecError};
pub use format::{FORMAT_VERSION, FORMAT_VERSION_V1, MAGIC};
pub use head::HeadBlock;
pub use iter::EntryIter;

use crate::entry::Direction;
use crate::labels::Label;
use filter::BlockFilter;
use format::BlockList;

/// Default uncompressed size at which the head block is cut: 256 KiB.
pub const DEFAULT_BLOCK_SIZE: usize = 256 << 10;
/// Largest accepted block size (32 MiB); larger requests are clamped.
pub const MAX_BLOCK_SIZE: usize = 32 << 20;
/// Largest accepted entry: line plus metadata, each pair counted by [`head::label_size`]
/// (32 MiB). With [`MAX_BLOCK_SIZE`] and [`MAX_BLOCK_ENTRIES`] this keeps every block payload
/// well under [`MAX_BLOCK_UNCOMPRESSED`].
pub const MAX_ENTRY_SIZE: usize = 32 << 20;
/// The head is also cut at this many entries, which bounds the per-entry columns of a block
/// full of empty lines.
pub const MAX_BLOCK_ENTRIES: usize = 1 << 20;
/// Blocks do not straddle the hour (ns): the head is cut before an entry of a later hour than
/// its newest one. The query frontend splits reads on multiples of the hour
/// (`split_queries_by_interval`, 1h by default), so a split decodes only blocks of its own
/// time range, however long a slow stream takes to fill a block. Out-of-order entries of an
/// earlier hour go to the head they arrive at.
pub const BLOCK_PERIOD: i64 = 3_600_000_000_000;

/// Errors of building and reading chunks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The bytes are not a valid chunk or block: truncated, bit-flipped, or not a chunk at all.
    /// Not retryable; the data has to come from elsewhere (another replica, the WAL).
    #[error("corrupt chunk: {0}")]
    Corrupt(String),
    /// An entry is larger than [`MAX_ENTRY_SIZE`]; it was not stored.
    #[error("entry of {size} bytes exceeds the chunk limit of {limit} bytes")]
    EntryTooLarge {
        /// Bytes of the line plus metadata (see [`head::label_size`]).
        size: usize,
        /// The limit it exceeded.
        limit: usize,
    },
    /// The compression library failed (in practice only when it cannot allocate); returned
    /// by [`MemChunk::try_encode`].
    #[error("block compression failed: {0}")]
    Compress(String),
}

impl ChunkError {
    pub(crate) fn corrupt(msg: impl Into<String>) -> Self {
        ChunkError::Corrupt(msg.into())
    }

    pub(crate) fn too_large(size: usize, limit: usize) -> Self {
        ChunkError::EntryTooLarge { size, limit }
    }
}

/// Read access shared by [`Chunk`] and [`MemChunk`].
pub trait ChunkReader {
    /// Codec of the chunk's blocks.
    fn codec(&self) -> Codec;

    /// Smallest and largest timestamp, `None` when empty.
    fn bounds(&self) -> Option<(i64, i64)>;

    /// Number of entries.
    fn len(&self) -> usize;

    /// Whether the chunk has no entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Headers of the cut (compressed) blocks, in cut order.
    fn blocks(&self) -> &[BlockMeta];

    /// Detached handles of every block that may hold entries in `[from, through)`, in cut
    /// order, a `MemChunk`'s head (copied and sorted) last. Cheap for cut blocks (views of
    /// their compressed bytes); lets a caller release the chunk, or the lock around it, before
    /// decompressing anything.
    fn block_handles(&self, from: i64, through: i64) -> Result<Vec<BlockHandle>, ChunkError>;

    /// Entries with `from <= ts < through` in timestamp order (newest first for
    /// [`Direction::Backward`]), overlapping blocks merged, equal timestamps in append order
    /// (reversed when backward). See [`EntryIter`] for error handling.
    fn iter(&self, from: i64, through: i64, direction: Direction) -> EntryIter {
        match self.block_handles(from, through) {
            Ok(handles) => EntryIter::new(handles, from, through, direction),
            Err(e) => EntryIter::failed(e),
        }
    }
}

/// A read-only chunk decoded from its encoded bytes (what the object store returns).
///
/// Decoding validates the header section and keeps each block's compressed payload as a slice
/// of the input: nothing is copied or decompressed until a block is read.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// The blocks, viewing the input bytes.
    blocks: BlockList,
}

impl Chunk {
    /// Parses an encoded chunk, checking magic, version, codec, header checksum and block
    /// layout. Block payload checksums are checked when each block is decompressed.
    pub fn decode(data: Bytes) -> Result<Chunk, ChunkError> {
        Ok(Chunk { blocks: BlockList::decode(data, false)? })
    }

    /// Codec of the chunk's blocks.
    pub fn codec(&self) -> Codec {
        self.blocks.codec
    }

    /// Smallest and largest timestamp, `None` for a chunk without entries.
    pub fn bounds(&self) -> Option<(i64, i64)> {
        self.blocks.bounds
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.blocks.entries
    }

    /// Whether the chunk has no entries.
    pub fn is_empty(&self) -> bool {
        self.blocks.entries == 0
    }

    /// Block headers: time bounds and entry count of each block.
    pub fn blocks(&self) -> &[BlockMeta] {
        &self.blocks.metas
    }

    /// Total compressed payload bytes.
    pub fn compressed_size(&self) -> usize {
        self.blocks.compressed
    }

    /// Total uncompressed payload bytes (lines, metadata and the timestamp/length columns).
    pub fn uncompressed_size(&self) -> usize {
        self.blocks.uncompressed
    }

    /// Bytes of the blocks' needle indexes, included in [`compressed_size`](Self::compressed_size).
    pub fn index_size(&self) -> usize {
        self.blocks.metas.iter().filter_map(|m| m.sections).map(|s| s.index_len as usize).sum()
    }

    /// Verifies, decompresses and parses block `i` of [`blocks`](Self::blocks). Panics if `i`
    /// is out of range.
    pub fn decode_block(&self, i: usize) -> Result<DecodedBlock, ChunkError> {
        self.blocks.decode_block(i)
    }

    /// See [`ChunkReader::iter`].
    pub fn iter(&self, from: i64, through: i64, direction: Direction) -> EntryIter {
        ChunkReader::iter(self, from, through, direction)
    }

    /// The needle indexes and time bounds of the chunk's blocks, copied out of it (it can be
    /// dropped): what a querier keeps to rule the chunk out of a search without fetching it.
    pub fn needles(&self) -> ChunkNeedles {
        let blocks = (0..self.blocks.metas.len())
            .map(|i| {
                let handle = BlockHandle::compressed(self.blocks.codec, &self.blocks.block(i));
                let meta = handle.meta();
                let index = handle.needle_index().map(|index| Box::from(index.as_bytes()));
                BlockNeedles { min_ts: meta.min_ts, max_ts: meta.max_ts, index }
            })
            .collect();
        ChunkNeedles { blocks }
    }
}

/// The needle index of every block of a chunk with the block's time bounds ([`Chunk::needles`]).
#[derive(Clone, Debug, Default)]
pub struct ChunkNeedles {
    blocks: Vec<BlockNeedles>,
}

#[derive(Clone, Debug)]
struct BlockNeedles {
    min_ts: i64,
    max_ts: i64,
    /// The encoded index, checked when it was copied; `None` for a block without one.
    index: Option<Box<[u8]>>,
}

impl ChunkNeedles {
    /// Whether `keep` accepts some block with entries in `[from, through)`, given the block's
    /// needle index (`None` for a block without one, which a caller must keep).
    pub fn any_block(
        &self,
        from: i64,
        through: i64,
        mut keep: impl FnMut(Option<needle::NeedleIndex<'_>>) -> bool,
    ) -> bool {
        self.blocks
            .iter()
            .filter(|b| b.min_ts < through && b.max_ts >= from)
            .any(|b| keep(b.index.as_deref().and_then(|i| needle::NeedleIndex::parse(i).ok())))
    }

    /// Bytes held: the indexes and the block bounds.
    pub fn held_bytes(&self) -> usize {
        self.blocks.iter().map(|b| std::mem::size_of::<BlockNeedles>() + b.index.as_ref().map_or(0, |i| i.len())).sum()
    }
}

impl ChunkReader for Chunk {
    fn codec(&self) -> Codec {
        self.blocks.codec
    }
    fn bounds(&self) -> Option<(i64, i64)> {
        self.blocks.bounds
    }
    fn len(&self) -> usize {
        self.blocks.entries
    }
    fn blocks(&self) -> &[BlockMeta] {
        &self.blocks.metas
    }
    fn block_handles(&self, from: i64, through: i64) -> Result<Vec<BlockHandle>, ChunkError> {
        Ok(self.blocks.handles(from, through))
    }
}

/// The chunk an ingester appends to: compressed cut blocks plus an uncompressed head block.
#[derive(Clone, Debug)]
pub struct MemChunk {
    /// Cut blocks, each an exact-size `Bytes` of compressed payload.
    blocks: BlockList,
    /// A Bloom filter of each cut block's entries (parallel to `blocks`), built the first time
    /// `contains` has to look into the block, so that later lookups decompress it only when the
    /// entry is probably there. Streams without out-of-order entries never build one.
    filters: Vec<OnceLock<BlockFilter>>,
    /// The block receiving appends.
    head: HeadBlock,
    /// Uncompressed bytes (lines plus metadata) at which the head is cut.
    block_size: usize,
}

impl MemChunk {
    /// An empty chunk whose head is cut every `block_size` bytes of lines and metadata
    /// ([`DEFAULT_BLOCK_SIZE`] is a good value; clamped to `1..=MAX_BLOCK_SIZE`).
    pub fn new(codec: Codec, block_size: usize) -> Self {
        let block_size = block_size.clamp(1, MAX_BLOCK_SIZE);
        MemChunk {
            blocks: BlockList::new(codec),
            filters: Vec::new(),
            head: HeadBlock::with_block_size(block_size),
            block_size,
        }
    }

    /// Rebuilds an appendable chunk from [`encode`](Self::encode)'s output (a WAL checkpoint),
    /// with the default block size. Every block's checksum is verified now, and each block is
    /// copied out of `data` so the source buffer is not kept alive by the chunk.
    pub fn decode(data: Bytes) -> Result<MemChunk, ChunkError> {
        Self::decode_with_block_size(data, DEFAULT_BLOCK_SIZE)
    }

    /// [`decode`](Self::decode) with the block size for further appends.
    pub fn decode_with_block_size(data: Bytes, block_size: usize) -> Result<MemChunk, ChunkError> {
        let mut blocks = BlockList::decode(data, true)?;
        for d in &mut blocks.data {
            *d = Bytes::copy_from_slice(d);
        }
        let block_size = block_size.clamp(1, MAX_BLOCK_SIZE);
        Ok(MemChunk {
            filters: (0..blocks.metas.len()).map(|_| OnceLock::new()).collect(),
            blocks,
            head: HeadBlock::with_block_size(block_size),
            block_size,
        })
    }

    /// Codec of the chunk's blocks.
    pub fn codec(&self) -> Codec {
        self.blocks.codec
    }

    /// Uncompressed bytes at which the head is cut.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Appends an entry, in any timestamp order, and cuts the head once it holds
    /// `block_size` bytes (lines plus metadata, see [`head::label_size`]), and before an entry
    /// of a later hour ([`BLOCK_PERIOD`]). Duplicates are not detected here (see
    /// [`contains`](Self::contains)).
    ///
    /// On error the entry was not stored.
    pub fn append(&mut self, ts: i64, line: &[u8], metadata: &[Label]) -> Result<(), ChunkError> {
        let size = line.len() + metadata.iter().map(head::label_size).sum::<usize>();
        if size > MAX_ENTRY_SIZE {
            return Err(ChunkError::too_large(size, MAX_ENTRY_SIZE));
        }
        if let Some((_, newest)) = self.head.bounds()
            && ts.div_euclid(BLOCK_PERIOD) > newest.div_euclid(BLOCK_PERIOD)
        {
            // A slow stream's head keeps its buffers too: it fills again.
            self.cut_head(true);
        }
        self.head.append(ts, line, metadata)?;
        if self.head.size() >= self.block_size || self.head.len() >= MAX_BLOCK_ENTRIES {
            // The entry is stored either way. A full head means an active stream, so the head
            // keeps its buffers for the next block.
            self.cut_head(true);
        }
        Ok(())
    }

    /// Compresses the head into a new block and starts an empty head, releasing the head's
    /// buffers. No-op on an empty head. Compression fails only when the codec library cannot
    /// allocate; the head then stays as it is (nothing is lost, the chunk stays readable), the
    /// failure is logged and the cut is retried on the next append.
    pub fn cut_block(&mut self) {
        self.cut_head(false);
    }

    /// Cuts the head so that everything is compressed (before a flush). See
    /// [`cut_block`](Self::cut_block).
    pub fn close(&mut self) {
        self.cut_head(false);
    }

    fn cut_head(&mut self, keep_buffers: bool) {
        match format::compress_head(&self.head, self.blocks.codec) {
            Ok(Some(block)) => {
                self.blocks.push(block);
                self.filters.push(OnceLock::new());
                if keep_buffers {
                    self.head.clear();
                } else {
                    self.head = HeadBlock::with_block_size(self.block_size);
                }
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cutting chunk head block failed, head kept"),
        }
    }

    /// Whether an entry with exactly this timestamp and line exists: O(log n) or O(1) in the
    /// head. A cut block whose time bounds include `ts` is decompressed the first time it is
    /// asked about, which also builds a Bloom filter of its entries; after that it is
    /// decompressed again only when the filter says the entry may be there (true duplicates and
    /// ~2% of the rest). A cut block that cannot be decompressed counts as not holding it.
    pub fn contains(&self, ts: i64, line: &[u8], metadata: &[Label]) -> bool {
        if self.head.contains(ts, line, metadata) {
            return true;
        }
        for (i, m) in self.blocks.metas.iter().enumerate() {
            if ts < m.min_ts || ts > m.max_ts {
                continue;
            }
            if let Some(filter) = self.filters[i].get()
                && !filter.may_contain(ts, line)
            {
                continue;
            }
            match self.blocks.decode_block(i) {
                Ok(block) => {
                    // First look into this block: remember what it holds.
                    self.filters[i].get_or_init(|| BlockFilter::build(block.len(), block.pairs()));
                    if block.contains(ts, line, metadata) {
                        return true;
                    }
                }
                Err(e) => warn!(error = %e, "chunk block cannot be read for duplicate check"),
            }
        }
        false
    }

    /// Number of entries, cut and in the head.
    pub fn len(&self) -> usize {
        self.blocks.entries + self.head.len()
    }

    /// Whether the chunk has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries in the head (not yet compressed).
    pub fn head_len(&self) -> usize {
        self.head.len()
    }

    /// Bytes this chunk would take if closed now, approximately: cut blocks' compressed
    /// payloads plus the head's *uncompressed* line and metadata bytes (the head is not
    /// compressed until it is cut, so this overestimates by at most one block).
    pub fn compressed_size(&self) -> usize {
        self.blocks.compressed + self.head.size()
    }

    /// Bytes of the duplicate filters built so far (~10 bits per entry of the blocks that
    /// `contains` looked into), held in addition to [`compressed_size`](Self::compressed_size).
    pub fn filter_size(&self) -> usize {
        self.filters.iter().filter_map(OnceLock::get).map(BlockFilter::size).sum()
    }

    /// Uncompressed bytes: the cut blocks' payloads (lines, metadata and the small timestamp and
    /// length columns) plus the head's line and metadata bytes.
    pub fn uncompressed_size(&self) -> usize {
        self.blocks.uncompressed + self.head.size()
    }

    /// Smallest and largest timestamp over cut blocks and head, `None` when empty.
    pub fn bounds(&self) -> Option<(i64, i64)> {
        match (self.blocks.bounds, self.head.bounds()) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (x, y) => x.or(y),
        }
    }

    /// Headers of the cut blocks (the head is not included).
    pub fn blocks(&self) -> &[BlockMeta] {
        &self.blocks.metas
    }

    /// Serializes the whole chunk, head included: the head is compressed as a copy into a
    /// final block and stays appendable here. The result decodes with [`Chunk::decode`] and
    /// [`MemChunk::decode`].
    ///
    /// # Panics
    ///
    /// If the codec library cannot allocate its compression context, the one way compression
    /// can fail (Rust aborts on out-of-memory elsewhere anyway). Use
    /// [`try_encode`](Self::try_encode) to get that as an error instead.
    pub fn encode(&self) -> Bytes {
        match self.try_encode() {
            Ok(bytes) => bytes,
            Err(e) => panic!("encoding chunk: {e}"),
        }
    }

    /// [`encode`](Self::encode), reporting a compression failure as [`ChunkError::Compress`].
    pub fn try_encode(&self) -> Result<Bytes, ChunkError> {
        let head = format::compress_head(&self.head, self.blocks.codec)?;
        Ok(self.blocks.encode(head.as_ref()))
    }

    /// See [`ChunkReader::iter`].
    pub fn iter(&self, from: i64, through: i64, direction: Direction) -> EntryIter {
        ChunkReader::iter(self, from, through, direction)
    }
}

impl ChunkReader for MemChunk {
    fn codec(&self) -> Codec {
        self.blocks.codec
    }
    fn bounds(&self) -> Option<(i64, i64)> {
        MemChunk::bounds(self)
    }
    fn len(&self) -> usize {
        MemChunk::len(self)
    }
    fn blocks(&self) -> &[BlockMeta] {
        &self.blocks.metas
    }
    fn block_handles(&self, from: i64, through: i64) -> Result<Vec<BlockHandle>, ChunkError> {
        let mut handles = self.blocks.handles(from, through);
        let head_overlaps = self.head.bounds().is_some_and(|(lo, hi)| hi >= from && lo < through);
        if head_overlaps && let Some((meta, block, payload)) = self.head.to_decoded()? {
            handles.push(BlockHandle::decoded(meta, block, payload));
        }
        Ok(handles)
    }
}
