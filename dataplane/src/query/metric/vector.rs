//! Vector aggregations: `sum`, `avg`, `min`, `max`, `count`, `stddev`, `stdvar` reduce each
//! group to one series; `topk`, `bottomk`, `approx_topk`, `sort` and `sort_desc` select and
//! order the input series themselves.
//!
//! A row's group is a function of its labels only, so it is computed once per row; the
//! aggregation itself runs per step over the rows present at that step.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::logql::{VectorAggregation, VectorOp};

use super::labelset::{self, Interner};
use super::rows::Row;

/// Applies a vector aggregation to rows evaluated over `n` steps.
pub(crate) fn aggregate(v: &VectorAggregation, rows: Vec<Row>, n: usize) -> Vec<Row> {
    let mut groups = Interner::default();
    let gid: Vec<usize> = rows.iter().map(|r| groups.intern(labelset::group(&r.labels, &v.grouping))).collect();
    match v.op {
        VectorOp::Topk | VectorOp::ApproxTopk | VectorOp::Bottomk | VectorOp::Sort | VectorOp::SortDesc => {
            select(v, rows, &gid, groups.len(), n)
        }
        _ => reduce(v.op, &rows, &gid, &groups, n),
    }
}

/// One group's running aggregate at one step, as Loki's `groupedAggregation` folds it.
#[derive(Clone, Copy, Default)]
struct Group {
    value: f64,
    mean: f64,
    count: u64,
}

impl Group {
    fn first(op: VectorOp, v: f64) -> Group {
        let value = if matches!(op, VectorOp::Stddev | VectorOp::Stdvar) { 0.0 } else { v };
        Group { value, mean: v, count: 1 }
    }

    fn fold(&mut self, op: VectorOp, v: f64) {
        match op {
            VectorOp::Sum => self.value += v,
            VectorOp::Avg => {
                self.count += 1;
                let c = self.count as f64;
                // An infinite mean stays as it is when a finite value or an infinity of the same
                // sign is added (otherwise Inf - Inf would turn it into NaN).
                if self.mean.is_infinite() && (v.is_finite() || (v.is_infinite() && (self.mean > 0.0) == (v > 0.0))) {
                    return;
                }
                self.mean += v / c - self.mean / c;
            }
            VectorOp::Max if self.value < v || self.value.is_nan() => self.value = v,
            VectorOp::Min if self.value > v || self.value.is_nan() => self.value = v,
            VectorOp::Count => self.count += 1,
            VectorOp::Stddev | VectorOp::Stdvar => {
                self.count += 1;
                let delta = v - self.mean;
                self.mean += delta / self.count as f64;
                self.value += delta * (v - self.mean);
            }
            _ => {}
        }
    }

    fn result(&self, op: VectorOp) -> f64 {
        match op {
            VectorOp::Avg => self.mean,
            VectorOp::Count => self.count as f64,
            VectorOp::Stddev => (self.value / self.count as f64).sqrt(),
            VectorOp::Stdvar => self.value / self.count as f64,
            _ => self.value,
        }
    }
}

/// The reducing aggregations: one output row per group.
fn reduce(op: VectorOp, rows: &[Row], gid: &[usize], groups: &Interner, n: usize) -> Vec<Row> {
    let g = groups.len();
    let mut acc: Vec<Option<Group>> = vec![None; g * n];
    for (row, &group) in rows.iter().zip(gid) {
        let base = group * n;
        for (i, v) in row.values.iter().enumerate() {
            let Some(v) = *v else { continue };
            match &mut acc[base + i] {
                Some(a) => a.fold(op, v),
                slot => *slot = Some(Group::first(op, v)),
            }
        }
    }
    (0..g)
        .map(|group| Row {
            labels: groups.get(group).clone(),
            values: acc[group * n..(group + 1) * n].iter().map(|a| a.map(|a| a.result(op))).collect(),
        })
        .filter(Row::has_points)
        .collect()
}

/// Orders values for `topk`/`sort_desc` (descending) or `bottomk`/`sort` (ascending); NaN goes
/// last either way, as Loki's heaps put it.
fn by_value(a: f64, b: f64, descending: bool) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => {
            let o = a.partial_cmp(&b).unwrap_or(Ordering::Equal);
            if descending { o.reverse() } else { o }
        }
    }
}

/// The selecting aggregations: rows keep their labels; at each step only the selected ones keep
/// their value. For an instant query the rows come out in the selection's order (groups in order
/// of first appearance), which `sort` and `sort_desc` results keep.
fn select(v: &VectorAggregation, rows: Vec<Row>, gid: &[usize], groups: usize, n: usize) -> Vec<Row> {
    let descending = matches!(v.op, VectorOp::Topk | VectorOp::ApproxTopk | VectorOp::SortDesc);
    let limit = match v.op {
        VectorOp::Sort | VectorOp::SortDesc => usize::MAX,
        _ => usize::try_from(v.param.unwrap_or(0)).unwrap_or(0),
    };
    let mut keep = vec![vec![false; n]; rows.len()];
    let mut order: Vec<usize> = Vec::new();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); groups];
    for (r, &g) in gid.iter().enumerate() {
        members[g].push(r);
    }
    let mut present: Vec<usize> = Vec::new();
    #[allow(clippy::needless_range_loop)] // `i` indexes every row's values and `keep` alike
    for i in 0..n {
        for group in &members {
            present.clear();
            present.extend(group.iter().copied().filter(|&r| rows[r].values[i].is_some()));
            let value = |r: usize| rows[r].values[i].unwrap_or(f64::NAN);
            // Stable: equal values keep row order.
            present.sort_by(|&a, &b| by_value(value(a), value(b), descending));
            for &r in present.iter().take(limit) {
                keep[r][i] = true;
                if n == 1 {
                    order.push(r);
                }
            }
        }
    }
    let mut rows: Vec<Option<Row>> = rows
        .into_iter()
        .zip(keep)
        .map(|(row, keep)| {
            let values = row.values.iter().zip(keep).map(|(v, k)| if k { *v } else { None }).collect();
            Some(Row { labels: Arc::clone(&row.labels), values })
        })
        .collect();
    if n == 1 {
        return order.into_iter().filter_map(|r| rows[r].take()).collect();
    }
    rows.into_iter().flatten().filter(Row::has_points).collect()
}
