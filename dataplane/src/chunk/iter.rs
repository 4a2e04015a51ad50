//! Iteration over the entries of a chunk in timestamp order.
//!
//! Blocks are sorted internally, but out-of-order appends can cut blocks whose time ranges
//! overlap, and the head of a `MemChunk` may overlap anything. The iterator groups blocks into
//! runs of overlapping time ranges (disjoint from each other), walks the groups in order, and
//! merges the blocks of a group entry by entry. In-order data yields one block per group, so the
//! common case is a plain walk through each block; a group is decompressed only when the walk
//! reaches it, so stopping early (a query limit) skips the rest.
//!
//! Ties on the timestamp go to the block cut first (the head last): with the stable sort inside
//! blocks this is append order going forward, and exactly its reverse going backward.

use tracing::warn;

use super::ChunkError;
use super::block::{BlockHandle, DecodedBlock};
use crate::entry::{Direction, Entry};

/// Entries of a chunk with `from <= ts < through`, in timestamp order.
///
/// The iterator owns its blocks (compressed views and the head snapshot), so it is `Send`,
/// `'static`, and does not borrow the chunk it came from. A block that fails to decode (payload
/// checksum or decompression) ends the iteration; [`EntryIter::error`] then returns the cause,
/// so a caller that must not return partial results checks it after the loop.
#[derive(Debug)]
pub struct EntryIter {
    /// Lower bound (inclusive) on timestamps.
    from: i64,
    /// Upper bound (exclusive) on timestamps.
    through: i64,
    /// Forward (oldest first) or backward.
    direction: Direction,
    /// Groups not yet opened, in iteration order. Each holds (source position, block) pairs;
    /// the source position is the block's place in cut order and breaks timestamp ties.
    groups: std::vec::IntoIter<Vec<(usize, BlockHandle)>>,
    /// Decoded blocks of the current group, each with its remaining entry range.
    cursors: Vec<Cursor>,
    /// The decoding error that ended the iteration, if any.
    error: Option<ChunkError>,
}

/// The unread part of one decoded block.
#[derive(Debug)]
struct Cursor {
    /// Position of the block in cut order.
    source: usize,
    block: DecodedBlock,
    /// Entries `lo..hi` are still to be read: forward reads at `lo`, backward at `hi - 1`.
    lo: usize,
    hi: usize,
}

impl Cursor {
    fn peek_ts(&self, direction: Direction) -> i64 {
        match direction {
            Direction::Forward => self.block.timestamps()[self.lo],
            Direction::Backward => self.block.timestamps()[self.hi - 1],
        }
    }
}

impl EntryIter {
    /// Iterates `blocks` (in cut order; a head snapshot last) over `[from, through)`.
    pub fn new(blocks: Vec<BlockHandle>, from: i64, through: i64, direction: Direction) -> Self {
        let mut sources: Vec<(usize, BlockHandle)> =
            blocks.into_iter().enumerate().filter(|(_, b)| b.meta().overlaps(from, through)).collect();
        sources.sort_by_key(|(i, b)| (b.meta().min_ts, *i));
        let mut groups: Vec<Vec<(usize, BlockHandle)>> = Vec::new();
        let mut group_max = i64::MIN;
        for (i, b) in sources {
            let (min, max) = (b.meta().min_ts, b.meta().max_ts);
            match groups.last_mut() {
                Some(g) if min <= group_max => g.push((i, b)),
                _ => groups.push(vec![(i, b)]),
            }
            group_max = group_max.max(max);
        }
        if direction == Direction::Backward {
            groups.reverse();
        }
        EntryIter { from, through, direction, groups: groups.into_iter(), cursors: Vec::new(), error: None }
    }

    /// An iterator that yields nothing and reports `error`.
    pub fn failed(error: ChunkError) -> Self {
        EntryIter {
            from: 0,
            through: 0,
            direction: Direction::Forward,
            groups: Vec::new().into_iter(),
            cursors: Vec::new(),
            error: Some(error),
        }
    }

    /// The error that ended the iteration early, if one did.
    pub fn error(&self) -> Option<&ChunkError> {
        self.error.as_ref()
    }

    /// Takes the error that ended the iteration early, if one did.
    pub fn take_error(&mut self) -> Option<ChunkError> {
        self.error.take()
    }

    /// Decodes the next group into cursors; false when none is left or decoding failed.
    fn open_next_group(&mut self) -> bool {
        let Some(group) = self.groups.next() else {
            return false;
        };
        self.cursors.clear();
        for (source, handle) in group {
            match handle.decode() {
                Ok(block) => {
                    let r = block.range_of(self.from, self.through);
                    if !r.is_empty() {
                        self.cursors.push(Cursor { source, block, lo: r.start, hi: r.end });
                    }
                }
                Err(e) => {
                    warn!(error = %e, "chunk block cannot be read, iteration stops");
                    self.error = Some(e);
                    self.cursors.clear();
                    self.groups = Vec::new().into_iter();
                    return false;
                }
            }
        }
        true
    }

    /// Index into `cursors` of the one holding the next entry.
    fn pick(&self) -> usize {
        let mut best = 0;
        for (k, c) in self.cursors.iter().enumerate().skip(1) {
            let b = &self.cursors[best];
            let (ct, bt) = (c.peek_ts(self.direction), b.peek_ts(self.direction));
            let better = match self.direction {
                Direction::Forward => (ct, c.source) < (bt, b.source),
                Direction::Backward => (ct, c.source) > (bt, b.source),
            };
            if better {
                best = k;
            }
        }
        best
    }
}

impl Iterator for EntryIter {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        while self.cursors.is_empty() {
            if !self.open_next_group() {
                return None;
            }
        }
        let k = if self.cursors.len() == 1 { 0 } else { self.pick() };
        let c = &mut self.cursors[k];
        let i = match self.direction {
            Direction::Forward => {
                c.lo += 1;
                c.lo - 1
            }
            Direction::Backward => {
                c.hi -= 1;
                c.hi
            }
        };
        let entry = c.block.entry(i);
        if c.lo == c.hi {
            self.cursors.swap_remove(k);
        }
        Some(entry)
    }
}
