//! The unit of work between the frontend and the queriers: a [`Job`] (one sub-query of a
//! request) and what a querier answers to it, and how a querier runs one.

use crate::error::{ErrorKind, HasKind};
use crate::labels::SharedLabels;
use crate::logql;
use crate::querier::{IndexStats, Querier, QueryError, ReadStats, SeriesVolume, Shard};
use crate::query::metric::LeafRows;
use crate::query::{QueryParams, Value};

/// One sub-query, for the tenants of the request it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub tenants: Vec<String>,
    pub request: SubRequest,
}

/// What a sub-query asks. Selectors travel as LogQL text and are parsed by the querier.
#[derive(Clone, Debug, PartialEq)]
pub enum SubRequest {
    /// A whole query (`query`/`query_range`) over the steps or window of `params`.
    Query { query: String, params: QueryParams },
    /// One range aggregation of a metric query (`leaf`, in evaluation order) over one shard of
    /// the streams.
    Leaf { query: String, params: QueryParams, leaf: u32, shard: Shard },
    /// Label names (`name: None`) or the values of label `name`.
    Labels { name: Option<String>, selector: String, from: i64, through: i64 },
    /// Series matching any of the selectors.
    Series { selectors: Vec<String>, from: i64, through: i64 },
    /// `index/stats`.
    IndexStats { selector: String, from: i64, through: i64 },
    /// Per-series volumes (`index/volume`, `index/volume_range`).
    Volumes { selector: String, from: i64, through: i64 },
}

impl SubRequest {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SubRequest::Query { .. } => "query",
            SubRequest::Leaf { .. } => "shard",
            SubRequest::Labels { .. } => "labels",
            SubRequest::Series { .. } => "series",
            SubRequest::IndexStats { .. } => "index_stats",
            SubRequest::Volumes { .. } => "volumes",
        }
    }
}

/// A querier's answer to a [`Job`].
#[derive(Clone, Debug, PartialEq)]
pub enum SubResponse {
    Value(Value),
    Rows(LeafRows),
    Strings(Vec<String>),
    Series(Vec<SharedLabels>),
    Stats(IndexStats),
    Volumes(Vec<(SharedLabels, SeriesVolume)>),
}

impl SubResponse {
    /// A rough count of the bytes the answer holds, for the frontend's memory budget.
    pub fn approx_bytes(&self) -> usize {
        match self {
            SubResponse::Value(v) => value_bytes(v),
            SubResponse::Rows(r) => r.cells() * 16 + r.len() * 64,
            SubResponse::Strings(s) => s.iter().map(|s| s.len() + 24).sum(),
            SubResponse::Series(s) => s.iter().map(|l| l.to_string().len() + 24).sum(),
            SubResponse::Stats(_) => 32,
            SubResponse::Volumes(v) => v.iter().map(|(l, v)| l.to_string().len() + 48 + v.points.len() * 16).sum(),
        }
    }
}

/// Bytes a query value holds, roughly: what a frontend keeps while it merges answers.
pub fn value_bytes(v: &Value) -> usize {
    match v {
        Value::Scalar { .. } => 16,
        Value::Vector(s) => s.len() * 80,
        Value::Matrix(m) => m.iter().map(|s| 64 + s.points.len() * 16).sum(),
        Value::Streams(streams) => {
            streams.iter().map(|s| 64 + s.entries.iter().map(|e| 48 + e.line.len()).sum::<usize>()).sum()
        }
    }
}

/// Why a sub-query failed: the kind decides the HTTP status and whether it is retried.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SubError {
    pub kind: ErrorKind,
    pub message: String,
}

impl SubError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

impl HasKind for SubError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl From<QueryError> for SubError {
    fn from(e: QueryError) -> Self {
        SubError { kind: e.kind(), message: e.to_string() }
    }
}

fn matchers(selector: &str) -> Result<Vec<logql::Matcher>, SubError> {
    if selector.is_empty() {
        return Ok(Vec::new());
    }
    logql::parse_matchers(selector).map_err(|e| SubError::new(ErrorKind::Invalid, e.to_string()))
}

/// A sub-query's answer and what the querier read for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Answered {
    pub response: SubResponse,
    pub stats: ReadStats,
}

/// What becomes of a sub-query.
pub type Outcome = Result<Answered, SubError>;

/// Runs a job on `querier`: what a querier worker does with each job it takes.
pub async fn execute(querier: &Querier, job: &Job) -> Outcome {
    let tenants = &job.tenants;
    if tenants.is_empty() {
        return Err(SubError::new(ErrorKind::Invalid, "a sub-query without a tenant"));
    }
    for t in tenants {
        crate::validation::validate_tenant_id(t).map_err(|e| SubError::new(ErrorKind::Invalid, e))?;
    }
    let mut stats = ReadStats::default();
    let response = match &job.request {
        SubRequest::Query { query, params } => {
            let out = querier.query(tenants, query, params).await?;
            stats = out.stats.snapshot();
            SubResponse::Value(out.value)
        }
        SubRequest::Leaf { query, params, leaf, shard } => {
            let (rows, read) = querier.query_leaf(tenants, query, params, *leaf as usize, Some(*shard)).await?;
            stats = read.snapshot();
            SubResponse::Rows(rows)
        }
        SubRequest::Labels { name, selector, from, through } => {
            SubResponse::Strings(querier.labels(tenants, name.as_deref(), &matchers(selector)?, *from, *through).await?)
        }
        SubRequest::Series { selectors, from, through } => {
            let parsed = selectors.iter().map(|s| matchers(s)).collect::<Result<Vec<_>, _>>()?;
            SubResponse::Series(querier.series(tenants, &parsed, *from, *through).await?)
        }
        SubRequest::IndexStats { selector, from, through } => {
            SubResponse::Stats(querier.index_stats(tenants, &matchers(selector)?, *from, *through).await?)
        }
        SubRequest::Volumes { selector, from, through } => {
            SubResponse::Volumes(querier.volumes(tenants, &matchers(selector)?, *from, *through).await?)
        }
    };
    Ok(Answered { response, stats })
}
