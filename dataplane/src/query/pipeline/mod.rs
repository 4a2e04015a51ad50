//! Log pipelines: line filters, parsers, formatters and label filters applied to each line, and
//! sample extraction for range aggregations.
//!
//! INTERFACE STUB — helper A replaces the bodies; the signatures are the contract the engine
//! (logs, metric) builds on. Semantics follow Loki's `log.Pipeline` / `SampleExtractor`.

use std::sync::Arc;

use crate::chunk::DecodedBlock;
use crate::labels::{Label, Labels, SharedLabels};
use crate::logql::{LogRange, RangeOp, Stage};
use crate::query::EvalError;

/// The labels of a processed entry, split the way Loki's `categorize-labels` responses split
/// them, plus the full sorted set and its hash for grouping.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultLabels {
    /// Stream labels, structured metadata and parsed labels together, sorted; what log query
    /// results and metric series are keyed by.
    pub all: SharedLabels,
    /// Hash of `all`, for grouping without comparing label sets.
    pub hash: u64,
    /// The stream's own labels (after `drop`/`keep`/`label_format` changes to them).
    pub stream: SharedLabels,
    /// Structured metadata of the entry that survived the pipeline.
    pub structured_metadata: Vec<Label>,
    /// Labels the parsers and `label_format` added (incl. `__error__`, `__error_details__`).
    pub parsed: Vec<Label>,
}

/// A compiled pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    stages: Vec<Stage>,
}

impl Pipeline {
    /// Compiles the stages (templates, matchers) once per query.
    pub fn new(stages: &[Stage]) -> Result<Pipeline, EvalError> {
        Ok(Pipeline { stages: stages.to_vec() })
    }

    /// True when the pipeline has no stages: every line passes unchanged with its stream labels.
    pub fn is_noop(&self) -> bool {
        self.stages.is_empty()
    }

    /// Indices of the entries of `block` that can pass the pipeline's leading line filters,
    /// found by searching the block's whole line buffer (memchr::memmem for substrings, the
    /// regex's literal prefilter for regexes) instead of line by line. `None` when the pipeline
    /// does not start with a line filter that allows this (then every entry is a candidate).
    /// Candidates still go through [`StreamPipeline::process`].
    pub fn candidates(&self, _block: &DecodedBlock) -> Option<Vec<usize>> {
        None
    }

    /// Per-stream state: label caches keyed by the stream.
    pub fn for_stream(&self, labels: &SharedLabels) -> StreamPipeline {
        StreamPipeline { labels: labels.clone(), result: None }
    }
}

/// A pipeline bound to one stream.
#[derive(Debug)]
pub struct StreamPipeline {
    labels: SharedLabels,
    result: Option<ResultLabels>,
}

/// A processed entry: the line (unchanged or rewritten by `line_format`) and its labels.
#[derive(Debug)]
pub struct Processed<'a> {
    pub line: std::borrow::Cow<'a, [u8]>,
    pub labels: &'a ResultLabels,
}

impl StreamPipeline {
    /// Runs every stage over one entry; `None` when a filter dropped it. `metadata` is the
    /// entry's structured metadata.
    pub fn process<'a>(&'a mut self, _ts: i64, line: &'a [u8], _metadata: &[(&str, &str)]) -> Option<Processed<'a>> {
        let labels = self.labels.clone();
        let r = self.result.get_or_insert_with(|| ResultLabels {
            hash: labels.fingerprint(""),
            all: labels.clone(),
            stream: labels,
            structured_metadata: Vec::new(),
            parsed: Vec::new(),
        });
        Some(Processed { line: std::borrow::Cow::Borrowed(line), labels: r })
    }
}

/// Turns entries into samples for a range aggregation: the log range's pipeline, then the value
/// (1 per line for `count_over_time`/`rate`/`absent_over_time`, the line's byte length for
/// `bytes_*`, the unwrapped label for unwrap ranges, with post-unwrap label filters).
#[derive(Debug, Clone)]
pub struct SampleExtractor {
    pipeline: Pipeline,
    op: RangeOp,
}

impl SampleExtractor {
    pub fn new(range: &LogRange, op: RangeOp) -> Result<SampleExtractor, EvalError> {
        Ok(SampleExtractor { pipeline: Pipeline::new(&range.selector.stages)?, op })
    }

    /// The pipeline (for [`Pipeline::candidates`]).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn for_stream(&self, labels: &SharedLabels) -> StreamSampleExtractor {
        StreamSampleExtractor { inner: self.pipeline.for_stream(labels), op: self.op }
    }
}

/// A sample extractor bound to one stream.
#[derive(Debug)]
pub struct StreamSampleExtractor {
    inner: StreamPipeline,
    op: RangeOp,
}

impl StreamSampleExtractor {
    /// The sample value and labels of one entry; `None` when the pipeline dropped it. A value
    /// that cannot be converted yields a sample with `__error__` set, as Loki does.
    pub fn process<'a>(
        &'a mut self,
        ts: i64,
        line: &'a [u8],
        metadata: &[(&str, &str)],
    ) -> Option<(f64, &'a ResultLabels)> {
        let _ = self.op;
        let p = self.inner.process(ts, line, metadata)?;
        Some((p.line.len() as f64, p.labels))
    }
}

/// Keeps `Labels` and `Arc` in use for the stub's signatures.
#[allow(dead_code)]
fn _types(_: Labels, _: Arc<()>) {}
