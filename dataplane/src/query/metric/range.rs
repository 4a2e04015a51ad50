//! Range aggregations: selecting the streams, running the sample extractor over their blocks
//! and folding the samples into per-window accumulators, on every core.
//!
//! Work is split into units (a stream, or a run of blocks of a stream whose blocks do not
//! overlap) that worker threads take from a shared counter. Each worker owns its accumulators
//! and its series index, so the hot loop takes no lock; the partial results are merged by label
//! set at the end. A block is decoded once, its entries visited in place: lines are never copied
//! and no sample is materialized except for operations that need whole windows.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::chunk::{BlockColumns, DecodedBlock};
use crate::labels::{Labels, SharedLabels};
use crate::logql::{Grouping, RangeAggregation, RangeOp};
use crate::query::pipeline::{SampleExtractor, StreamSampleExtractor};
use crate::query::{EvalError, LogSource, MemoryBudget, StreamBlocks};

use super::buffered::{self, Segment};
use super::labelset::{self, ERROR_LABEL};
use super::rows::{Row, Steps};
use super::window::{Acc, Kind, Locator, Window};

/// A range aggregation to evaluate, with the grouping its output series are reduced to.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Leaf {
    /// The aggregation as written.
    pub(crate) agg: RangeAggregation,
    /// The aggregation's own `by`/`without`, or that of an enclosing `sum` pushed down to it
    /// (Loki reduces labels at the source the same way); `None` keeps every label.
    pub(crate) grouping: Option<Grouping>,
}

/// Most series x steps one range aggregation may accumulate (16M cells, about 256 MiB of
/// accumulators and result rows): Loki keeps only the current step's series, Norn every step's,
/// so a query grouping by a label with millions of values over many steps fails instead of
/// taking the process down.
const MAX_CELLS: usize = 1 << 24;

/// Distinct structured metadata of a block remembered with their series by the column path.
const MAX_METADATA_VARIANTS: usize = 16;

/// Most blocks in one work unit of a stream whose blocks do not overlap.
const MAX_BLOCKS_PER_UNIT: usize = 16;

/// Evaluates a range aggregation at every step.
pub(crate) async fn evaluate(source: Arc<dyn LogSource>, leaf: &Leaf, steps: Steps) -> Result<Vec<Row>, EvalError> {
    let range = &leaf.agg.range;
    let window = Window {
        first: steps.start.saturating_sub(range.offset),
        step: steps.step.max(1),
        n: steps.n,
        range: range.range.max(1),
    };
    // Entries with first_start < ts <= last_end, as the half-open [from, through) the source takes.
    let from = window.first.saturating_sub(window.range).saturating_add(1);
    let through = window.end(steps.n - 1).saturating_add(1);
    let extractor = SampleExtractor::with_grouping(range, leaf.agg.op, leaf.grouping.as_ref())?;
    let needles = extractor.pipeline().needles();
    let streams = source.select_needles(&range.selector.matchers, from, through, needles).await?;
    let scan = Scan {
        op: leaf.agg.op,
        phi: leaf.agg.param.unwrap_or(f64::NAN),
        kind: Kind::of(leaf.agg.op, range.unwrap.is_some()),
        window,
        grouping: leaf.grouping.clone(),
        from,
        through,
        plain: range.selector.stages.is_empty() && range.unwrap.is_none(),
        units: units(&streams),
        budget: source.budget(),
        streams,
        extractor,
    };
    let absent = (leaf.agg.op == RangeOp::AbsentOverTime).then(|| labelset::absent_labels(&range.selector.matchers));
    tokio::task::spawn_blocking(move || {
        let mut partial = scan.run()?;
        if let Some((_, s)) = partial.first_error() {
            return Err(labelset::pipeline_error(&partial.labels[s]));
        }
        let values = scan.finish(&mut partial)?;
        let mut rows: Vec<Row> =
            partial.labels.into_iter().zip(values).map(|(labels, values)| Row { labels, values }).collect();
        // In label order, whatever order the worker threads met the series in: what the tree
        // above computes from the rows (sums of an `avg`, ties of a `topk`) does not depend
        // on scheduling, and the same rows joined from shards come out the same.
        rows.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(match absent {
            Some(labels) => absent_rows(labels, &rows, scan.window.n),
            None => rows,
        })
    })
    .await
    .map_err(|e| EvalError::Internal(format!("metric evaluation task failed: {e}")))?
}

/// `absent_over_time`: 1 at the steps where no series has a sample.
fn absent_rows(labels: Labels, rows: &[Row], n: usize) -> Vec<Row> {
    let values: Vec<Option<f64>> =
        (0..n).map(|i| (!rows.iter().any(|r| r.values[i].is_some())).then_some(1.0)).collect();
    let row = Row { labels: Arc::new(labels), values };
    if row.has_points() { vec![row] } else { Vec::new() }
}

/// One piece of work: some blocks of one stream.
#[derive(Clone, Debug)]
struct Unit {
    stream: usize,
    blocks: Range<usize>,
}

/// Splits streams into units: whole streams when their blocks overlap (they must be merged),
/// runs of at most [`MAX_BLOCKS_PER_UNIT`] blocks otherwise.
fn units(streams: &[StreamBlocks]) -> Vec<Unit> {
    let mut out = Vec::new();
    for (s, stream) in streams.iter().enumerate() {
        let n = stream.blocks.len();
        if stream.overlapping {
            out.push(Unit { stream: s, blocks: 0..n });
            continue;
        }
        let mut b = 0;
        while b < n {
            let e = (b + MAX_BLOCKS_PER_UNIT).min(n);
            out.push(Unit { stream: s, blocks: b..e });
            b = e;
        }
    }
    out
}

/// Everything the workers share.
struct Scan {
    op: RangeOp,
    phi: f64,
    kind: Kind,
    window: Window,
    grouping: Option<Grouping>,
    /// Entries with `from <= ts < through` are read.
    from: i64,
    through: i64,
    /// No pipeline stage and no unwrap: an entry without structured metadata keeps its stream's
    /// labels, and its value is 1 or its line length, so the extractor can be skipped.
    plain: bool,
    streams: Vec<StreamBlocks>,
    units: Vec<Unit>,
    extractor: SampleExtractor,
    /// The query's memory budget, charged for every series accumulated.
    budget: Option<Arc<MemoryBudget>>,
}

impl Scan {
    /// Runs every unit on as many threads as there are cores and merges the results.
    fn run(&self) -> Result<Partial, EvalError> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8).min(self.units.len());
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let work = || -> Result<Partial, EvalError> {
            let mut partial = Partial::new(self.kind, self.window.n, self.budget.clone());
            while !failed.load(Ordering::Relaxed) {
                let u = next.fetch_add(1, Ordering::Relaxed);
                let Some(unit) = self.units.get(u) else { break };
                partial.acc.set_unit(u);
                if let Err(e) = self.run_unit(unit, &mut partial) {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            Ok(partial)
        };
        let results: Vec<Result<Partial, EvalError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
            let mut out = vec![work()];
            for h in handles {
                out.push(h.join().unwrap_or_else(|_| Err(EvalError::Internal("metric worker thread panicked".into()))));
            }
            out
        });
        let mut merged = Partial::new(self.kind, self.window.n, self.budget.clone());
        for r in results {
            merged.merge(r?)?;
        }
        Ok(merged)
    }

    /// Every series' values at every window. Buffered operations, whose windows cost the most,
    /// are finished on all cores.
    fn finish(&self, partial: &mut Partial) -> Result<Vec<Vec<Option<f64>>>, EvalError> {
        let series = partial.labels.len();
        if self.kind != Kind::Buffer {
            return Ok((0..series).map(|s| partial.acc.finish(s, self.op, self.phi, &self.window)).collect());
        }
        let buffers: Vec<Vec<Segment>> = (0..series).map(|s| partial.acc.take_buffer(s)).collect();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8).min(series.max(1));
        let per = series.div_ceil(threads).max(1);
        let mut chunks: Vec<Vec<Vec<Segment>>> = Vec::new();
        let mut rest = buffers.into_iter();
        loop {
            let chunk: Vec<Vec<Segment>> = rest.by_ref().take(per).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        let finish = |chunk: Vec<Vec<Segment>>| -> Vec<Vec<Option<f64>>> {
            chunk.into_iter().map(|segs| buffered::finish(segs, self.op, self.phi, &self.window)).collect()
        };
        std::thread::scope(|s| {
            let mut chunks = chunks.into_iter();
            let first = chunks.next();
            let handles: Vec<_> = chunks.map(|c| s.spawn(move || finish(c))).collect();
            let mut out = first.map(finish).unwrap_or_default();
            for h in handles {
                out.extend(h.join().map_err(|_| EvalError::Internal("metric worker thread panicked".into()))?);
            }
            Ok(out)
        })
    }

    fn run_unit(&self, unit: &Unit, partial: &mut Partial) -> Result<(), EvalError> {
        let stream = &self.streams[unit.stream];
        let mut run = UnitRun {
            scan: self,
            stream,
            extractor: None,
            cache: HashMap::default(),
            last: None,
            own: None,
            locator: Locator::new(self.window),
        };
        if stream.overlapping {
            return run.merged(partial);
        }
        for handle in &stream.blocks[unit.blocks.clone()] {
            if !handle.meta().overlaps(self.from, self.through) || self.extractor.pipeline().skips_block(handle) {
                continue;
            }
            if self.plain && handle.columns_hold_labels() {
                // Counts, line lengths and labels only: the column section, no line bytes.
                let cols = handle.clone().decode_columns().map_err(|e| EvalError::Storage(e.to_string()))?;
                let range = cols.range_of(self.from, self.through);
                if cols.has_metadata() {
                    run.metadata_block(partial, &cols, range)?;
                } else {
                    run.plain_block(partial, cols.timestamps(), |i| cols.line_len(i), range)?;
                }
                continue;
            }
            let block = handle.clone().decode().map_err(|e| EvalError::Storage(e.to_string()))?;
            let range = block.range_of(self.from, self.through);
            if range.is_empty() {
                continue;
            }
            if self.plain && !block.has_metadata() {
                run.plain_block(partial, block.timestamps(), |i| block.line_range(i).len(), range)?;
                continue;
            }
            let mut md = Vec::new();
            match self.extractor.pipeline().candidates(&block) {
                Some(cands) => {
                    for i in cands.into_iter().filter(|i| range.contains(i)) {
                        run.entry(partial, &block, i, &mut md)?;
                    }
                }
                None => {
                    for i in range {
                        run.entry(partial, &block, i, &mut md)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The state of one unit being scanned: its stream's extractor and label cache.
struct UnitRun<'a> {
    scan: &'a Scan,
    stream: &'a StreamBlocks,
    /// Built on the first entry that needs it.
    extractor: Option<StreamSampleExtractor>,
    /// Series index by the hash of the extractor's result labels.
    cache: HashMap<u64, usize, BuildHasherDefault<IdHasher>>,
    /// The last (hash, series) looked up: consecutive entries usually share labels.
    last: Option<(u64, usize)>,
    /// The series of the stream's own labels, once an entry needed it.
    own: Option<usize>,
    locator: Locator,
}

impl UnitRun<'_> {
    /// A block read without the extractor: every in-range entry is a sample of the stream's own
    /// series, worth 1 or its line length (`line_len(i)`). `ts` are the block's timestamps.
    fn plain_block(
        &mut self,
        partial: &mut Partial,
        ts: &[i64],
        line_len: impl Fn(usize) -> usize,
        range: Range<usize>,
    ) -> Result<(), EvalError> {
        let bytes = self.scan.kind == Kind::Bytes;
        for i in range {
            let t = ts[i];
            let Some((lo, hi)) = self.locator.locate(t) else { continue };
            let s = self.own_series(partial, lo)?;
            let v = if bytes { line_len(i) as f64 } else { 1.0 };
            partial.acc.add(s, t, v, lo, hi);
        }
        Ok(())
    }

    /// A block read from its columns whose entries carry structured metadata, which joins their
    /// labels: each entry is a sample worth 1 or its line length, of the series of the stream's
    /// labels and its metadata. Those labels are resolved by the extractor once per distinct
    /// metadata of the block (a handful: `detected_level` and the like), not once per entry.
    fn metadata_block(
        &mut self,
        partial: &mut Partial,
        cols: &BlockColumns,
        range: Range<usize>,
    ) -> Result<(), EvalError> {
        let bytes = self.scan.kind == Kind::Bytes;
        // Distinct metadata of the block and its series: a short list searched in order (a
        // block has a handful, and hashing every entry's ids cost a fifth of `bytes_rate`).
        let mut series: Vec<(&[(u32, u32)], usize)> = Vec::new();
        let mut md = Vec::new();
        let ts = cols.timestamps();
        for i in range {
            let t = ts[i];
            let Some((lo, hi)) = self.locator.locate(t) else { continue };
            let ids = cols.metadata_ids(i);
            let s = match series.iter().find(|(known, _)| *known == ids) {
                Some(&(_, s)) => s,
                None => {
                    md.clear();
                    md.extend(cols.metadata_pairs(i));
                    let ex = self.extractor.get_or_insert_with(|| self.scan.extractor.for_stream(&self.stream.labels));
                    // No stages: the labels do not depend on the line, nor is any entry dropped.
                    let Some((_, labels)) = ex.process(t, b"", &md) else { continue };
                    let (hash, all) = (labels.hash, labels.all.clone());
                    let s = self.series_of(partial, hash, &all, lo)?;
                    // Metadata unique to each entry (a trace id) would make the list long:
                    // those entries are resolved by the extractor's own cache instead.
                    if series.len() < MAX_METADATA_VARIANTS {
                        series.push((ids, s));
                    }
                    s
                }
            };
            let v = if bytes { cols.line_len(i) as f64 } else { 1.0 };
            partial.acc.add(s, t, v, lo, hi);
        }
        Ok(())
    }

    /// The series of result labels `all` (whose hash is `hash`), through the unit's cache; it
    /// becomes `last`, which [`entry`](Self::entry) checks before cloning the labels to call this.
    #[inline]
    fn series_of(
        &mut self,
        partial: &mut Partial,
        hash: u64,
        all: &SharedLabels,
        lo: usize,
    ) -> Result<usize, EvalError> {
        let s = match self.cache.get(&hash) {
            Some(&s) => s,
            None => {
                let s = resolve_series(self.scan, partial, all, lo)?;
                self.cache.insert(hash, s);
                s
            }
        };
        self.last = Some((hash, s));
        Ok(s)
    }

    /// Runs entry `i` of `block` through the extractor and folds its sample.
    #[inline]
    fn entry<'b>(
        &mut self,
        partial: &mut Partial,
        block: &'b DecodedBlock,
        i: usize,
        md: &mut Vec<(&'b str, &'b str)>,
    ) -> Result<(), EvalError> {
        let t = block.timestamps()[i];
        let Some((lo, hi)) = self.locator.locate(t) else { return Ok(()) };
        if self.scan.plain && !block.has_metadata() {
            let s = self.own_series(partial, lo)?;
            let v = if self.scan.kind == Kind::Bytes { block.line_range(i).len() as f64 } else { 1.0 };
            partial.acc.add(s, t, v, lo, hi);
            return Ok(());
        }
        md.clear();
        if block.has_metadata() {
            md.extend(block.metadata_pairs(i));
        }
        let line = &block.lines_buf()[block.line_range(i)];
        let ex = self.extractor.get_or_insert_with(|| self.scan.extractor.for_stream(&self.stream.labels));
        let Some((value, labels)) = ex.process(t, line, md) else { return Ok(()) };
        let hash = labels.hash;
        let s = match self.last {
            Some((h, s)) if h == hash => s,
            _ => {
                let all = labels.all.clone();
                self.series_of(partial, hash, &all, lo)?
            }
        };
        partial.acc.add(s, t, value, lo, hi);
        Ok(())
    }

    /// The series of the stream's own labels.
    #[inline]
    fn own_series(&mut self, partial: &mut Partial, lo: usize) -> Result<usize, EvalError> {
        match self.own {
            Some(s) => Ok(s),
            None => {
                let s = resolve_series(self.scan, partial, &self.stream.labels, lo)?;
                self.own = Some(s);
                Ok(s)
            }
        }
    }

    /// A stream whose blocks overlap: entries of every block merged in timestamp order, exact
    /// duplicates (same timestamp, line and structured metadata) dropped.
    fn merged(&mut self, partial: &mut Partial) -> Result<(), EvalError> {
        let scan = self.scan;
        let mut blocks = Vec::new();
        for handle in &self.stream.blocks {
            if handle.meta().overlaps(scan.from, scan.through) && !scan.extractor.pipeline().skips_block(handle) {
                blocks.push(handle.clone().decode().map_err(|e| EvalError::Storage(e.to_string()))?);
            }
        }
        let mut order: Vec<(i64, u32, u32)> = Vec::new();
        for (b, block) in blocks.iter().enumerate() {
            let range = block.range_of(scan.from, scan.through);
            let ts = block.timestamps();
            let mut push = |i: usize| order.push((ts[i], b as u32, i as u32));
            match scan.extractor.pipeline().candidates(block) {
                Some(c) => c.into_iter().filter(|i| range.contains(i)).for_each(&mut push),
                None => range.for_each(&mut push),
            }
        }
        order.sort_by_key(|&(ts, _, _)| ts);
        let line = |b: u32, i: u32| {
            let block = &blocks[b as usize];
            &block.lines_buf()[block.line_range(i as usize)]
        };
        let mut md = Vec::new();
        let mut run_start = 0;
        for k in 0..order.len() {
            let (ts, b, i) = order[k];
            if k > 0 && order[k - 1].0 != ts {
                run_start = k;
            }
            let same_metadata = |pb: u32, pi: u32| {
                blocks[pb as usize].metadata_pairs(pi as usize).eq(blocks[b as usize].metadata_pairs(i as usize))
            };
            let duplicate = order[run_start..k]
                .iter()
                .any(|&(_, pb, pi)| (pb, pi) != (b, i) && line(pb, pi) == line(b, i) && same_metadata(pb, pi));
            if duplicate {
                continue;
            }
            self.entry(partial, &blocks[b as usize], i as usize, &mut md)?;
        }
        Ok(())
    }
}

/// The series index of labels `all` (before grouping), creating the series when new. A label
/// set carrying `__error__` is kept whole, as Loki does, and noted as an error at window `lo`.
fn resolve_series(scan: &Scan, partial: &mut Partial, all: &SharedLabels, lo: usize) -> Result<usize, EvalError> {
    let errored = all.get(ERROR_LABEL).is_some();
    let labels = match &scan.grouping {
        Some(g) if !errored => Arc::new(labelset::group(all, g)),
        _ => all.clone(),
    };
    let s = partial.series(labels)?;
    if errored {
        let e = &mut partial.error_step[s];
        *e = (*e).min(lo);
    }
    Ok(s)
}

/// What one worker accumulated.
struct Partial {
    acc: Acc,
    /// Labels of each series.
    labels: Vec<SharedLabels>,
    index: HashMap<SharedLabels, usize>,
    /// For each series, the first window it has a sample in if it carries `__error__`
    /// (`usize::MAX` otherwise).
    error_step: Vec<usize>,
    /// Number of windows (each series costs about that many cells).
    steps: usize,
    budget: Option<Arc<MemoryBudget>>,
}

/// Bytes one series costs per window, about: its accumulator cell and its result value.
const CELL_BYTES: u64 = 32;

impl Partial {
    fn new(kind: Kind, n: usize, budget: Option<Arc<MemoryBudget>>) -> Partial {
        Partial {
            acc: Acc::new(kind, n),
            labels: Vec::new(),
            index: HashMap::new(),
            error_step: Vec::new(),
            steps: n,
            budget,
        }
    }

    /// The index of the series of `labels`, creating it when new. Fails when the series of
    /// this aggregation would not fit the memory budget of a query ([`MAX_CELLS`]).
    fn series(&mut self, labels: SharedLabels) -> Result<usize, EvalError> {
        if let Some(&s) = self.index.get(&labels) {
            return Ok(s);
        }
        if (self.labels.len() + 1).saturating_mul(self.steps + 1) > MAX_CELLS {
            return Err(EvalError::Limit(format!(
                "range aggregation exceeded the memory budget of a query: more than {} series over {} steps; \
                 select fewer streams, aggregate by fewer labels or use a larger step",
                self.labels.len(),
                self.steps
            )));
        }
        if let Some(b) = &self.budget {
            b.charge(CELL_BYTES * (self.steps as u64 + 1), "the series of a range aggregation")?;
        }
        let s = self.acc.push_series();
        self.labels.push(labels.clone());
        self.error_step.push(usize::MAX);
        self.index.insert(labels, s);
        Ok(s)
    }

    fn merge(&mut self, mut other: Partial) -> Result<(), EvalError> {
        for (src, labels) in other.labels.iter().enumerate() {
            let dst = self.series(labels.clone())?;
            self.acc.merge_from(dst, &mut other.acc, src);
            self.error_step[dst] = self.error_step[dst].min(other.error_step[src]);
        }
        Ok(())
    }

    /// The error series Loki would report first: at the earliest window, then by labels.
    fn first_error(&self) -> Option<(usize, usize)> {
        (0..self.labels.len())
            .filter(|&s| self.error_step[s] != usize::MAX)
            .min_by(|&a, &b| {
                self.error_step[a].cmp(&self.error_step[b]).then_with(|| self.labels[a].cmp(&self.labels[b]))
            })
            .map(|s| (self.error_step[s], s))
    }
}

/// A hasher for keys that already are hashes.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
