//! Log queries: INTERFACE STUB — helper C implements.

use std::sync::Arc;

use crate::logql::LogExpr;
use crate::query::{EvalError, LogSource, QueryParams, Value};

/// Evaluates a log query: streams matching the selector, through the pipeline, at most
/// `params.limit` entries in `params.direction` order over `[start, end)`.
pub async fn eval(_source: Arc<dyn LogSource>, _expr: &LogExpr, _params: &QueryParams) -> Result<Value, EvalError> {
    Err(EvalError::Internal("log queries are not implemented yet".into()))
}
