//! Shared parser helpers (label name sanitizing, value cleaning, parser hints) and the `regexp`
//! and `pattern` parser stages.

use std::ops::Range;

use memchr::memmem;
use regex::bytes::{CaptureLocations, Regex};

use crate::logql::{Pattern, PatternNode};

use super::labels::{DUPLICATE_SUFFIX, LineLabels};

/// Loki's `sanitizeLabelKey(key, true)`: trims spaces, prefixes a leading digit with `_` and
/// replaces every character that is not `[a-zA-Z0-9_]` with `_`. Returns `key` itself when it
/// is already clean, else the cleaned copy in `buf`.
pub(crate) fn sanitize_key<'a>(key: &'a [u8], buf: &'a mut String) -> &'a str {
    let clean =
        key.first().is_some_and(|c| !c.is_ascii_digit()) && key.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if clean && let Ok(s) = std::str::from_utf8(key) {
        return s;
    }
    buf.clear();
    let trimmed = trim_space(key);
    if trimmed.first().is_some_and(u8::is_ascii_digit) {
        buf.push('_');
    }
    append_mapped(buf, trimmed);
    buf
}

/// Appends `key` to a JSON prefix the way Loki builds nested names: trimmed, a leading digit
/// prefixed with `_` only at the start of the whole name, other characters mapped to `_`.
pub(crate) fn append_sanitized(to: &mut String, key: &[u8]) {
    let key = trim_space(key);
    if to.is_empty() && key.first().is_some_and(u8::is_ascii_digit) {
        to.push('_');
    }
    append_mapped(to, key);
}

fn append_mapped(out: &mut String, key: &[u8]) {
    for chunk in key.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.push(if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' });
        }
        for _ in chunk.invalid() {
            out.push('_');
        }
    }
}

/// Go's `bytes.TrimSpace`: trims Unicode white space (ASCII only when the bytes are not valid
/// UTF-8 at the edges).
fn trim_space(b: &[u8]) -> &[u8] {
    match std::str::from_utf8(b) {
        Ok(s) => s.trim().as_bytes(),
        Err(_) => b.trim_ascii(),
    }
}

/// Appends a parsed value, replacing each invalid UTF-8 byte and each U+FFFD with a space (Loki
/// replaces the rune error, which Prometheus rejects, with a space).
pub(crate) fn push_label_value(out: &mut String, bytes: &[u8]) {
    if let Ok(s) = std::str::from_utf8(bytes)
        && !s.contains('\u{fffd}')
    {
        out.push_str(s);
        return;
    }
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.push(if c == '\u{fffd}' { ' ' } else { c });
        }
        for _ in chunk.invalid() {
            out.push(' ');
        }
    }
}

/// Appends bytes as text, invalid UTF-8 replaced with U+FFFD.
pub(crate) fn push_lossy(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

/// Parser hints: the labels a metric query reads, so parsers skip the others (Loki's
/// `ParserHint`). Only used when the result is grouped, since otherwise every label shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hints {
    /// Names a parser may extract: each required label, and its name without `_extracted`.
    names: Vec<String>,
    /// The required labels, to stop parsing once a line gave them all.
    required: Vec<String>,
    /// No label is needed: parsers do nothing.
    no_labels: bool,
}

impl Hints {
    /// Hints for `required` labels; `no_labels` when the result keeps no label at all.
    pub(crate) fn new(required: Vec<String>, no_labels: bool) -> Self {
        let mut required = required;
        required.sort();
        required.dedup();
        let mut names = Vec::with_capacity(required.len() * 2);
        for r in &required {
            names.push(r.clone());
            if let Some(t) = r.strip_suffix(DUPLICATE_SUFFIX) {
                names.push(t.to_string());
            }
        }
        Self { no_labels: no_labels && required.is_empty(), names, required }
    }

    /// Whether parsers may skip the line entirely.
    pub(crate) fn no_labels(&self) -> bool {
        self.no_labels
    }

    /// Whether a label named `name` (+ `_extracted` when `suffix`) is needed.
    pub(crate) fn should_extract_suffixed(&self, name: &str, suffix: bool) -> bool {
        self.names.iter().any(|n| {
            if suffix {
                n.len() == name.len() + DUPLICATE_SUFFIX.len() && n.starts_with(name) && n.ends_with(DUPLICATE_SUFFIX)
            } else {
                n == name
            }
        })
    }

    /// Whether `name` or `name_extracted` is needed: a cheap test before the name's clashes are
    /// known.
    #[inline]
    pub(crate) fn may_extract(&self, name: &str) -> bool {
        self.names
            .iter()
            .any(|n| n.starts_with(name) && (n.len() == name.len() || &n[name.len()..] == DUPLICATE_SUFFIX))
    }

    /// Whether any needed label starts with `prefix` (to skip nested JSON objects).
    pub(crate) fn should_extract_prefix(&self, prefix: &str) -> bool {
        self.names.iter().any(|n| n.starts_with(prefix))
    }

    /// Records that `name` (+ suffix) was extracted; true when every required label is now
    /// known (extracted, or held by the stream or metadata, which parsers never replace).
    pub(crate) fn record(&self, labels: &mut LineLabels, name: &str, suffix: bool) -> bool {
        if self.required.len() > 64 {
            return false;
        }
        let mut mask = labels.hint_mask;
        for (i, r) in self.required.iter().enumerate() {
            if mask & (1 << i) != 0 {
                continue;
            }
            let hit = if suffix {
                r.len() == name.len() + DUPLICATE_SUFFIX.len() && r.starts_with(name) && r.ends_with(DUPLICATE_SUFFIX)
            } else {
                r == name
            };
            if hit || labels.parsed_conflicts(r) {
                mask |= 1 << i;
            }
        }
        labels.hint_mask = mask;
        let full = if self.required.len() == 64 { u64::MAX } else { (1u64 << self.required.len()) - 1 };
        mask == full
    }
}

/// A compiled `| regexp "..."` stage.
#[derive(Debug, Clone)]
pub(crate) struct RegexpStage {
    re: Regex,
    /// Capture group index and label name of every named group.
    groups: Vec<(usize, String)>,
}

impl RegexpStage {
    pub(crate) fn new(re: &crate::logql::GoRegex) -> Result<Self, String> {
        let re = Regex::new(re.regex().as_str()).map_err(|e| e.to_string())?;
        let mut buf = String::new();
        let groups = re
            .capture_names()
            .enumerate()
            .filter_map(|(i, n)| n.map(|n| (i, sanitize_key(n.as_bytes(), &mut buf).to_string())))
            .filter(|(_, n)| !n.is_empty())
            .collect();
        Ok(Self { re, groups })
    }

    pub(crate) fn locations(&self) -> CaptureLocations {
        self.re.capture_locations()
    }

    pub(crate) fn process(
        &self,
        line: &[u8],
        labels: &mut LineLabels,
        locs: &mut CaptureLocations,
        hints: Option<&Hints>,
    ) {
        if self.re.captures_read(locs, line).is_none() {
            return;
        }
        for (i, name) in &self.groups {
            let suffix = labels.parsed_conflicts(name);
            if hints.is_some_and(|h| !h.should_extract_suffixed(name, suffix)) {
                continue;
            }
            let value = locs.get(*i).map_or(&[][..], |(s, e)| &line[s..e]);
            labels.set_extracted(name, suffix, |out| push_lossy(out, value));
        }
    }
}

/// One element of a compiled pattern.
#[derive(Debug, Clone)]
enum PNode {
    Literal(Box<memmem::Finder<'static>>),
    /// A capture; `None` for `<_>`.
    Capture(Option<String>),
}

/// Loki's pattern matcher, for the `pattern` parser and the `|>`/`!>` line filters.
#[derive(Debug, Clone)]
pub(crate) struct PatternMatcher {
    nodes: Vec<PNode>,
}

impl PatternMatcher {
    pub(crate) fn new(p: &Pattern) -> Self {
        let nodes = p
            .nodes
            .iter()
            .map(|n| match n {
                PatternNode::Literal(l) => PNode::Literal(Box::new(memmem::Finder::new(l.as_bytes()).into_owned())),
                PatternNode::Capture(c) if c == "_" => PNode::Capture(None),
                PatternNode::Capture(c) => PNode::Capture(Some(c.clone())),
            })
            .collect();
        Self { nodes }
    }

    /// The literals a matching line must contain.
    pub(crate) fn literals(&self) -> impl Iterator<Item = &[u8]> {
        self.nodes.iter().filter_map(|n| match n {
            PNode::Literal(f) => Some(f.needle()),
            PNode::Capture(_) => None,
        })
    }

    /// The named captures of `line` in order (node index and byte range), as Loki extracts
    /// them: the leading literal must start the line, a capture whose following literal is
    /// missing takes the rest of the line and ends the match.
    pub(crate) fn matches(&self, line: &[u8], out: &mut Vec<(usize, Range<usize>)>) {
        out.clear();
        if line.is_empty() || self.nodes.is_empty() {
            return;
        }
        let mut k = 0;
        let mut pos = 0;
        if let PNode::Literal(f) = &self.nodes[0] {
            if !line.starts_with(f.needle()) {
                return;
            }
            pos = f.needle().len();
            k = 1;
        }
        while let Some(PNode::Capture(name)) = self.nodes.get(k) {
            let named = name.is_some();
            let Some(PNode::Literal(lit)) = self.nodes.get(k + 1) else {
                if named {
                    out.push((k, pos..line.len()));
                }
                return;
            };
            let Some(i) = lit.find(&line[pos..]) else {
                if named {
                    out.push((k, pos..line.len()));
                }
                return;
            };
            if named {
                out.push((k, pos..pos + i));
            }
            pos += i + lit.needle().len();
            k += 2;
        }
    }

    /// The name of the capture at node `k`.
    pub(crate) fn capture_name(&self, k: usize) -> &str {
        match &self.nodes[k] {
            PNode::Capture(Some(n)) => n,
            _ => "",
        }
    }

    /// Whether `line` matches the pattern as a line filter: literals found in order, captures
    /// not empty, a trailing literal ending the line.
    pub(crate) fn test(&self, line: &[u8]) -> bool {
        if line.is_empty() || self.nodes.is_empty() {
            return line.is_empty() && self.nodes.is_empty();
        }
        let mut off = 0;
        for (i, n) in self.nodes.iter().enumerate() {
            let PNode::Literal(lit) = n else { continue };
            let Some(j) = lit.find(&line[off..]) else { return false };
            if i != 0 && j == 0 {
                return false;
            }
            off += j + lit.needle().len();
        }
        let ends_on_capture = matches!(self.nodes.last(), Some(PNode::Capture(_)));
        ends_on_capture == (off != line.len())
    }
}

/// A compiled `| pattern "..."` stage.
#[derive(Debug, Clone)]
pub(crate) struct PatternStage {
    matcher: PatternMatcher,
}

impl PatternStage {
    pub(crate) fn new(p: &Pattern) -> Self {
        Self { matcher: PatternMatcher::new(p) }
    }

    pub(crate) fn process(
        &self,
        line: &[u8],
        labels: &mut LineLabels,
        caps: &mut Vec<(usize, Range<usize>)>,
        hints: Option<&Hints>,
    ) {
        if hints.is_some_and(Hints::no_labels) {
            return;
        }
        self.matcher.matches(line, caps);
        for (k, range) in caps.iter() {
            let name = self.matcher.capture_name(*k);
            let suffix = labels.parsed_conflicts(name);
            if hints.is_some_and(|h| !h.should_extract_suffixed(name, suffix)) {
                continue;
            }
            labels.set_extracted(name, suffix, |out| push_lossy(out, &line[range.clone()]));
        }
    }
}
