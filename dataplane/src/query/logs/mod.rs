//! Log queries: the streams matching a selector, through the pipeline, at most `limit` entries
//! in the query's direction.
//!
//! Semantics follow Loki's engine (`readStreams` over the merged entry iterator):
//!
//! - **Window.** A range query reads `[start, end)`. An instant query reads `[end - 30s, end)`:
//!   Loki's engine looks back [`INSTANT_LOOKBACK`] (its `max_look_back_period` default) for a log
//!   selector evaluated at one instant. (Loki's HTTP API refuses instant log queries since 3.2;
//!   that decision belongs to the HTTP layer, the engine keeps Loki's engine behaviour.)
//! - **Order and limit.** Entries of every stream are merged in direction order — oldest first
//!   for [`Direction::Forward`], newest first for [`Direction::Backward`]; equal timestamps
//!   across streams are ordered by the result stream's label string — and the first `limit`
//!   entries of that merged sequence are returned.
//! - **Interval.** With `interval > 0` an entry is returned only when it lies at least
//!   `interval` after (forward) or before (backward) the previously *returned* entry, whatever
//!   its stream; the first entry is always returned. Skipped entries do not count towards the
//!   limit.
//! - **Grouping.** Entries are grouped into result streams by their full result label set
//!   (stream labels, structured metadata and parsed labels), so one selected stream can split
//!   into several result streams after a parser. Result streams are sorted by their label
//!   string; entries inside a stream are in direction order. Each entry carries its structured
//!   metadata and parsed labels; [`categorize`] regroups the result by stream labels for
//!   `categorize-labels` responses.
//! - **Duplicates.** Blocks of a stream that overlap in time (replicas, a chunk both in memory
//!   and flushed, out-of-order appends) are merged entry by entry in timestamp order, and exact
//!   duplicates (same timestamp and line) are returned once.
//!
//! # Execution
//!
//! Each selected stream's blocks are grouped into *units*: a block on its own, or a run of blocks
//! whose time ranges overlap. Units are decoded and scanned on [`worker_threads`] threads inside
//! `spawn_blocking`: a worker decompresses a unit, asks the pipeline for the candidate entries of
//! each block ([`Pipeline::candidates`], a search over the whole line buffer), runs the pipeline
//! over the candidates in direction order and stops the unit once it holds `limit` entries that
//! the interval rule could return. Work is handed out round-robin over streams, first units
//! first, and a stream whose unit reached the limit drops its later units: no result can need
//! more than `limit` entries of one stream (see [`scan::Greedy`] for why this also holds with an
//! interval). The per-stream results are then merged across streams ([`merge`]).
//!
//! Without an interval, units are also handed out in time order across all streams, and once the
//! finished units hold `limit` entries, a unit that starts after the `limit`-th earliest of them
//! (forward; before the `limit`-th latest, backward) is skipped: the query's first `limit`
//! entries are among those already held or in units that start no later. A query for the first
//! entries of many streams so reads about `limit` entries' worth of blocks, not `limit` per
//! stream.

mod merge;
mod scan;
#[cfg(test)]
mod tests;

use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::chunk::BlockHandle;
use crate::entry::Direction;
use crate::labels::SharedLabels;
use crate::logql::LogExpr;
use crate::query::pipeline::Pipeline;
use crate::query::{EvalError, LogSource, QueryParams, StreamBlocks, Value};
pub use merge::categorize;
use scan::UnitOutput;

/// How far back an instant log query reads: Loki's default `max_look_back_period`, 30 seconds.
pub const INSTANT_LOOKBACK: i64 = 30 * 1_000_000_000;

/// Evaluates a log query: streams matching the selector, through the pipeline, at most
/// `params.limit` entries in `params.direction` order over `[start, end)` (`[end - 30s, end)`
/// for an instant query), one entry per `params.interval` at most. Always a
/// [`Value::Streams`].
pub async fn eval(source: Arc<dyn LogSource>, expr: &LogExpr, params: &QueryParams) -> Result<Value, EvalError> {
    let pipeline = Pipeline::new(&expr.stages)?;
    let (from, through) = window(params);
    if params.limit == 0 || from >= through {
        return Ok(Value::Streams(Vec::new()));
    }
    let selected = source.select_needles(&expr.matchers, from, through, pipeline.needles()).await?;
    if selected.is_empty() {
        return Ok(Value::Streams(Vec::new()));
    }
    let query = Query {
        pipeline,
        from,
        through,
        direction: params.direction,
        interval: params.interval.max(0),
        limit: params.limit,
    };
    let threads = worker_threads();
    let streams = tokio::task::spawn_blocking(move || query.run(selected, threads))
        .await
        .map_err(|e| EvalError::Internal(format!("log query worker failed: {e}")))??;
    Ok(Value::Streams(streams))
}

/// The `[from, through)` window a log query reads.
pub fn window(params: &QueryParams) -> (i64, i64) {
    if params.instant { (params.end.saturating_sub(INSTANT_LOOKBACK), params.end) } else { (params.start, params.end) }
}

/// Threads that scan blocks for one query: the machine's parallelism (log queries are CPU-bound
/// decompression and search once the blocks are in memory).
pub fn worker_threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A log query, compiled, over its window.
pub(crate) struct Query {
    pub(crate) pipeline: Pipeline,
    /// Window start, inclusive (ns).
    pub(crate) from: i64,
    /// Window end, exclusive (ns).
    pub(crate) through: i64,
    pub(crate) direction: Direction,
    /// Minimum distance between returned entries (ns); 0 returns every entry.
    pub(crate) interval: i64,
    /// Most entries returned.
    pub(crate) limit: usize,
}

/// One selected stream with its blocks grouped into units, in direction order.
struct StreamPlan {
    labels: SharedLabels,
    /// Units in direction order; a worker takes a unit's blocks out exactly once.
    units: Vec<Mutex<Option<Vec<BlockHandle>>>>,
    /// Each unit's (min, max) timestamp.
    spans: Vec<(i64, i64)>,
}

/// What the workers share.
struct Work<'a> {
    query: &'a Query,
    plans: &'a [StreamPlan],
    /// (stream, unit) pairs in the order workers take them: every stream's first unit, then
    /// every stream's second unit, and so on.
    items: Vec<(usize, usize)>,
    /// Next item to hand out.
    next: AtomicUsize,
    /// Per stream: units from this index on are not needed (an earlier unit reached the limit).
    cutoff: Vec<AtomicUsize>,
    /// Set when a worker failed; the others stop taking work.
    failed: AtomicBool,
    /// Units decoded and scanned.
    scanned: AtomicUsize,
    /// Without an interval: the timestamps of the best `limit` entries found so far.
    best: Option<Mutex<Best>>,
    /// The worst of those once there are `limit` of them: a unit entirely past it is skipped.
    /// `i64::MAX` (forward) or `i64::MIN` (backward) until then.
    bound: AtomicI64,
}

/// The timestamps of the first `limit` entries, in direction order, of the finished units.
struct Best {
    /// Forward: a max-heap of the smallest timestamps; backward: of the negated largest.
    heap: BinaryHeap<i128>,
    limit: usize,
    direction: Direction,
}

impl Best {
    /// Adds a finished unit's entries; returns the new bound once `limit` entries are held.
    fn add(&mut self, out: &UnitOutput) -> Option<i64> {
        for e in &out.entries {
            let key = match self.direction {
                Direction::Forward => i128::from(e.ts),
                Direction::Backward => -i128::from(e.ts),
            };
            if self.heap.len() < self.limit {
                self.heap.push(key);
            } else if self.heap.peek().is_some_and(|&worst| key < worst) {
                self.heap.pop();
                self.heap.push(key);
            }
        }
        if self.heap.len() < self.limit {
            return None;
        }
        let worst = *self.heap.peek()?;
        Some(match self.direction {
            Direction::Forward => worst as i64,
            Direction::Backward => (-worst) as i64,
        })
    }
}

impl Query {
    /// Scans the selected streams on `threads` threads and merges the result (blocking).
    pub(crate) fn run(
        &self,
        selected: Vec<StreamBlocks>,
        threads: usize,
    ) -> Result<Vec<crate::query::value::StreamResult>, EvalError> {
        self.run_counted(selected, threads).map(|(streams, _)| streams)
    }

    /// [`Query::run`], also returning how many units were decoded and scanned.
    pub(crate) fn run_counted(
        &self,
        selected: Vec<StreamBlocks>,
        threads: usize,
    ) -> Result<(Vec<crate::query::value::StreamResult>, usize), EvalError> {
        let plans = self.plan(selected);
        let max_units = plans.iter().map(|p| p.units.len()).max().unwrap_or(0);
        let mut items = Vec::with_capacity(plans.iter().map(|p| p.units.len()).sum());
        for u in 0..max_units {
            for (s, p) in plans.iter().enumerate() {
                if u < p.units.len() {
                    items.push((s, u));
                }
            }
        }
        let by_time = self.interval == 0;
        if by_time {
            // Stable: units starting together keep the round-robin order.
            match self.direction {
                Direction::Forward => items.sort_by_key(|&(s, u)| plans[s].spans[u].0),
                Direction::Backward => items.sort_by_key(|&(s, u)| std::cmp::Reverse(plans[s].spans[u].1)),
            }
        }
        let work = Work {
            query: self,
            cutoff: plans.iter().map(|p| AtomicUsize::new(p.units.len())).collect(),
            plans: &plans,
            items,
            next: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            scanned: AtomicUsize::new(0),
            best: by_time.then(|| {
                Mutex::new(Best {
                    heap: BinaryHeap::with_capacity(self.limit.min(1 << 16)),
                    limit: self.limit,
                    direction: self.direction,
                })
            }),
            bound: AtomicI64::new(match self.direction {
                Direction::Forward => i64::MAX,
                Direction::Backward => i64::MIN,
            }),
        };
        let threads = threads.clamp(1, work.items.len().max(1));
        let done = if threads == 1 {
            work.worker()?
        } else {
            std::thread::scope(|scope| {
                let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(|| work.worker())).collect();
                let mut all = work.worker();
                for h in helpers {
                    let res = h.join().unwrap_or_else(|_| Err(EvalError::Internal("log query worker panicked".into())));
                    match (&mut all, res) {
                        (Ok(all), Ok(more)) => all.extend(more),
                        (Ok(_), Err(e)) => all = Err(e),
                        (Err(_), _) => {}
                    }
                }
                all
            })?
        };
        let mut outputs: Vec<Vec<Option<UnitOutput>>> =
            plans.iter().map(|p| (0..p.units.len()).map(|_| None).collect()).collect();
        for (item, out) in done {
            let (s, u) = work.items[item];
            outputs[s][u] = Some(out);
        }
        let labels: Vec<SharedLabels> = plans.iter().map(|p| p.labels.clone()).collect();
        Ok((merge::merge(self, labels, outputs)?, work.scanned.load(Ordering::Relaxed)))
    }

    /// Merges streams with equal labels (a source may return one per replica or store), keeps
    /// the blocks overlapping the window, sorts them by minimum timestamp and groups runs of
    /// overlapping blocks into units, in direction order.
    fn plan(&self, selected: Vec<StreamBlocks>) -> Vec<StreamPlan> {
        let mut index: HashMap<SharedLabels, usize> = HashMap::with_capacity(selected.len());
        let mut streams: Vec<(SharedLabels, Vec<BlockHandle>)> = Vec::with_capacity(selected.len());
        for s in selected {
            match index.get(&s.labels) {
                Some(&i) => streams[i].1.extend(s.blocks),
                None => {
                    index.insert(s.labels.clone(), streams.len());
                    streams.push((s.labels, s.blocks));
                }
            }
        }
        streams
            .into_iter()
            .filter_map(|(labels, mut blocks)| {
                blocks.retain(|b| b.meta().overlaps(self.from, self.through));
                if blocks.is_empty() {
                    return None;
                }
                // Stable: blocks starting together keep the source's order (the head last).
                blocks.sort_by_key(|b| b.meta().min_ts);
                let mut units: Vec<Vec<BlockHandle>> = Vec::new();
                let mut spans: Vec<(i64, i64)> = Vec::new();
                for b in blocks {
                    let (min, max) = (b.meta().min_ts, b.meta().max_ts);
                    match (units.last_mut(), spans.last_mut()) {
                        (Some(unit), Some(span)) if min <= span.1 => {
                            unit.push(b);
                            span.1 = span.1.max(max);
                        }
                        _ => {
                            units.push(vec![b]);
                            spans.push((min, max));
                        }
                    }
                }
                if self.direction == Direction::Backward {
                    units.reverse();
                    spans.reverse();
                }
                Some(StreamPlan { labels, units: units.into_iter().map(|u| Mutex::new(Some(u))).collect(), spans })
            })
            .collect()
    }
}

impl Work<'_> {
    /// Takes items until none is left, scanning each unit still needed.
    fn worker(&self) -> Result<Vec<(usize, UnitOutput)>, EvalError> {
        let mut done = Vec::new();
        loop {
            if self.failed.load(Ordering::Relaxed) {
                return Ok(done);
            }
            let item = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&(s, u)) = self.items.get(item) else {
                return Ok(done);
            };
            if u >= self.cutoff[s].load(Ordering::Acquire) {
                continue;
            }
            let plan = &self.plans[s];
            let (min, max) = plan.spans[u];
            let bound = self.bound.load(Ordering::Acquire);
            let past = match self.query.direction {
                Direction::Forward => min > bound,
                Direction::Backward => max < bound,
            };
            if past {
                // Nothing in it can be among the first `limit` entries.
                done.push((item, UnitOutput::default()));
                continue;
            }
            let Some(blocks) = plan.units[u].lock().take() else {
                continue;
            };
            self.scanned.fetch_add(1, Ordering::Relaxed);
            match self.query.scan_unit(&plan.labels, blocks) {
                Ok(out) => {
                    if out.reached_limit {
                        self.cutoff[s].fetch_min(u + 1, Ordering::AcqRel);
                    }
                    if let Some(best) = &self.best
                        && let Some(b) = best.lock().add(&out)
                    {
                        match self.query.direction {
                            Direction::Forward => self.bound.fetch_min(b, Ordering::AcqRel),
                            Direction::Backward => self.bound.fetch_max(b, Ordering::AcqRel),
                        };
                    }
                    done.push((item, out));
                }
                Err(e) => {
                    self.failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    }
}
