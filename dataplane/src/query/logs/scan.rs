//! Scanning one unit of a stream: decode its blocks, pick candidate entries, run the pipeline in
//! direction order, and stop once the unit holds enough entries.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;

use super::Query;
use crate::chunk::{BlockHandle, DecodedBlock};
use crate::entry::Direction;
use crate::labels::{Label, SharedLabels};
use crate::query::EvalError;
use crate::query::pipeline::{ResultLabels, StreamPipeline};

/// An entry that passed the pipeline.
#[derive(Debug, Clone)]
pub(super) struct OutEntry {
    pub(super) ts: i64,
    /// The (possibly rewritten) line; a view of the decompressed block when unchanged.
    pub(super) line: Bytes,
    /// Index into the unit's [`UnitOutput::variants`].
    pub(super) variant: u32,
}

/// What scanning one unit produced.
#[derive(Debug, Default)]
pub(super) struct UnitOutput {
    /// Entries that passed the pipeline, in direction order.
    pub(super) entries: Vec<OutEntry>,
    /// The distinct result labels of `entries`.
    pub(super) variants: Vec<ResultLabels>,
    /// Whether the scan stopped because the unit alone holds `limit` entries the interval rule
    /// could return: later units of the stream are not needed.
    pub(super) reached_limit: bool,
}

impl UnitOutput {
    /// The index of `labels` in `variants`, adding it when new. Consecutive entries nearly
    /// always share their labels, so the last one is checked first.
    fn variant(&mut self, labels: &ResultLabels) -> u32 {
        if let Some(last) = self.entries.last()
            && self.variants[last.variant as usize] == *labels
        {
            return last.variant;
        }
        if let Some(i) = self.variants.iter().position(|v| v.hash == labels.hash && v == labels) {
            return i as u32;
        }
        self.variants.push(labels.clone());
        (self.variants.len() - 1) as u32
    }
}

/// Loki's interval rule run greedily over a sequence of entries in direction order: an entry is
/// taken when it is the first, or at least `interval` past the last taken one (every entry when
/// `interval` is 0). Counting taken entries bounds how far a scan has to go.
///
/// Why a stream (or a unit) can stop once `limit` entries are taken: the query's result is the
/// same greedy rule run over the merge of all streams. Greedy over a sequence takes its k-th
/// entry no later than greedy over any subsequence takes its k-th (induction on k: the
/// superset's next pick is the first entry at least `interval` past its previous pick, which is
/// no later than the subsequence's previous pick). So the query's `limit`-th returned entry
/// comes no later than the `limit`-th entry taken in any one stream or unit, and entries past
/// that point are never looked at. Entries the stream's own greedy skips can still be returned
/// by the query, so every entry up to that point is kept.
#[derive(Debug, Clone)]
pub(crate) struct Greedy {
    direction: Direction,
    interval: i64,
    limit: usize,
    taken: usize,
    last: Option<i64>,
}

impl Greedy {
    pub(crate) fn new(direction: Direction, interval: i64, limit: usize) -> Self {
        Greedy { direction, interval, limit, taken: 0, last: None }
    }

    /// Offers the next entry; true when it is taken.
    pub(crate) fn offer(&mut self, ts: i64) -> bool {
        let take = match self.last {
            None => true,
            Some(_) if self.interval == 0 => true,
            Some(last) => match self.direction {
                Direction::Forward => i128::from(ts) >= i128::from(last) + i128::from(self.interval),
                Direction::Backward => i128::from(ts) <= i128::from(last) - i128::from(self.interval),
            },
        };
        if take {
            self.last = Some(ts);
            self.taken += 1;
        }
        take
    }

    /// Whether `limit` entries were taken.
    pub(crate) fn full(&self) -> bool {
        self.taken >= self.limit
    }
}

/// The entries of one decoded block a scan visits: the candidates inside the window.
struct Cursor {
    block: DecodedBlock,
    /// Candidate entry indices (sorted), `None` for every entry.
    picks: Option<Vec<usize>>,
}

/// Positions `lo..hi` into a cursor's picks (or entry indices) still to visit: forward reads at
/// `lo`, backward at `hi - 1`.
#[derive(Debug, Clone)]
struct Span(Range<usize>);

impl Cursor {
    fn new(query: &Query, block: DecodedBlock) -> (Cursor, Span) {
        let range = block.range_of(query.from, query.through);
        let picks = query.pipeline.candidates(&block).map(|mut p| {
            // The contract is ascending indices; cheap to make sure of.
            if !p.is_sorted() {
                p.sort_unstable();
                p.dedup();
            }
            p
        });
        let span = match &picks {
            None => range,
            Some(p) => p.partition_point(|&i| i < range.start)..p.partition_point(|&i| i < range.end),
        };
        (Cursor { block, picks }, Span(span))
    }

    fn entry(&self, pos: usize) -> usize {
        self.picks.as_ref().map_or(pos, |p| p[pos])
    }
}

impl Span {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The position visited next.
    fn peek(&self, direction: Direction) -> usize {
        match direction {
            Direction::Forward => self.0.start,
            Direction::Backward => self.0.end - 1,
        }
    }

    fn advance(&mut self, direction: Direction) {
        match direction {
            Direction::Forward => self.0.start += 1,
            Direction::Backward => self.0.end -= 1,
        }
    }
}

/// Runs the pipeline over entries offered one at a time and collects what passes.
struct Collector {
    stream: StreamPipeline,
    greedy: Greedy,
    out: UnitOutput,
    /// An empty buffer for an entry's metadata pairs, kept for its allocation.
    spare: Vec<(&'static str, &'static str)>,
}

/// `v` emptied, for borrows of another lifetime; the allocation is reused (in-place collect).
fn recycle<'a, 'b>(mut v: Vec<(&'a str, &'a str)>) -> Vec<(&'b str, &'b str)> {
    v.clear();
    // `v` is empty: the closure never runs; it only changes the lifetime of the element type.
    v.into_iter().map(|_| ("", "")).collect()
}

impl Collector {
    /// Offers entry `i` of `block`; true when the unit has enough entries and the scan stops.
    fn offer(&mut self, block: &DecodedBlock, i: usize) -> bool {
        let ts = block.timestamps()[i];
        let buf = block.lines_buf();
        let line = &buf[block.line_range(i)];
        let mut metadata = recycle(std::mem::take(&mut self.spare));
        if block.has_metadata() {
            metadata.extend(block.metadata_pairs(i));
        }
        let passed = match self.stream.process(ts, line, &metadata) {
            Some(p) => {
                let line = line_bytes(p.line, buf);
                let variant = self.out.variant(p.labels);
                self.out.entries.push(OutEntry { ts, line, variant });
                true
            }
            None => false,
        };
        self.spare = recycle(metadata);
        if passed {
            self.greedy.offer(ts);
            if self.greedy.full() {
                self.out.reached_limit = true;
                return true;
            }
        }
        false
    }
}

/// The processed line as `Bytes`: a view of the block buffer when the pipeline left it there,
/// a copy otherwise.
fn line_bytes(line: Cow<'_, [u8]>, buf: &Bytes) -> Bytes {
    match line {
        Cow::Borrowed(s) => {
            let (start, p) = (buf.as_ptr() as usize, s.as_ptr() as usize);
            if p >= start && p + s.len() <= start + buf.len() { buf.slice_ref(s) } else { Bytes::copy_from_slice(s) }
        }
        Cow::Owned(v) => Bytes::from(v),
    }
}

/// A block of a merged unit, opened: its cursor, what is left of it, and its rank (position
/// in timestamp order of block starts), which breaks timestamp ties.
struct Open {
    cursor: Cursor,
    span: Span,
    rank: usize,
}

impl Query {
    /// Decodes and scans one unit (a block, or blocks overlapping in time) of the stream with
    /// `labels`. The blocks come sorted by minimum timestamp.
    pub(super) fn scan_unit(
        &self,
        labels: &SharedLabels,
        mut blocks: Vec<BlockHandle>,
    ) -> Result<UnitOutput, EvalError> {
        let mut collector = Collector {
            stream: self.pipeline.for_stream(labels),
            greedy: Greedy::new(self.direction, self.interval, self.limit),
            out: UnitOutput::default(),
            spare: Vec::new(),
        };
        // Blocks whose needle index rules out every line the filters look for.
        blocks.retain(|b| !self.pipeline.skips_block(b));
        match blocks.len() {
            0 => {}
            1 => {
                if let Some(handle) = blocks.pop() {
                    let block = handle.decode().map_err(|e| EvalError::Storage(e.to_string()))?;
                    let (cursor, mut span) = Cursor::new(self, block);
                    self.scan_one(&cursor, &mut span, &mut collector);
                }
            }
            _ => self.scan_merged(blocks, &mut collector)?,
        }
        Ok(collector.out)
    }

    /// A block on its own: its candidates in direction order.
    fn scan_one(&self, cursor: &Cursor, span: &mut Span, collector: &mut Collector) {
        while !span.is_empty() {
            let i = cursor.entry(span.peek(self.direction));
            span.advance(self.direction);
            if collector.offer(&cursor.block, i) {
                return;
            }
        }
    }

    /// Blocks overlapping in time: merged by timestamp, exact duplicates (same timestamp, line
    /// and structured metadata) dropped. Equal timestamps go to the block that starts first (the stream's order for
    /// blocks starting together), the other way round going backward. A block is decompressed
    /// only when the merge reaches its start, and dropped when done, so a long run of overlapping
    /// blocks (replicas of a whole stream) holds a few blocks at a time and a limit stops it early.
    fn scan_merged(&self, blocks: Vec<BlockHandle>, collector: &mut Collector) -> Result<(), EvalError> {
        let forward = self.direction == Direction::Forward;
        // Blocks not yet opened, the next one last: by start in the direction of the scan.
        let mut pending: Vec<(usize, BlockHandle)> = blocks.into_iter().enumerate().collect();
        if forward {
            pending.reverse();
        } else {
            pending.sort_by_key(|(rank, b)| (b.meta().max_ts, *rank));
        }
        let mut open: Vec<Open> = Vec::new();
        // Lines (with their structured metadata) already offered at the current timestamp.
        let mut seen: Vec<(Bytes, Vec<Label>)> = Vec::new();
        let mut seen_ts = None;
        loop {
            let best = self.next_open(&open);
            if let Some((_, next)) = pending.last() {
                let start = if forward { next.meta().min_ts } else { next.meta().max_ts };
                let reached = match best {
                    None => true,
                    Some((_, ts)) => (forward && start <= ts) || (!forward && start >= ts),
                };
                if reached && let Some((rank, handle)) = pending.pop() {
                    let block = handle.decode().map_err(|e| EvalError::Storage(e.to_string()))?;
                    let (cursor, span) = Cursor::new(self, block);
                    if !span.is_empty() {
                        open.push(Open { cursor, span, rank });
                    }
                    continue;
                }
            }
            let Some((k, ts)) = best else {
                return Ok(());
            };
            let o = &mut open[k];
            let i = o.cursor.entry(o.span.peek(self.direction));
            o.span.advance(self.direction);
            let line = o.cursor.block.lines_buf().slice(o.cursor.block.line_range(i));
            if seen_ts != Some(ts) {
                seen_ts = Some(ts);
                seen.clear();
            }
            let entry = (line, o.cursor.block.metadata(i));
            if !seen.contains(&entry) {
                seen.push(entry);
                if collector.offer(&o.cursor.block, i) {
                    return Ok(());
                }
            }
            if o.span.is_empty() {
                open.swap_remove(k);
            }
        }
    }

    /// The open block holding the next entry in direction order, and that entry's timestamp.
    fn next_open(&self, open: &[Open]) -> Option<(usize, i64)> {
        let mut best: Option<(usize, i64, usize)> = None;
        for (k, o) in open.iter().enumerate() {
            let ts = o.cursor.block.timestamps()[o.cursor.entry(o.span.peek(self.direction))];
            let better = match best {
                None => true,
                Some((_, bt, br)) => match self.direction {
                    Direction::Forward => (ts, o.rank) < (bt, br),
                    Direction::Backward => (ts, o.rank) > (bt, br),
                },
            };
            if better {
                best = Some((k, ts, o.rank));
            }
        }
        best.map(|(k, ts, _)| (k, ts))
    }
}
