//! Metric queries: INTERFACE STUB — helper B implements.

use std::sync::Arc;

use crate::logql::SampleExpr;
use crate::query::{EvalError, EvalLimits, LogSource, QueryParams, Value};

/// Evaluates a metric query: an instant query yields a vector (or scalar), a range query a
/// matrix, with Loki's semantics and error texts.
pub async fn eval(
    _source: Arc<dyn LogSource>,
    _expr: &SampleExpr,
    _params: &QueryParams,
    _limits: &EvalLimits,
) -> Result<Value, EvalError> {
    Err(EvalError::Internal("metric queries are not implemented yet".into()))
}
