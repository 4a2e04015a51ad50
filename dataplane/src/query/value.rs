//! Query results: Loki's four result types.

use bytes::Bytes;

use crate::labels::{Label, SharedLabels};

/// One point of a series. `ts` is in nanoseconds since the epoch (Loki's JSON prints float
/// seconds for metric results).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub ts: i64,
    pub value: f64,
}

/// A labelled series of points: an element of a matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: SharedLabels,
    /// Sorted by timestamp.
    pub points: Vec<Point>,
}

/// A labelled single value at one instant: an element of a vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: SharedLabels,
    pub ts: i64,
    pub value: f64,
}

/// One log line of a log query result.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub ts: i64,
    pub line: Bytes,
    /// The entry's structured metadata (for `categorize-labels` responses).
    pub structured_metadata: Vec<Label>,
    /// Labels the pipeline extracted (for `categorize-labels` responses).
    pub parsed: Vec<Label>,
}

/// The entries of one result stream. `labels` is the full label set of the entries (stream
/// labels, structured metadata and parsed labels together, as Loki groups them);
/// `stream_labels` the selected stream's own labels.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamResult {
    pub labels: SharedLabels,
    pub stream_labels: SharedLabels,
    /// In the query's direction.
    pub entries: Vec<LogEntry>,
}

/// What a query evaluates to.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A number at one instant (`vector(1)` evaluated instantly is a vector; `1+1` a scalar).
    Scalar { ts: i64, value: f64 },
    /// An instant query's samples.
    Vector(Vec<Sample>),
    /// A range query's series.
    Matrix(Vec<Series>),
    /// A log query's streams.
    Streams(Vec<StreamResult>),
}

impl Value {
    /// Loki's `resultType`.
    pub fn result_type(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
            Value::Streams(_) => "streams",
        }
    }
}
