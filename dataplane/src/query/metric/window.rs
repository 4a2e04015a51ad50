//! Range windows and the per-step accumulators of range aggregations.
//!
//! A range aggregation evaluated at instant `t` with range `r` and offset `o` reads the samples
//! with `t - o - r < ts <= t - o` (the lower bound is exclusive, as in Loki). Samples are folded
//! into per-step accumulators as they are extracted, never materialized as lines:
//!
//! - counts and byte sums are integers kept as difference arrays, so a sample costs O(1) however
//!   many windows it falls in;
//! - float sums, minima and maxima are updated in each window the sample falls in;
//! - operations that need the whole window in order (`avg`, `stddev`, `stdvar`, `quantile`,
//!   `first`, `last`, `rate_counter`) buffer `(ts, value)` per series and evaluate each window
//!   over the sorted buffer.

use crate::logql::RangeOp;

use super::buffered::{self, Segment};

/// The windows of a range aggregation: window `i` is `(first + i*step - range, first + i*step]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// End of the first window: the first evaluation instant minus the offset.
    pub(crate) first: i64,
    /// Distance between window ends (ns, at least 1).
    pub(crate) step: i64,
    /// Number of windows.
    pub(crate) n: usize,
    /// Window length (ns, at least 1).
    pub(crate) range: i64,
}

impl Window {
    /// End of window `i`.
    pub(crate) fn end(&self, i: usize) -> i64 {
        self.first.saturating_add(self.step.saturating_mul(i as i64))
    }

    /// The windows (`lo..=hi`) a sample at `ts` falls in, `None` when it falls in none (the
    /// direct computation [`Locator`] is checked against).
    #[cfg(test)]
    pub(crate) fn steps_of(&self, ts: i64) -> Option<(usize, usize)> {
        let d = ts.saturating_sub(self.first);
        // ts <= end(i)  <=>  i >= ceil(d / step)
        let lo = if d <= 0 { 0 } else { (d - 1) / self.step + 1 };
        // ts > end(i) - range  <=>  i <= floor((d + range - 1) / step)
        let top = d.saturating_add(self.range - 1);
        if top < 0 {
            return None;
        }
        let hi = (top / self.step).min(self.n as i64 - 1);
        if lo > hi {
            return None;
        }
        Some((lo as usize, hi as usize))
    }

    /// The window length in seconds, as Go's `Duration.Seconds` computes it.
    pub(crate) fn range_seconds(&self) -> f64 {
        seconds(self.range)
    }
}

/// Finds the windows a sample falls in, remembering the span of timestamps
/// that fall in the same windows as the last one: the samples of a block come sorted, so most
/// lookups are two comparisons instead of two divisions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Locator {
    w: Window,
    /// Timestamps in `(after, upto]` fall in `last`'s windows.
    after: i64,
    upto: i64,
    last: Option<(usize, usize)>,
}

impl Locator {
    pub(crate) fn new(w: Window) -> Locator {
        Locator { w, after: i64::MAX, upto: i64::MIN, last: None }
    }

    /// The windows (`lo..=hi`) a sample at `ts` falls in, `None` when it falls in none.
    #[inline]
    pub(crate) fn locate(&mut self, ts: i64) -> Option<(usize, usize)> {
        if ts > self.after && ts <= self.upto {
            return self.last;
        }
        self.relocate(ts)
    }

    fn relocate(&mut self, ts: i64) -> Option<(usize, usize)> {
        let (first, step, range) = (i128::from(self.w.first), i128::from(self.w.step), i128::from(self.w.range));
        let d = i128::from(ts) - first;
        // Unclamped: the first window ending at or after ts, the last starting before it.
        let l = -(-d).div_euclid(step);
        let h = (d + range - 1).div_euclid(step);
        let after = (first + (l - 1) * step).max(first + h * step - range);
        let upto = (first + l * step).min(first + (h + 1) * step - range);
        let clamp = |x: i128| x.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        self.after = clamp(after);
        self.upto = clamp(upto);
        let (lo, hi) = (l.max(0), h.min(self.w.n as i128 - 1));
        self.last = (lo <= hi).then_some((lo as usize, hi as usize));
        self.last
    }
}

/// How a range operation accumulates its samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Number of samples (`count_over_time`, `rate` of lines, `absent_over_time`).
    Count,
    /// Number of samples and the sum of their integer values (`bytes_*`).
    Bytes,
    /// Sum of float values (`sum_over_time`, `rate` of unwrapped values).
    Sum,
    /// Smallest value (`min_over_time`).
    Min,
    /// Largest value (`max_over_time`).
    Max,
    /// Every sample, for operations that need the whole window.
    Buffer,
}

impl Kind {
    /// The accumulation of a range operation.
    pub(crate) fn of(op: RangeOp, unwrapped: bool) -> Kind {
        match op {
            RangeOp::CountOverTime | RangeOp::AbsentOverTime => Kind::Count,
            RangeOp::Rate if !unwrapped => Kind::Count,
            RangeOp::Rate | RangeOp::SumOverTime => Kind::Sum,
            RangeOp::BytesOverTime | RangeOp::BytesRate => Kind::Bytes,
            RangeOp::MinOverTime => Kind::Min,
            RangeOp::MaxOverTime => Kind::Max,
            RangeOp::AvgOverTime
            | RangeOp::StddevOverTime
            | RangeOp::StdvarOverTime
            | RangeOp::QuantileOverTime
            | RangeOp::FirstOverTime
            | RangeOp::LastOverTime
            | RangeOp::RateCounter => Kind::Buffer,
        }
    }
}

/// The accumulators of every series of one range aggregation (series are dense indices).
#[derive(Debug)]
pub(crate) struct Acc {
    kind: Kind,
    /// Number of windows.
    n: usize,
    /// Count and Bytes: difference arrays of sample counts, `n + 1` per series. Sum, Min and
    /// Max: sample counts per window, `n + 1` per series (the last slot unused).
    counts: Vec<i64>,
    /// Bytes: difference arrays of byte sums, `n + 1` per series.
    ints: Vec<i64>,
    /// Sum, Min and Max: the value per window, `n` per series.
    floats: Vec<f64>,
    /// Buffer: every `(ts, value)` per series, in segments of one work unit each.
    buffers: Vec<Vec<Segment>>,
    /// The work unit samples are added for (orders the segments of a buffer).
    unit: usize,
    /// Number of series.
    len: usize,
}

impl Acc {
    pub(crate) fn new(kind: Kind, n: usize) -> Acc {
        Acc { kind, n, counts: Vec::new(), ints: Vec::new(), floats: Vec::new(), buffers: Vec::new(), unit: 0, len: 0 }
    }

    /// Sets the work unit the next samples come from. Units are numbered in stream order, so
    /// ordering buffered samples by (timestamp, unit) is deterministic and keeps the append
    /// order of equal timestamps within a stream.
    pub(crate) fn set_unit(&mut self, unit: usize) {
        self.unit = unit;
    }

    /// Adds a series without samples; returns its index.
    pub(crate) fn push_series(&mut self) -> usize {
        let n = self.n;
        match self.kind {
            Kind::Count => self.counts.resize(self.counts.len() + n + 1, 0),
            Kind::Bytes => {
                self.counts.resize(self.counts.len() + n + 1, 0);
                self.ints.resize(self.ints.len() + n + 1, 0);
            }
            Kind::Sum | Kind::Min | Kind::Max => {
                self.counts.resize(self.counts.len() + n + 1, 0);
                self.floats.resize(self.floats.len() + n, 0.0);
            }
            Kind::Buffer => self.buffers.push(Vec::new()),
        }
        self.len += 1;
        self.len - 1
    }

    /// Folds a sample of series `s`, falling in windows `lo..=hi`, into its accumulators.
    #[inline]
    pub(crate) fn add(&mut self, s: usize, ts: i64, value: f64, lo: usize, hi: usize) {
        let base = s * (self.n + 1);
        match self.kind {
            Kind::Count => {
                self.counts[base + lo] += 1;
                self.counts[base + hi + 1] -= 1;
            }
            Kind::Bytes => {
                self.counts[base + lo] += 1;
                self.counts[base + hi + 1] -= 1;
                let v = value as i64;
                self.ints[base + lo] += v;
                self.ints[base + hi + 1] -= v;
            }
            Kind::Sum => {
                let fb = s * self.n;
                for i in lo..=hi {
                    self.counts[base + i] += 1;
                    self.floats[fb + i] += value;
                }
            }
            Kind::Min | Kind::Max => {
                let fb = s * self.n;
                let min = self.kind == Kind::Min;
                for i in lo..=hi {
                    let c = &mut self.counts[base + i];
                    let cur = &mut self.floats[fb + i];
                    // Loki keeps the first value, then replaces it by a better one or when it
                    // is NaN: the result is the extreme of the non-NaN values, NaN if none.
                    if *c == 0 || cur.is_nan() || (min && value < *cur) || (!min && value > *cur) {
                        *cur = value;
                    }
                    *c += 1;
                }
            }
            Kind::Buffer => {
                let segs = &mut self.buffers[s];
                match segs.last_mut() {
                    Some(seg) if seg.unit == self.unit => seg.samples.push((ts, value)),
                    _ => segs.push(Segment { unit: self.unit, samples: vec![(ts, value)] }),
                }
            }
        }
    }

    /// Adds everything series `src` of `other` accumulated to series `dst` of `self`.
    pub(crate) fn merge_from(&mut self, dst: usize, other: &mut Acc, src: usize) {
        let w = self.n + 1;
        let (d, o) = (dst * w, src * w);
        match self.kind {
            Kind::Count => add_slices(&mut self.counts[d..d + w], &other.counts[o..o + w]),
            Kind::Bytes => {
                add_slices(&mut self.counts[d..d + w], &other.counts[o..o + w]);
                add_slices(&mut self.ints[d..d + w], &other.ints[o..o + w]);
            }
            Kind::Sum | Kind::Min | Kind::Max => {
                let (fd, fo) = (dst * self.n, src * self.n);
                for i in 0..self.n {
                    let oc = other.counts[o + i];
                    if oc == 0 {
                        continue;
                    }
                    let ov = other.floats[fo + i];
                    let c = self.counts[d + i];
                    let cur = &mut self.floats[fd + i];
                    match self.kind {
                        Kind::Sum => *cur += ov,
                        Kind::Min => {
                            if c == 0 || cur.is_nan() || ov < *cur {
                                *cur = ov;
                            }
                        }
                        _ => {
                            if c == 0 || cur.is_nan() || ov > *cur {
                                *cur = ov;
                            }
                        }
                    }
                    self.counts[d + i] = c + oc;
                }
            }
            Kind::Buffer => {
                let mut taken = std::mem::take(&mut other.buffers[src]);
                self.buffers[dst].append(&mut taken);
            }
        }
    }

    /// The buffered samples of series `s` (for [`buffered::finish`]), leaving it empty.
    pub(crate) fn take_buffer(&mut self, s: usize) -> Vec<Segment> {
        self.buffers.get_mut(s).map(std::mem::take).unwrap_or_default()
    }

    /// The values of series `s` at every window.
    pub(crate) fn finish(&mut self, s: usize, op: RangeOp, phi: f64, w: &Window) -> Vec<Option<f64>> {
        let n = self.n;
        let base = s * (n + 1);
        let secs = w.range_seconds();
        let mut out = Vec::with_capacity(n);
        match self.kind {
            Kind::Count => {
                let mut c = 0i64;
                for i in 0..n {
                    c += self.counts[base + i];
                    out.push((c > 0).then(|| if op == RangeOp::Rate { c as f64 / secs } else { c as f64 }));
                }
            }
            Kind::Bytes => {
                let (mut c, mut b) = (0i64, 0i64);
                for i in 0..n {
                    c += self.counts[base + i];
                    b += self.ints[base + i];
                    out.push((c > 0).then(|| if op == RangeOp::BytesRate { b as f64 / secs } else { b as f64 }));
                }
            }
            Kind::Sum | Kind::Min | Kind::Max => {
                let fb = s * n;
                for i in 0..n {
                    let v = self.floats[fb + i];
                    out.push((self.counts[base + i] > 0).then(|| if op == RangeOp::Rate { v / secs } else { v }));
                }
            }
            Kind::Buffer => return buffered::finish(self.take_buffer(s), op, phi, w),
        }
        out
    }
}

fn add_slices(dst: &mut [i64], src: &[i64]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += *s;
    }
}

/// A range in nanoseconds as float seconds, exactly as the rates divide by it.
pub(crate) fn seconds(range: i64) -> f64 {
    let sec = range / 1_000_000_000;
    let nsec = range % 1_000_000_000;
    sec as f64 + nsec as f64 / 1e9
}
