//! Cut blocks: their header, the columnar payload and its decoded, scannable form.
//!
//! The uncompressed payload of a block with `n` entries sorted by timestamp is four columns, in
//! this order (`uvarint` is LEB128, 7 bits per byte, least significant group first):
//!
//! 1. timestamps: `n` uvarints, each the difference to the previous timestamp (the first one to
//!    the block's `min_ts`, so it is always 0);
//! 2. line lengths: `n` uvarints;
//! 3. structured metadata: a uvarint symbol count `s`. When `s` is 0 no entry of the block has
//!    metadata and the column ends (1 byte per block). Otherwise `s` symbols follow (uvarint
//!    byte length + UTF-8 bytes; names and values share the table), then for each entry a
//!    uvarint pair count `k` and `k` pairs of uvarint symbol ids (name, value): 1 byte for an
//!    entry without metadata;
//! 4. lines: every line's bytes, concatenated, up to the end of the payload.
//!
//! Lines come last so that [`DecodedBlock::lines_buf`] is a slice of the one decompressed
//! buffer: the query engine runs `memchr::memmem` over it directly and maps hits back to entries
//! with [`DecodedBlock::entry_index_at`].
//!
//! # Sections (format 2)
//!
//! A format-1 block stores the four columns as one compressed payload. A format-2 block
//! ([`BlockMeta::sections`] is `Some`) stores them in three sections, back to back:
//!
//! 1. the **column section**: columns 1 and 2 (timestamps, line lengths), and column 3
//!    (metadata) when [`FLAG_METADATA_IN_COLUMNS`] is set, compressed on their own, with their
//!    own lengths and CRC32C in the header;
//! 2. the **line section**: column 3 when that flag is not set, and column 4 (lines),
//!    compressed;
//! 3. the **needle index** (see [`needle`](super::needle)), uncompressed, possibly empty.
//!
//! The two sections decompressed and concatenated are exactly a format-1 payload. Counting and
//! byte-summing queries read the column section alone ([`BlockHandle::decode_columns`]): a
//! few bytes per entry instead of every line, entries' metadata labels included.

use std::ops::Range;

use bytes::Bytes;

use super::ChunkError;
use super::codec::{self, Codec};
use super::needle::{LiteralTokens, NeedleIndex};
use crate::entry::Entry;
use crate::labels::Label;

/// The uncompressed header of one block, kept in the chunk's metadata section so a reader can
/// skip blocks outside a time range and size its reads without decompressing anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockMeta {
    /// Number of entries in the block (at least 1).
    pub count: u32,
    /// Smallest timestamp in the block, nanoseconds since the epoch.
    pub min_ts: i64,
    /// Largest timestamp in the block.
    pub max_ts: i64,
    /// Length of the decompressed payload: the bound for decompression.
    pub uncompressed_len: u32,
    /// Length of the compressed payload stored in the chunk.
    pub compressed_len: u32,
    /// CRC32C (Castagnoli) of the compressed payload, checked before decompressing.
    pub crc32c: u32,
    /// Position of the compressed payload from the start of the payload section of the encoded
    /// chunk (the sum of the compressed lengths of the blocks before it), so it is known as
    /// soon as the block is cut.
    pub offset: u64,
    /// Where a format-2 block's sections are; `None` for a block stored as one payload (format
    /// 1, and head snapshots). For a format-2 block `uncompressed_len` counts both sections,
    /// `compressed_len` every stored byte (both sections and the needle index), and `crc32c`
    /// covers the line section.
    pub sections: Option<BlockSections>,
}

/// The layout of a format-2 block's stored bytes: column section, line section, needle index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockSections {
    /// Compressed length of the column section (timestamps and line lengths), which starts the
    /// block.
    pub columns_len: u32,
    /// Uncompressed length of the column section: the bound for its decompression.
    pub columns_uncompressed_len: u32,
    /// CRC32C of the compressed column section.
    pub columns_crc32c: u32,
    /// Length of the needle index, which ends the block; 0 when the block has none.
    pub index_len: u32,
    /// Block flags: [`FLAG_METADATA`], [`FLAG_METADATA_IN_COLUMNS`]; readers reject unknown
    /// bits.
    pub flags: u32,
}

/// [`BlockSections::flags`] bit: some entry of the block has structured metadata (so the
/// timestamps and line lengths alone cannot tell an entry's labels).
pub const FLAG_METADATA: u32 = 1;

/// [`BlockSections::flags`] bit: the metadata column ends the column section instead of
/// starting the line section, so counting queries read entries' labels without line bytes.
/// Written with [`FLAG_METADATA`] since it was introduced; blocks without it (written before,
/// or without metadata) keep the metadata column in the line section.
pub const FLAG_METADATA_IN_COLUMNS: u32 = 2;

/// Every [`BlockSections::flags`] bit a reader knows.
pub(crate) const KNOWN_FLAGS: u32 = FLAG_METADATA | FLAG_METADATA_IN_COLUMNS;

impl BlockSections {
    /// Compressed length of the line section, between the column section and the index, given
    /// the block's total stored length; `None` when the sections do not fit in it.
    pub fn lines_len(&self, compressed_len: u32) -> Option<u32> {
        compressed_len.checked_sub(self.columns_len)?.checked_sub(self.index_len)
    }

    /// Whether some entry of the block has structured metadata.
    pub fn has_metadata(&self) -> bool {
        self.flags & FLAG_METADATA != 0
    }

    /// Whether the metadata column is in the column section.
    pub fn metadata_in_columns(&self) -> bool {
        self.flags & FLAG_METADATA_IN_COLUMNS != 0
    }
}

impl BlockMeta {
    /// Whether the block may hold entries in `[from, through)`.
    pub fn overlaps(&self, from: i64, through: i64) -> bool {
        self.max_ts >= from && self.min_ts < through
    }
}

/// A compressed block held by a chunk: its header and a view of its payload.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub(crate) meta: BlockMeta,
    /// The compressed payload; for a decoded [`Chunk`](super::Chunk) a slice of the object's
    /// bytes, never a copy.
    pub(crate) data: Bytes,
}

impl Block {
    /// Verifies the payload checksums, decompresses and parses the block.
    pub(crate) fn decode(&self, codec: Codec) -> Result<DecodedBlock, ChunkError> {
        let Some(sections) = self.meta.sections else {
            check_crc(&self.data, self.meta.crc32c, "block", self.meta.offset)?;
            let payload = codec::decompress(codec, &self.data, self.meta.uncompressed_len as usize)?;
            return DecodedBlock::parse(payload, &self.meta);
        };
        let columns = self.columns_section(codec, &sections)?;
        let (start, end) = self.lines_span(&sections)?;
        let data = self.data.slice(start..end);
        check_crc(&data, self.meta.crc32c, "block line section", self.meta.offset)?;
        if sections.index_len > 0 {
            // Not needed to read the block, but a damaged index must not go unnoticed.
            NeedleIndex::parse(&self.data[end..])?;
        }
        let lines_len = self.meta.uncompressed_len - sections.columns_uncompressed_len;
        let rest = codec::decompress(codec, &data, lines_len as usize)?;
        DecodedBlock::parse_sections(&columns, rest, &self.meta)
    }

    /// Verifies and decompresses only the column section of a format-2 block.
    fn columns_section(&self, codec: Codec, sections: &BlockSections) -> Result<Bytes, ChunkError> {
        if sections.lines_len(self.meta.compressed_len).is_none()
            || self.data.len() != self.meta.compressed_len as usize
            || sections.columns_uncompressed_len > self.meta.uncompressed_len
        {
            return Err(ChunkError::corrupt(format!(
                "block at offset {}: sections do not fit its {} bytes",
                self.meta.offset, self.meta.compressed_len
            )));
        }
        let data = self.data.slice(..sections.columns_len as usize);
        check_crc(&data, sections.columns_crc32c, "block column section", self.meta.offset)?;
        codec::decompress(codec, &data, sections.columns_uncompressed_len as usize)
    }

    /// Byte range of the line section in `data` (sections already checked to fit).
    fn lines_span(&self, sections: &BlockSections) -> Result<(usize, usize), ChunkError> {
        let lines = sections
            .lines_len(self.meta.compressed_len)
            .ok_or_else(|| ChunkError::corrupt("block sections do not fit the block"))?;
        let start = sections.columns_len as usize;
        Ok((start, start + lines as usize))
    }

    /// Decompresses and parses the timestamps and line lengths only: the column section of a
    /// format-2 block, the whole payload of a format-1 block.
    pub(crate) fn decode_columns(&self, codec: Codec) -> Result<BlockColumns, ChunkError> {
        match self.meta.sections {
            Some(sections) => {
                let columns = self.columns_section(codec, &sections)?;
                let mut r = Reader::new(&columns);
                let (timestamps, offsets) = parse_columns(&mut r, &self.meta, columns.len())?;
                let metadata =
                    if sections.metadata_in_columns() { parse_metadata(&mut r, timestamps.len())? } else { None };
                if r.pos != columns.len() {
                    return Err(ChunkError::corrupt("block column section has trailing bytes"));
                }
                let has_metadata = sections.has_metadata() || metadata.is_some();
                Ok(BlockColumns { timestamps, offsets, has_metadata, metadata })
            }
            None => Ok(self.decode(codec)?.into_columns()),
        }
    }
}

/// The needle index at the end of the stored block `data` with header `meta`, when it has a
/// valid one (format 2, an index, its checksum right).
fn needle_index_in<'a>(meta: &BlockMeta, data: &'a [u8]) -> Option<NeedleIndex<'a>> {
    let sections = meta.sections?;
    if sections.index_len == 0 || sections.lines_len(meta.compressed_len).is_none() {
        return None;
    }
    let start = data.len().checked_sub(sections.index_len as usize)?;
    NeedleIndex::parse(&data[start..]).ok()
}

/// Checks the CRC32C of a compressed section.
fn check_crc(data: &[u8], want: u32, what: &str, offset: u64) -> Result<(), ChunkError> {
    let crc = crc32c::crc32c(data);
    if crc != want {
        return Err(ChunkError::corrupt(format!(
            "{what} at offset {offset} fails its checksum: crc32c {crc:#010x}, header says {want:#010x}"
        )));
    }
    Ok(())
}

/// A snapshot of one block of a chunk, detached from the chunk: it can be decoded after the
/// chunk (or the lock guarding a [`MemChunk`](super::MemChunk)) is gone.
///
/// Cut blocks are held compressed and decoded on demand; the head block of a `MemChunk` is
/// already decoded when the snapshot is taken.
#[derive(Clone, Debug)]
pub struct BlockHandle {
    /// The block's header. For a head snapshot `compressed_len` and `crc32c` are 0 and
    /// `uncompressed_len` is the size of its payload.
    meta: BlockMeta,
    /// The block's data in whichever form the chunk held it.
    inner: HandleInner,
}

#[derive(Clone, Debug)]
enum HandleInner {
    Compressed {
        codec: Codec,
        data: Bytes,
    },
    /// A head snapshot: parsed, and the uncompressed payload it was parsed from (what
    /// [`BlockHandle::wire`] sends).
    Decoded {
        block: DecodedBlock,
        payload: Bytes,
    },
}

impl BlockHandle {
    pub(crate) fn compressed(codec: Codec, block: &Block) -> Self {
        BlockHandle { meta: block.meta, inner: HandleInner::Compressed { codec, data: block.data.clone() } }
    }

    pub(crate) fn decoded(meta: BlockMeta, block: DecodedBlock, payload: Bytes) -> Self {
        BlockHandle { meta, inner: HandleInner::Decoded { block, payload } }
    }

    /// The block as it travels between processes: header, codec and payload. A cut block is
    /// its compressed payload as stored (no copy); a head snapshot is its uncompressed payload
    /// under [`Codec::None`], with the header's `compressed_len` and `crc32c` filled in so the
    /// receiver checks it like any other block.
    pub fn wire(&self) -> (BlockMeta, Codec, Bytes) {
        match &self.inner {
            HandleInner::Compressed { codec, data } => (self.meta, *codec, data.clone()),
            HandleInner::Decoded { payload, .. } => {
                let meta = BlockMeta {
                    compressed_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                    crc32c: crc32c::crc32c(payload),
                    ..self.meta
                };
                (meta, Codec::None, payload.clone())
            }
        }
    }

    /// A block received from another process ([`BlockHandle::wire`]'s output). The payload's
    /// length is checked here, its checksum and contents when it is decoded.
    pub fn from_wire(meta: BlockMeta, codec: Codec, data: Bytes) -> Result<Self, ChunkError> {
        if data.len() != meta.compressed_len as usize {
            return Err(ChunkError::corrupt(format!(
                "block payload of {} bytes, header says {}",
                data.len(),
                meta.compressed_len
            )));
        }
        if meta.count == 0 || meta.min_ts > meta.max_ts {
            return Err(ChunkError::corrupt("block header with no entries or inverted time bounds"));
        }
        if let Some(s) = meta.sections
            && (s.lines_len(meta.compressed_len).is_none()
                || s.columns_uncompressed_len > meta.uncompressed_len
                || s.flags & !KNOWN_FLAGS != 0)
        {
            return Err(ChunkError::corrupt("block header with sections that do not fit the block"));
        }
        Ok(BlockHandle { meta, inner: HandleInner::Compressed { codec, data } })
    }

    /// The block's header: entry count and time bounds.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// Bytes this handle keeps in memory: the compressed payload of a cut block; the payload
    /// and the parsed entries of a head snapshot.
    pub fn held_bytes(&self) -> usize {
        match &self.inner {
            HandleInner::Compressed { data, .. } => data.len(),
            HandleInner::Decoded { payload, .. } => payload.len() + self.meta.count as usize * 16,
        }
    }

    /// Whether this is an uncompressed head block snapshot rather than a cut block.
    pub fn is_head(&self) -> bool {
        matches!(self.inner, HandleInner::Decoded { .. })
    }

    /// Decompresses (cut blocks: checksum, decompress, parse) or hands over (head) the block.
    pub fn decode(self) -> Result<DecodedBlock, ChunkError> {
        match self.inner {
            HandleInner::Compressed { codec, data } => Block { meta: self.meta, data }.decode(codec),
            HandleInner::Decoded { block, .. } => Ok(block),
        }
    }

    /// The timestamps and line lengths of the block without its lines: for a format-2 block
    /// only the small column section is checked and decompressed; a format-1 block is decoded
    /// whole; a head snapshot hands over its columns.
    pub fn decode_columns(self) -> Result<BlockColumns, ChunkError> {
        match self.inner {
            HandleInner::Compressed { codec, data } => Block { meta: self.meta, data }.decode_columns(codec),
            HandleInner::Decoded { block, .. } => Ok(block.into_columns()),
        }
    }

    /// Whether some entry has structured metadata, when that is known without decompressing:
    /// always for format-2 blocks and head snapshots, never for format-1 blocks.
    pub fn has_metadata(&self) -> Option<bool> {
        match (&self.inner, self.meta.sections) {
            (HandleInner::Decoded { block, .. }, _) => Some(block.has_metadata()),
            (HandleInner::Compressed { .. }, Some(s)) => Some(s.has_metadata()),
            (HandleInner::Compressed { .. }, None) => None,
        }
    }

    /// The block's needle index: `None` for blocks without one (format 1, head snapshots) and
    /// blocks whose index fails its checksum.
    pub fn needle_index(&self) -> Option<NeedleIndex<'_>> {
        match &self.inner {
            HandleInner::Compressed { data, .. } => needle_index_in(&self.meta, data),
            HandleInner::Decoded { .. } => None,
        }
    }

    /// Whether [`decode_columns`](Self::decode_columns) gives every entry's labels: the block
    /// has no structured metadata, keeps it in its column section, or is a head snapshot.
    /// Format-1 blocks always answer `false` (their columns mean decompressing the lines).
    pub fn columns_hold_labels(&self) -> bool {
        match (&self.inner, self.meta.sections) {
            (HandleInner::Decoded { .. }, _) => true,
            (HandleInner::Compressed { .. }, Some(s)) => !s.has_metadata() || s.metadata_in_columns(),
            (HandleInner::Compressed { .. }, None) => false,
        }
    }

    /// Whether the block may hold a line with everything of `tokens` (hashes from
    /// [`needle::literal_tokens`](super::needle::literal_tokens)): `false` only when the
    /// block's needle index proves one of them absent. Blocks without an index (format 1, head
    /// snapshots) and blocks whose index fails its checksum always may.
    pub fn may_contain_tokens(&self, tokens: &LiteralTokens) -> bool {
        tokens.is_empty() || self.needle_index().is_none_or(|index| index.may_contain_all(tokens))
    }
}

/// The timestamp and line-length columns of a block, without lines or metadata: what counting
/// and byte-summing queries need.
#[derive(Clone, Debug)]
pub struct BlockColumns {
    /// Entry timestamps, non-decreasing.
    timestamps: Vec<i64>,
    /// `n + 1` line end offsets: line `i` is `offsets[i + 1] - offsets[i]` bytes long.
    offsets: Vec<u32>,
    /// Whether some entry of the block has structured metadata.
    has_metadata: bool,
    /// The metadata column, when it was read with the others (a format-2 block that keeps it in
    /// its column section, a head snapshot); `None` also for a block without metadata.
    metadata: Option<Box<MetadataColumn>>,
}

impl BlockColumns {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether the block has no entries (never true for a block read from a chunk).
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Entry timestamps, non-decreasing; equal timestamps are in append order.
    pub fn timestamps(&self) -> &[i64] {
        &self.timestamps
    }

    /// Length in bytes of line `i`. Panics if `i >= len()`.
    pub fn line_len(&self, i: usize) -> usize {
        (self.offsets[i + 1] - self.offsets[i]) as usize
    }

    /// Whether some entry of the block has structured metadata.
    pub fn has_metadata(&self) -> bool {
        self.has_metadata
    }

    /// The structured metadata of entry `i` as (name, value) pairs, in stored order; empty for
    /// a block whose metadata was not read. Panics if `i >= len()`.
    pub fn metadata_pairs(&self, i: usize) -> impl Iterator<Item = (&str, &str)> + '_ {
        assert!(i < self.len(), "entry {i} out of range");
        named_pairs(self.metadata.as_deref(), i)
    }

    /// The symbol ids of entry `i`'s metadata pairs: equal slices are equal metadata, within
    /// one block. Panics if `i >= len()`.
    pub fn metadata_ids(&self, i: usize) -> &[(u32, u32)] {
        assert!(i < self.len(), "entry {i} out of range");
        self.metadata.as_deref().map_or(&[], |md| md.pairs_of(i))
    }

    /// The index range of the entries with `from <= ts < through`.
    pub fn range_of(&self, from: i64, through: i64) -> Range<usize> {
        range_of(&self.timestamps, from, through)
    }
}

fn range_of(timestamps: &[i64], from: i64, through: i64) -> Range<usize> {
    let start = timestamps.partition_point(|&t| t < from);
    let end = timestamps.partition_point(|&t| t < through);
    start..end.max(start)
}

/// A decompressed block, ready to scan: columns decoded once, lines in one buffer.
///
/// Creating one costs a single decompression into a single buffer plus decoding the timestamp
/// and length columns; `line(i)` and `lines_buf()` hand out views of that buffer.
#[derive(Clone, Debug)]
pub struct DecodedBlock {
    /// Entry timestamps, non-decreasing.
    timestamps: Vec<i64>,
    /// `n + 1` offsets into `lines`: line `i` is `lines[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<u32>,
    /// Every line's bytes, concatenated: a slice of the decompressed payload.
    lines: Bytes,
    /// The structured metadata column, absent when no entry of the block has metadata.
    metadata: Option<Box<MetadataColumn>>,
}

/// Decoded structured metadata of a block.
#[derive(Clone, Debug)]
struct MetadataColumn {
    /// Every symbol's text, concatenated (validated once, so lookups are plain slicing).
    text: String,
    /// Byte ranges of the symbols in `text`.
    symbols: Vec<(u32, u32)>,
    /// (name, value) symbol ids of every entry, concatenated.
    pairs: Vec<(u32, u32)>,
    /// `n + 1` offsets into `pairs`: entry `i` has `pairs[index[i]..index[i + 1]]`.
    index: Vec<u32>,
}

impl DecodedBlock {
    /// Parses an uncompressed format-1 payload described by `meta` (whose `count`, `min_ts` and
    /// `max_ts` it must agree with).
    pub(crate) fn parse(payload: Bytes, meta: &BlockMeta) -> Result<DecodedBlock, ChunkError> {
        let mut r = Reader::new(&payload);
        let (timestamps, offsets) = parse_columns(&mut r, meta, payload.len())?;
        let metadata = parse_metadata(&mut r, timestamps.len())?;
        let lines = lines_after(&payload, r.pos, &offsets)?;
        Ok(DecodedBlock { timestamps, offsets, lines, metadata })
    }

    /// Parses the two decompressed sections of a format-2 block: `columns` (timestamps and
    /// line lengths) and `rest` (metadata and lines).
    pub(crate) fn parse_sections(columns: &[u8], rest: Bytes, meta: &BlockMeta) -> Result<DecodedBlock, ChunkError> {
        let in_columns = meta.sections.is_some_and(|s| s.metadata_in_columns());
        let mut r = Reader::new(columns);
        let (timestamps, offsets) = parse_columns(&mut r, meta, columns.len())?;
        let mut metadata = if in_columns { parse_metadata(&mut r, timestamps.len())? } else { None };
        if r.pos != columns.len() {
            return Err(ChunkError::corrupt("block column section has trailing bytes"));
        }
        let mut r = Reader::new(&rest);
        if !in_columns {
            metadata = parse_metadata(&mut r, timestamps.len())?;
        }
        let lines = lines_after(&rest, r.pos, &offsets)?;
        Ok(DecodedBlock { timestamps, offsets, lines, metadata })
    }

    /// The timestamp, length and metadata columns, dropping lines.
    pub fn into_columns(self) -> BlockColumns {
        BlockColumns {
            has_metadata: self.metadata.is_some(),
            timestamps: self.timestamps,
            offsets: self.offsets,
            metadata: self.metadata,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether the block has no entries (never true for a block read from a chunk).
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Entry timestamps, non-decreasing; equal timestamps are in append order.
    pub fn timestamps(&self) -> &[i64] {
        &self.timestamps
    }

    /// Every line of the block, concatenated, for searching the whole block at once.
    pub fn lines_buf(&self) -> &Bytes {
        &self.lines
    }

    /// The byte range of line `i` in [`lines_buf`](Self::lines_buf). Panics if `i >= len()`.
    pub fn line_range(&self, i: usize) -> Range<usize> {
        self.offsets[i] as usize..self.offsets[i + 1] as usize
    }

    /// Line `i` as a view of the block buffer (no copy). Panics if `i >= len()`.
    pub fn line(&self, i: usize) -> Bytes {
        self.lines.slice(self.line_range(i))
    }

    /// The entry whose line contains byte `byte_offset` of [`lines_buf`](Self::lines_buf):
    /// maps a substring match back to its line. An offset at or past the end maps to the last
    /// entry. Empty lines contain no bytes and are never returned for an offset inside another
    /// line.
    pub fn entry_index_at(&self, byte_offset: usize) -> usize {
        let off = u32::try_from(byte_offset).unwrap_or(u32::MAX);
        // The first offset after the hit ends the line holding it.
        let next = self.offsets[1..].partition_point(|&end| end <= off);
        next.min(self.len().saturating_sub(1))
    }

    /// Whether any entry of the block has structured metadata.
    pub fn has_metadata(&self) -> bool {
        self.metadata.is_some()
    }

    /// The structured metadata of entry `i` as borrowed (name, value) pairs, without
    /// allocating. Panics if `i >= len()`.
    pub fn metadata_pairs(&self, i: usize) -> impl Iterator<Item = (&str, &str)> + '_ {
        assert!(i < self.len(), "entry {i} out of range");
        named_pairs(self.metadata.as_deref(), i)
    }

    /// The structured metadata of entry `i`; allocates only when the entry has some.
    pub fn metadata(&self, i: usize) -> Vec<Label> {
        if self.metadata.is_none() {
            return Vec::new();
        }
        self.metadata_pairs(i).map(|(n, v)| Label::new(n, v)).collect()
    }

    /// Entry `i` with its line as a view of the block buffer. Panics if `i >= len()`.
    pub fn entry(&self, i: usize) -> Entry {
        Entry { ts: self.timestamps[i], line: self.line(i), metadata: self.metadata(i) }
    }

    /// The index range of the entries with `from <= ts < through`.
    pub fn range_of(&self, from: i64, through: i64) -> Range<usize> {
        range_of(&self.timestamps, from, through)
    }

    /// Every (timestamp, line), in order.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (i64, &[u8])> + '_ {
        (0..self.len()).map(|i| (self.timestamps[i], &self.lines[self.line_range(i)]))
    }

    /// Whether an entry with exactly this timestamp and line exists.
    pub fn contains(&self, ts: i64, line: &[u8], metadata: &[Label]) -> bool {
        let start = self.timestamps.partition_point(|&t| t < ts);
        (start..self.len()).take_while(|&i| self.timestamps[i] == ts).any(|i| {
            &self.lines[self.line_range(i)] == line
                && self.metadata_pairs(i).eq(metadata.iter().map(|l| (l.name.as_str(), l.value.as_str())))
        })
    }
}

/// The (name, value) pairs of entry `i` in a block's metadata column; none without one.
fn named_pairs(md: Option<&MetadataColumn>, i: usize) -> impl Iterator<Item = (&str, &str)> + '_ {
    md.into_iter().flat_map(move |md| md.pairs_of(i).iter().map(move |&(n, v)| (md.symbol(n), md.symbol(v))))
}

impl MetadataColumn {
    /// The (name, value) symbol ids of entry `i`.
    fn pairs_of(&self, i: usize) -> &[(u32, u32)] {
        &self.pairs[self.index[i] as usize..self.index[i + 1] as usize]
    }

    /// Symbol `id`; ids were validated when the column was parsed.
    fn symbol(&self, id: u32) -> &str {
        self.symbols.get(id as usize).and_then(|&(s, e)| self.text.get(s as usize..e as usize)).unwrap_or_default()
    }
}

/// Parses the timestamp and line-length columns of `meta.count` entries from a buffer of
/// `available` bytes: the timestamps and the `n + 1` line end offsets.
fn parse_columns(r: &mut Reader<'_>, meta: &BlockMeta, available: usize) -> Result<(Vec<i64>, Vec<u32>), ChunkError> {
    let n = meta.count as usize;
    // Every entry takes at least two bytes (a timestamp and a length), so a count the buffer
    // cannot hold is rejected before allocating for it.
    if n == 0 || n > available / 2 {
        return Err(ChunkError::corrupt(format!("block claims {n} entries in a {available} byte payload")));
    }
    let mut timestamps = Vec::with_capacity(n);
    let mut ts = meta.min_ts;
    for _ in 0..n {
        // Deltas span the whole i64 range (up to 2^64 - 1), hence the wide arithmetic.
        let next = i128::from(ts) + i128::from(r.uvarint()?);
        if next > i128::from(meta.max_ts) {
            return Err(ChunkError::corrupt("block timestamp past the header's max"));
        }
        ts = next as i64;
        timestamps.push(ts);
    }
    if timestamps.first() != Some(&meta.min_ts) || timestamps.last() != Some(&meta.max_ts) {
        return Err(ChunkError::corrupt("block timestamps disagree with the header's bounds"));
    }
    let mut offsets = Vec::with_capacity(n + 1);
    offsets.push(0u32);
    let mut end = 0u64;
    for _ in 0..n {
        end += r.uvarint()?;
        let end32 = u32::try_from(end).map_err(|_| ChunkError::corrupt("block line lengths overflow"))?;
        offsets.push(end32);
    }
    Ok((timestamps, offsets))
}

/// The lines column: the bytes of `buf` from `start`, which must be exactly as long as the line
/// lengths say.
fn lines_after(buf: &Bytes, start: usize, offsets: &[u32]) -> Result<Bytes, ChunkError> {
    let end = u64::from(offsets.last().copied().unwrap_or(0));
    if (buf.len() - start) as u64 != end {
        return Err(ChunkError::corrupt(format!(
            "block line lengths add up to {end} bytes, payload holds {}",
            buf.len() - start
        )));
    }
    Ok(buf.slice(start..))
}

fn parse_metadata(r: &mut Reader<'_>, n: usize) -> Result<Option<Box<MetadataColumn>>, ChunkError> {
    let nsym = r.len_prefix()?;
    if nsym == 0 {
        return Ok(None);
    }
    let mut symbols = Vec::with_capacity(nsym);
    let mut text = String::new();
    for _ in 0..nsym {
        let len = r.len_prefix()?;
        let s =
            std::str::from_utf8(r.take(len)?).map_err(|_| ChunkError::corrupt("block metadata symbol is not utf-8"))?;
        // The payload is at most MAX_BLOCK_UNCOMPRESSED long, so positions fit in u32.
        let start = text.len() as u32;
        text.push_str(s);
        symbols.push((start, text.len() as u32));
    }
    let mut index = Vec::with_capacity(n + 1);
    index.push(0u32);
    let mut pairs = Vec::new();
    for _ in 0..n {
        let k = r.len_prefix()?;
        for _ in 0..k {
            let name = r.symbol_id(nsym)?;
            let value = r.symbol_id(nsym)?;
            pairs.push((name, value));
        }
        let total = u32::try_from(pairs.len()).map_err(|_| ChunkError::corrupt("block metadata too large"))?;
        index.push(total);
    }
    Ok(Some(Box::new(MetadataColumn { text, symbols, pairs, index })))
}

/// A cursor over a payload reading LEB128 varints with bounds checks.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Reads one uvarint (at most 10 bytes, no overflow).
    #[inline]
    pub(crate) fn uvarint(&mut self) -> Result<u64, ChunkError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(ChunkError::corrupt("block payload truncated inside a varint"));
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(ChunkError::corrupt("block payload varint overflows"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(ChunkError::corrupt("block payload varint overflows"))
    }

    /// Reads a uvarint that counts or measures something in the rest of the payload, so it
    /// cannot exceed the bytes left.
    fn len_prefix(&mut self) -> Result<usize, ChunkError> {
        let v = self.uvarint()?;
        let left = (self.buf.len() - self.pos) as u64;
        if v > left {
            return Err(ChunkError::corrupt("block payload length prefix past its end"));
        }
        Ok(v as usize)
    }

    fn symbol_id(&mut self, nsym: usize) -> Result<u32, ChunkError> {
        let v = self.uvarint()?;
        if v >= nsym as u64 {
            return Err(ChunkError::corrupt("block metadata symbol id out of range"));
        }
        Ok(v as u32)
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], ChunkError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| ChunkError::corrupt("block payload truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// Appends `v` as a uvarint.
#[inline]
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
