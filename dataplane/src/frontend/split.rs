//! Cutting a query's time range into splits at multiples of `split_queries_by_interval`, and
//! joining the splits' answers back into the answer of the whole range.
//!
//! - A range metric query's splits are runs of its steps: every step belongs to exactly one
//!   split, and a step's value depends only on the data of its own window, so evaluating each
//!   split on its own and concatenating the series gives the unsplit answer.
//! - A log query's window `[start, end)` is cut into half-open pieces, ordered in the query's
//!   direction; each piece is asked for at most `limit` entries, and the pieces' entries are
//!   taken in order until `limit` are in hand ([`LogMerge`]).
//! - Label and series lookups are cut the same way by `split_metadata_queries_by_interval`.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

use crate::entry::Direction;
use crate::labels::SharedLabels;
use crate::query::QueryParams;
use crate::query::value::{Point, Series, StreamResult};

/// The split a time belongs to: splits are `[k * interval, (k + 1) * interval)`.
fn split_of(ts: i64, interval: i64) -> i64 {
    ts.div_euclid(interval)
}

/// The splits of a range metric query: consecutive steps with the same split, each as the
/// parameters of a range query over just those steps. One split when `interval` is 0.
pub fn metric_splits(params: &QueryParams, interval: i64) -> Vec<QueryParams> {
    if params.instant || interval <= 0 || params.step <= 0 || params.end < params.start {
        return vec![*params];
    }
    let n = (params.end - params.start) / params.step + 1;
    let mut out = Vec::new();
    let mut k = 0;
    while k < n {
        let first = params.start + k * params.step;
        let split = split_of(first, interval);
        // The last step of this split: before the next boundary, and no later than the end.
        let boundary = (split + 1).saturating_mul(interval);
        let last_k = ((boundary - 1 - params.start) / params.step).min(n - 1).max(k);
        out.push(QueryParams { start: first, end: params.start + last_k * params.step, ..*params });
        k = last_k + 1;
    }
    out
}

/// Half-open `[from, through)` pieces of a window at multiples of `interval`, oldest first.
pub fn time_splits(from: i64, through: i64, interval: i64) -> Vec<(i64, i64)> {
    if interval <= 0 || through <= from {
        return vec![(from, through)];
    }
    let mut out = Vec::new();
    let mut at = from;
    while at < through {
        let next = (split_of(at, interval) + 1).saturating_mul(interval).min(through);
        out.push((at, next));
        at = next;
    }
    out
}

/// The splits of a log range query, in the order its entries come: oldest first for forward,
/// newest first for backward.
pub fn log_splits(params: &QueryParams, interval: i64) -> Vec<QueryParams> {
    if params.instant || params.interval > 0 {
        // The `interval` rule depends on the previously returned entry, across splits.
        return vec![*params];
    }
    let mut out: Vec<QueryParams> = time_splits(params.start, params.end, interval)
        .into_iter()
        .map(|(start, end)| QueryParams { start, end, ..*params })
        .collect();
    if params.direction == Direction::Backward {
        out.reverse();
    }
    out
}

/// Joins the matrices of consecutive splits (oldest first) by label set.
pub fn join_matrices(parts: Vec<Vec<Series>>) -> Vec<Series> {
    let mut by_labels: BTreeMap<SharedLabels, Vec<Point>> = BTreeMap::new();
    for part in parts {
        for s in part {
            by_labels.entry(s.labels).or_default().extend(s.points);
        }
    }
    by_labels.into_iter().map(|(labels, points)| Series { labels, points }).collect()
}

/// Collects the answers of a log query's splits, in split order, into the answer of the whole
/// window: the first `limit` entries of the merged sequence.
#[derive(Debug)]
pub struct LogMerge {
    direction: Direction,
    limit: usize,
    taken: usize,
    streams: BTreeMap<String, StreamResult>,
}

impl LogMerge {
    pub fn new(direction: Direction, limit: usize) -> Self {
        Self { direction, limit, taken: 0, streams: BTreeMap::new() }
    }

    /// Whether `limit` entries are in hand: later splits are not needed.
    pub fn done(&self) -> bool {
        self.taken >= self.limit
    }

    /// Adds the next split's streams (at most `limit` entries, in their merged order).
    pub fn add(&mut self, split: Vec<StreamResult>) {
        let need = self.limit.saturating_sub(self.taken);
        if need == 0 {
            return;
        }
        let total: usize = split.iter().map(|s| s.entries.len()).sum();
        let split = if total > need { first_entries(split, self.direction, need) } else { split };
        for s in split {
            self.taken += s.entries.len();
            match self.streams.entry(s.labels.to_string()) {
                std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().entries.extend(s.entries),
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(s);
                }
            }
        }
    }

    /// The streams, sorted by label string as a log query returns them.
    pub fn finish(self) -> Vec<StreamResult> {
        self.streams.into_values().filter(|s| !s.entries.is_empty()).collect()
    }
}

/// The first `n` entries of the merged sequence of `streams` (each in `direction` order):
/// by timestamp in `direction`, equal timestamps by the streams' label strings.
fn first_entries(streams: Vec<StreamResult>, direction: Direction, n: usize) -> Vec<StreamResult> {
    struct Head {
        ts: i64,
        labels: String,
        stream: usize,
    }
    impl PartialEq for Head {
        fn eq(&self, o: &Self) -> bool {
            self.cmp(o) == Ordering::Equal
        }
    }
    impl Eq for Head {}
    impl PartialOrd for Head {
        fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Head {
        fn cmp(&self, o: &Self) -> Ordering {
            self.ts.cmp(&o.ts).then_with(|| self.labels.cmp(&o.labels)).then(self.stream.cmp(&o.stream))
        }
    }
    let key = |ts: i64| if direction == Direction::Forward { ts } else { -ts };
    let names: Vec<String> = streams.iter().map(|s| s.labels.to_string()).collect();
    let mut pos = vec![0usize; streams.len()];
    let mut heap: BinaryHeap<Reverse<Head>> = BinaryHeap::new();
    for (i, s) in streams.iter().enumerate() {
        if let Some(e) = s.entries.first() {
            heap.push(Reverse(Head { ts: key(e.ts), labels: names[i].clone(), stream: i }));
        }
    }
    let mut taken = 0;
    while taken < n {
        let Some(Reverse(h)) = heap.pop() else { break };
        pos[h.stream] += 1;
        taken += 1;
        if let Some(e) = streams[h.stream].entries.get(pos[h.stream]) {
            heap.push(Reverse(Head { ts: key(e.ts), labels: h.labels, stream: h.stream }));
        }
    }
    streams
        .into_iter()
        .zip(pos)
        .filter(|(_, keep)| *keep > 0)
        .map(|(mut s, keep)| {
            s.entries.truncate(keep);
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::labels::Labels;
    use crate::query::value::LogEntry;

    const S: i64 = 1_000_000_000;

    fn params(start: i64, end: i64, step: i64) -> QueryParams {
        QueryParams { start, end, step, interval: 0, direction: Direction::Forward, limit: 100, instant: false }
    }

    #[test]
    fn metric_splits_cover_every_step_once_on_interval_boundaries() {
        for (start, end, step, interval) in
            [(7 * S, 7_200 * S, 30 * S, 3_600 * S), (0, 3_600 * S, 60 * S, 60 * S), (5 * S, 125 * S, 7 * S, 20 * S)]
        {
            let p = params(start, end, step);
            let splits = metric_splits(&p, interval);
            let mut steps = Vec::new();
            for s in &splits {
                assert_eq!(s.step, step);
                assert_eq!(split_of(s.start, interval), split_of(s.end, interval), "{s:?} crosses a boundary");
                let mut t = s.start;
                while t <= s.end {
                    steps.push(t);
                    t += step;
                }
            }
            let all: Vec<i64> = (0..=(end - start) / step).map(|k| start + k * step).collect();
            assert_eq!(steps, all, "start {start} end {end} step {step} interval {interval}");
        }
        assert_eq!(metric_splits(&params(0, 7_200 * S, 60 * S), 3_600 * S).len(), 3);
    }

    #[test]
    fn log_splits_come_in_direction_order() {
        let mut p = params(10 * S, 250 * S, 0);
        let fwd: Vec<(i64, i64)> = log_splits(&p, 100 * S).iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(fwd, vec![(10 * S, 100 * S), (100 * S, 200 * S), (200 * S, 250 * S)]);
        p.direction = Direction::Backward;
        let back: Vec<(i64, i64)> = log_splits(&p, 100 * S).iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(back, vec![(200 * S, 250 * S), (100 * S, 200 * S), (10 * S, 100 * S)]);
    }

    fn stream(name: &str, ts: &[i64]) -> StreamResult {
        let labels: SharedLabels = Arc::new(Labels::parse(&format!("{{s=\"{name}\"}}")).unwrap());
        StreamResult {
            labels: labels.clone(),
            stream_labels: labels,
            entries: ts
                .iter()
                .map(|&t| LogEntry {
                    ts: t,
                    line: format!("{name}{t}").into(),
                    structured_metadata: vec![],
                    parsed: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn log_merge_takes_the_first_entries_of_the_merged_sequence() {
        // Backward: newest split first.
        let mut m = LogMerge::new(Direction::Backward, 4);
        m.add(vec![stream("a", &[30, 20]), stream("b", &[25])]);
        assert!(!m.done());
        m.add(vec![stream("a", &[10, 9]), stream("b", &[10, 5])]);
        assert!(m.done());
        let out = m.finish();
        // a10 and b10 tie; "a" sorts first, so it is taken and b10 is not.
        let got: Vec<(String, Vec<i64>)> =
            out.iter().map(|s| (s.labels.to_string(), s.entries.iter().map(|e| e.ts).collect())).collect();
        assert_eq!(got, vec![("{s=\"a\"}".into(), vec![30, 20, 10]), ("{s=\"b\"}".into(), vec![25])]);
    }

    #[test]
    fn matrices_join_by_labels_in_time_order() {
        let l: SharedLabels = Arc::new(Labels::parse("{a=\"1\"}").unwrap());
        let m: SharedLabels = Arc::new(Labels::parse("{a=\"2\"}").unwrap());
        let p = |ts| Point { ts, value: 1.0 };
        let joined = join_matrices(vec![
            vec![Series { labels: l.clone(), points: vec![p(1), p(2)] }],
            vec![Series { labels: m.clone(), points: vec![p(3)] }, Series { labels: l.clone(), points: vec![p(3)] }],
        ]);
        assert_eq!(joined.len(), 2);
        assert_eq!(joined[0].points.iter().map(|p| p.ts).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(joined[1].labels, m);
    }
}
