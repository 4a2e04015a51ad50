//! Metric queries: range and vector aggregations, binary operations and `label_replace` over
//! the steps of an instant or range query, with Loki's semantics and error texts.
//!
//! Evaluation runs in two phases:
//!
//! 1. every range aggregation of the expression (a *leaf*) reads its streams and folds their
//!    samples into per-step windows (`range`), on all cores, off the async runtime;
//! 2. the rest of the tree combines the leaves' series (`vector`, `binop`, `label_replace`)
//!    over all steps at once (`rows`).
//!
//! Like Loki, a `sum` directly over `count_over_time`, `rate`, `bytes_over_time`, `bytes_rate`
//! or `sum_over_time` reduces labels at the source: the range aggregation only keeps the labels
//! the `sum` groups by, so per-stream series are never built for it.

mod binop;
mod buffered;
mod labelset;
mod range;
mod rows;
mod vector;
mod window;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_binop;
#[cfg(test)]
mod tests_columns;
#[cfg(test)]
mod tests_range;

use std::collections::HashMap;
use std::sync::Arc;

use crate::labels::{Labels, SharedLabels};
use crate::logql::{Grouping, RangeOp, SampleExpr, VectorOp};
use crate::query::value::{Point, Sample, Series};
use crate::query::{EvalError, EvalLimits, LogSource, QueryParams, Value};

use range::Leaf;
use rows::{Evaluated, Row, Steps};

/// Evaluates a metric query: an instant query yields a vector (or scalar), a range query a
/// matrix, with Loki's semantics and error texts.
pub async fn eval(
    source: Arc<dyn LogSource>,
    expr: &SampleExpr,
    params: &QueryParams,
    limits: &EvalLimits,
) -> Result<Value, EvalError> {
    let plan = MetricPlan::new(expr, params)?;
    let mut results = Vec::new();
    for leaf in plan.distinct_leaves() {
        results.push((leaf, plan.eval_leaf(source.clone(), leaf).await?));
    }
    plan.finish(results, limits).await
}

/// A metric query cut at its range aggregations: the leaves, which read log data, and the tree
/// above them, which only combines their rows. [`eval`] runs both in one place; the query
/// frontend runs the leaves on queriers (one shard of the streams each, see [`ShardMerge`]) and
/// the tree itself, with the same code.
#[derive(Clone, Debug)]
pub struct MetricPlan {
    expr: SampleExpr,
    params: QueryParams,
    steps: Steps,
    /// The range aggregations in evaluation order.
    leaves: Vec<Leaf>,
    /// For each leaf, the first leaf equal to it: the same aggregation written twice (`a / a`)
    /// is read once.
    first: Vec<usize>,
}

/// How partial results of one leaf over disjoint sets of streams combine into the result over
/// all of them, for the range aggregations where that holds exactly: a series' value at a step
/// is a sum (counts, bytes, rates, `sum_over_time`), a maximum or a minimum over the samples
/// of the streams that make up the series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardMerge {
    Sum,
    Max,
    Min,
}

impl ShardMerge {
    fn combine(self, a: f64, b: f64) -> f64 {
        match self {
            ShardMerge::Sum => a + b,
            ShardMerge::Max => a.max(b),
            ShardMerge::Min => a.min(b),
        }
    }
}

/// The rows one leaf evaluated to: one label set with a value (or none) at each step of the
/// query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeafRows(Vec<Row>);

impl LeafRows {
    /// Rows from `(labels, value at each step)` pairs.
    pub fn from_parts(parts: Vec<(SharedLabels, Vec<Option<f64>>)>) -> Self {
        Self(parts.into_iter().map(|(labels, values)| Row { labels, values }).collect())
    }

    /// The rows as `(labels, value at each step)` pairs.
    pub fn parts(&self) -> impl Iterator<Item = (&SharedLabels, &[Option<f64>])> {
        self.0.iter().map(|r| (&r.labels, r.values.as_slice()))
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Values held: rows x steps, what the rows cost in memory.
    pub fn cells(&self) -> usize {
        self.0.iter().map(|r| r.values.len()).sum()
    }

    /// Joins the results of one leaf over disjoint shards of the streams. Rows are sorted by
    /// labels, so the outcome does not depend on the order the shards answered in.
    pub fn merge_shards(merge: ShardMerge, shards: Vec<LeafRows>) -> LeafRows {
        let mut by_labels: HashMap<SharedLabels, Vec<Option<f64>>> = HashMap::new();
        for row in shards.into_iter().flat_map(|s| s.0) {
            match by_labels.entry(row.labels) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(row.values);
                }
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    for (dst, src) in o.get_mut().iter_mut().zip(row.values) {
                        *dst = match (*dst, src) {
                            (Some(a), Some(b)) => Some(merge.combine(a, b)),
                            (a, b) => a.or(b),
                        };
                    }
                }
            }
        }
        let mut rows: Vec<Row> = by_labels.into_iter().map(|(labels, values)| Row { labels, values }).collect();
        rows.sort_by(|a, b| a.labels.cmp(&b.labels));
        LeafRows(rows)
    }
}

impl MetricPlan {
    /// Plans `expr` over the steps of `params`, refusing what Loki refuses before reading data.
    pub fn new(expr: &SampleExpr, params: &QueryParams) -> Result<Self, EvalError> {
        let steps = Steps::from_params(params)?;
        if !params.instant && uses(expr, &|op| op == VectorOp::ApproxTopk) {
            return Err(EvalError::Invalid("count min sketches are only supported on instant queries".into()));
        }
        let mut leaves = Vec::new();
        plan(expr, None, &mut leaves);
        let first = (0..leaves.len()).map(|i| leaves[..i].iter().position(|l| l == &leaves[i]).unwrap_or(i)).collect();
        Ok(Self { expr: expr.clone(), params: *params, steps, leaves, first })
    }

    /// The leaves that are evaluated: the first of each group of equal ones.
    pub fn distinct_leaves(&self) -> Vec<usize> {
        (0..self.leaves.len()).filter(|&i| self.first[i] == i).collect()
    }

    /// How shards of leaf `leaf` combine, or `None` when its result over all streams cannot be
    /// built from results over parts of them.
    pub fn shard_merge(&self, leaf: usize) -> Option<ShardMerge> {
        match self.leaves.get(leaf)?.agg.op {
            RangeOp::CountOverTime
            | RangeOp::Rate
            | RangeOp::BytesOverTime
            | RangeOp::BytesRate
            | RangeOp::SumOverTime => Some(ShardMerge::Sum),
            RangeOp::MaxOverTime => Some(ShardMerge::Max),
            RangeOp::MinOverTime => Some(ShardMerge::Min),
            _ => None,
        }
    }

    /// Whether every leaf can be sharded.
    pub fn shardable(&self) -> bool {
        !self.leaves.is_empty() && (0..self.leaves.len()).all(|i| self.shard_merge(i).is_some())
    }

    /// What each distinct leaf reads: its stream selector and the `[from, through)` window of
    /// data its steps cover (for sizing shards from index statistics).
    pub fn leaf_reads(&self) -> Vec<(&[crate::logql::Matcher], i64, i64)> {
        self.distinct_leaves()
            .into_iter()
            .map(|i| {
                let r = &self.leaves[i].agg.range;
                let first = self.steps.start.saturating_sub(r.offset);
                let last = self.steps.ts(self.steps.n - 1).saturating_sub(r.offset);
                (r.selector.matchers.as_slice(), first.saturating_sub(r.range), last.saturating_add(1))
            })
            .collect()
    }

    /// What a shard evaluates for leaf `i`: the leaf itself, except that a rate is evaluated
    /// as the count, sum or bytes it divides, so that shards add exact numerators and the
    /// division happens once, after the join ([`MetricPlan::join_shards`]), as unsharded.
    fn shard_leaf(&self, i: usize) -> Option<Leaf> {
        let mut leaf = self.leaves.get(i)?.clone();
        leaf.agg.op = match leaf.agg.op {
            RangeOp::Rate if leaf.agg.range.unwrap.is_some() => RangeOp::SumOverTime,
            RangeOp::Rate => RangeOp::CountOverTime,
            RangeOp::BytesRate => RangeOp::BytesOverTime,
            op => op,
        };
        Some(leaf)
    }

    /// Evaluates leaf `leaf` over one shard of the streams (`source`), for
    /// [`MetricPlan::join_shards`].
    pub async fn eval_shard(&self, source: Arc<dyn LogSource>, leaf: usize) -> Result<LeafRows, EvalError> {
        let l = self.shard_leaf(leaf).ok_or_else(|| {
            EvalError::Invalid(format!("the query has {} range aggregations, not {}", self.leaves.len(), leaf + 1))
        })?;
        range::evaluate(source, &l, self.steps).await.map(LeafRows)
    }

    /// Joins the shards' rows of leaf `leaf` ([`MetricPlan::eval_shard`] over each shard) into
    /// the rows of the leaf over all streams.
    pub fn join_shards(&self, leaf: usize, shards: Vec<LeafRows>) -> Result<LeafRows, EvalError> {
        let merge = self
            .shard_merge(leaf)
            .ok_or_else(|| EvalError::Internal(format!("range aggregation {leaf} cannot be sharded")))?;
        let mut rows = LeafRows::merge_shards(merge, shards);
        let l = &self.leaves[leaf];
        if matches!(l.agg.op, RangeOp::Rate | RangeOp::BytesRate) {
            let secs = window::seconds(l.agg.range.range.max(1));
            for row in &mut rows.0 {
                for v in row.values.iter_mut().flatten() {
                    *v /= secs;
                }
            }
        }
        Ok(rows)
    }

    /// Evaluates leaf `leaf` over `source`.
    pub async fn eval_leaf(&self, source: Arc<dyn LogSource>, leaf: usize) -> Result<LeafRows, EvalError> {
        let leaf = self.leaves.get(leaf).ok_or_else(|| {
            EvalError::Invalid(format!("the query has {} range aggregations, not {}", self.leaves.len(), leaf + 1))
        })?;
        range::evaluate(source, leaf, self.steps).await.map(LeafRows)
    }

    /// Combines the distinct leaves' rows (`(leaf, rows)` for every leaf of
    /// [`MetricPlan::distinct_leaves`]) into the query's result.
    pub async fn finish(&self, results: Vec<(usize, LeafRows)>, limits: &EvalLimits) -> Result<Value, EvalError> {
        let mut by_leaf: HashMap<usize, Vec<Row>> = results.into_iter().map(|(i, r)| (i, r.0)).collect();
        let mut ordered: Vec<Vec<Row>> = Vec::with_capacity(self.leaves.len());
        for i in 0..self.leaves.len() {
            let first = self.first[i];
            let rows = if self.first[i..].iter().skip(1).any(|&f| f == first) {
                by_leaf.get(&first).cloned()
            } else {
                by_leaf.remove(&first)
            };
            ordered.push(rows.ok_or_else(|| EvalError::Internal(format!("range aggregation {i} was not evaluated")))?);
        }
        let (expr, params, limits, steps) = (self.expr.clone(), self.params, *limits, self.steps);
        tokio::task::spawn_blocking(move || {
            let mut leaves = ordered.into_iter();
            let evaluated = evaluate(&expr, &mut leaves, steps)?;
            let sortable = uses(&expr, &|op| matches!(op, VectorOp::Sort | VectorOp::SortDesc));
            output(evaluated, steps, &params, &limits, sortable)
        })
        .await
        .map_err(|e| EvalError::Internal(format!("metric evaluation task failed: {e}")))?
    }
}

/// Whether a vector aggregation satisfying `pred` occurs anywhere in `expr`.
fn uses(expr: &SampleExpr, pred: &dyn Fn(VectorOp) -> bool) -> bool {
    match expr {
        SampleExpr::VectorAggregation(v) => pred(v.op) || uses(&v.expr, pred),
        SampleExpr::BinOp(b) => uses(&b.lhs, pred) || uses(&b.rhs, pred),
        SampleExpr::LabelReplace(l) => uses(&l.expr, pred),
        SampleExpr::RangeAggregation(_) | SampleExpr::Literal(_) | SampleExpr::Vector(_) => false,
    }
}

/// Collects the range aggregations of `expr` in evaluation order, with the grouping of an
/// enclosing `sum` pushed down where Loki pushes it.
fn plan(expr: &SampleExpr, pushed: Option<&Grouping>, out: &mut Vec<Leaf>) {
    match expr {
        SampleExpr::RangeAggregation(r) => {
            let grouping = r.grouping.clone().or_else(|| pushed.cloned());
            out.push(Leaf { agg: r.clone(), grouping });
        }
        SampleExpr::VectorAggregation(v) => {
            let push = match &*v.expr {
                SampleExpr::RangeAggregation(r) if v.op == VectorOp::Sum && r.grouping.is_none() => matches!(
                    r.op,
                    RangeOp::BytesOverTime
                        | RangeOp::BytesRate
                        | RangeOp::SumOverTime
                        | RangeOp::Rate
                        | RangeOp::CountOverTime
                )
                .then_some(&v.grouping),
                _ => None,
            };
            plan(&v.expr, push, out);
        }
        SampleExpr::BinOp(b) => {
            plan(&b.lhs, None, out);
            plan(&b.rhs, None, out);
        }
        SampleExpr::LabelReplace(l) => plan(&l.expr, None, out),
        SampleExpr::Literal(_) | SampleExpr::Vector(_) => {}
    }
}

/// Evaluates `expr` over every step, taking the leaves' results in [`plan`] order.
fn evaluate(
    expr: &SampleExpr,
    leaves: &mut impl Iterator<Item = Vec<Row>>,
    steps: Steps,
) -> Result<Evaluated, EvalError> {
    Ok(match expr {
        SampleExpr::RangeAggregation(_) => Evaluated::Rows(
            leaves.next().ok_or_else(|| EvalError::Internal("range aggregation evaluated out of order".into()))?,
        ),
        SampleExpr::VectorAggregation(v) => match evaluate(&v.expr, leaves, steps)? {
            Evaluated::Rows(rows) => Evaluated::Rows(vector::aggregate(v, rows, steps.n)),
            Evaluated::Scalar(_) => {
                return Err(EvalError::Invalid(format!("{} cannot aggregate a scalar", v.op.name())));
            }
        },
        SampleExpr::BinOp(b) => {
            let lhs = evaluate(&b.lhs, leaves, steps)?;
            let rhs = evaluate(&b.rhs, leaves, steps)?;
            binop::apply(b, lhs, rhs, steps.n)?
        }
        SampleExpr::Literal(x) => Evaluated::Scalar(x.0),
        SampleExpr::Vector(x) => {
            Evaluated::Rows(vec![Row { labels: Arc::new(Labels::default()), values: vec![Some(x.0); steps.n] }])
        }
        SampleExpr::LabelReplace(lr) => match evaluate(&lr.expr, leaves, steps)? {
            Evaluated::Rows(rows) => Evaluated::Rows(label_replace(lr, rows)),
            Evaluated::Scalar(_) => return Err(EvalError::Invalid("label_replace cannot take a scalar".into())),
        },
    })
}

/// `label_replace` over rows; rows with equal labels share the rewritten set.
fn label_replace(lr: &crate::logql::LabelReplace, rows: Vec<Row>) -> Vec<Row> {
    let mut cache: HashMap<SharedLabels, SharedLabels> = HashMap::new();
    rows.into_iter()
        .map(|row| {
            let labels = cache
                .entry(row.labels.clone())
                .or_insert_with(|| Arc::new(labelset::label_replace(&row.labels, lr)))
                .clone();
            Row { labels, values: row.values }
        })
        .collect()
}

/// Turns the evaluated tree into the query's result, enforcing the series limit.
fn output(
    evaluated: Evaluated,
    steps: Steps,
    params: &QueryParams,
    limits: &EvalLimits,
    sortable: bool,
) -> Result<Value, EvalError> {
    let rows = match evaluated {
        Evaluated::Scalar(value) if params.instant => return Ok(Value::Scalar { ts: steps.start, value }),
        Evaluated::Scalar(value) => {
            vec![Row { labels: Arc::new(Labels::default()), values: vec![Some(value); steps.n] }]
        }
        Evaluated::Rows(rows) => rows,
    };
    let rows = merge_equal_labels(rows);
    if limits.max_series > 0 && rows.len() > limits.max_series {
        return Err(series_limit_error(limits.max_series));
    }
    if params.instant {
        let mut samples: Vec<Sample> = rows
            .into_iter()
            .filter_map(|r| r.values[0].map(|value| Sample { labels: r.labels, ts: steps.start, value }))
            .collect();
        if !sortable {
            samples.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        return Ok(Value::Vector(samples));
    }
    let mut series: Vec<Series> = rows
        .into_iter()
        .map(|r| {
            let points = r
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|value| Point { ts: steps.ts(i), value }))
                .collect();
            Series { labels: r.labels, points }
        })
        .collect();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(Value::Matrix(series))
}

/// Rows without points dropped, and rows with equal labels joined into one (the first row's
/// value wins at a step both have), as Loki joins the steps of a result by label set.
fn merge_equal_labels(rows: Vec<Row>) -> Vec<Row> {
    let mut index: HashMap<SharedLabels, usize> = HashMap::new();
    let mut out: Vec<Row> = Vec::with_capacity(rows.len());
    for row in rows {
        if !row.has_points() {
            continue;
        }
        match index.get(&row.labels) {
            Some(&at) => {
                for (dst, src) in out[at].values.iter_mut().zip(row.values) {
                    if dst.is_none() {
                        *dst = src;
                    }
                }
            }
            None => {
                index.insert(row.labels.clone(), out.len());
                out.push(row);
            }
        }
    }
    out
}

/// Loki's error when a query returns more series than `max_query_series`.
pub fn series_limit_error(limit: usize) -> EvalError {
    EvalError::Limit(format!(
        "maximum number of series ({limit}) reached for a single query; consider reducing query cardinality by \
         adding more specific stream selectors, reducing the time range, or aggregating results with functions like \
         sum(), count() or topk()"
    ))
}
