//! The `.logqltest` script format: its model and parser.
//!
//! A script is a sequence of commands; `#` starts a comment outside `"…"` and `` `…` ``
//! quotes (quotes do not escape, as in Loki's runner). `load` and `eval` are followed by a block
//! of indented lines that ends at a blank line, a line that is not indented, or the end of the
//! file; comment lines inside a block are skipped.
//!
//! ```text
//! clear
//! flush
//! load
//!   {app="a"} "line {{.i}}" @ 10s [repeat every 10s for 6] [metadata trace="1"]
//! eval instant at 60s <query>
//! eval range from 0s to 60s step 30s <query>
//! eval select from 0s to 60s backward <log query>
//!   {labels} 1 2+1x3 _ NaN          vector (one point) / matrix (one per step) series
//!   3.5                             scalar
//!   {labels} "line" @ 20s [metadata k="v"] [parsed k="v"]     log line of a stream
//!   expect empty | expect ordered | expect fail [msg: <substring> | regex: <re>]
//!   skip values-comparison on "<stack>" | expect values-toleration <eps> on "<stack>"
//! ```
//!
//! Times are Go durations from t=0 (the Unix epoch). `flush` and `eval select` (log queries with
//! expected streams, categorized labels) come from newer versions of Loki's format than the
//! conformance scripts use; the per-stack relaxations are accepted and ignored (Norn is one
//! stack, held to the exact values).

use std::fmt;

use bytes::Bytes;

use super::lex::{Cursor, parse_duration, parse_value, strip_comment};
use crate::entry::{Direction, Entry};
use crate::labels::{Label, Labels};
use crate::logql::GoRegex;
use crate::query::QueryParams;

/// Entries a script's log query returns at most (what Loki's runner asks for).
pub const SCRIPT_QUERY_LIMIT: usize = 1000;

/// A malformed script: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ScriptError {
    /// The script's name as the runner shows it.
    pub file: String,
    /// 1-based line number (0 when the file could not be read at all).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A parsed script.
#[derive(Debug, Clone)]
pub struct Script {
    /// The name used in messages (usually the file name).
    pub name: String,
    /// The commands, in script order.
    pub commands: Vec<Command>,
}

impl Script {
    /// The evals of the script, in order.
    pub fn evals(&self) -> impl Iterator<Item = &Eval> {
        self.commands.iter().filter_map(|c| match c {
            Command::Eval(e) => Some(e),
            _ => None,
        })
    }
}

/// One command of a script.
#[derive(Debug, Clone)]
pub enum Command {
    /// Forget every loaded stream.
    Clear,
    /// Cut the chunks written so far: entries loaded later on the same stream go to a new chunk.
    Flush,
    /// Add entries to streams.
    Load(Vec<LoadLine>),
    /// Evaluate a query and check its result.
    Eval(Eval),
}

/// One line of a `load` block: entries of one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadLine {
    /// 1-based line number.
    pub line: usize,
    /// The stream's labels, sorted, empty values dropped (as the write path drops them).
    pub labels: Labels,
    /// The generated entries (`repeat` expanded, `{{.i}}` substituted).
    pub entries: Vec<Entry>,
}

/// An `eval` command.
#[derive(Debug, Clone)]
pub struct Eval {
    /// 1-based line number of the `eval` line.
    pub line: usize,
    /// The `eval` line without its comment, for reports.
    pub text: String,
    /// The LogQL query.
    pub query: String,
    /// When the query is evaluated.
    pub kind: EvalKind,
    /// What it must return.
    pub expect: Expect,
}

/// When an `eval` evaluates its query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EvalKind {
    /// `eval instant at <t>`.
    Instant { at: i64 },
    /// `eval range from <start> to <end> step <step>`.
    Range { start: i64, end: i64, step: i64 },
    /// `eval select from <start> to <end> <direction>`: a log query over `[start, end)`.
    Select { start: i64, end: i64, direction: Direction },
}

impl Eval {
    /// The query parameters Loki's runner uses for this eval: limit 1000, forward unless a
    /// `select` says otherwise, no interval.
    pub fn params(&self) -> QueryParams {
        let base = QueryParams {
            start: 0,
            end: 0,
            step: 0,
            interval: 0,
            direction: Direction::Forward,
            limit: SCRIPT_QUERY_LIMIT,
            instant: false,
        };
        match self.kind {
            EvalKind::Instant { at } => QueryParams { start: at, end: at, instant: true, ..base },
            EvalKind::Range { start, end, step } => QueryParams { start, end, step, ..base },
            EvalKind::Select { start, end, direction } => QueryParams { start, end, direction, ..base },
        }
    }

    /// The direction of log results (forward unless a `select` says otherwise).
    pub fn direction(&self) -> Direction {
        match self.kind {
            EvalKind::Select { direction, .. } => direction,
            _ => Direction::Forward,
        }
    }
}

/// What an `eval` expects.
#[derive(Debug, Clone)]
pub enum Expect {
    /// The query fails (to parse or to evaluate).
    Fail(FailMatch),
    /// No series, no streams.
    Empty,
    /// A scalar.
    Scalar(f64),
    /// Series: one point each for an instant query, one per step for a range query.
    Series { ordered: bool, series: Vec<ExpectedSeries> },
    /// Log streams, by stream labels.
    Streams(Vec<ExpectedStream>),
}

/// How an expected failure's message is checked.
#[derive(Debug, Clone)]
pub enum FailMatch {
    /// Any error.
    Any,
    /// The message contains this text.
    Message(String),
    /// The message matches this (unanchored, Go syntax) regex.
    Regex(GoRegex),
}

/// An expected series.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedSeries {
    /// Sorted; empty values are kept (they are significant in results).
    pub labels: Labels,
    /// One per step; `None` is a missing point (`_`).
    pub points: Vec<Option<f64>>,
}

/// An expected log stream: stream labels and its lines, in result order.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedStream {
    /// The stream labels alone (sorted).
    pub labels: Labels,
    /// The stream's lines, in the order the query returns them.
    pub entries: Vec<ExpectedEntry>,
}

/// An expected log line.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedEntry {
    /// Nanoseconds from t=0.
    pub ts: i64,
    /// The line, exactly.
    pub line: String,
    /// The complete structured metadata of the entry, sorted.
    pub metadata: Vec<Label>,
    /// The complete parsed labels of the entry, sorted.
    pub parsed: Vec<Label>,
}

impl fmt::Display for EvalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use super::lex::fmt_duration as d;
        match *self {
            EvalKind::Instant { at } => write!(f, "instant at {}", d(at)),
            EvalKind::Range { start, end, step } => write!(f, "range from {} to {} step {}", d(start), d(end), d(step)),
            EvalKind::Select { start, end, direction } => {
                let dir = if direction == Direction::Forward { "forward" } else { "backward" };
                write!(f, "select from {} to {} {dir}", d(start), d(end))
            }
        }
    }
}

/// Parses a script. `name` is used in error messages.
pub fn parse_script(name: &str, text: &str) -> Result<Script, ScriptError> {
    let lines: Vec<&str> = text.lines().collect();
    let err = |line: usize, message: String| ScriptError { file: name.to_string(), line, message };
    let mut commands = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let content = strip_comment(lines[i]).trim();
        if content.is_empty() {
            i += 1;
            continue;
        }
        let lineno = i + 1;
        let (word, rest) = content.split_once(char::is_whitespace).unwrap_or((content, ""));
        let rest = rest.trim();
        match word {
            "clear" | "flush" | "load" if !rest.is_empty() => {
                return Err(err(lineno, format!("{word} takes no arguments, got {rest:?}")));
            }
            "clear" => {
                commands.push(Command::Clear);
                i += 1;
            }
            "flush" => {
                commands.push(Command::Flush);
                i += 1;
            }
            "load" => {
                let (block, next) = block(&lines, i + 1);
                i = next;
                if block.is_empty() {
                    return Err(err(lineno, "load block has no data lines".into()));
                }
                let loads = block
                    .into_iter()
                    .map(|(n, c)| parse_load_line(n, c).map_err(|m| err(n, m)))
                    .collect::<Result<Vec<_>, _>>()?;
                commands.push(Command::Load(loads));
            }
            "eval" => {
                let (kind, query) = parse_eval_header(rest).map_err(|m| err(lineno, m))?;
                let (block, next) = block(&lines, i + 1);
                i = next;
                let expect = parse_expectations(kind, &block).map_err(|(n, m)| err(n.unwrap_or(lineno), m))?;
                commands.push(Command::Eval(Eval { line: lineno, text: content.to_string(), query, kind, expect }));
            }
            _ => {
                return Err(err(lineno, format!("unexpected {word:?}: expected clear, load, flush or eval")));
            }
        }
    }
    Ok(Script { name: name.to_string(), commands })
}

/// The content lines (number, text without comment) of the block starting at line index
/// `start`, and the index of the first line after it.
fn block<'a>(lines: &[&'a str], start: usize) -> (Vec<(usize, &'a str)>, usize) {
    let mut out = Vec::new();
    let mut i = start;
    while i < lines.len() {
        let raw = lines[i];
        if raw.trim().is_empty() {
            break;
        }
        if raw.trim_start().starts_with('#') {
            i += 1;
            continue;
        }
        if !raw.starts_with([' ', '\t']) {
            break;
        }
        let content = strip_comment(raw).trim();
        if !content.is_empty() {
            out.push((i + 1, content));
        }
        i += 1;
    }
    (out, i)
}

fn parse_eval_header(rest: &str) -> Result<(EvalKind, String), String> {
    let mut c = Cursor::new(rest);
    let mode = c.word();
    let time = |c: &mut Cursor<'_>, what: &str| -> Result<i64, String> {
        let w = c.word();
        if w.is_empty() {
            return Err(format!("missing {what}"));
        }
        parse_duration(w).map_err(|e| format!("invalid {what} {w:?}: {e}"))
    };
    let kind = match mode {
        "instant" => {
            c.keyword("at")?;
            EvalKind::Instant { at: time(&mut c, "time")? }
        }
        "range" => {
            c.keyword("from")?;
            let start = time(&mut c, "range start")?;
            c.keyword("to")?;
            let end = time(&mut c, "range end")?;
            c.keyword("step")?;
            let step = time(&mut c, "range step")?;
            if step <= 0 {
                return Err(format!("range step must be positive, got {}", super::lex::fmt_duration(step)));
            }
            if end < start {
                return Err("range end is before its start".into());
            }
            EvalKind::Range { start, end, step }
        }
        "select" => {
            c.keyword("from")?;
            let start = time(&mut c, "select start")?;
            c.keyword("to")?;
            let end = time(&mut c, "select end")?;
            let direction = match c.word() {
                "forward" => Direction::Forward,
                "backward" => Direction::Backward,
                other => return Err(format!("expected forward or backward after the select window, got {other:?}")),
            };
            if end < start {
                return Err("select end is before its start".into());
            }
            EvalKind::Select { start, end, direction }
        }
        other => return Err(format!("expected instant, range or select after eval, got {other:?}")),
    };
    let query = c.rest().trim();
    if query.is_empty() {
        return Err("eval has no query".into());
    }
    Ok((kind, query.to_string()))
}

/// Parses a `load` line into its stream and entries.
fn parse_load_line(line: usize, content: &str) -> Result<LoadLine, String> {
    let mut c = Cursor::new(content);
    let labels = c.labels()?;
    // The write path drops labels with an empty value (Loki's runner parses them that way too).
    let labels = Labels::from_vec(labels.into_vec().into_iter().filter(|l| !l.value.is_empty()).collect()).sorted();
    if let Some(dup) = labels.first_duplicate() {
        return Err(format!("label {dup} appears twice"));
    }
    let text = c.quoted()?;
    c.skip_ws();
    if !c.eat('@') {
        return Err("missing '@ <time>' after the log line".into());
    }
    let w = c.word();
    let start = parse_duration(w).map_err(|e| format!("invalid time {w:?}: {e}"))?;
    let (mut repeat, mut metadata) = (None, None);
    while let Some(clause) = c.clause()? {
        match clause.name {
            "repeat" if repeat.is_none() && metadata.is_none() => repeat = Some(parse_repeat(clause.body)?),
            "metadata" if metadata.is_none() => metadata = Some(parse_pairs(clause.body, "metadata")?),
            other => return Err(format!("unexpected [{other} ...] clause: expected [repeat ...] then [metadata ...]")),
        }
    }
    let (step, count) = repeat.unwrap_or((0, 1));
    let metadata = metadata.unwrap_or_default();
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let ts = (i as i64)
            .checked_mul(step)
            .and_then(|d| start.checked_add(d))
            .ok_or_else(|| "repeated timestamps overflow".to_string())?;
        let line = if text.contains("{{.i}}") { text.replace("{{.i}}", &i.to_string()) } else { text.to_string() };
        entries.push(Entry { ts, line: Bytes::from(line), metadata: metadata.clone() });
    }
    Ok(LoadLine { line, labels, entries })
}

/// `every <duration> for <count>`.
fn parse_repeat(body: &str) -> Result<(i64, usize), String> {
    let mut c = Cursor::new(body);
    c.keyword("every")?;
    let w = c.word();
    let step = parse_duration(w).map_err(|e| format!("invalid repeat step {w:?}: {e}"))?;
    c.keyword("for")?;
    let n = c.word();
    let count: usize = n.parse().map_err(|_| format!("invalid repeat count {n:?}"))?;
    if count < 1 {
        return Err(format!("repeat count must be at least 1, got {count}"));
    }
    if !c.rest().trim().is_empty() {
        return Err(format!("unexpected {:?} in [repeat ...]", c.rest().trim()));
    }
    Ok((step, count))
}

/// `k="v" "key with space"="v" ...`: at least one pair, values in double quotes (not unescaped).
fn parse_pairs(body: &str, what: &str) -> Result<Vec<Label>, String> {
    let mut c = Cursor::new(body);
    let mut out: Vec<Label> = Vec::new();
    loop {
        c.skip_ws();
        if c.at_end() {
            break;
        }
        let name = if c.peek() == Some('"') { c.quoted()?.to_string() } else { c.bare_key().to_string() };
        if name.is_empty() {
            return Err(format!("invalid [{what} ...]: expected key=\"value\" pairs"));
        }
        if !c.eat('=') || c.peek() != Some('"') {
            return Err(format!("invalid [{what} ...]: {name} needs a double-quoted value"));
        }
        let value = c.quoted()?.to_string();
        if out.iter().any(|l| l.name == name) {
            return Err(format!("{name} appears twice in [{what} ...]"));
        }
        out.push(Label { name, value });
    }
    if out.is_empty() {
        return Err(format!("empty [{what} ...] clause"));
    }
    out.sort();
    Ok(out)
}

/// An expectation block, validated against the eval's kind. Errors carry the line they are
/// about (`None` for the eval line).
fn parse_expectations(kind: EvalKind, block: &[(usize, &str)]) -> Result<Expect, (Option<usize>, String)> {
    let mut fail: Option<FailMatch> = None;
    let mut empty = false;
    let mut ordered = false;
    let mut scalar: Option<f64> = None;
    let mut series: Vec<ExpectedSeries> = Vec::new();
    let mut streams: Vec<ExpectedStream> = Vec::new();
    for &(n, content) in block {
        let at = |m: String| (Some(n), m);
        if let Some(body) = content.strip_prefix("expect fail") {
            if fail.is_some() {
                return Err(at("more than one `expect fail`".into()));
            }
            let body = body.trim();
            fail = Some(if body.is_empty() {
                FailMatch::Any
            } else if let Some(msg) = body.strip_prefix("msg:") {
                let msg = msg.trim();
                if msg.is_empty() {
                    return Err(at("`expect fail msg:` needs a message".into()));
                }
                FailMatch::Message(msg.to_string())
            } else if let Some(re) = body.strip_prefix("regex:") {
                let re = re.trim();
                if re.is_empty() {
                    return Err(at("`expect fail regex:` needs a pattern".into()));
                }
                FailMatch::Regex(GoRegex::new(re).map_err(|e| at(format!("invalid regex {re:?}: {e}")))?)
            } else {
                return Err(at(format!("unknown `expect fail` qualifier {body:?} (use msg: or regex:)")));
            });
        } else if content == "expect empty" {
            empty = true;
        } else if content == "expect ordered" {
            ordered = true;
        } else if let Some(body) = content.strip_prefix("expect values-toleration ") {
            parse_toleration(body).map_err(at)?;
        } else if content.starts_with("expect ") {
            return Err(at(format!("unknown expectation {content:?}")));
        } else if let Some(body) = content.strip_prefix("skip ") {
            parse_skip(body).map_err(at)?;
        } else if content.starts_with('{') {
            let mut c = Cursor::new(content);
            let labels = c.labels().map_err(at)?.sorted();
            if let Some(dup) = labels.first_duplicate() {
                return Err(at(format!("label {dup} appears twice")));
            }
            c.skip_ws();
            if matches!(c.peek(), Some('"' | '`')) {
                let entry = parse_expected_entry(&mut c).map_err(at)?;
                match streams.iter_mut().find(|s| s.labels == labels) {
                    Some(s) => s.entries.push(entry),
                    None => streams.push(ExpectedStream { labels, entries: vec![entry] }),
                }
            } else {
                let points = parse_points(c.rest()).map_err(at)?;
                check_points(kind, &points).map_err(at)?;
                if series.iter().any(|s| s.labels == labels) {
                    return Err(at(format!("series {labels} is expected twice")));
                }
                series.push(ExpectedSeries { labels, points });
            }
        } else {
            if scalar.is_some() {
                return Err(at("more than one scalar value".into()));
            }
            scalar = Some(parse_value(content).map_err(|e| at(format!("invalid scalar {content:?}: {e}")))?);
        }
    }
    let kinds = [fail.is_some(), empty, scalar.is_some(), !series.is_empty(), !streams.is_empty()];
    match kinds.iter().filter(|&&k| k).count() {
        0 => {
            return Err((
                None,
                "eval has no expectation: give series, streams, a scalar, `expect empty` or `expect fail`".into(),
            ));
        }
        1 => {}
        _ => return Err((
            None,
            "conflicting expectations: give exactly one of series, streams, a scalar, `expect empty` or `expect fail`"
                .into(),
        )),
    }
    if ordered && (series.is_empty() || !matches!(kind, EvalKind::Instant { .. })) {
        return Err((None, "`expect ordered` needs the series of an instant query".into()));
    }
    Ok(if let Some(f) = fail {
        Expect::Fail(f)
    } else if empty {
        Expect::Empty
    } else if let Some(v) = scalar {
        Expect::Scalar(v)
    } else if !series.is_empty() {
        Expect::Series { ordered, series }
    } else {
        Expect::Streams(streams)
    })
}

/// The number of points a series line must have: one for an instant query, one per step.
fn check_points(kind: EvalKind, points: &[Option<f64>]) -> Result<(), String> {
    match kind {
        EvalKind::Instant { .. } => {
            if points.len() != 1 || points[0].is_none() {
                return Err(format!("an instant query's series has exactly one value, got {}", points.len()));
            }
        }
        EvalKind::Range { start, end, step } => {
            let steps = ((end - start) / step + 1) as usize;
            if points.len() != steps {
                return Err(format!("{} points given, the range has {steps} steps", points.len()));
            }
        }
        EvalKind::Select { .. } => return Err("a select query returns streams, not series".into()),
    }
    Ok(())
}

/// Sample tokens: numbers, `NaN`, `Inf`, `_`, and `a+bxN` / `a-bxN` / `axN` (N+1 points).
pub(crate) fn parse_points(s: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        if tok == "_" {
            out.push(None);
            continue;
        }
        let Some(x) = tok.find('x') else {
            out.push(Some(parse_value(tok).map_err(|e| format!("invalid value {tok:?}: {e}"))?));
            continue;
        };
        let (head, count) = (&tok[..x], &tok[x + 1..]);
        let n: usize = count.parse().map_err(|_| format!("invalid repeat count in {tok:?}"))?;
        let (base, step) = match (head.rfind('+'), head.rfind('-')) {
            (Some(p), _) if p > 0 => (&head[..p], &head[p + 1..]),
            (_, Some(m)) if m > 0 => (&head[..m], &head[m..]),
            _ => (head, "0"),
        };
        let base = parse_value(base).map_err(|e| format!("invalid base in {tok:?}: {e}"))?;
        let step = parse_value(step).map_err(|e| format!("invalid step in {tok:?}: {e}"))?;
        out.extend((0..=n).map(|i| Some(base + i as f64 * step)));
    }
    if out.is_empty() {
        return Err("series line has no values".into());
    }
    Ok(out)
}

/// `"line" @ <time> [metadata ...] [parsed ...]` after the labels of an expected stream line.
fn parse_expected_entry(c: &mut Cursor<'_>) -> Result<ExpectedEntry, String> {
    let line = c.quoted()?.to_string();
    c.skip_ws();
    if !c.eat('@') {
        return Err("missing '@ <time>' after the log line".into());
    }
    let w = c.word();
    let ts = parse_duration(w).map_err(|e| format!("invalid time {w:?}: {e}"))?;
    let (mut metadata, mut parsed) = (None, None);
    while let Some(clause) = c.clause()? {
        match clause.name {
            "metadata" if metadata.is_none() && parsed.is_none() => {
                metadata = Some(parse_pairs(clause.body, "metadata")?);
            }
            "parsed" if parsed.is_none() => parsed = Some(parse_pairs(clause.body, "parsed")?),
            other => return Err(format!("unexpected [{other} ...] clause: expected [metadata ...] then [parsed ...]")),
        }
    }
    Ok(ExpectedEntry { ts, line, metadata: metadata.unwrap_or_default(), parsed: parsed.unwrap_or_default() })
}

/// `values-comparison on "<stack>"`: a relaxation for one of Loki's stacks, checked and ignored.
fn parse_skip(body: &str) -> Result<(), String> {
    let mut c = Cursor::new(body);
    let what = c.word();
    if what != "values-comparison" {
        return Err(format!("unknown skip target {what:?} (only values-comparison)"));
    }
    stack_name(&mut c)
}

/// `<epsilon> on "<stack>"`: a relaxation for one of Loki's stacks, checked and ignored.
fn parse_toleration(body: &str) -> Result<(), String> {
    let mut c = Cursor::new(body);
    let w = c.word();
    match parse_value(w) {
        Ok(eps) if eps.is_finite() && eps > 0.0 => stack_name(&mut c),
        _ => Err(format!("invalid tolerance {w:?}: a positive number")),
    }
}

fn stack_name(c: &mut Cursor<'_>) -> Result<(), String> {
    c.keyword("on")?;
    c.skip_ws();
    if c.peek() != Some('"') {
        return Err("expected a double-quoted stack name".into());
    }
    c.quoted()?;
    if !c.rest().trim().is_empty() {
        return Err(format!("unexpected {:?} after the stack name", c.rest().trim()));
    }
    Ok(())
}
