//! The frontend service's messages (prost derives, like the ingester service's) and their
//! conversions to and from [`Job`] and [`SubResponse`]. The same result message is what the
//! results cache stores.
//!
//! Field numbers are the wire contract between versions during a rolling upgrade: add fields,
//! never renumber.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use super::job::{Answered, Job, Outcome, SubError, SubRequest, SubResponse};
use crate::entry::Direction;
use crate::error::ErrorKind;
use crate::labels::{Label, Labels, SharedLabels};
use crate::querier::{IndexStats, ReadStats, SeriesVolume, Shard};
use crate::query::metric::LeafRows;
use crate::query::value::{LogEntry, Point, Sample, Series, StreamResult};
use crate::query::{QueryParams, Value};
use crate::rpc::proto::LabelPair;

/// Frontend → querier: a job to run, or the cancellation of the job running.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FrontendToQuerier {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(message, optional, tag = "2")]
    pub job: Option<JobMsg>,
    /// Stop job `id`; the querier answers it with a cancelled error.
    #[prost(bool, tag = "3")]
    pub cancel: bool,
}

/// Querier → frontend: the querier's id (first message of a connection), or the answer to job
/// `id`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QuerierToFrontend {
    #[prost(string, tag = "1")]
    pub querier_id: String,
    #[prost(uint64, tag = "2")]
    pub id: u64,
    #[prost(message, optional, tag = "3")]
    pub result: Option<ResultMsg>,
    /// The gRPC code of the error kind; 0 for success.
    #[prost(int32, tag = "4")]
    pub error_code: i32,
    #[prost(string, tag = "5")]
    pub error: String,
    /// What the querier read for the answer.
    #[prost(message, optional, tag = "6")]
    pub stats: Option<ReadStatsMsg>,
}

/// [`ReadStats`] on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadStatsMsg {
    #[prost(uint64, tag = "1")]
    pub chunks_ref: u64,
    #[prost(uint64, tag = "2")]
    pub chunks_downloaded: u64,
    #[prost(uint64, tag = "3")]
    pub bytes_downloaded: u64,
    #[prost(uint64, tag = "4")]
    pub download_nanos: u64,
    #[prost(uint64, tag = "5")]
    pub blocks: u64,
    #[prost(uint64, tag = "6")]
    pub lines: u64,
    #[prost(uint64, tag = "7")]
    pub bytes: u64,
    #[prost(uint64, tag = "8")]
    pub ingester_streams: u64,
    #[prost(uint64, tag = "9")]
    pub ingester_blocks: u64,
    #[prost(uint64, tag = "10")]
    pub store_failures: u64,
}

impl From<&ReadStats> for ReadStatsMsg {
    fn from(r: &ReadStats) -> Self {
        Self {
            chunks_ref: r.chunks_ref,
            chunks_downloaded: r.chunks_downloaded,
            bytes_downloaded: r.bytes_downloaded,
            download_nanos: r.download_nanos,
            blocks: r.blocks,
            lines: r.lines,
            bytes: r.bytes,
            ingester_streams: r.ingester_streams,
            ingester_blocks: r.ingester_blocks,
            store_failures: r.store_failures,
        }
    }
}

impl From<ReadStatsMsg> for ReadStats {
    fn from(m: ReadStatsMsg) -> Self {
        Self {
            chunks_ref: m.chunks_ref,
            chunks_downloaded: m.chunks_downloaded,
            bytes_downloaded: m.bytes_downloaded,
            download_nanos: m.download_nanos,
            blocks: m.blocks,
            lines: m.lines,
            bytes: m.bytes,
            ingester_streams: m.ingester_streams,
            ingester_blocks: m.ingester_blocks,
            store_failures: m.store_failures,
        }
    }
}

/// Kinds of [`JobMsg`].
mod job_kind {
    pub const QUERY: i32 = 0;
    pub const LEAF: i32 = 1;
    pub const LABELS: i32 = 2;
    pub const SERIES: i32 = 3;
    pub const INDEX_STATS: i32 = 4;
    pub const VOLUMES: i32 = 5;
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct JobMsg {
    #[prost(string, repeated, tag = "1")]
    pub tenants: Vec<String>,
    #[prost(int32, tag = "2")]
    pub kind: i32,
    /// The query, or the selector of a metadata lookup.
    #[prost(string, tag = "3")]
    pub query: String,
    #[prost(int64, tag = "4")]
    pub start: i64,
    #[prost(int64, tag = "5")]
    pub end: i64,
    #[prost(int64, tag = "6")]
    pub step: i64,
    #[prost(int64, tag = "7")]
    pub interval: i64,
    #[prost(bool, tag = "8")]
    pub backward: bool,
    #[prost(uint64, tag = "9")]
    pub limit: u64,
    #[prost(bool, tag = "10")]
    pub instant: bool,
    #[prost(uint32, tag = "11")]
    pub leaf: u32,
    #[prost(uint32, tag = "12")]
    pub shard_index: u32,
    #[prost(uint32, tag = "13")]
    pub shard_of: u32,
    /// The label of a label-values lookup.
    #[prost(string, optional, tag = "14")]
    pub name: Option<String>,
    /// The selectors of a series lookup.
    #[prost(string, repeated, tag = "15")]
    pub selectors: Vec<String>,
}

/// Kinds of [`ResultMsg`].
mod result_kind {
    pub const SCALAR: i32 = 0;
    pub const VECTOR: i32 = 1;
    pub const MATRIX: i32 = 2;
    pub const STREAMS: i32 = 3;
    pub const ROWS: i32 = 4;
    pub const STRINGS: i32 = 5;
    pub const SERIES: i32 = 6;
    pub const STATS: i32 = 7;
    pub const VOLUMES: i32 = 8;
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResultMsg {
    #[prost(int32, tag = "1")]
    pub kind: i32,
    #[prost(int64, tag = "2")]
    pub scalar_ts: i64,
    #[prost(double, tag = "3")]
    pub scalar_value: f64,
    #[prost(message, repeated, tag = "4")]
    pub samples: Vec<SampleMsg>,
    #[prost(message, repeated, tag = "5")]
    pub series: Vec<SeriesMsg>,
    #[prost(message, repeated, tag = "6")]
    pub streams: Vec<StreamResultMsg>,
    #[prost(message, repeated, tag = "7")]
    pub rows: Vec<RowMsg>,
    #[prost(string, repeated, tag = "8")]
    pub strings: Vec<String>,
    #[prost(message, optional, tag = "9")]
    pub stats: Option<IndexStatsMsg>,
    #[prost(message, repeated, tag = "10")]
    pub volumes: Vec<VolumeMsg>,
    /// Label sets of a series lookup.
    #[prost(message, repeated, tag = "11")]
    pub label_sets: Vec<LabelsMsg>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelsMsg {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SampleMsg {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(int64, tag = "2")]
    pub ts: i64,
    #[prost(double, tag = "3")]
    pub value: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SeriesMsg {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(int64, repeated, tag = "2")]
    pub ts: Vec<i64>,
    #[prost(double, repeated, tag = "3")]
    pub values: Vec<f64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamResultMsg {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    pub stream_labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "3")]
    pub entries: Vec<LogEntryMsg>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LogEntryMsg {
    #[prost(int64, tag = "1")]
    pub ts: i64,
    #[prost(bytes = "bytes", tag = "2")]
    pub line: Bytes,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPair>,
    #[prost(message, repeated, tag = "4")]
    pub parsed: Vec<LabelPair>,
}

/// One leaf row: a value per step, `present` a bitmap of the steps that have one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RowMsg {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(double, repeated, tag = "2")]
    pub values: Vec<f64>,
    #[prost(bytes = "vec", tag = "3")]
    pub present: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct IndexStatsMsg {
    #[prost(uint64, tag = "1")]
    pub streams: u64,
    #[prost(uint64, tag = "2")]
    pub chunks: u64,
    #[prost(uint64, tag = "3")]
    pub entries: u64,
    #[prost(uint64, tag = "4")]
    pub bytes: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VolumeMsg {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(uint64, tag = "2")]
    pub chunks: u64,
    #[prost(uint64, tag = "3")]
    pub entries: u64,
    #[prost(uint64, tag = "4")]
    pub bytes: u64,
    #[prost(int64, repeated, tag = "5")]
    pub point_ts: Vec<i64>,
    #[prost(uint64, repeated, tag = "6")]
    pub point_bytes: Vec<u64>,
}

fn pairs<'a>(labels: impl IntoIterator<Item = &'a Label>) -> Vec<LabelPair> {
    labels.into_iter().map(|l| LabelPair { name: l.name.clone(), value: l.value.clone() }).collect()
}

fn label_vec(pairs: Vec<LabelPair>) -> Vec<Label> {
    pairs.into_iter().map(|p| Label::new(p.name, p.value)).collect()
}

fn labels_of(pairs: Vec<LabelPair>) -> SharedLabels {
    Arc::new(Labels::from_vec(label_vec(pairs)))
}

fn params_msg(msg: &mut JobMsg, p: &QueryParams) {
    msg.start = p.start;
    msg.end = p.end;
    msg.step = p.step;
    msg.interval = p.interval;
    msg.backward = p.direction == Direction::Backward;
    msg.limit = p.limit as u64;
    msg.instant = p.instant;
}

fn params_of(msg: &JobMsg) -> QueryParams {
    QueryParams {
        start: msg.start,
        end: msg.end,
        step: msg.step,
        interval: msg.interval,
        direction: if msg.backward { Direction::Backward } else { Direction::Forward },
        limit: usize::try_from(msg.limit).unwrap_or(usize::MAX),
        instant: msg.instant,
    }
}

impl From<&Job> for JobMsg {
    fn from(job: &Job) -> Self {
        let mut m = JobMsg { tenants: job.tenants.clone(), ..Default::default() };
        match &job.request {
            SubRequest::Query { query, params } => {
                m.kind = job_kind::QUERY;
                m.query = query.clone();
                params_msg(&mut m, params);
            }
            SubRequest::Leaf { query, params, leaf, shard } => {
                m.kind = job_kind::LEAF;
                m.query = query.clone();
                params_msg(&mut m, params);
                m.leaf = *leaf;
                m.shard_index = shard.index;
                m.shard_of = shard.of;
            }
            SubRequest::Labels { name, selector, from, through } => {
                m.kind = job_kind::LABELS;
                m.name = name.clone();
                m.query = selector.clone();
                (m.start, m.end) = (*from, *through);
            }
            SubRequest::Series { selectors, from, through } => {
                m.kind = job_kind::SERIES;
                m.selectors = selectors.clone();
                (m.start, m.end) = (*from, *through);
            }
            SubRequest::IndexStats { selector, from, through } => {
                m.kind = job_kind::INDEX_STATS;
                m.query = selector.clone();
                (m.start, m.end) = (*from, *through);
            }
            SubRequest::Volumes { selector, from, through } => {
                m.kind = job_kind::VOLUMES;
                m.query = selector.clone();
                (m.start, m.end) = (*from, *through);
            }
        }
        m
    }
}

impl TryFrom<JobMsg> for Job {
    type Error = String;

    fn try_from(m: JobMsg) -> Result<Self, String> {
        let params = params_of(&m);
        let (from, through) = (m.start, m.end);
        let request = match m.kind {
            job_kind::QUERY => SubRequest::Query { query: m.query, params },
            job_kind::LEAF => SubRequest::Leaf {
                query: m.query,
                params,
                leaf: m.leaf,
                shard: Shard { index: m.shard_index, of: m.shard_of },
            },
            job_kind::LABELS => SubRequest::Labels { name: m.name, selector: m.query, from, through },
            job_kind::SERIES => SubRequest::Series { selectors: m.selectors, from, through },
            job_kind::INDEX_STATS => SubRequest::IndexStats { selector: m.query, from, through },
            job_kind::VOLUMES => SubRequest::Volumes { selector: m.query, from, through },
            other => return Err(format!("unknown job kind {other}")),
        };
        Ok(Job { tenants: m.tenants, request })
    }
}

impl From<&SubResponse> for ResultMsg {
    fn from(r: &SubResponse) -> Self {
        let mut m = ResultMsg::default();
        match r {
            SubResponse::Value(Value::Scalar { ts, value }) => {
                m.kind = result_kind::SCALAR;
                (m.scalar_ts, m.scalar_value) = (*ts, *value);
            }
            SubResponse::Value(Value::Vector(samples)) => {
                m.kind = result_kind::VECTOR;
                m.samples = samples
                    .iter()
                    .map(|s| SampleMsg { labels: pairs(s.labels.iter()), ts: s.ts, value: s.value })
                    .collect();
            }
            SubResponse::Value(Value::Matrix(series)) => {
                m.kind = result_kind::MATRIX;
                m.series = series
                    .iter()
                    .map(|s| SeriesMsg {
                        labels: pairs(s.labels.iter()),
                        ts: s.points.iter().map(|p| p.ts).collect(),
                        values: s.points.iter().map(|p| p.value).collect(),
                    })
                    .collect();
            }
            SubResponse::Value(Value::Streams(streams)) => {
                m.kind = result_kind::STREAMS;
                m.streams = streams
                    .iter()
                    .map(|s| StreamResultMsg {
                        labels: pairs(s.labels.iter()),
                        stream_labels: pairs(s.stream_labels.iter()),
                        entries: s
                            .entries
                            .iter()
                            .map(|e| LogEntryMsg {
                                ts: e.ts,
                                line: e.line.clone(),
                                structured_metadata: pairs(&e.structured_metadata),
                                parsed: pairs(&e.parsed),
                            })
                            .collect(),
                    })
                    .collect();
            }
            SubResponse::Rows(rows) => {
                m.kind = result_kind::ROWS;
                m.rows = rows
                    .parts()
                    .map(|(labels, values)| {
                        let mut present = vec![0u8; values.len().div_ceil(8)];
                        for (i, v) in values.iter().enumerate() {
                            if v.is_some() {
                                present[i / 8] |= 1 << (i % 8);
                            }
                        }
                        RowMsg {
                            labels: pairs(labels.iter()),
                            values: values.iter().map(|v| v.unwrap_or(0.0)).collect(),
                            present,
                        }
                    })
                    .collect();
            }
            SubResponse::Strings(s) => {
                m.kind = result_kind::STRINGS;
                m.strings = s.clone();
            }
            SubResponse::Series(sets) => {
                m.kind = result_kind::SERIES;
                m.label_sets = sets.iter().map(|l| LabelsMsg { labels: pairs(l.iter()) }).collect();
            }
            SubResponse::Stats(s) => {
                m.kind = result_kind::STATS;
                m.stats =
                    Some(IndexStatsMsg { streams: s.streams, chunks: s.chunks, entries: s.entries, bytes: s.bytes });
            }
            SubResponse::Volumes(vols) => {
                m.kind = result_kind::VOLUMES;
                m.volumes = vols
                    .iter()
                    .map(|(l, v)| VolumeMsg {
                        labels: pairs(l.iter()),
                        chunks: v.chunks,
                        entries: v.entries,
                        bytes: v.bytes,
                        point_ts: v.points.iter().map(|p| p.0).collect(),
                        point_bytes: v.points.iter().map(|p| p.1).collect(),
                    })
                    .collect();
            }
        }
        m
    }
}

impl TryFrom<ResultMsg> for SubResponse {
    type Error = String;

    fn try_from(m: ResultMsg) -> Result<Self, String> {
        Ok(match m.kind {
            result_kind::SCALAR => SubResponse::Value(Value::Scalar { ts: m.scalar_ts, value: m.scalar_value }),
            result_kind::VECTOR => SubResponse::Value(Value::Vector(
                m.samples
                    .into_iter()
                    .map(|s| Sample { labels: labels_of(s.labels), ts: s.ts, value: s.value })
                    .collect(),
            )),
            result_kind::MATRIX => SubResponse::Value(Value::Matrix(
                m.series
                    .into_iter()
                    .map(|s| {
                        if s.ts.len() != s.values.len() {
                            return Err("a series with unequal timestamps and values".to_string());
                        }
                        let points = s.ts.iter().zip(&s.values).map(|(&ts, &value)| Point { ts, value }).collect();
                        Ok(Series { labels: labels_of(s.labels), points })
                    })
                    .collect::<Result<_, _>>()?,
            )),
            result_kind::STREAMS => SubResponse::Value(Value::Streams(
                m.streams
                    .into_iter()
                    .map(|s| StreamResult {
                        labels: labels_of(s.labels),
                        stream_labels: labels_of(s.stream_labels),
                        entries: s
                            .entries
                            .into_iter()
                            .map(|e| LogEntry {
                                ts: e.ts,
                                line: e.line,
                                structured_metadata: label_vec(e.structured_metadata),
                                parsed: label_vec(e.parsed),
                            })
                            .collect(),
                    })
                    .collect(),
            )),
            result_kind::ROWS => {
                let mut parts = Vec::with_capacity(m.rows.len());
                for r in m.rows {
                    if r.present.len() != r.values.len().div_ceil(8) {
                        return Err("a row whose bitmap does not match its values".into());
                    }
                    let values = r
                        .values
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| (r.present[i / 8] & (1 << (i % 8)) != 0).then_some(v))
                        .collect();
                    parts.push((labels_of(r.labels), values));
                }
                SubResponse::Rows(LeafRows::from_parts(parts))
            }
            result_kind::STRINGS => SubResponse::Strings(m.strings),
            result_kind::SERIES => SubResponse::Series(m.label_sets.into_iter().map(|l| labels_of(l.labels)).collect()),
            result_kind::STATS => {
                let s = m.stats.unwrap_or_default();
                SubResponse::Stats(IndexStats {
                    streams: s.streams,
                    chunks: s.chunks,
                    entries: s.entries,
                    bytes: s.bytes,
                })
            }
            result_kind::VOLUMES => SubResponse::Volumes(
                m.volumes
                    .into_iter()
                    .map(|v| {
                        let points = v.point_ts.into_iter().zip(v.point_bytes).collect();
                        let vol = SeriesVolume { chunks: v.chunks, entries: v.entries, bytes: v.bytes, points };
                        (labels_of(v.labels), vol)
                    })
                    .collect(),
            ),
            other => return Err(format!("unknown result kind {other}")),
        })
    }
}

/// The answer message of a job's outcome.
pub fn answer(id: u64, outcome: &Outcome) -> QuerierToFrontend {
    match outcome {
        Ok(a) => QuerierToFrontend {
            id,
            result: Some((&a.response).into()),
            stats: Some((&a.stats).into()),
            ..Default::default()
        },
        Err(e) => QuerierToFrontend {
            id,
            error_code: e.kind.grpc_code() as i32,
            error: e.message.clone(),
            ..Default::default()
        },
    }
}

/// The outcome an answer message carries.
pub fn outcome(msg: QuerierToFrontend) -> Outcome {
    if msg.error_code != 0 {
        return Err(SubError::new(ErrorKind::from_grpc_code(tonic::Code::from(msg.error_code)), msg.error));
    }
    let result = msg.result.ok_or_else(|| SubError::new(ErrorKind::Internal, "a querier answered without a result"))?;
    let response = SubResponse::try_from(result)
        .map_err(|e| SubError::new(ErrorKind::Internal, format!("a querier's answer: {e}")))?;
    Ok(Answered { response, stats: msg.stats.map(ReadStats::from).unwrap_or_default() })
}

/// A response encoded for the results cache.
pub fn encode_response(r: &SubResponse) -> Bytes {
    Bytes::from(ResultMsg::from(r).encode_to_vec())
}

/// A response from the results cache; `None` for bytes that do not decode.
pub fn decode_response(bytes: &[u8]) -> Option<SubResponse> {
    ResultMsg::decode(bytes).ok().and_then(|m| SubResponse::try_from(m).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(s: &str) -> SharedLabels {
        Arc::new(Labels::parse(s).unwrap())
    }

    #[test]
    fn every_response_kind_survives_the_wire() {
        let cases = vec![
            SubResponse::Value(Value::Scalar { ts: 5, value: 1.5 }),
            SubResponse::Value(Value::Vector(vec![Sample { labels: labels("{a=\"1\"}"), ts: 3, value: f64::NAN }])),
            SubResponse::Value(Value::Matrix(vec![Series {
                labels: labels("{a=\"x\\\"y\"}"),
                points: vec![Point { ts: 1, value: 2.0 }, Point { ts: 2, value: -3.0 }],
            }])),
            SubResponse::Value(Value::Streams(vec![StreamResult {
                labels: labels("{a=\"1\", level=\"warn\"}"),
                stream_labels: labels("{a=\"1\"}"),
                entries: vec![LogEntry {
                    ts: 7,
                    line: Bytes::from_static(b"line \xff"),
                    structured_metadata: vec![Label::new("trace", "t1")],
                    parsed: vec![Label::new("level", "warn")],
                }],
            }])),
            SubResponse::Rows(LeafRows::from_parts(vec![(
                labels("{b=\"2\"}"),
                vec![Some(1.0), None, Some(0.0), None, None, None, None, None, Some(9.0)],
            )])),
            SubResponse::Strings(vec!["a".into(), "b".into()]),
            SubResponse::Series(vec![labels("{a=\"1\"}")]),
            SubResponse::Stats(IndexStats { streams: 1, chunks: 2, entries: 3, bytes: 4 }),
            SubResponse::Volumes(vec![(
                labels("{a=\"1\"}"),
                SeriesVolume { chunks: 1, entries: 2, bytes: 3, points: vec![(10, 3)] },
            )]),
        ];
        for c in cases {
            let back = decode_response(&encode_response(&c)).unwrap();
            // NaN != NaN: compare the encodings.
            assert_eq!(encode_response(&back), encode_response(&c), "{c:?}");
        }
    }

    #[test]
    fn jobs_survive_the_wire() {
        let params = QueryParams {
            start: 1,
            end: 2,
            step: 3,
            interval: 4,
            direction: Direction::Backward,
            limit: 5,
            instant: false,
        };
        let jobs = vec![
            SubRequest::Query { query: "{a=\"1\"}".into(), params },
            SubRequest::Leaf {
                query: "sum(rate({a=\"1\"}[1m]))".into(),
                params,
                leaf: 1,
                shard: Shard { index: 2, of: 4 },
            },
            SubRequest::Labels { name: Some("a".into()), selector: "{a=\"1\"}".into(), from: 1, through: 2 },
            SubRequest::Labels { name: None, selector: String::new(), from: 1, through: 2 },
            SubRequest::Series { selectors: vec!["{a=\"1\"}".into()], from: 1, through: 2 },
            SubRequest::IndexStats { selector: "{a=\"1\"}".into(), from: 1, through: 2 },
            SubRequest::Volumes { selector: "{a=\"1\"}".into(), from: 1, through: 2 },
        ];
        for request in jobs {
            let job = Job { tenants: vec!["a".into(), "b".into()], request };
            let msg = JobMsg::from(&job);
            let back = Job::try_from(JobMsg::decode(msg.encode_to_vec().as_slice()).unwrap()).unwrap();
            assert_eq!(back, job);
        }
    }

    #[test]
    fn an_answer_carries_what_the_querier_read() {
        let stats =
            ReadStats { chunks_ref: 3, chunks_downloaded: 2, bytes_downloaded: 900, lines: 40, ..Default::default() };
        let answered = Answered { response: SubResponse::Strings(vec!["a".into()]), stats };
        let msg = QuerierToFrontend::decode(answer(7, &Ok(answered.clone())).encode_to_vec().as_slice()).unwrap();
        assert_eq!(msg.id, 7);
        assert_eq!(outcome(msg), Ok(answered));
    }

    #[test]
    fn errors_keep_their_kind() {
        let e = SubError::new(ErrorKind::RateLimited, "slow down");
        let back = outcome(answer(3, &Err(e.clone()))).unwrap_err();
        assert_eq!(back, e);
    }
}
