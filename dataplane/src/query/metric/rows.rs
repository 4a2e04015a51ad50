//! The intermediate form of metric evaluation: every series evaluated at every step at once.
//!
//! Loki evaluates a metric query step by step, re-hashing every sample's labels at every step.
//! Norn evaluates each node of the expression over all steps in one go: a [`Row`] is one label
//! set with its value at each step (or none), so work that depends only on labels — grouping
//! keys, vector-matching signatures, `label_replace` — is done once per series, and only the
//! per-step arithmetic runs per point.

use crate::labels::SharedLabels;
use crate::query::{EvalError, QueryParams};

/// Most points a range query may return per series (Loki's `max_points`, 11,000).
pub(crate) const MAX_POINTS: i64 = 11_000;

/// The evaluation instants of a query: `start`, `start + step`, ... (`n` of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Steps {
    /// First evaluation instant (ns).
    pub(crate) start: i64,
    /// Distance between instants (ns); 1 for an instant query, as Loki uses.
    pub(crate) step: i64,
    /// Number of instants (1 for an instant query).
    pub(crate) n: usize,
}

impl Steps {
    /// The instants of a query, validated the way Loki validates them.
    pub(crate) fn from_params(params: &QueryParams) -> Result<Steps, EvalError> {
        if params.instant {
            return Ok(Steps { start: params.end, step: 1, n: 1 });
        }
        if params.step <= 0 {
            return Err(EvalError::Invalid(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if params.end < params.start {
            return Err(EvalError::Invalid("end timestamp must not be before start time".into()));
        }
        let span = (i128::from(params.end) - i128::from(params.start)) / i128::from(params.step);
        if span > i128::from(MAX_POINTS) {
            return Err(EvalError::Invalid(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                    .into(),
            ));
        }
        // `span` is at most MAX_POINTS, so it fits.
        Ok(Steps { start: params.start, step: params.step, n: span as usize + 1 })
    }

    /// The `i`-th instant.
    pub(crate) fn ts(&self, i: usize) -> i64 {
        self.start.saturating_add(self.step.saturating_mul(i as i64))
    }
}

/// One series evaluated at every step.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    /// The series' labels, sorted.
    pub(crate) labels: SharedLabels,
    /// `values[i]` is the value at step `i`, `None` where the series has no point.
    pub(crate) values: Vec<Option<f64>>,
}

impl Row {
    /// Whether the row has a point at any step.
    pub(crate) fn has_points(&self) -> bool {
        self.values.iter().any(Option::is_some)
    }
}

/// What a sample expression evaluates to.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Evaluated {
    /// A number literal: the same value at every step, without labels.
    Scalar(f64),
    /// A vector at every step.
    Rows(Vec<Row>),
}
