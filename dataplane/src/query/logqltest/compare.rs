//! Checking a query's outcome against an eval's expectation, the way Loki's runner does, and
//! rendering both sides for failure reports.
//!
//! - Series and streams compare as sets keyed by their label string, unless `expect ordered`
//!   (series by position). Empty label values are significant.
//! - Values compare with Loki's tolerance: equal within 1e-9 absolute or relative to the larger
//!   magnitude; NaN equals only NaN; infinities equal only themselves.
//! - An instant query's samples must carry the eval time; a range query's points must fall on
//!   its steps, `_` being a step without a point.
//! - Streams are compared the way Grafana asks for them (`categorize-labels`): keyed by the
//!   stream labels alone, each line's structured metadata and parsed labels compared as
//!   complete sets, lines in order.

use std::collections::BTreeMap;

use super::lex::{fmt_duration, fmt_value};
use super::script::{Eval, EvalKind, Expect, ExpectedEntry, FailMatch};
use super::{EvalFailure, go_quote_line};
use crate::entry::Direction;
use crate::labels::{Label, Labels};
use crate::query::Value;
use crate::query::logs::categorize;
use crate::query::value::{LogEntry, StreamResult};

/// The tolerance of Loki's runner.
const EPSILON: f64 = 1e-9;

/// Most lines of each side a failure report shows.
const MAX_REPORT_LINES: usize = 12;

/// Whether two sample values are equal for a test: within [`EPSILON`] absolutely or relative to
/// the larger magnitude; NaN equals NaN; an infinity equals only itself.
pub fn values_equal(want: f64, got: f64) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return want == got;
    }
    let diff = (want - got).abs();
    diff <= EPSILON || diff / want.abs().max(got.abs()) <= EPSILON
}

/// Checks an eval's outcome; `Err` holds why it does not match.
pub fn check(eval: &Eval, outcome: &Result<Value, EvalFailure>) -> Result<(), String> {
    let value = match (&eval.expect, outcome) {
        (Expect::Fail(m), Err(EvalFailure::Query(msg))) => {
            return match m {
                FailMatch::Any => Ok(()),
                FailMatch::Message(s) if msg.contains(s.as_str()) => Ok(()),
                FailMatch::Message(s) => Err(format!("error {msg:?} does not contain {s:?}")),
                FailMatch::Regex(re) if re.is_match(msg) => Ok(()),
                FailMatch::Regex(re) => Err(format!("error {msg:?} does not match /{}/", re.source())),
            };
        }
        (_, Err(EvalFailure::Harness(msg))) => return Err(format!("the harness failed: {msg}")),
        (Expect::Fail(_), Ok(v)) => {
            return Err(format!("expected the query to fail, it returned a {}", v.result_type()));
        }
        (_, Err(EvalFailure::Query(msg))) => return Err(format!("the query failed: {msg}")),
        (_, Ok(v)) => v,
    };
    match (&eval.expect, value) {
        (Expect::Fail(_), _) => Ok(()),
        (Expect::Empty, Value::Scalar { value, .. }) => {
            Err(format!("expected an empty result, got scalar {}", fmt_value(*value)))
        }
        (Expect::Empty, Value::Vector(v)) if !v.is_empty() => {
            Err(format!("expected an empty result, got {} series", v.len()))
        }
        (Expect::Empty, Value::Matrix(m)) if !m.is_empty() => {
            Err(format!("expected an empty result, got {} series", m.len()))
        }
        (Expect::Empty, Value::Streams(s)) if !s.is_empty() => {
            Err(format!("expected an empty result, got {} streams", s.len()))
        }
        (Expect::Empty, _) => Ok(()),
        (Expect::Scalar(want), Value::Scalar { value, .. }) => {
            if values_equal(*want, *value) {
                Ok(())
            } else {
                Err(format!("scalar: want {}, got {}", fmt_value(*want), fmt_value(*value)))
            }
        }
        (Expect::Series { ordered, series }, Value::Vector(v)) => {
            let EvalKind::Instant { at } = eval.kind else {
                return Err("expected a matrix (range query), got a vector".into());
            };
            let mut got = Vec::with_capacity(v.len());
            for s in v {
                let key = key(&s.labels);
                if s.ts != at {
                    return Err(format!(
                        "series {key} has timestamp {}, expected {}",
                        fmt_duration(s.ts),
                        fmt_duration(at)
                    ));
                }
                got.push((key, s.value));
            }
            let want: Vec<(String, f64)> =
                series.iter().map(|s| (s.labels.to_string(), s.points[0].unwrap_or(f64::NAN))).collect();
            if *ordered {
                if got.len() != want.len() {
                    return Err(format!("want {} series, got {}", want.len(), got.len()));
                }
                for (i, ((wk, wv), (gk, gv))) in want.iter().zip(&got).enumerate() {
                    if wk != gk {
                        return Err(format!("position {i}: want series {wk}, got {gk}"));
                    }
                    if !values_equal(*wv, *gv) {
                        return Err(format!(
                            "series {wk} (position {i}): want {}, got {}",
                            fmt_value(*wv),
                            fmt_value(*gv)
                        ));
                    }
                }
                return Ok(());
            }
            let got = unique(got)?;
            compare_sets(&want.into_iter().collect(), &got, |k, w, g| {
                if values_equal(*w, *g) {
                    Ok(())
                } else {
                    Err(format!("series {k}: want {}, got {}", fmt_value(*w), fmt_value(*g)))
                }
            })
        }
        (Expect::Series { series, .. }, Value::Matrix(m)) => {
            let EvalKind::Range { start, end, step } = eval.kind else {
                return Err("expected a vector (instant query), got a matrix".into());
            };
            let steps: Vec<i64> = (0..).map(|i| start + i * step).take_while(|&t| t <= end).collect();
            let mut got = Vec::with_capacity(m.len());
            for s in m {
                let key = key(&s.labels);
                let mut points: Vec<Option<f64>> = vec![None; steps.len()];
                for p in &s.points {
                    let slot = steps
                        .binary_search(&p.ts)
                        .map_err(|_| format!("series {key} has a point at {}, not a step", fmt_duration(p.ts)))?;
                    if points[slot].replace(p.value).is_some() {
                        return Err(format!("series {key} has two points at {}", fmt_duration(p.ts)));
                    }
                }
                got.push((key, points));
            }
            let got = unique(got)?;
            let want = series.iter().map(|s| (s.labels.to_string(), s.points.clone())).collect();
            compare_sets(&want, &got, |k, w, g| {
                for (i, (wp, gp)) in w.iter().zip(g).enumerate() {
                    let at = fmt_duration(steps[i]);
                    match (wp, gp) {
                        (None, None) => {}
                        (None, Some(v)) => {
                            return Err(format!("series {k} at {at}: want no point, got {}", fmt_value(*v)));
                        }
                        (Some(_), None) => return Err(format!("series {k} at {at}: missing point")),
                        (Some(w), Some(g)) if !values_equal(*w, *g) => {
                            return Err(format!("series {k} at {at}: want {}, got {}", fmt_value(*w), fmt_value(*g)));
                        }
                        _ => {}
                    }
                }
                Ok(())
            })
        }
        (Expect::Streams(streams), Value::Streams(result)) => {
            let got = categorized(result, eval.direction());
            let want = streams.iter().map(|s| (s.labels.to_string(), s.entries.clone())).collect();
            compare_sets(&want, &got, |k, w, g| {
                if w.len() != g.len() {
                    return Err(format!("stream {k}: want {} lines, got {}", w.len(), g.len()));
                }
                for (i, (we, ge)) in w.iter().zip(g).enumerate() {
                    if !entry_matches(we, ge) {
                        return Err(format!(
                            "stream {k} line {i}: want {}, got {}",
                            render_expected_entry(we),
                            render_entry(ge)
                        ));
                    }
                }
                Ok(())
            })
        }
        (want, got) => Err(format!("expected {}, got a {}", expected_kind(want), got.result_type())),
    }
}

fn expected_kind(e: &Expect) -> &'static str {
    match e {
        Expect::Fail(_) => "a failure",
        Expect::Empty => "an empty result",
        Expect::Scalar(_) => "a scalar",
        Expect::Series { .. } => "series",
        Expect::Streams(_) => "streams",
    }
}

/// The label string a result series is keyed by (sorted, as expectations are).
fn key(labels: &Labels) -> String {
    if labels.is_sorted() { labels.to_string() } else { labels.clone().sorted().to_string() }
}

fn unique<T>(pairs: Vec<(String, T)>) -> Result<BTreeMap<String, T>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in pairs {
        if out.contains_key(&k) {
            return Err(format!("the result holds series {k} twice"));
        }
        out.insert(k, v);
    }
    Ok(out)
}

/// Same keys on both sides, then `same` on each pair.
fn compare_sets<W, G>(
    want: &BTreeMap<String, W>,
    got: &BTreeMap<String, G>,
    same: impl Fn(&str, &W, &G) -> Result<(), String>,
) -> Result<(), String> {
    if let Some(k) = want.keys().find(|k| !got.contains_key(*k)) {
        return Err(format!("missing {k}"));
    }
    if let Some(k) = got.keys().find(|k| !want.contains_key(*k)) {
        return Err(format!("unexpected {k}"));
    }
    for (k, w) in want {
        if let Some(g) = got.get(k) {
            same(k, w, g)?;
        }
    }
    Ok(())
}

/// Result streams regrouped by stream labels, as a `categorize-labels` response has them.
fn categorized(result: &[StreamResult], direction: Direction) -> BTreeMap<String, Vec<LogEntry>> {
    categorize(result.to_vec(), direction).into_iter().map(|s| (key(&s.labels), s.entries)).collect()
}

fn sorted(labels: &[Label]) -> Vec<Label> {
    let mut v = labels.to_vec();
    v.sort();
    v
}

fn entry_matches(want: &ExpectedEntry, got: &LogEntry) -> bool {
    want.ts == got.ts
        && want.line.as_bytes() == got.line.as_ref()
        && want.metadata == sorted(&got.structured_metadata)
        && want.parsed == sorted(&got.parsed)
}

fn render_pairs(out: &mut String, name: &str, pairs: &[Label]) {
    if pairs.is_empty() {
        return;
    }
    out.push_str(&format!(" [{name}"));
    for l in pairs {
        out.push_str(&format!(" {}={}", l.name, go_quote_line(&l.value)));
    }
    out.push(']');
}

fn render_expected_entry(e: &ExpectedEntry) -> String {
    let mut s = format!("{} @ {}", go_quote_line(&e.line), fmt_duration(e.ts));
    render_pairs(&mut s, "metadata", &e.metadata);
    render_pairs(&mut s, "parsed", &e.parsed);
    s
}

fn render_entry(e: &LogEntry) -> String {
    let mut s = format!("{} @ {}", go_quote_line(&String::from_utf8_lossy(&e.line)), fmt_duration(e.ts));
    render_pairs(&mut s, "metadata", &sorted(&e.structured_metadata));
    render_pairs(&mut s, "parsed", &sorted(&e.parsed));
    s
}

/// The expectation in script syntax, one line per series or log line.
pub fn render_expected(eval: &Eval) -> Vec<String> {
    let lines: Vec<String> = match &eval.expect {
        Expect::Fail(FailMatch::Any) => vec!["expect fail".into()],
        Expect::Fail(FailMatch::Message(m)) => vec![format!("expect fail msg: {m}")],
        Expect::Fail(FailMatch::Regex(r)) => vec![format!("expect fail regex: {}", r.source())],
        Expect::Empty => vec!["expect empty".into()],
        Expect::Scalar(v) => vec![fmt_value(*v)],
        Expect::Series { ordered, series } => {
            let mut out: Vec<String> = if *ordered { vec!["expect ordered".into()] } else { Vec::new() };
            out.extend(series.iter().map(|s| format!("{} {}", s.labels, render_points(&s.points))));
            out
        }
        Expect::Streams(streams) => streams
            .iter()
            .flat_map(|s| s.entries.iter().map(move |e| format!("{} {}", s.labels, render_expected_entry(e))))
            .collect(),
    };
    truncate(lines)
}

/// An outcome in script syntax, one line per series or log line.
pub fn render_outcome(eval: &Eval, outcome: &Result<Value, EvalFailure>) -> Vec<String> {
    let value = match outcome {
        Err(e) => return vec![format!("error: {e}")],
        Ok(v) => v,
    };
    let lines: Vec<String> = match value {
        Value::Scalar { value, .. } => vec![fmt_value(*value)],
        Value::Vector(v) if v.is_empty() => vec!["(empty vector)".into()],
        Value::Vector(v) => v.iter().map(|s| format!("{} {}", key(&s.labels), fmt_value(s.value))).collect(),
        Value::Matrix(m) if m.is_empty() => vec!["(empty matrix)".into()],
        Value::Matrix(m) => m
            .iter()
            .map(|s| {
                let points: Vec<Option<f64>> = match eval.kind {
                    EvalKind::Range { start, end, step } => (0..)
                        .map(|i| start + i * step)
                        .take_while(|&t| t <= end)
                        .map(|t| s.points.iter().find(|p| p.ts == t).map(|p| p.value))
                        .collect(),
                    _ => s.points.iter().map(|p| Some(p.value)).collect(),
                };
                format!("{} {}", key(&s.labels), render_points(&points))
            })
            .collect(),
        Value::Streams(s) if s.is_empty() => vec!["(no streams)".into()],
        Value::Streams(s) => categorized(s, eval.direction())
            .iter()
            .flat_map(|(k, entries)| entries.iter().map(move |e| format!("{k} {}", render_entry(e))))
            .collect(),
    };
    truncate(lines)
}

fn render_points(points: &[Option<f64>]) -> String {
    points.iter().map(|p| p.map_or_else(|| "_".to_string(), fmt_value)).collect::<Vec<_>>().join(" ")
}

fn truncate(mut lines: Vec<String>) -> Vec<String> {
    if lines.len() > MAX_REPORT_LINES {
        let more = lines.len() - (MAX_REPORT_LINES - 1);
        lines.truncate(MAX_REPORT_LINES - 1);
        lines.push(format!("... ({more} more)"));
    }
    lines
}
