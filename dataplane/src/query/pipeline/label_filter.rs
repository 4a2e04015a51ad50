//! Label filters: string matchers, numeric, duration and bytes comparisons, `ip()`, and their
//! `and`/`or` combinations, with Loki's error handling.

use crate::logql::units::{parse_bytes_go, parse_go_duration};
use crate::logql::{CmpOp, IpPattern, LabelFilter, MatchOp, Matcher};

use super::labels::{ERROR_LABEL, LineLabels};
use super::line_filter::line_has_ip;

/// Loki's `__error__` value when a label filter cannot convert a value.
pub(crate) const LABEL_FILTER_ERROR: &str = "LabelFilterErr";

/// A compiled label filter.
#[derive(Debug, Clone)]
pub(crate) enum CompiledLabelFilter {
    /// Always passes (`name=~".*"` and the like).
    True,
    Str(Matcher),
    Ip {
        name: String,
        negated: bool,
        pattern: IpPattern,
    },
    Duration {
        name: String,
        op: CmpOp,
        value: i64,
    },
    Bytes {
        name: String,
        op: CmpOp,
        value: u64,
    },
    Number {
        name: String,
        op: CmpOp,
        value: f64,
    },
    And(Box<CompiledLabelFilter>, Box<CompiledLabelFilter>),
    Or(Box<CompiledLabelFilter>, Box<CompiledLabelFilter>),
}

impl CompiledLabelFilter {
    pub(crate) fn new(f: &LabelFilter) -> Result<Self, String> {
        Ok(match f {
            LabelFilter::Matcher(m) => {
                let always = matches!(m.op, MatchOp::Re) && (m.value == ".*" || m.value.is_empty());
                if always { CompiledLabelFilter::True } else { CompiledLabelFilter::Str(m.clone()) }
            }
            LabelFilter::Ip { name, negated, pattern } => CompiledLabelFilter::Ip {
                name: name.clone(),
                negated: *negated,
                pattern: IpPattern::parse(pattern).map_err(str::to_string)?,
            },
            LabelFilter::Duration { name, op, value } => {
                CompiledLabelFilter::Duration { name: name.clone(), op: *op, value: *value }
            }
            LabelFilter::Bytes { name, op, value } => {
                CompiledLabelFilter::Bytes { name: name.clone(), op: *op, value: *value }
            }
            LabelFilter::Number { name, op, value } => {
                CompiledLabelFilter::Number { name: name.clone(), op: *op, value: *value }
            }
            LabelFilter::And(a, b) => CompiledLabelFilter::And(Box::new(Self::new(a)?), Box::new(Self::new(b)?)),
            LabelFilter::Or(a, b) => CompiledLabelFilter::Or(Box::new(Self::new(a)?), Box::new(Self::new(b)?)),
        })
    }

    /// Applies the filter; a conversion failure sets `LabelFilterErr` (unless an error is
    /// already set) and keeps the line.
    pub(crate) fn keep(&self, labels: &mut LineLabels) -> bool {
        match self {
            CompiledLabelFilter::True => true,
            CompiledLabelFilter::Str(m) => {
                let v = if m.name == ERROR_LABEL { labels.err() } else { labels.get(&m.name).unwrap_or("") };
                m.matches(v)
            }
            CompiledLabelFilter::Ip { name, negated, pattern } => {
                if labels.has_err() {
                    // Only string matchers may drop a failed line.
                    return true;
                }
                match labels.get(name) {
                    Some(v) => line_has_ip(v.as_bytes(), pattern) != *negated,
                    None => false,
                }
            }
            CompiledLabelFilter::Duration { name, op, value } => {
                convert_compare(labels, name, |v| parse_go_duration(v).map(|d| op.compare(d, *value)))
            }
            CompiledLabelFilter::Bytes { name, op, value } => {
                convert_compare(labels, name, |v| parse_bytes_go(v).map(|b| op.compare(b, *value)))
            }
            CompiledLabelFilter::Number { name, op, value } => {
                convert_compare(labels, name, |v| parse_float(v).map(|f| op.compare(f, *value)))
            }
            CompiledLabelFilter::And(a, b) => {
                let l = a.keep(labels);
                let r = b.keep(labels);
                l && r
            }
            CompiledLabelFilter::Or(a, b) => a.keep(labels) || b.keep(labels),
        }
    }

    /// The label names the filter reads.
    pub(crate) fn names(&self, out: &mut Vec<String>) {
        match self {
            CompiledLabelFilter::True => {}
            CompiledLabelFilter::Str(m) => out.push(m.name.clone()),
            CompiledLabelFilter::Ip { name, .. }
            | CompiledLabelFilter::Duration { name, .. }
            | CompiledLabelFilter::Bytes { name, .. }
            | CompiledLabelFilter::Number { name, .. } => out.push(name.clone()),
            CompiledLabelFilter::And(a, b) | CompiledLabelFilter::Or(a, b) => {
                a.names(out);
                b.names(out);
            }
        }
    }
}

/// A missing label drops the line; a value that does not convert sets the error (the first
/// failing filter owns the details) and keeps the line.
fn convert_compare(labels: &mut LineLabels, name: &str, cmp: impl FnOnce(&str) -> Result<bool, String>) -> bool {
    let Some(v) = labels.get(name) else { return false };
    match cmp(v) {
        Ok(keep) => keep,
        Err(e) => {
            if !labels.has_err() {
                labels.set_err(LABEL_FILTER_ERROR);
                labels.set_err_details(&e);
            }
            true
        }
    }
}

/// Go's `strconv.ParseFloat(v, 64)` for label values, including `NaN`, `Inf` and `Infinity`,
/// with Go's error text.
pub(crate) fn parse_float(v: &str) -> Result<f64, String> {
    let body = v.strip_prefix(['+', '-']).unwrap_or(v);
    let neg = v.starts_with('-');
    if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        return Ok(if neg { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if v.eq_ignore_ascii_case("nan") {
        return Ok(f64::NAN);
    }
    crate::logql::units::parse_go_float(v).map_err(|e| e.go_message(v))
}
