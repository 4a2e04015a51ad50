//! Binary operations: arithmetic and comparisons between a vector and a literal or two vectors
//! (with `on`/`ignoring` matching and `group_left`/`group_right`), and the set operators
//! `and`, `or`, `unless`, with Loki's semantics and error texts.
//!
//! Matching signatures and result labels depend only on labels, so they are computed once per
//! row (and per matched pair of rows); the per-step work is table lookups by signature id.

use std::collections::HashMap;
use std::sync::Arc;

use crate::labels::Labels;
use crate::logql::{BinOp, BinOpKind, Cardinality, VectorMatching};
use crate::query::EvalError;

use super::labelset::{self, Interner};
use super::rows::{Evaluated, Row};

/// No row / not seen, in the per-step tables.
const NONE: usize = usize::MAX;

/// Applies `b` to its evaluated operands.
pub(crate) fn apply(b: &BinOp, lhs: Evaluated, rhs: Evaluated, n: usize) -> Result<Evaluated, EvalError> {
    let op = b.op;
    let bool_mod = b.modifier.return_bool;
    match (lhs, rhs) {
        (Evaluated::Scalar(l), Evaluated::Scalar(r)) => op.apply_scalar(l, r).map(Evaluated::Scalar).ok_or_else(|| {
            EvalError::Invalid(format!(
                "unexpected literal for left leg of logical/set binary operation ({})",
                op.symbol()
            ))
        }),
        (Evaluated::Scalar(l), Evaluated::Rows(rows)) => literal(op, l, rows, true, bool_mod).map(Evaluated::Rows),
        (Evaluated::Rows(rows), Evaluated::Scalar(r)) => literal(op, r, rows, false, bool_mod).map(Evaluated::Rows),
        (Evaluated::Rows(l), Evaluated::Rows(r)) => {
            let m = &b.modifier.matching;
            let mut sigs = Interner::default();
            let lsig: Vec<usize> = l.iter().map(|row| sigs.intern(signature(&row.labels, m))).collect();
            let rsig: Vec<usize> = r.iter().map(|row| sigs.intern(signature(&row.labels, m))).collect();
            let sides = Sides { lhs: l, rhs: r, lsig, rsig, sigs: sigs.len(), n };
            Ok(Evaluated::Rows(if op.is_set_op() { sides.set_op(op) } else { sides.vector_op(op, m, bool_mod)? }))
        }
    }
}

/// The arithmetic result of `l op r`: division and modulo by zero are NaN.
fn arithmetic(op: BinOpKind, l: f64, r: f64) -> f64 {
    match op {
        BinOpKind::Add => l + r,
        BinOpKind::Sub => l - r,
        BinOpKind::Mul => l * r,
        BinOpKind::Div if r == 0.0 => f64::NAN,
        BinOpKind::Div => l / r,
        BinOpKind::Mod if r == 0.0 => f64::NAN,
        BinOpKind::Mod => l % r,
        BinOpKind::Pow => l.powf(r),
        _ => f64::NAN,
    }
}

/// Whether the comparison `l op r` holds.
fn compare(op: BinOpKind, l: f64, r: f64) -> bool {
    match op {
        BinOpKind::Eq => l == r,
        BinOpKind::Neq => l != r,
        BinOpKind::Gt => l > r,
        BinOpKind::Gte => l >= r,
        BinOpKind::Lt => l < r,
        BinOpKind::Lte => l <= r,
        _ => false,
    }
}

/// The value of `l op r` for two samples, `None` when a filtering comparison drops it. A
/// comparison keeps `keep` (the vector side's value) when it holds, or gives 1/0 with `bool`.
fn merge(op: BinOpKind, l: f64, r: f64, bool_mod: bool, keep: f64) -> Option<f64> {
    if !op.is_comparison() {
        return Some(arithmetic(op, l, r));
    }
    let holds = compare(op, l, r);
    if bool_mod { Some(if holds { 1.0 } else { 0.0 }) } else { holds.then_some(keep) }
}

/// A vector and a literal: each sample is combined with the literal and keeps its labels.
fn literal(
    op: BinOpKind,
    lit: f64,
    mut rows: Vec<Row>,
    literal_left: bool,
    bool_mod: bool,
) -> Result<Vec<Row>, EvalError> {
    if op.is_set_op() {
        let side = if literal_left { "left" } else { "right" };
        return Err(EvalError::Invalid(format!(
            "unexpected literal for {side} leg of logical/set binary operation ({})",
            op.symbol()
        )));
    }
    for row in &mut rows {
        for slot in &mut row.values {
            if let Some(v) = *slot {
                let (l, r) = if literal_left { (lit, v) } else { (v, lit) };
                *slot = merge(op, l, r, bool_mod, v);
            }
        }
    }
    rows.retain(Row::has_points);
    Ok(rows)
}

/// The labels two series are matched on.
fn signature(labels: &Labels, m: &VectorMatching) -> Labels {
    if m.on { labelset::keep(labels, &m.labels) } else { labelset::drop(labels, &m.labels) }
}

/// The labels of a result series: the "many" (or left) side's labels, reduced to the matching
/// labels for one-to-one matching, with `group_x (...)` labels copied from the "one" side (or
/// removed when it lacks them).
fn result_labels(many: &Labels, one: &Labels, m: &VectorMatching) -> Labels {
    let mut labels = match m.card {
        Cardinality::OneToOne => signature(many, m),
        _ => many.clone(),
    };
    for name in &m.include {
        let value = one.get(name).unwrap_or("");
        labels = labelset::set(&labels, name, value);
    }
    labels
}

/// Two vector operands with their rows' signature ids.
struct Sides {
    lhs: Vec<Row>,
    rhs: Vec<Row>,
    lsig: Vec<usize>,
    rsig: Vec<usize>,
    /// Number of distinct signatures.
    sigs: usize,
    n: usize,
}

impl Sides {
    /// `and`, `or`, `unless`: the left rows (and for `or` the unmatched right rows) keep their
    /// labels and values at the steps they pass.
    fn set_op(self, op: BinOpKind) -> Vec<Row> {
        let Sides { mut lhs, mut rhs, lsig, rsig, sigs, n } = self;
        // seen[sig] == step + 1 when a row with that signature is present at the step.
        let mut in_left = vec![NONE; sigs];
        let mut in_right = vec![NONE; sigs];
        for i in 0..n {
            let left_any = lhs.iter().any(|r| r.values[i].is_some());
            let right_any = rhs.iter().any(|r| r.values[i].is_some());
            for (r, &s) in rhs.iter().zip(&rsig) {
                if r.values[i].is_some() {
                    in_right[s] = i;
                }
            }
            for (r, &s) in lhs.iter().zip(&lsig) {
                if r.values[i].is_some() {
                    in_left[s] = i;
                }
            }
            match op {
                BinOpKind::And => {
                    for (r, &s) in lhs.iter_mut().zip(&lsig) {
                        if !right_any || in_right[s] != i {
                            r.values[i] = None;
                        }
                    }
                    for r in &mut rhs {
                        r.values[i] = None;
                    }
                }
                BinOpKind::Unless => {
                    if right_any {
                        for (r, &s) in lhs.iter_mut().zip(&lsig) {
                            if in_right[s] == i {
                                r.values[i] = None;
                            }
                        }
                    }
                    for r in &mut rhs {
                        r.values[i] = None;
                    }
                }
                _ => {
                    if left_any {
                        for (r, &s) in rhs.iter_mut().zip(&rsig) {
                            if in_left[s] == i {
                                r.values[i] = None;
                            }
                        }
                    }
                }
            }
        }
        lhs.into_iter().chain(rhs).filter(Row::has_points).collect()
    }

    /// Arithmetic and comparisons between two vectors.
    fn vector_op(self, op: BinOpKind, m: &VectorMatching, bool_mod: bool) -> Result<Vec<Row>, EvalError> {
        let Sides { lhs, rhs, lsig, rsig, sigs, n } = self;
        let swapped = m.card == Cardinality::OneToMany;
        let (many, one, many_sig, one_sig) =
            if swapped { (&rhs, &lhs, &rsig, &lsig) } else { (&lhs, &rhs, &lsig, &rsig) };
        let mut slot = vec![NONE; sigs];
        let mut matched = vec![NONE; sigs];
        let mut inserted: Vec<(usize, usize)> = Vec::new();
        let mut out_labels = Interner::default();
        let mut pair_out: HashMap<(usize, usize), usize> = HashMap::new();
        let mut out: Vec<Vec<Option<f64>>> = Vec::new();
        for i in 0..n {
            for (o, row) in one.iter().enumerate() {
                if row.values[i].is_none() {
                    continue;
                }
                let s = one_sig[o];
                if slot[s] != NONE {
                    let side = if swapped { "left" } else { "right" };
                    return Err(EvalError::Invalid(format!(
                        "found duplicate series on the {side} hand-side;many-to-many matching not allowed: matching labels must be unique on one side"
                    )));
                }
                slot[s] = o;
            }
            inserted.clear();
            for (k, row) in many.iter().enumerate() {
                let Some(mv) = row.values[i] else { continue };
                let s = many_sig[k];
                let o = slot[s];
                if o == NONE {
                    continue;
                }
                let id = *pair_out.entry((k, o)).or_insert_with(|| {
                    let labels = result_labels(&row.labels, &one[o].labels, m);
                    let id = out_labels.intern(labels);
                    if id == out.len() {
                        out.push(vec![None; n]);
                    }
                    id
                });
                if m.card == Cardinality::OneToOne {
                    if matched[s] == i {
                        return Err(EvalError::Invalid(
                            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                                .into(),
                        ));
                    }
                    matched[s] = i;
                } else {
                    if inserted.contains(&(s, id)) {
                        return Err(EvalError::Invalid(
                            "multiple matches for labels: grouping labels must ensure unique matches".into(),
                        ));
                    }
                    inserted.push((s, id));
                }
                let ov = one[o].values[i].unwrap_or(f64::NAN);
                let (l, r) = if swapped { (ov, mv) } else { (mv, ov) };
                if let Some(v) = merge(op, l, r, bool_mod, l) {
                    let cell = &mut out[id][i];
                    if cell.is_none() {
                        *cell = Some(v);
                    }
                }
            }
            for (o, row) in one.iter().enumerate() {
                if row.values[i].is_some() {
                    slot[one_sig[o]] = NONE;
                }
            }
        }
        Ok(out
            .into_iter()
            .enumerate()
            .map(|(id, values)| Row { labels: Arc::clone(out_labels.get(id)), values })
            .filter(Row::has_points)
            .collect())
    }
}
