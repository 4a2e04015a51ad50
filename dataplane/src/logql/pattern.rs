//! Loki's `pattern` syntax, used by the `| pattern "..."` parser and the `|>`/`!>` line filters.
//!
//! A pattern alternates literal text and captures: `<name>` captures into a label, `<_>` skips.
//! A capture is `<` followed by an ASCII letter or `_`, then letters, digits or `_`, then `>`;
//! any other `<` is literal text.

/// One element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternNode {
    /// Text that must appear verbatim.
    Literal(String),
    /// `<name>`; `<_>` is the unnamed capture.
    Capture(String),
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The literals and captures in order.
    pub nodes: Vec<PatternNode>,
}

impl Pattern {
    /// The named captures in order (`<_>` excluded).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().filter_map(|n| match n {
            PatternNode::Capture(c) if c != "_" => Some(c.as_str()),
            _ => None,
        })
    }
}

/// Splits a pattern into literals and captures.
pub(crate) fn parse_pattern(src: &str) -> Pattern {
    let mut nodes = Vec::new();
    let mut lit = String::new();
    let mut rest = src;
    while !rest.is_empty() {
        if let Some(len) = capture_len(rest) {
            if !lit.is_empty() {
                nodes.push(PatternNode::Literal(std::mem::take(&mut lit)));
            }
            nodes.push(PatternNode::Capture(rest[1..len - 1].to_string()));
            rest = &rest[len..];
            continue;
        }
        let c = rest.chars().next().unwrap_or('\0');
        lit.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !lit.is_empty() {
        nodes.push(PatternNode::Literal(lit));
    }
    Pattern { nodes }
}

fn capture_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'<') || !b.get(1).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') {
        return None;
    }
    let mut i = 2;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    (b.get(i) == Some(&b'>')).then_some(i + 1)
}

/// Validates a pattern for the `pattern` parser stage, with Loki's messages and order: at least
/// one named capture, no two adjacent captures, no duplicate names.
pub(crate) fn validate_parser_pattern(src: &str) -> Result<Pattern, String> {
    if src.is_empty() {
        return Err(
            "parse error at line 1, col 1: syntax error: unexpected $end, expecting IDENTIFIER or LITERAL".to_string()
        );
    }
    let p = parse_pattern(src);
    if p.names().next().is_none() {
        return Err("at least one capture is required".to_string());
    }
    check_consecutive(&p)?;
    let mut seen: Vec<&str> = Vec::new();
    for name in p.names() {
        if seen.contains(&name) {
            return Err(format!("duplicate capture name ({name}): invalid expression"));
        }
        seen.push(name);
    }
    Ok(p)
}

/// Validates a pattern for `|>`/`!>`: no adjacent captures and no named captures.
pub(crate) fn validate_filter_pattern(src: &str) -> Result<Pattern, String> {
    let p = parse_pattern(src);
    check_consecutive(&p)?;
    if let Some(name) = p.names().next() {
        return Err(format!("named captures are not allowed: found '<{name}>'"));
    }
    Ok(p)
}

fn check_consecutive(p: &Pattern) -> Result<(), String> {
    for pair in p.nodes.windows(2) {
        if let [PatternNode::Capture(a), PatternNode::Capture(b)] = pair {
            return Err(format!("found consecutive capture '<{a}><{b}>': invalid expression"));
        }
    }
    Ok(())
}
