//! Small lexical helpers of the script format: comments, quoted text, label sets, clauses,
//! durations and numbers.

use crate::labels::Labels;
use crate::logql::{parse_go_duration, parse_go_float};

/// `line` without a trailing `# comment`; a `#` inside `"…"` or `` `…` `` does not start one.
/// Quotes do not escape (a `\"` ends a double-quoted part), as in Loki's runner.
pub(crate) fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '`' => quote = Some(c),
            None if c == '#' => return line[..i].trim_end(),
            None => {}
        }
    }
    line
}

/// A Go duration (`time.ParseDuration`: `0`, `90s`, `1m30s`, `500ms`, `1.5h`, `-5s`) in
/// nanoseconds.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    parse_go_duration(s)
}

/// A sample value: `NaN`, `Inf`, `+Inf`, `-Inf`, or a Go float literal.
pub(crate) fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "Inf" | "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => parse_go_float(s).map_err(|e| e.go_message(s)),
    }
}

/// A duration the way scripts write them: whole seconds as `90s`, whole milliseconds as
/// `1500ms`, anything else in nanoseconds.
pub(crate) fn fmt_duration(ns: i64) -> String {
    if ns % 1_000_000_000 == 0 {
        format!("{}s", ns / 1_000_000_000)
    } else if ns % 1_000_000 == 0 {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{ns}ns")
    }
}

/// A sample value the way scripts write them (`NaN`, `+Inf`, `-Inf`, shortest decimal).
pub(crate) fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// A `[name body]` clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Clause<'a> {
    pub(crate) name: &'a str,
    pub(crate) body: &'a str,
}

/// A position in one line of a script.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    pub(crate) fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    pub(crate) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub(crate) fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// Consumes `c` if it comes next (after whitespace).
    pub(crate) fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// The next run of non-whitespace characters (empty at the end).
    pub(crate) fn word(&mut self) -> &'a str {
        self.skip_ws();
        let rest = self.rest();
        let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    /// Consumes the word `want` or fails.
    pub(crate) fn keyword(&mut self, want: &str) -> Result<(), String> {
        match self.word() {
            w if w == want => Ok(()),
            "" => Err(format!("expected {want:?}, got the end of the line")),
            w => Err(format!("expected {want:?}, got {w:?}")),
        }
    }

    /// A key of a `k="v"` pair: characters up to whitespace, `"`, `=` or `]`.
    pub(crate) fn bare_key(&mut self) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c: char| c.is_whitespace() || matches!(c, '"' | '=' | ']')).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    /// Text in `"…"` or `` `…` `` (after whitespace), taken literally: neither form unescapes.
    pub(crate) fn quoted(&mut self) -> Result<&'a str, String> {
        self.skip_ws();
        let q = match self.peek() {
            Some(q @ ('"' | '`')) => q,
            Some(c) => return Err(format!("expected a quoted line, got {c:?}")),
            None => return Err("expected a quoted line, got the end of the line".into()),
        };
        let body = &self.rest()[1..];
        let end = body.find(q).ok_or_else(|| format!("unterminated {q}-quoted text"))?;
        self.pos += 1 + end + 1;
        Ok(&body[..end])
    }

    /// A label set `{name="value", ...}` (values in Go string syntax), unsorted.
    pub(crate) fn labels(&mut self) -> Result<Labels, String> {
        self.skip_ws();
        let rest = self.rest();
        if !rest.starts_with('{') {
            return Err("expected a label set starting with '{'".into());
        }
        let mut quote = None;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in rest.char_indices() {
            match quote {
                Some(_) if escaped => escaped = false,
                Some('"') if c == '\\' => escaped = true,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '`' => quote = Some(c),
                None if c == '}' => {
                    end = Some(i);
                    break;
                }
                None => {}
            }
        }
        let end = end.ok_or_else(|| "unterminated label set".to_string())?;
        let set = &rest[..=end];
        let labels = Labels::parse(set).map_err(|e| format!("invalid label set {set}: {}", e.msg))?;
        self.pos += end + 1;
        Ok(labels)
    }

    /// The next `[name body]` clause, `None` at the end of the line; anything else is an error.
    /// The body ends at the first `]` outside double quotes.
    pub(crate) fn clause(&mut self) -> Result<Option<Clause<'a>>, String> {
        self.skip_ws();
        if self.at_end() {
            return Ok(None);
        }
        let rest = self.rest();
        if !rest.starts_with('[') {
            return Err(format!("unexpected {rest:?}"));
        }
        let mut in_quote = false;
        let close = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    in_quote = !in_quote;
                }
                c == ']' && !in_quote
            })
            .map(|(i, _)| i)
            .ok_or_else(|| format!("unterminated clause {rest:?}"))?;
        let inner = rest[1..close].trim();
        self.pos += close + 1;
        let (name, body) = inner.split_once(char::is_whitespace).unwrap_or((inner, ""));
        Ok(Some(Clause { name, body: body.trim() }))
    }
}
