//! Line filters (`|=`, `!=`, `|~`, `!~`, `|>`, `!>`, `ip()`, `or` chains) over raw bytes, and
//! the block-level search that finds candidate lines in a whole decoded block at once.

use std::net::IpAddr;

use memchr::memmem::Finder;
use regex::bytes::Regex;

use crate::chunk::{BlockHandle, DecodedBlock, needle};
use crate::logql::{IpPattern, LineFilter, LineFilterOp, LineMatch};

use super::parsers::PatternMatcher;

/// One alternative of a line filter.
#[derive(Debug, Clone)]
enum Alt {
    /// `|= ""`: every line contains the empty string.
    True,
    Contains(Box<Finder<'static>>),
    Regex(Regex),
    Pattern(PatternMatcher),
    Ip(IpPattern),
}

impl Alt {
    fn matches(&self, line: &[u8]) -> bool {
        match self {
            Alt::True => true,
            Alt::Contains(f) => f.find(line).is_some(),
            Alt::Regex(re) => re.is_match(line),
            Alt::Pattern(p) => p.test(line),
            Alt::Ip(p) => line_has_ip(line, p),
        }
    }

    /// A byte string every matching line contains, when one is known.
    fn needle(&self) -> Option<Vec<u8>> {
        match self {
            Alt::True | Alt::Ip(_) => None,
            Alt::Contains(f) => Some(f.needle().to_vec()),
            Alt::Regex(re) => required_literal(re.as_str()),
            Alt::Pattern(p) => p.literals().max_by_key(|l| l.len()).filter(|l| !l.is_empty()).map(<[u8]>::to_vec),
        }
    }
}

/// A compiled line filter stage.
#[derive(Debug, Clone)]
pub(crate) struct LineFilterStage {
    negative: bool,
    alts: Vec<Alt>,
}

impl LineFilterStage {
    pub(crate) fn new(f: &LineFilter) -> Result<Self, String> {
        let mut alts = Vec::with_capacity(f.alternatives.len());
        for alt in &f.alternatives {
            alts.push(match alt {
                LineMatch::Ip(p) => Alt::Ip(IpPattern::parse(p).map_err(str::to_string)?),
                LineMatch::Text { text, regex, pattern } => match f.op {
                    LineFilterOp::Contains | LineFilterOp::NotContains if text.is_empty() => Alt::True,
                    LineFilterOp::Contains | LineFilterOp::NotContains => {
                        Alt::Contains(Box::new(Finder::new(text.as_bytes()).into_owned()))
                    }
                    LineFilterOp::Match | LineFilterOp::NotMatch => {
                        let re = match regex {
                            Some(r) => r.clone(),
                            None => crate::logql::GoRegex::new(text)?,
                        };
                        Alt::Regex(Regex::new(re.regex().as_str()).map_err(|e| e.to_string())?)
                    }
                    LineFilterOp::Pattern | LineFilterOp::NotPattern => match pattern {
                        Some(p) => Alt::Pattern(PatternMatcher::new(p)),
                        None => return Err(format!("invalid pattern {text:?}")),
                    },
                },
            });
        }
        Ok(Self { negative: f.op.is_negative(), alts })
    }

    /// Whether the line passes the filter.
    #[inline]
    pub(crate) fn keep(&self, line: &[u8]) -> bool {
        self.alts.iter().any(|a| a.matches(line)) != self.negative
    }
}

/// How [`super::Pipeline::candidates`] narrows a block down: lines containing at least one of
/// these needles.
///
/// Negative filters get no plan: excluding the lines a search finds costs more than testing
/// each line (the search then finds most lines, or excludes almost none).
#[derive(Debug, Clone)]
pub(crate) struct SearchPlan {
    needles: Vec<Finder<'static>>,
}

/// The best block search for a pipeline starting with `filters`: the positive filter whose
/// alternatives all have the longest guaranteed substring.
pub(crate) fn plan(filters: &[&LineFilterStage]) -> Option<SearchPlan> {
    let mut best: Option<(usize, Vec<Vec<u8>>)> = None;
    for f in filters.iter().filter(|f| !f.negative) {
        let needles: Option<Vec<Vec<u8>>> = f.alts.iter().map(Alt::needle).collect();
        let Some(needles) = needles else { continue };
        let score = needles.iter().map(Vec::len).min().unwrap_or(0);
        if score > 0 && best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, needles));
        }
    }
    best.map(|(_, needles)| SearchPlan { needles: needles.iter().map(|n| Finder::new(n).into_owned()).collect() })
}

/// How [`super::Pipeline::skips_block`] rules blocks out by their needle index: for each leading
/// positive filter whose every alternative has a guaranteed substring with whole tokens (see
/// [`needle::literal_tokens`]), those tokens' hashes per alternative. A block is ruled out when,
/// for one of the filters, every alternative has a token the block's index does not hold.
#[derive(Debug, Clone)]
pub struct NeedlePlan {
    /// Per filter, per alternative, the token hashes.
    filters: Vec<Vec<needle::LiteralTokens>>,
}

/// The needle plan of a pipeline starting with `filters`, `None` when no filter can use the
/// index.
pub(crate) fn needle_plan(filters: &[&LineFilterStage]) -> Option<NeedlePlan> {
    let mut out = Vec::new();
    for f in filters.iter().filter(|f| !f.negative) {
        let alts: Option<Vec<needle::LiteralTokens>> =
            f.alts.iter().map(|a| a.needle().map(|n| needle::literal_tokens(&n)).filter(|t| !t.is_empty())).collect();
        if let Some(alts) = alts
            && !alts.is_empty()
        {
            out.push(alts);
        }
    }
    (!out.is_empty()).then_some(NeedlePlan { filters: out })
}

impl NeedlePlan {
    /// Whether no line of `block` can pass the filters, by the block's needle index.
    pub(crate) fn skips(&self, block: &BlockHandle) -> bool {
        self.skips_index(block.needle_index())
    }

    /// Whether no line of a block with this needle index can pass the filters; never for a
    /// block without an index (`None`).
    pub fn skips_index(&self, index: Option<needle::NeedleIndex<'_>>) -> bool {
        let Some(index) = index else { return false };
        self.filters.iter().any(|alts| alts.iter().all(|tokens| !index.may_contain_all(tokens)))
    }
}

/// Appends the index of every line of `block` containing the needle, in order.
fn search(finder: &Finder<'_>, block: &DecodedBlock, out: &mut Vec<usize>) {
    let buf: &[u8] = block.lines_buf();
    let len = finder.needle().len();
    let mut pos = 0;
    while pos < buf.len() {
        let Some(p) = finder.find(&buf[pos..]) else { break };
        let hit = pos + p;
        let idx = block.entry_index_at(hit);
        let range = block.line_range(idx);
        if hit >= range.start && hit + len <= range.end {
            out.push(idx);
            pos = range.end;
        } else {
            // The match spans two lines: look again one byte further.
            pos = hit + 1;
        }
    }
}

/// The entries of `block` that may pass the plan's filter, in order.
pub(crate) fn candidates(plan: &SearchPlan, block: &DecodedBlock) -> Vec<usize> {
    let mut out = Vec::new();
    for f in &plan.needles {
        search(f, block, &mut out);
    }
    if plan.needles.len() > 1 {
        out.sort_unstable();
        out.dedup();
    }
    out
}

/// A substring (at least 3 bytes) that every match of the Go regex `src` contains, read
/// conservatively from the pattern's top level: literal runs outside groups and classes, with
/// optional characters cut. `None` for top-level alternation or case-insensitive patterns.
pub(crate) fn required_literal(src: &str) -> Option<Vec<u8>> {
    let chars: Vec<char> = src.chars().collect();
    if has_case_insensitive_flag(&chars) || src.contains("\\Q") {
        return None;
    }
    let mut best = String::new();
    let mut cur = String::new();
    let end_run = |cur: &mut String, best: &mut String| {
        if cur.len() > best.len() {
            *best = std::mem::take(cur);
        } else {
            cur.clear();
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let literal = match c {
            '\\' => {
                let next = *chars.get(i + 1)?;
                if next.is_ascii_punctuation() {
                    i += 1;
                    Some(next)
                } else {
                    end_run(&mut cur, &mut best);
                    i += 2;
                    // Skip `\x{..}`, `\p{..}` bodies.
                    if chars.get(i) == Some(&'{') {
                        while i < chars.len() && chars[i] != '}' {
                            i += 1;
                        }
                        i += 1;
                    }
                    continue;
                }
            }
            '(' => {
                end_run(&mut cur, &mut best);
                i = skip_group(&chars, i)?;
                continue;
            }
            '[' => {
                end_run(&mut cur, &mut best);
                i = skip_class(&chars, i)?;
                continue;
            }
            '|' => return None,
            '{' => {
                end_run(&mut cur, &mut best);
                i += repeat_len(&chars[i..]).unwrap_or(1);
                continue;
            }
            ')' | ']' | '}' | '.' | '^' | '$' | '*' | '+' | '?' => {
                end_run(&mut cur, &mut best);
                i += 1;
                continue;
            }
            c => Some(c),
        };
        let Some(lit) = literal else { continue };
        i += 1;
        match chars.get(i) {
            Some('*' | '?') => end_run(&mut cur, &mut best),
            Some('+') => {
                cur.push(lit);
                end_run(&mut cur, &mut best);
            }
            Some('{') => match repeat_len(&chars[i..]) {
                Some(len) => {
                    let min_zero = chars.get(i + 1) == Some(&'0') || chars.get(i + 1) == Some(&',');
                    if !min_zero {
                        cur.push(lit);
                    }
                    end_run(&mut cur, &mut best);
                    i += len;
                }
                None => {
                    cur.push(lit);
                    end_run(&mut cur, &mut best);
                }
            },
            _ => cur.push(lit),
        }
    }
    end_run(&mut cur, &mut best);
    (best.len() >= 3).then(|| best.into_bytes())
}

/// Whether a `(?flags)` or `(?flags:` group turns on case-insensitive matching.
fn has_case_insensitive_flag(chars: &[char]) -> bool {
    let mut i = 0;
    while i + 2 < chars.len() {
        if chars[i] == '\\' {
            i += 2;
            continue;
        }
        if chars[i] == '(' && chars[i + 1] == '?' {
            let mut j = i + 2;
            while j < chars.len() && chars[j] != ')' && chars[j] != ':' && chars[j] != '-' {
                if chars[j] == 'i' {
                    return true;
                }
                j += 1;
            }
        }
        i += 1;
    }
    false
}

/// The length of a `{n}`, `{n,}` or `{n,m}` repetition at the start of `chars`.
fn repeat_len(chars: &[char]) -> Option<usize> {
    if chars.first() != Some(&'{') {
        return None;
    }
    let mut i = 1;
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < chars.len() && chars[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > s
    };
    if !digits(&mut i) {
        return None;
    }
    if chars.get(i) == Some(&',') {
        i += 1;
        digits(&mut i);
    }
    (chars.get(i) == Some(&'}')).then_some(i + 1)
}

/// The index after the group opening at `chars[i]`.
fn skip_group(chars: &[char], mut i: usize) -> Option<usize> {
    let mut depth = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' => {
                i = skip_class(chars, i)?;
                continue;
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index after the character class opening at `chars[i]`.
fn skip_class(chars: &[char], mut i: usize) -> Option<usize> {
    i += 1;
    if chars.get(i) == Some(&'^') {
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        i += 1;
    }
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' if chars.get(i + 1) == Some(&':') => {
                while i < chars.len() && !(chars[i] == ']' && chars[i - 1] == ':') {
                    i += 1;
                }
            }
            ']' => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

const IPV4_CHARSET: &[u8] = b"0123456789.";
const IPV6_CHARSET: &[u8] = b"0123456789abcdefABCDEF:.";

/// Whether `line` holds an IP address inside `pattern`, found the way Loki scans: at a digit
/// followed by a dot within three bytes (IPv4) or a hex group followed by a colon (IPv6), the
/// longest run of address characters is parsed.
pub(crate) fn line_has_ip(line: &[u8], pattern: &IpPattern) -> bool {
    let n = line.len();
    let mut i = 0;
    while i < n {
        let charset = if i + 3 < n && ipv4_hint(&line[i..i + 4]) {
            Some(IPV4_CHARSET)
        } else if i + 4 < n && ipv6_hint(&line[i..i + 5]) {
            Some(IPV6_CHARSET)
        } else {
            None
        };
        if let Some(charset) = charset {
            let len = line[i..].iter().position(|c| !charset.contains(c)).unwrap_or(n - i);
            let parsed = std::str::from_utf8(&line[i..i + len]).ok().and_then(|s| s.parse::<IpAddr>().ok());
            if parsed.is_some_and(|ip| pattern.contains(ip)) {
                return true;
            }
            i += len;
        }
        i += 1;
    }
    false
}

fn ipv4_hint(p: &[u8]) -> bool {
    p[0].is_ascii_digit() && (p[1] == b'.' || p[2] == b'.' || p[3] == b'.')
}

fn ipv6_hint(p: &[u8]) -> bool {
    let h = |c: u8| c.is_ascii_hexdigit();
    (p[0] == b':' && p[1] == b':' && h(p[2]))
        || (h(p[0]) && p[1] == b':')
        || (h(p[0]) && h(p[1]) && p[2] == b':')
        || (h(p[0]) && h(p[1]) && h(p[2]) && p[3] == b':')
        || (h(p[0]) && h(p[1]) && h(p[2]) && h(p[3]) && p[4] == b':')
}
