//! The parse error, shaped like Loki's so that messages match what Loki users see.

use std::fmt;

/// What kind of problem a [`ParseError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseErrorKind {
    /// A lexical or grammar error; it carries the position Loki reports.
    Syntax,
    /// The query is well-formed but invalid (an empty selector, a bad regex, an aggregation that
    /// needs `unwrap`, ...). Loki reports these without a position.
    Invalid,
    /// The query is valid but not of the kind the caller asked for (`parse_log_selector` given a
    /// metric query); Loki words these without the `parse error` prefix.
    WrongType,
}

/// A LogQL parse error.
///
/// `Display` gives Loki's text: `parse error at line 1, col 12: syntax error: unexpected
/// IDENTIFIER, expecting STRING`, or `parse error : <msg>` when Loki reports no position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line Loki reports; 0 when Loki reports none (Loki also reports 0 after tokens its
    /// lexer scans ahead for, such as `|=` or `[5m]`).
    pub line: u32,
    /// 1-based column in characters; 0 when Loki reports no position.
    pub col: u32,
    /// The message without the position prefix.
    pub msg: String,
    /// Byte offset in the query where the problem was detected, always set, for callers that
    /// want a precise position even where Loki gives none.
    pub offset: usize,
    /// Syntax, validation or wrong-kind error; decides the `Display` shape.
    pub kind: ParseErrorKind,
}

impl ParseError {
    pub(crate) fn syntax(line: u32, col: u32, msg: impl Into<String>, offset: usize) -> ParseError {
        ParseError { line, col, msg: msg.into(), offset, kind: ParseErrorKind::Syntax }
    }

    pub(crate) fn invalid(msg: impl Into<String>, offset: usize) -> ParseError {
        ParseError { line: 0, col: 0, msg: msg.into(), offset, kind: ParseErrorKind::Invalid }
    }

    pub(crate) fn wrong_type(msg: &str) -> ParseError {
        ParseError { line: 0, col: 0, msg: msg.to_string(), offset: 0, kind: ParseErrorKind::WrongType }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ParseErrorKind::WrongType {
            f.write_str(&self.msg)
        } else if self.line == 0 && self.col == 0 {
            write!(f, "parse error : {}", self.msg)
        } else {
            write!(f, "parse error at line {}, col {}: {}", self.line, self.col, self.msg)
        }
    }
}

impl std::error::Error for ParseError {}
