//! Log pipelines: line filters, parsers, formatters and label filters applied to each line, and
//! sample extraction for range aggregations, with Loki's semantics (`log.Pipeline`,
//! `SampleExtractor`).
//!
//! A [`Pipeline`] is compiled once per query (regexes, templates, substring finders) and shared
//! across threads; [`Pipeline::for_stream`] binds it to one stream, with that stream's reusable
//! buffers and its cache of result label sets. Processing a line allocates nothing unless the
//! line produces a label set the stream has not seen just before (then its [`ResultLabels`] are
//! built, or found in the stream's cache) or a stage builds a new string (a template).
//!
//! [`SampleExtractor::with_grouping`] lets a metric query say which labels it keeps: samples
//! then carry only those, and parsers extract only the labels the query reads (Loki's parser
//! hints), which is what makes `sum by (level) (rate({...} | json [5m]))` cheap.
//!
//! Semantics worth knowing (all as in Loki):
//! - Stages run in query order; a line filter after `line_format` sees the new line.
//! - Parse errors never drop a line: they set `__error__` (`JSONParserErr`, `LogfmtParserErr`,
//!   `LabelFilterErr`, `TemplateFormatErr`, `SampleExtractionErr`) and `__error_details__`.
//!   Only string label filters (`| __error__=""`) and `drop` remove them.
//! - A parsed label whose name a stream label or structured metadata already holds is written
//!   as `<name>_extracted`; metadata clashing with a stream label too. The first value of a key
//!   wins when a line repeats it.
//! - Numeric, duration and bytes label filters drop a line without the label; `ip()` keeps a
//!   line that already failed.
//! - [`Pipeline::candidates`] finds the lines of a whole block that can pass the leading line
//!   filters with one substring search over the block's buffer.

mod extract;
mod format;
mod json;
mod label_filter;
mod labels;
mod line_filter;
mod logfmt;
mod parsers;
pub(crate) mod template;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_conformance;
#[cfg(test)]
mod tests_prop;
#[cfg(test)]
mod tests_template;

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use regex::bytes::CaptureLocations;

use crate::chunk::{BlockHandle, DecodedBlock};
use crate::labels::{Label, SharedLabels};
use crate::logql::{NamedMatcher, Stage};
use crate::query::EvalError;

pub use extract::{SampleExtractor, StreamSampleExtractor};

use format::{LabelFormatStage, LineFormatStage};
use json::{JsonExprStage, JsonScratch};
use label_filter::CompiledLabelFilter;
use labels::{LineLabels, ResultCache, Selection};
pub use line_filter::NeedlePlan;
use line_filter::{LineFilterStage, SearchPlan};
use logfmt::{Decoder, LogfmtStage};
use parsers::{Hints, PatternStage, RegexpStage};

/// The labels of a processed entry, split the way Loki's `categorize-labels` responses split
/// them, plus the full sorted set and its hash for grouping.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultLabels {
    /// Stream labels, structured metadata and parsed labels together, sorted; what log query
    /// results and metric series are keyed by.
    pub all: SharedLabels,
    /// Hash of `all` (equal to `all.fingerprint("")`), for grouping without comparing label
    /// sets.
    pub hash: u64,
    /// The stream's own labels (after `drop`/`keep`/`label_format` changes to them).
    pub stream: SharedLabels,
    /// Structured metadata of the entry that survived the pipeline.
    pub structured_metadata: Vec<Label>,
    /// Labels the parsers and `label_format` added (incl. `__error__`, `__error_details__`).
    pub parsed: Vec<Label>,
}

impl ResultLabels {
    /// The value of `__error__`, if the entry failed a stage.
    pub fn error(&self) -> Option<&str> {
        self.parsed.iter().find(|l| l.name == labels::ERROR_LABEL).map(|l| l.value.as_str())
    }
}

/// One compiled stage.
#[derive(Debug, Clone)]
enum CStage {
    LineFilter(LineFilterStage),
    Json,
    JsonExpr(JsonExprStage),
    Logfmt(LogfmtStage),
    Regexp(RegexpStage),
    Pattern(PatternStage),
    Unpack,
    LineFormat(LineFormatStage),
    LabelFormat(LabelFormatStage),
    Decolorize,
    Drop(Vec<NamedMatcher>),
    Keep(Vec<NamedMatcher>),
    LabelFilter(CompiledLabelFilter),
}

#[derive(Debug)]
struct Compiled {
    stages: Vec<CStage>,
    search: Option<SearchPlan>,
    /// Tokens of the leading line filters, to skip blocks by their needle index.
    needles: Option<NeedlePlan>,
    /// Set for metric queries whose result keeps only some labels.
    hints: Option<Hints>,
}

/// A compiled pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    inner: Arc<Compiled>,
}

fn invalid(stage: &Stage, e: String) -> EvalError {
    EvalError::Invalid(format!("stage '{stage}' : {e}"))
}

impl Pipeline {
    /// Compiles the stages (templates, matchers) once per query.
    pub fn new(stages: &[Stage]) -> Result<Pipeline, EvalError> {
        Self::compile(stages, None)
    }

    fn compile(stages: &[Stage], hints: Option<Hints>) -> Result<Pipeline, EvalError> {
        let mut out = Vec::with_capacity(stages.len());
        for s in stages {
            out.push(match s {
                Stage::LineFilter(f) => CStage::LineFilter(LineFilterStage::new(f).map_err(|e| invalid(s, e))?),
                Stage::Json(ex) if ex.is_empty() => CStage::Json,
                Stage::Json(ex) => CStage::JsonExpr(JsonExprStage::new(ex).map_err(|e| invalid(s, e))?),
                Stage::Logfmt(p) => CStage::Logfmt(LogfmtStage::new(p)),
                Stage::Regexp(r) => CStage::Regexp(RegexpStage::new(&r.regex).map_err(|e| invalid(s, e))?),
                Stage::Pattern(p) => CStage::Pattern(PatternStage::new(&p.pattern)),
                Stage::Unpack => CStage::Unpack,
                Stage::LineFormat(t) => CStage::LineFormat(LineFormatStage::new(t).map_err(|e| invalid(s, e))?),
                Stage::LabelFormat(f) => CStage::LabelFormat(LabelFormatStage::new(f).map_err(|e| invalid(s, e))?),
                Stage::Decolorize => CStage::Decolorize,
                Stage::Drop(items) => CStage::Drop(items.clone()),
                Stage::Keep(items) => CStage::Keep(items.clone()),
                Stage::LabelFilter(f) => CStage::LabelFilter(CompiledLabelFilter::new(f).map_err(|e| invalid(s, e))?),
            });
        }
        let leading: Vec<&LineFilterStage> = out
            .iter()
            .map_while(|s| match s {
                CStage::LineFilter(f) => Some(f),
                _ => None,
            })
            .collect();
        let search = line_filter::plan(&leading);
        let needles = line_filter::needle_plan(&leading);
        Ok(Pipeline { inner: Arc::new(Compiled { stages: out, search, needles, hints }) })
    }

    /// True when the pipeline has no stages: every line passes unchanged with its stream labels.
    pub fn is_noop(&self) -> bool {
        self.inner.stages.is_empty()
    }

    /// Indices of the entries of `block` that can pass the pipeline's leading line filters,
    /// found by searching the block's whole line buffer (memchr::memmem for substrings and for a
    /// literal every regex or pattern match must contain) instead of line by line; a match that
    /// spans two lines does not count. `None` when no leading positive filter has such a
    /// substring (then every entry is a candidate). Candidates still go through
    /// [`StreamPipeline::process`], which applies every filter exactly.
    pub fn candidates(&self, block: &DecodedBlock) -> Option<Vec<usize>> {
        let plan = self.inner.search.as_ref()?;
        Some(line_filter::candidates(plan, block))
    }

    /// Whether no entry of `block` can pass the pipeline's leading line filters, as told by the
    /// block's needle index without decompressing it (see [`crate::chunk::needle`]). `false`
    /// whenever in doubt: no usable filter token, no index (format-1 blocks, head snapshots), a
    /// possible token (a real one or a false positive). Skipping never drops a passing entry.
    pub fn skips_block(&self, block: &BlockHandle) -> bool {
        self.inner.needles.as_ref().is_some_and(|plan| plan.skips(block))
    }

    /// The tokens of the leading line filters that a block's needle index is checked for
    /// ([`skips_block`](Self::skips_block)), for a source that can rule out whole chunks before
    /// fetching them ([`LogSource::select_needles`](crate::query::LogSource::select_needles)).
    pub fn needles(&self) -> Option<&NeedlePlan> {
        self.inner.needles.as_ref()
    }

    /// Label names the stages read (label filters, templates, `label_format` sources).
    fn required_labels(&self, out: &mut Vec<String>) {
        for s in &self.inner.stages {
            match s {
                CStage::LabelFilter(f) => f.names(out),
                CStage::LineFormat(f) => f.fields(out),
                CStage::LabelFormat(f) => f.fields(out),
                _ => {}
            }
        }
    }

    /// Per-stream state: reusable buffers and the cache of result label sets. `labels` are the
    /// stream's labels, sorted by name (as streams store them).
    pub fn for_stream(&self, labels: &SharedLabels) -> StreamPipeline {
        self.for_stream_with(labels, Selection::All)
    }

    fn for_stream_with(&self, labels: &SharedLabels, selection: Selection) -> StreamPipeline {
        let locs = self
            .inner
            .stages
            .iter()
            .filter_map(|s| match s {
                CStage::Regexp(r) => Some(r.locations()),
                _ => None,
            })
            .collect();
        StreamPipeline {
            inner: self.inner.clone(),
            labels: LineLabels::new(labels.clone()),
            snapshot: LineLabels::new(labels.clone()),
            cache: ResultCache::default(),
            selection,
            line_buf: Vec::new(),
            spare: Vec::new(),
            text: String::new(),
            decoder: Decoder::default(),
            key_buf: String::new(),
            json: JsonScratch::default(),
            locs,
            caps: Vec::new(),
        }
    }
}

/// A pipeline bound to one stream.
#[derive(Debug)]
pub struct StreamPipeline {
    inner: Arc<Compiled>,
    labels: LineLabels,
    /// `label_format` templates read a copy taken before the stage changed anything.
    snapshot: LineLabels,
    cache: ResultCache,
    selection: Selection,
    /// The current line once a stage rewrote it.
    line_buf: Vec<u8>,
    /// Where the next rewrite is built.
    spare: Vec<u8>,
    text: String,
    decoder: Decoder,
    key_buf: String,
    json: JsonScratch,
    locs: Vec<CaptureLocations>,
    caps: Vec<(usize, Range<usize>)>,
}

/// A processed entry: the line (unchanged or rewritten by `line_format`) and its labels.
#[derive(Debug)]
pub struct Processed<'a> {
    /// The line after the pipeline (borrowed from the input or from the stream's buffer).
    pub line: Cow<'a, [u8]>,
    /// The entry's labels; lines with the same labels share one value.
    pub labels: &'a ResultLabels,
}

impl StreamPipeline {
    /// Runs every stage over one entry; `None` when a filter dropped it. `metadata` is the
    /// entry's structured metadata.
    pub fn process<'a>(&'a mut self, ts: i64, line: &'a [u8], metadata: &[(&str, &str)]) -> Option<Processed<'a>> {
        let rewritten = self.run(ts, line, metadata)?;
        let i = self.cache.resolve(&self.labels, &self.selection);
        let this: &'a StreamPipeline = self;
        let line = if rewritten { Cow::Borrowed(&this.line_buf[..]) } else { Cow::Borrowed(line) };
        Some(Processed { line, labels: this.cache.get(i) })
    }

    /// Runs the stages; `Some(true)` when the line was rewritten into `line_buf`.
    fn run(&mut self, ts: i64, line: &[u8], metadata: &[(&str, &str)]) -> Option<bool> {
        let StreamPipeline {
            inner, labels, snapshot, line_buf, spare, text, decoder, key_buf, json, locs, caps, ..
        } = self;
        labels.reset();
        for (n, v) in metadata {
            labels.add_metadata(n, v);
        }
        let hints = inner.hints.as_ref();
        let mut rewritten = false;
        let mut regexp_i = 0;
        for stage in &inner.stages {
            let cur: &[u8] = if rewritten { line_buf } else { line };
            let mut swap = false;
            match stage {
                CStage::LineFilter(f) => {
                    if !f.keep(cur) {
                        return None;
                    }
                }
                CStage::LabelFilter(f) => {
                    if !f.keep(labels) {
                        return None;
                    }
                }
                CStage::Json => json::parse_json(cur, labels, json, hints),
                CStage::JsonExpr(s) => s.process(cur, labels, json, hints),
                CStage::Logfmt(s) => s.process(cur, labels, decoder, key_buf, hints),
                CStage::Regexp(s) => {
                    if let Some(l) = locs.get_mut(regexp_i) {
                        s.process(cur, labels, l, hints);
                    }
                    regexp_i += 1;
                }
                CStage::Pattern(s) => s.process(cur, labels, caps, hints),
                CStage::Unpack => swap = json::unpack(cur, labels, json, hints, spare),
                CStage::LineFormat(f) => {
                    if f.process(ts, cur, labels, text) {
                        spare.clear();
                        spare.extend_from_slice(text.as_bytes());
                        swap = true;
                    }
                }
                CStage::LabelFormat(f) => f.process(ts, cur, labels, snapshot, text),
                CStage::Decolorize => swap = format::decolorize(cur, spare),
                CStage::Drop(items) => format::drop_labels(items, labels),
                CStage::Keep(items) => format::keep_labels(items, labels),
            }
            if swap {
                std::mem::swap(line_buf, spare);
                rewritten = true;
            }
        }
        Some(rewritten)
    }
}
