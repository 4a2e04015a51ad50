//! Query evaluation: LogQL log and metric queries over a [`LogSource`].
//!
//! - [`pipeline`]: runs a log pipeline (filters, parsers, formatters, label filters) over lines
//!   and extracts samples for range aggregations.
//! - [`logs`]: log queries — selection, direction, limit.
//! - [`metric`]: metric queries — range and vector aggregations, binary operations, steps.
//! - [`logqltest`]: Loki's `.logqltest` conformance scripts and their runner.

pub mod logqltest;
pub mod logs;
pub mod metric;
pub mod pipeline;
pub mod source;
pub mod value;

use std::sync::Arc;

use crate::entry::Direction;
use crate::error::{ErrorKind, HasKind};
use crate::logql::Expr;
pub use source::{LogSource, MemorySource, StreamBlocks};
pub use value::Value;

/// The parameters of one query, as Loki's API takes them (times in nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueryParams {
    /// Start of the range (inclusive); equal to `end` for an instant query.
    pub start: i64,
    /// End of the range (inclusive), or the instant of an instant query.
    pub end: i64,
    /// Step between evaluation instants of a range metric query.
    pub step: i64,
    /// For log range queries: return at most one entry per `interval` (0 = every entry).
    pub interval: i64,
    /// Order of log query results.
    pub direction: Direction,
    /// Most entries a log query returns.
    pub limit: usize,
    /// An instant query (`/query`) rather than a range query (`/query_range`).
    pub instant: bool,
}

/// Limits applied while evaluating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalLimits {
    /// Most series a metric query may produce (Loki's `max_query_series`).
    pub max_series: usize,
}

impl Default for EvalLimits {
    fn default() -> Self {
        Self { max_series: 500 }
    }
}

/// Why a query could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The query is wrong in a way only evaluation finds (Loki answers 400).
    #[error("{0}")]
    Invalid(String),
    /// A query limit was hit (Loki answers 400 with the limit's message).
    #[error("{0}")]
    Limit(String),
    /// The query ran out of time.
    #[error("{0}")]
    Timeout(String),
    /// Reading data failed.
    #[error("{0}")]
    Storage(String),
    /// The object store could not be reached ([`crate::storage::StorageError::Unavailable`]):
    /// a querier with ingesters answers from them alone, with a warning.
    #[error("{0}")]
    StoreUnavailable(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl HasKind for EvalError {
    fn kind(&self) -> ErrorKind {
        match self {
            EvalError::Invalid(_) | EvalError::Limit(_) => ErrorKind::Invalid,
            EvalError::Timeout(_) => ErrorKind::Timeout,
            EvalError::Storage(_) | EvalError::StoreUnavailable(_) => ErrorKind::Unavailable,
            EvalError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// What one query may hold in memory (`querier.max_query_memory`): blocks read from ingesters
/// and the object store, the series of range aggregations, the entries of log results. Every
/// part of a query charges what it is about to hold; the charge that passes the limit fails the
/// query with [`EvalError::Limit`] instead of letting it take the process down.
#[derive(Debug, Default)]
pub struct MemoryBudget {
    /// Bytes the query may hold (0 = no limit).
    limit: u64,
    used: std::sync::atomic::AtomicU64,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self { limit, used: Default::default() })
    }

    /// Charges `bytes` for `what`; fails once the query's total passes the limit.
    pub fn charge(&self, bytes: u64, what: &str) -> Result<(), EvalError> {
        use std::sync::atomic::Ordering;
        let used = self.used.fetch_add(bytes, Ordering::Relaxed).saturating_add(bytes);
        if self.limit > 0 && used > self.limit {
            return Err(EvalError::Limit(format!(
                "the query would hold more than querier.max_query_memory ({}) in memory ({} reached with {what}); \
                 narrow the time range, use more specific stream selectors or aggregate by fewer labels",
                crate::config::units::ByteSize(self.limit),
                crate::config::units::ByteSize(used),
            )));
        }
        Ok(())
    }

    /// Bytes charged so far.
    pub fn used(&self) -> u64 {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Evaluates queries against a source.
#[derive(Clone)]
pub struct Engine {
    pub limits: EvalLimits,
}

impl Engine {
    pub fn new(limits: EvalLimits) -> Self {
        Self { limits }
    }

    /// Evaluates a parsed query.
    pub async fn query(
        &self,
        source: Arc<dyn LogSource>,
        expr: &Expr,
        params: &QueryParams,
    ) -> Result<Value, EvalError> {
        match expr {
            Expr::Log(log) => logs::eval(source, log, params).await,
            Expr::Sample(sample) => metric::eval(source, sample, params, &self.limits).await,
        }
    }
}
