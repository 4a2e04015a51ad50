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
    let steps = Steps::from_params(params)?;
    if !params.instant && uses(expr, &|op| op == VectorOp::ApproxTopk) {
        return Err(EvalError::Invalid("count min sketches are only supported on instant queries".into()));
    }
    let mut leaves = Vec::new();
    plan(expr, None, &mut leaves);
    let mut results: Vec<Vec<Row>> = Vec::with_capacity(leaves.len());
    for (i, leaf) in leaves.iter().enumerate() {
        // The same aggregation written twice (`a / a`) is read once.
        match leaves[..i].iter().position(|l| l == leaf) {
            Some(j) => {
                let again = results[j].clone();
                results.push(again);
            }
            None => results.push(range::evaluate(source.clone(), leaf, steps).await?),
        }
    }
    let expr = expr.clone();
    let params = *params;
    let limits = *limits;
    tokio::task::spawn_blocking(move || {
        let mut leaves = results.into_iter();
        let evaluated = evaluate(&expr, &mut leaves, steps)?;
        let sortable = uses(&expr, &|op| matches!(op, VectorOp::Sort | VectorOp::SortDesc));
        output(evaluated, steps, &params, &limits, sortable)
    })
    .await
    .map_err(|e| EvalError::Internal(format!("metric evaluation task failed: {e}")))?
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
