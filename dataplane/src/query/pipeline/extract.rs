//! Sample extraction for range aggregations: a sample per line (1, or the line's length in
//! bytes) or the unwrapped label's value, with Loki's conversion errors and post-unwrap filters.

use crate::labels::SharedLabels;
use crate::logql::units::{parse_bytes_go, parse_go_duration};
use crate::logql::{Conversion, Grouping, LogRange, RangeOp};
use crate::query::EvalError;

use super::label_filter::{CompiledLabelFilter, parse_float};
use super::labels::Selection;
use super::parsers::Hints;
use super::{Pipeline, ResultLabels, StreamPipeline};

/// Loki's `__error__` value when an unwrapped value does not convert.
pub(crate) const SAMPLE_EXTRACTION_ERROR: &str = "SampleExtractionErr";

#[derive(Debug, Clone)]
struct Unwrap {
    label: String,
    conversion: Option<Conversion>,
    post_filters: Vec<CompiledLabelFilter>,
}

/// Turns entries into samples for a range aggregation: the log range's pipeline, then the value
/// (1 per line for `count_over_time`/`rate`/`absent_over_time`, the line's byte length for
/// `bytes_*`, the unwrapped label for unwrap ranges, with post-unwrap label filters).
///
/// Result labels follow Loki: without a grouping (or with `without`) the unwrapped label is
/// removed from the sample's labels; a line without the unwrapped label (or with an empty
/// value) yields no sample; a value that does not convert yields a sample of 0 with
/// `__error__="SampleExtractionErr"` and the conversion error in `__error_details__`.
#[derive(Debug, Clone)]
pub struct SampleExtractor {
    pipeline: Pipeline,
    op: RangeOp,
    unwrap: Option<Unwrap>,
    selection: Selection,
}

impl SampleExtractor {
    /// An extractor for an ungrouped range aggregation.
    pub fn new(range: &LogRange, op: RangeOp) -> Result<SampleExtractor, EvalError> {
        Self::with_grouping(range, op, None)
    }

    /// An extractor whose samples already carry only the labels of `grouping` (the range
    /// aggregation's own, or that of an enclosing vector aggregation the caller applies
    /// afterwards anyway), as Loki groups inside its extractors. With `by (...)` parsers only
    /// extract the labels the query reads; `by ()` leaves samples without labels (unless the
    /// line failed, then every label stays so the error surfaces).
    pub fn with_grouping(
        range: &LogRange,
        op: RangeOp,
        grouping: Option<&Grouping>,
    ) -> Result<SampleExtractor, EvalError> {
        let unwrap = match &range.unwrap {
            Some(u) => {
                let mut post_filters = Vec::with_capacity(u.post_filters.len());
                for f in &u.post_filters {
                    post_filters.push(
                        CompiledLabelFilter::new(f).map_err(|e| EvalError::Invalid(format!("stage '| {f}' : {e}")))?,
                    );
                }
                Some(Unwrap { label: u.label.clone(), conversion: u.conversion, post_filters })
            }
            None => None,
        };
        let unwrap_label = unwrap.as_ref().map(|u| u.label.clone());
        let selection = match grouping {
            None => match &unwrap_label {
                Some(l) => Selection::Without(vec![l.clone()]),
                None => Selection::All,
            },
            Some(g) if g.without => {
                let mut names = g.labels.clone();
                names.extend(unwrap_label.clone());
                Selection::Without(names)
            }
            Some(g) if g.labels.is_empty() => Selection::Nothing,
            Some(g) => {
                let mut names = g.labels.clone();
                names.sort();
                names.dedup();
                Selection::By(names)
            }
        };
        let plain = Pipeline::new(&range.selector.stages)?;
        let pipeline = match &selection {
            Selection::By(names) => {
                let mut required = names.clone();
                plain.required_labels(&mut required);
                push_unwrap_names(&unwrap, &mut required);
                Pipeline::compile(&range.selector.stages, Some(Hints::new(required, false)))?
            }
            Selection::Nothing => {
                let mut required = Vec::new();
                plain.required_labels(&mut required);
                push_unwrap_names(&unwrap, &mut required);
                Pipeline::compile(&range.selector.stages, Some(Hints::new(required, true)))?
            }
            _ => plain,
        };
        Ok(SampleExtractor { pipeline, op, unwrap, selection })
    }

    /// The pipeline (for [`Pipeline::candidates`]).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Per-stream state.
    pub fn for_stream(&self, labels: &SharedLabels) -> StreamSampleExtractor {
        StreamSampleExtractor {
            inner: self.pipeline.for_stream_with(labels, self.selection.clone()),
            op: self.op,
            unwrap: self.unwrap.clone(),
        }
    }
}

fn push_unwrap_names(unwrap: &Option<Unwrap>, out: &mut Vec<String>) {
    if let Some(u) = unwrap {
        out.push(u.label.clone());
        for f in &u.post_filters {
            f.names(out);
        }
    }
}

/// A sample extractor bound to one stream.
#[derive(Debug)]
pub struct StreamSampleExtractor {
    inner: StreamPipeline,
    op: RangeOp,
    unwrap: Option<Unwrap>,
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
        let rewritten = self.inner.run(ts, line, metadata)?;
        let value = match &self.unwrap {
            None => match self.op {
                RangeOp::BytesOverTime | RangeOp::BytesRate => {
                    (if rewritten { self.inner.line_buf.len() } else { line.len() }) as f64
                }
                _ => 1.0,
            },
            Some(u) => {
                let labels = &mut self.inner.labels;
                let raw = labels.get(&u.label).unwrap_or("");
                if raw.is_empty() {
                    return None;
                }
                let converted = match u.conversion {
                    None => parse_float(raw),
                    Some(Conversion::Bytes) => parse_bytes_go(raw).map(|b| b as f64),
                    Some(Conversion::Duration | Conversion::DurationSeconds) => {
                        parse_go_duration(raw).map(|d| d as f64 / 1e9)
                    }
                };
                let v = match converted {
                    Ok(v) => v,
                    Err(e) => {
                        labels.set_err(SAMPLE_EXTRACTION_ERROR);
                        labels.set_err_details(&e);
                        0.0
                    }
                };
                for f in &u.post_filters {
                    if !f.keep(labels) {
                        return None;
                    }
                }
                v
            }
        };
        let i = self.inner.cache.resolve(&self.inner.labels, &self.inner.selection);
        let this: &'a StreamSampleExtractor = self;
        Some((value, this.inner.cache.get(i)))
    }
}
