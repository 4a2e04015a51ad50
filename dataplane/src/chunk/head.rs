//! The head block: the uncompressed tail of a chunk that receives appends.
//!
//! Entries are kept in append order in three flat columns (timestamps, line end offsets, and one
//! buffer holding every line), so an append copies the line once and allocates nothing per
//! entry. Structured metadata, rare in practice, lives in a side buffer that exists only once an
//! entry brings some. Appends may come in any timestamp order; the block is stably sorted when
//! it is encoded.

use bytes::Bytes;
use std::collections::HashMap;

use super::ChunkError;
use super::block::{BlockMeta, DecodedBlock, Reader, put_uvarint};
use crate::labels::Label;

/// Marks "no previous entry" in [`TsIndex::prev_same_ts`].
const NONE: u32 = u32::MAX;
/// Room left past the block size in the line buffer for the line that fills the block.
const LINE_SLACK: usize = 4 << 10;

/// The uncompressed block receiving appends.
#[derive(Clone, Debug, Default)]
pub struct HeadBlock {
    /// Timestamps in append order.
    ts: Vec<i64>,
    /// End offset of each line in `lines` (the start is the previous entry's end).
    ends: Vec<u32>,
    /// Every line's bytes, in append order.
    lines: Vec<u8>,
    /// Structured metadata, allocated on the first entry that has some.
    metadata: Option<Box<HeadMetadata>>,
    /// Smallest timestamp (meaningless while empty).
    min_ts: i64,
    /// Largest timestamp (meaningless while empty).
    max_ts: i64,
    /// Whether timestamps are non-decreasing in append order: the common case, which needs no
    /// sorting on cut and answers `contains` by binary search.
    sorted: bool,
    /// Bytes of lines and metadata (see [`label_size`]): what counts towards the block size.
    size: usize,
    /// Lookup by timestamp for `contains`, built when the first out-of-order entry arrives.
    index: Option<Box<TsIndex>>,
    /// Capacity the line buffer grows to at most by doubling (the block size plus room for a
    /// last line), so that filling a block does not end with a reallocation to twice its size.
    lines_cap_hint: usize,
}

/// Structured metadata of the head's entries.
#[derive(Clone, Debug, Default)]
struct HeadMetadata {
    /// Pairs of every entry: uvarint name length, name, uvarint value length, value.
    buf: Vec<u8>,
    /// `n + 1` offsets into `buf`; entries appended before the first metadata have empty ranges.
    starts: Vec<u32>,
}

/// Timestamp index of an unsorted head.
#[derive(Clone, Debug, Default)]
struct TsIndex {
    /// The last entry appended with each timestamp.
    last_with_ts: HashMap<i64, u32>,
    /// For each entry, the previous entry with the same timestamp, or [`NONE`].
    prev_same_ts: Vec<u32>,
}

impl HeadBlock {
    /// An empty head block.
    pub fn new() -> Self {
        Self::with_block_size(usize::MAX)
    }

    /// An empty head block that will be cut at about `block_size` bytes: its line buffer grows
    /// by doubling but not past what such a block needs.
    pub fn with_block_size(block_size: usize) -> Self {
        HeadBlock { sorted: true, lines_cap_hint: block_size.saturating_add(LINE_SLACK), ..Default::default() }
    }

    /// Empties the head but keeps its buffers' capacity, for a stream that is about to fill
    /// another block: no regrowth, no fresh pages.
    pub fn clear(&mut self) {
        self.ts.clear();
        self.ends.clear();
        self.lines.clear();
        self.metadata = None;
        self.index = None;
        self.sorted = true;
        self.size = 0;
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// Whether the head has no entries.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Bytes of lines and metadata held, each metadata pair counted by [`label_size`].
    pub fn size(&self) -> usize {
        self.size
    }

    /// Smallest and largest timestamp, if any.
    pub fn bounds(&self) -> Option<(i64, i64)> {
        (!self.is_empty()).then_some((self.min_ts, self.max_ts))
    }

    /// Appends an entry in any timestamp order. Fails, changing nothing, only when the head's
    /// `u32` offsets would overflow (a [`MemChunk`](super::MemChunk) cuts long before that).
    pub fn append(&mut self, ts: i64, line: &[u8], metadata: &[Label]) -> Result<(), ChunkError> {
        let n = self.ts.len();
        // Offsets are u32: refuse (before changing anything) what would overflow them.
        let md_len: usize = metadata.iter().map(|l| l.name.len() + l.value.len() + 20).sum();
        let md_total = self.metadata.as_ref().map_or(0, |m| m.buf.len()) + md_len;
        let lines_total = self.lines.len() + line.len();
        if n >= NONE as usize || lines_total > u32::MAX as usize || md_total > u32::MAX as usize {
            return Err(ChunkError::too_large(lines_total.max(md_total), u32::MAX as usize));
        }
        if !metadata.is_empty() || self.metadata.is_some() {
            self.push_metadata(n, metadata);
        }
        if n == 0 {
            self.min_ts = ts;
            self.max_ts = ts;
        } else {
            if ts < self.max_ts && self.sorted {
                self.sorted = false;
                self.build_index();
            }
            self.min_ts = self.min_ts.min(ts);
            self.max_ts = self.max_ts.max(ts);
        }
        if let Some(index) = self.index.as_deref_mut() {
            let prev = index.last_with_ts.insert(ts, n as u32).unwrap_or(NONE);
            index.prev_same_ts.push(prev);
        }
        if lines_total > self.lines.capacity() {
            let target = (self.lines.capacity() * 2).min(self.lines_cap_hint).max(1024).max(lines_total);
            self.lines.reserve_exact(target - self.lines.len());
        }
        self.ts.push(ts);
        self.lines.extend_from_slice(line);
        self.ends.push(lines_total as u32);
        self.size += line.len();
        Ok(())
    }

    fn push_metadata(&mut self, n: usize, metadata: &[Label]) {
        let md =
            self.metadata.get_or_insert_with(|| Box::new(HeadMetadata { buf: Vec::new(), starts: vec![0; n + 1] }));
        for l in metadata {
            put_uvarint(&mut md.buf, l.name.len() as u64);
            md.buf.extend_from_slice(l.name.as_bytes());
            put_uvarint(&mut md.buf, l.value.len() as u64);
            md.buf.extend_from_slice(l.value.as_bytes());
            self.size += label_size(l);
        }
        // `append` checked that the buffer stays within u32.
        md.starts.push(md.buf.len() as u32);
    }

    fn build_index(&mut self) {
        let mut index = TsIndex {
            last_with_ts: HashMap::with_capacity(self.ts.len() * 2),
            prev_same_ts: Vec::with_capacity(self.ts.len() * 2),
        };
        for (i, &t) in self.ts.iter().enumerate() {
            let prev = index.last_with_ts.insert(t, i as u32).unwrap_or(NONE);
            index.prev_same_ts.push(prev);
        }
        self.index = Some(Box::new(index));
    }

    fn line(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.lines[start..self.ends[i] as usize]
    }

    fn metadata_bytes(&self, i: usize) -> &[u8] {
        match &self.metadata {
            Some(md) => &md.buf[md.starts[i] as usize..md.starts[i + 1] as usize],
            None => &[],
        }
    }

    /// Whether an entry with exactly this timestamp, line and structured metadata is in the
    /// head: binary search when the head is sorted, a hash lookup otherwise.
    pub fn contains(&self, ts: i64, line: &[u8], metadata: &[Label]) -> bool {
        if self.is_empty() || ts < self.min_ts || ts > self.max_ts {
            return false;
        }
        let mut wanted = Vec::new();
        for l in metadata {
            put_uvarint(&mut wanted, l.name.len() as u64);
            wanted.extend_from_slice(l.name.as_bytes());
            put_uvarint(&mut wanted, l.value.len() as u64);
            wanted.extend_from_slice(l.value.as_bytes());
        }
        let same = |i: usize| self.line(i) == line && self.metadata_bytes(i) == wanted.as_slice();
        match &self.index {
            None => {
                let start = self.ts.partition_point(|&t| t < ts);
                (start..self.ts.len()).take_while(|&i| self.ts[i] == ts).any(same)
            }
            Some(index) => {
                let mut at = index.last_with_ts.get(&ts).copied().unwrap_or(NONE);
                while at != NONE {
                    if same(at as usize) {
                        return true;
                    }
                    at = index.prev_same_ts[at as usize];
                }
                false
            }
        }
    }

    /// Encodes the head as a block payload (see [`block`](super::block) for the layout), entries
    /// stably sorted by timestamp, replacing the contents of `out`. Returns the block header
    /// with the compression fields (`compressed_len`, `crc32c`, `offset`) zeroed, or `None` when
    /// the head is empty.
    pub fn write_payload(&self, out: &mut Vec<u8>) -> Option<BlockMeta> {
        self.write_payload_split(out).map(|(meta, _, _)| meta)
    }

    /// [`write_payload`](Self::write_payload), also returning where the line-length column
    /// and the metadata column end in `out`: where a format-2 block's column section may end.
    pub(crate) fn write_payload_split(&self, out: &mut Vec<u8>) -> Option<(BlockMeta, usize, usize)> {
        out.clear();
        if self.is_empty() {
            return None;
        }
        let n = self.len();
        out.reserve(self.lines.len() + n * 6 + 16);
        let order: Option<Vec<u32>> = (!self.sorted).then(|| {
            let mut keyed: Vec<(i64, u32)> = self.ts.iter().enumerate().map(|(i, &t)| (t, i as u32)).collect();
            // The index breaks ties, so the unstable sort gives the stable order.
            keyed.sort_unstable();
            keyed.into_iter().map(|(_, i)| i).collect()
        });
        let at = |k: usize| order.as_ref().map_or(k, |o| o[k] as usize);

        let mut prev = self.min_ts;
        for k in 0..n {
            let t = self.ts[at(k)];
            // Sorted, so the difference is non-negative; wrapping keeps the full i64 range.
            put_uvarint(out, t.wrapping_sub(prev) as u64);
            prev = t;
        }
        for k in 0..n {
            put_uvarint(out, self.line(at(k)).len() as u64);
        }
        let lengths_end = out.len();
        self.write_metadata_column(out, n, at);
        let metadata_end = out.len();
        match &order {
            None => out.extend_from_slice(&self.lines),
            Some(order) => {
                for &i in order {
                    out.extend_from_slice(self.line(i as usize));
                }
            }
        }
        let meta = BlockMeta {
            count: n as u32,
            min_ts: self.min_ts,
            max_ts: self.max_ts,
            uncompressed_len: u32::try_from(out.len()).unwrap_or(u32::MAX),
            compressed_len: 0,
            crc32c: 0,
            offset: 0,
            sections: None,
        };
        Some((meta, lengths_end, metadata_end))
    }

    /// Whether some entry has structured metadata (the block's metadata column is not empty).
    pub(crate) fn has_metadata(&self) -> bool {
        self.metadata.as_ref().is_some_and(|md| md.starts.last().is_some_and(|&e| e > 0))
    }

    /// Every line's bytes concatenated in append order, and each line's end offset in them.
    pub(crate) fn lines_and_ends(&self) -> (&[u8], &[u32]) {
        (&self.lines, &self.ends)
    }

    fn write_metadata_column(&self, out: &mut Vec<u8>, n: usize, at: impl Fn(usize) -> usize) {
        if !self.has_metadata() {
            out.push(0);
            return;
        }
        // Intern names and values in order of first use, then write the table and the ids.
        let mut ids: HashMap<&[u8], u32> = HashMap::new();
        let mut symbols: Vec<&[u8]> = Vec::new();
        let mut entries: Vec<u32> = Vec::with_capacity(n * 3);
        for k in 0..n {
            let mut r = Reader::new(self.metadata_bytes(at(k)));
            let count_at = entries.len();
            entries.push(0);
            let mut pairs = 0;
            while let Some(s) = read_str(&mut r) {
                let id = *ids.entry(s).or_insert_with(|| {
                    symbols.push(s);
                    (symbols.len() - 1) as u32
                });
                entries.push(id);
                pairs += 1;
            }
            entries[count_at] = pairs / 2;
        }
        put_uvarint(out, symbols.len() as u64);
        for s in &symbols {
            put_uvarint(out, s.len() as u64);
            out.extend_from_slice(s);
        }
        for id in entries {
            put_uvarint(out, u64::from(id));
        }
    }

    /// The head as a scannable block: its entries stably sorted, lines copied once into the
    /// block buffer. Used to read the head alongside cut blocks without compressing it. Also
    /// returns the payload the block was parsed from (the block's lines are a view of it).
    pub fn to_decoded(&self) -> Result<Option<(BlockMeta, DecodedBlock, Bytes)>, ChunkError> {
        let mut payload = Vec::new();
        let Some(meta) = self.write_payload(&mut payload) else {
            return Ok(None);
        };
        let payload = Bytes::from(payload);
        let block = DecodedBlock::parse(payload.clone(), &meta)?;
        Ok(Some((meta, block, payload)))
    }
}

/// What a metadata pair counts towards block and entry sizes: its name and value plus 8 bytes
/// for its share of the encoded column (symbol ids and length prefixes), so that even a block
/// of empty pairs is cut before its payload outgrows the decoder's limit.
pub fn label_size(l: &Label) -> usize {
    l.name.len() + l.value.len() + 8
}

/// Reads one length-prefixed string of a head metadata buffer (written by `push_metadata`, so
/// well formed); `None` at the end.
fn read_str<'a>(r: &mut Reader<'a>) -> Option<&'a [u8]> {
    let len = r.uvarint().ok()?;
    r.take(usize::try_from(len).ok()?).ok()
}
