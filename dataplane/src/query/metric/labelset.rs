//! Label-set operations of metric evaluation: grouping, vector-matching signatures,
//! `label_replace`, the labels of `absent_over_time`, and Loki's pipeline-error message.

use std::collections::HashMap;
use std::sync::Arc;

use crate::labels::{Label, Labels, SharedLabels};
use crate::logql::{Grouping, LabelReplace, MatchOp, Matcher};
use crate::query::EvalError;

/// The label Loki's pipeline sets on an entry a stage failed on.
pub(crate) const ERROR_LABEL: &str = "__error__";

/// The labels of `labels` named in `names` (which need not be sorted).
pub(crate) fn keep(labels: &Labels, names: &[String]) -> Labels {
    Labels::from_vec(labels.iter().filter(|l| names.contains(&l.name)).cloned().collect())
}

/// The labels of `labels` not named in `names`.
pub(crate) fn drop(labels: &Labels, names: &[String]) -> Labels {
    Labels::from_vec(labels.iter().filter(|l| !names.contains(&l.name)).cloned().collect())
}

/// The labels a `by (...)`/`without (...)` grouping keeps of `labels`.
pub(crate) fn group(labels: &Labels, grouping: &Grouping) -> Labels {
    if grouping.without { drop(labels, &grouping.labels) } else { keep(labels, &grouping.labels) }
}

/// Sets `name` to `value` in a sorted label set (an empty value deletes the label, as
/// Prometheus' label builder does).
pub(crate) fn set(labels: &Labels, name: &str, value: &str) -> Labels {
    let mut v: Vec<Label> = labels.iter().filter(|l| l.name != name).cloned().collect();
    if !value.is_empty() {
        let at = v.partition_point(|l| l.name.as_str() < name);
        v.insert(at, Label::new(name, value));
    }
    Labels::from_vec(v)
}

/// Interns label sets: equal sets share one `Arc` and one id.
#[derive(Default)]
pub(crate) struct Interner {
    ids: HashMap<SharedLabels, usize>,
    sets: Vec<SharedLabels>,
}

impl Interner {
    /// The id of `labels`, adding it when new.
    pub(crate) fn intern(&mut self, labels: Labels) -> usize {
        if let Some(&id) = self.ids.get(&labels) {
            return id;
        }
        let shared = Arc::new(labels);
        let id = self.sets.len();
        self.sets.push(shared.clone());
        self.ids.insert(shared, id);
        id
    }

    /// The label set of an id.
    pub(crate) fn get(&self, id: usize) -> &SharedLabels {
        &self.sets[id]
    }

    /// Number of distinct sets.
    pub(crate) fn len(&self) -> usize {
        self.sets.len()
    }
}

/// `label_replace`: when the regex matches the source label's value (an absent label reads as
/// ""), the destination label is set to the expanded replacement, or deleted when that is
/// empty; otherwise the labels are unchanged.
pub(crate) fn label_replace(labels: &Labels, lr: &LabelReplace) -> Labels {
    let src = labels.get(&lr.src).unwrap_or("");
    let Some(caps) = lr.regex.regex().captures(src) else {
        return labels.clone();
    };
    let names: Vec<Option<&str>> = lr.regex.regex().capture_names().collect();
    let value = expand(&lr.replacement, &caps, &names);
    set(labels, &lr.dst, &value)
}

/// Go's `Regexp.Expand`: `$n`, `${n}`, `$name`, `${name}` are replaced by the capture (empty when
/// it did not participate or does not exist), `$$` is a `$`, and a malformed reference is kept
/// as text. A name is the longest run of letters, digits and `_` (`$1x` means `${1x}`).
pub(crate) fn expand(template: &str, caps: &regex::Captures<'_>, names: &[Option<&str>]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some((name, after)) = extract_name(rest) else {
            out.push('$');
            continue;
        };
        rest = after;
        let group = match group_number(name) {
            Some(n) => caps.get(n),
            None => names.iter().position(|n| *n == Some(name)).and_then(|i| caps.get(i)),
        };
        if let Some(m) = group {
            out.push_str(m.as_str());
        }
    }
    out.push_str(rest);
    out
}

/// The reference name at the start of `s` (after the `$`): `name` or `{name}`, and the rest.
fn extract_name(s: &str) -> Option<(&str, &str)> {
    let (body, brace) = match s.strip_prefix('{') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let end = body.char_indices().find(|&(_, c)| !(c.is_alphanumeric() || c == '_')).map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    if brace {
        let rest = body[end..].strip_prefix('}')?;
        return Some((name, rest));
    }
    Some((name, &body[end..]))
}

/// A reference's group number: decimal digits without a leading zero, below 10^8.
fn group_number(name: &str) -> Option<usize> {
    if !name.bytes().all(|b| b.is_ascii_digit()) || (name.len() > 1 && name.starts_with('0')) || name.len() > 8 {
        return None;
    }
    name.parse().ok()
}

/// The labels `absent_over_time` reports: those of the selector's `=` matchers, except names
/// matched more than once or also by another kind of matcher.
pub(crate) fn absent_labels(matchers: &[Matcher]) -> Labels {
    let mut out: Vec<Label> = Vec::new();
    let mut removed: Vec<&str> = Vec::new();
    for m in matchers {
        if m.op == MatchOp::Eq && !out.iter().any(|l| l.name == m.name) {
            out.push(Label::new(m.name.clone(), m.value.clone()));
        } else {
            removed.push(&m.name);
        }
    }
    out.retain(|l| !removed.contains(&l.name.as_str()));
    Labels::from_vec(out).sorted()
}

/// Loki's error for a series that still carries `__error__` when it reaches a metric
/// aggregation.
pub(crate) fn pipeline_error(labels: &Labels) -> EvalError {
    let kind = labels.get(ERROR_LABEL).unwrap_or("");
    EvalError::Invalid(format!(
        "pipeline error: '{kind}' for series: '{labels}'.\n\
         Use a label filter to intentionally skip this error. (e.g | __error__!=\"{kind}\").\n\
         To skip all potential errors you can match empty errors.(e.g __error__=\"\")\n\
         The label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )\n"
    ))
}
