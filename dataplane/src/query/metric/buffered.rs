//! Range operations over whole windows of samples: `avg`, `stddev`, `stdvar`, `quantile`,
//! `first`, `last` `_over_time` and `rate_counter`, with Loki's arithmetic.
//!
//! A series' samples are sorted by time once; each window is then a slice of them. Quantiles
//! avoid re-sorting every (overlapping) window: the time axis is cut at every window start and
//! end, each piece is sorted once, and a window — a run of consecutive pieces — finds its ranks
//! by selecting across the sorted pieces.

use crate::logql::RangeOp;

use super::window::Window;

/// Samples of one series from one work unit, in timestamp order.
#[derive(Debug)]
pub(crate) struct Segment {
    /// The work unit they came from (units are numbered in stream order).
    pub(crate) unit: usize,
    pub(crate) samples: Vec<(i64, f64)>,
}

/// The values of a buffered operation at every window of `w`.
pub(crate) fn finish(mut segs: Vec<Segment>, op: RangeOp, phi: f64, w: &Window) -> Vec<Option<f64>> {
    segs.sort_by_key(|seg| seg.unit);
    let mut samples: Vec<(i64, f64)> = Vec::with_capacity(segs.iter().map(|g| g.samples.len()).sum());
    for seg in segs {
        samples.extend_from_slice(&seg.samples);
    }
    // Stable: equal timestamps stay in unit order, and in append order within one unit.
    samples.sort_by_key(|&(ts, _)| ts);
    let secs = w.range_seconds();
    let pieces = (op == RangeOp::QuantileOverTime).then(|| Pieces::new(&samples, w));
    let mut out = Vec::with_capacity(w.n);
    let (mut lo, mut hi) = (0usize, 0usize);
    for i in 0..w.n {
        let end = w.end(i);
        let start = end.saturating_sub(w.range);
        while hi < samples.len() && samples[hi].0 <= end {
            hi += 1;
        }
        while lo < hi && samples[lo].0 <= start {
            lo += 1;
        }
        if lo == hi {
            out.push(None);
            continue;
        }
        let win = &samples[lo..hi];
        out.push(Some(match (op, &pieces) {
            (RangeOp::QuantileOverTime, Some(p)) => p.quantile(phi, lo, hi),
            (RangeOp::AvgOverTime, _) => avg(win),
            (RangeOp::StdvarOverTime, _) => stdvar(win),
            (RangeOp::StddevOverTime, _) => stdvar(win).sqrt(),
            (RangeOp::FirstOverTime, _) => win[0].1,
            (RangeOp::LastOverTime, _) => win[win.len() - 1].1,
            (RangeOp::RateCounter, _) => counter_rate(win, start, end, secs),
            // Only buffered operations are planned here; NaN is the least surprising answer
            // to a planning bug.
            _ => f64::NAN,
        }));
    }
    out
}

/// Loki's `avg_over_time`: an incremental mean that keeps an infinite mean when a finite value or
/// an infinity of the same sign is added.
fn avg(win: &[(i64, f64)]) -> f64 {
    let (mut mean, mut count) = (0.0f64, 0.0f64);
    for &(_, v) in win {
        count += 1.0;
        if mean.is_infinite() && ((v.is_infinite() && (mean > 0.0) == (v > 0.0)) || v.is_finite()) {
            continue;
        }
        mean += v / count - mean / count;
    }
    mean
}

/// Loki's `stdvar_over_time` (Welford's online variance, population).
fn stdvar(win: &[(i64, f64)]) -> f64 {
    let (mut aux, mut count, mut mean) = (0.0f64, 0.0f64, 0.0f64);
    for &(_, v) in win {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        aux += delta * (v - mean);
    }
    aux / count
}

/// `rate_counter`: Prometheus' extrapolated rate of a counter over the window
/// `(start, end]`, with counter resets added back, extrapolation to each edge capped at half
/// an average sampling interval when the nearest sample is farther than 1.1 intervals, and never
/// below the counter's zero point. A single sample gives 0.
fn counter_rate(win: &[(i64, f64)], start: i64, end: i64, secs: f64) -> f64 {
    if win.len() < 2 {
        return 0.0;
    }
    let (t0, v0) = win[0];
    let (t1, v1) = win[win.len() - 1];
    let mut result = v1 - v0;
    let mut prev = v0;
    for &(_, v) in &win[1..] {
        if v < prev {
            result += prev;
        }
        prev = v;
    }
    let ns = 1e9;
    let mut to_start = (t0 - start) as f64 / ns;
    let mut to_end = (end - t1) as f64 / ns;
    let sampled = (t1 - t0) as f64 / ns;
    let average = sampled / (win.len() - 1) as f64;
    let threshold = average * 1.1;
    if to_start >= threshold {
        to_start = average / 2.0;
    }
    if result > 0.0 && v0 >= 0.0 {
        let to_zero = sampled * (v0 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = average / 2.0;
    }
    let factor = (sampled + to_start + to_end) / sampled / secs;
    result * factor
}

/// A key ordering floats totally, NaN first (as Loki's value heaps order them).
fn key(v: f64) -> u64 {
    if v.is_nan() {
        return 0;
    }
    let b = v.to_bits();
    if b >> 63 == 1 { !b } else { b | 1 << 63 }
}

fn value(k: u64) -> f64 {
    if k == 0 {
        f64::NAN
    } else if k >> 63 == 1 {
        f64::from_bits(k & !(1 << 63))
    } else {
        f64::from_bits(!k)
    }
}

/// The sample values as order keys, sorted within each piece of the time axis between
/// consecutive window bounds.
struct Pieces {
    keys: Vec<u64>,
    /// Start index (in `keys`) of each piece, ascending, with `keys.len()` last.
    starts: Vec<usize>,
}

impl Pieces {
    fn new(samples: &[(i64, f64)], w: &Window) -> Pieces {
        let mut cuts: Vec<i64> = (0..w.n).flat_map(|i| [w.end(i), w.end(i).saturating_sub(w.range)]).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut starts: Vec<usize> = cuts.iter().map(|&c| samples.partition_point(|&(ts, _)| ts <= c)).collect();
        starts.insert(0, 0);
        starts.push(samples.len());
        starts.dedup();
        let mut keys: Vec<u64> = samples.iter().map(|&(_, v)| key(v)).collect();
        for p in starts.windows(2) {
            keys[p[0]..p[1]].sort_unstable();
        }
        Pieces { keys, starts }
    }

    /// The sorted runs making up `keys[lo..hi]` (a window always starts and ends on piece
    /// bounds).
    fn runs(&self, lo: usize, hi: usize) -> Vec<&[u64]> {
        let first = self.starts.partition_point(|&s| s < lo);
        let mut runs = Vec::new();
        let mut at = lo;
        for &s in &self.starts[first..] {
            if s >= hi {
                break;
            }
            if s > at {
                runs.push(&self.keys[at..s]);
                at = s;
            }
        }
        if at < hi {
            runs.push(&self.keys[at..hi]);
        }
        runs
    }

    /// The φ-quantile of `keys[lo..hi]` (non-empty), interpolating between ranks like
    /// Prometheus' `quantile`: -Inf for φ < 0, +Inf for φ > 1.
    fn quantile(&self, phi: f64, lo: usize, hi: usize) -> f64 {
        if phi.is_nan() {
            return f64::NAN;
        }
        if phi < 0.0 {
            return f64::NEG_INFINITY;
        }
        if phi > 1.0 {
            return f64::INFINITY;
        }
        let runs = self.runs(lo, hi);
        let n = hi - lo;
        let rank = phi * (n - 1) as f64;
        let lower = rank.floor().max(0.0) as usize;
        let upper = (lower + 1).min(n - 1);
        let weight = rank - rank.floor();
        let a = value(kth(&runs, lower));
        let b = if upper == lower { a } else { value(kth(&runs, upper)) };
        a * (1.0 - weight) + b * weight
    }
}

/// The `r`-th smallest (0-based) key of the union of sorted runs (`r` below their total size):
/// quickselect with each partition done by binary search in every run.
fn kth(runs: &[&[u64]], mut r: usize) -> u64 {
    let mut lo: Vec<usize> = vec![0; runs.len()];
    let mut hi: Vec<usize> = runs.iter().map(|run| run.len()).collect();
    let mut lt = vec![0usize; runs.len()];
    let mut le = vec![0usize; runs.len()];
    loop {
        let Some(j) = (0..runs.len()).filter(|&j| hi[j] > lo[j]).max_by_key(|&j| hi[j] - lo[j]) else {
            // Unreachable for r below the total; the largest key is the safe answer.
            return runs.iter().filter_map(|run| run.last().copied()).max().unwrap_or(0);
        };
        let pivot = runs[j][(lo[j] + hi[j]) / 2];
        let (mut less, mut less_eq) = (0, 0);
        for (t, run) in runs.iter().enumerate() {
            let active = &run[lo[t]..hi[t]];
            lt[t] = lo[t] + active.partition_point(|&k| k < pivot);
            le[t] = lo[t] + active.partition_point(|&k| k <= pivot);
            less += lt[t] - lo[t];
            less_eq += le[t] - lo[t];
        }
        if r < less {
            hi.copy_from_slice(&lt);
        } else if r < less_eq {
            return pivot;
        } else {
            r -= less_eq;
            lo.copy_from_slice(&le);
        }
    }
}

#[cfg(test)]
#[path = "tests_buffered.rs"]
mod tests;
