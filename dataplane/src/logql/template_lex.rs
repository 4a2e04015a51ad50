//! The lexer of Go templates: text, `{{ }}` actions with trim markers, comments, and the
//! tokens inside actions, following Go's `text/template/parse` lexer.

use std::fmt;

use super::units::go_quote;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum It {
    Text(String),
    LeftDelim,
    RightDelim,
    Space,
    Ident(String),
    Keyword(&'static str),
    Bool(bool),
    Dot,
    Field(String),
    Variable(String),
    Number(String),
    CharConst(String),
    Str(String),
    RawStr(String),
    Pipe,
    LParen,
    RParen,
    Assign,
    Declare,
    Char(char),
    Error(String),
    Eof,
}

#[derive(Debug, Clone)]
pub(super) struct Item {
    pub(super) it: It,
    pub(super) line: usize,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = |s: &str, f: &mut fmt::Formatter<'_>| {
            if s.chars().count() > 10 {
                let head: String = s.chars().take(10).collect();
                write!(f, "{}...", go_quote(&head))
            } else {
                f.write_str(&go_quote(s))
            }
        };
        match &self.it {
            It::Eof => f.write_str("EOF"),
            It::Error(e) => f.write_str(e),
            It::Keyword(k) => write!(f, "<{k}>"),
            It::Text(s)
            | It::Ident(s)
            | It::Field(s)
            | It::Variable(s)
            | It::Number(s)
            | It::CharConst(s)
            | It::Str(s)
            | It::RawStr(s) => quote(s, f),
            It::Bool(b) => quote(if *b { "true" } else { "false" }, f),
            It::LeftDelim => quote("{{", f),
            It::RightDelim => quote("}}", f),
            It::Space => quote(" ", f),
            It::Dot => quote(".", f),
            It::Pipe => quote("|", f),
            It::LParen => quote("(", f),
            It::RParen => quote(")", f),
            It::Assign => quote("=", f),
            It::Declare => quote(":=", f),
            It::Char(c) => quote(&c.to_string(), f),
        }
    }
}

const KEYWORDS: [&str; 11] =
    ["block", "break", "continue", "define", "else", "end", "if", "range", "nil", "template", "with"];

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

/// `U+0023 '#'`, Go's `%#U`.
fn go_u(c: char) -> String {
    format!("U+{:04X} '{c}'", c as u32)
}

pub(super) fn lex(src: &str) -> Vec<Item> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut line = 1;
    let lines = |s: &str| s.matches('\n').count();
    loop {
        // Text up to the next action.
        let rest = &src[pos..];
        let Some(start) = rest.find("{{") else {
            if !rest.is_empty() {
                out.push(Item { it: It::Text(rest.to_string()), line });
            }
            out.push(Item { it: It::Eof, line: line + lines(rest) });
            return out;
        };
        let after = &rest[start + 2..];
        let left_trim = after.starts_with('-') && after[1..].starts_with(is_space);
        let mut text = &rest[..start];
        if left_trim {
            text = text.trim_end_matches(is_space);
        }
        if !text.is_empty() {
            out.push(Item { it: It::Text(text.to_string()), line });
        }
        line += lines(&rest[..start]);
        pos += start + 2 + if left_trim { 2 } else { 0 };
        if left_trim {
            line += lines(&src[pos - 2..pos]);
        }
        // Comment.
        if src[pos..].starts_with("/*") {
            let Some(end) = src[pos + 2..].find("*/") else {
                out.push(Item { it: It::Error("unclosed comment".into()), line });
                return out;
            };
            line += lines(&src[pos..pos + 2 + end + 2]);
            pos += 2 + end + 2;
            match at_right_delim(&src[pos..]) {
                None => {
                    out.push(Item { it: It::Error("comment ends before closing delimiter".into()), line });
                    return out;
                }
                Some((len, trim)) => {
                    pos += len;
                    if trim {
                        let ws = src[pos..].len() - src[pos..].trim_start_matches(is_space).len();
                        line += lines(&src[pos..pos + ws]);
                        pos += ws;
                    }
                }
            }
            continue;
        }
        out.push(Item { it: It::LeftDelim, line });
        // Inside the action.
        let mut depth = 0i32;
        loop {
            let rest = &src[pos..];
            if let Some((len, trim)) = at_right_delim(rest) {
                if depth > 0 {
                    out.push(Item { it: It::Error("unclosed left paren".into()), line });
                    return out;
                }
                out.push(Item { it: It::RightDelim, line });
                line += lines(&rest[..len]);
                pos += len;
                if trim {
                    let ws = src[pos..].len() - src[pos..].trim_start_matches(is_space).len();
                    line += lines(&src[pos..pos + ws]);
                    pos += ws;
                }
                break;
            }
            let Some(c) = rest.chars().next() else {
                out.push(Item { it: It::Error("unclosed action".into()), line });
                return out;
            };
            let item_line = line;
            let (it, len) = match c {
                c if is_space(c) => {
                    let n = rest.len() - rest.trim_start_matches(is_space).len();
                    // The last space before `-}}` belongs to the trim marker, which the right
                    // delimiter check consumes on the next turn.
                    if rest[n..].starts_with("-}}") { (It::Space, n - 1) } else { (It::Space, n) }
                }
                '=' => (It::Assign, 1),
                ':' => {
                    if rest[1..].starts_with('=') {
                        (It::Declare, 2)
                    } else {
                        out.push(Item { it: It::Error("expected :=".into()), line });
                        return out;
                    }
                }
                '|' => (It::Pipe, 1),
                '"' => match scan_quoted(rest, '"') {
                    Some(n) => (It::Str(rest[..n].to_string()), n),
                    None => {
                        out.push(Item { it: It::Error("unterminated quoted string".into()), line });
                        return out;
                    }
                },
                '\'' => match scan_quoted(rest, '\'') {
                    Some(n) => (It::CharConst(rest[..n].to_string()), n),
                    None => {
                        out.push(Item { it: It::Error("unterminated character constant".into()), line });
                        return out;
                    }
                },
                '`' => match rest[1..].find('`') {
                    Some(n) => (It::RawStr(rest[..n + 2].to_string()), n + 2),
                    None => {
                        out.push(Item { it: It::Error("unterminated raw quoted string".into()), line });
                        return out;
                    }
                },
                '$' => match field_or_var(rest, 1) {
                    Ok(n) => (It::Variable(rest[..n].to_string()), n),
                    Err(e) => {
                        out.push(Item { it: It::Error(e), line });
                        return out;
                    }
                },
                '.' if !rest[1..].starts_with(|c: char| c.is_ascii_digit()) => {
                    if at_terminator(&rest[1..]) {
                        (It::Dot, 1)
                    } else {
                        match field_or_var(rest, 1) {
                            Ok(n) => (It::Field(rest[..n].to_string()), n),
                            Err(e) => {
                                out.push(Item { it: It::Error(e), line });
                                return out;
                            }
                        }
                    }
                }
                '.' | '+' | '-' | '0'..='9' => {
                    let (n, ok) = scan_number(rest);
                    if !ok {
                        out.push(Item { it: It::Error(format!("bad number syntax: {}", go_quote(&rest[..n]))), line });
                        return out;
                    }
                    (It::Number(rest[..n].to_string()), n)
                }
                c if is_alnum(c) => {
                    let n = rest.len() - rest.trim_start_matches(is_alnum).len();
                    if !at_terminator(&rest[n..]) {
                        let bad = rest[n..].chars().next().unwrap_or(' ');
                        out.push(Item { it: It::Error(format!("bad character {}", go_u(bad))), line });
                        return out;
                    }
                    let word = &rest[..n];
                    let it = match word {
                        "true" => It::Bool(true),
                        "false" => It::Bool(false),
                        w => match KEYWORDS.iter().find(|k| **k == w) {
                            Some(k) => It::Keyword(k),
                            None => It::Ident(w.to_string()),
                        },
                    };
                    (it, n)
                }
                '(' => {
                    depth += 1;
                    (It::LParen, 1)
                }
                ')' => {
                    depth -= 1;
                    if depth < 0 {
                        out.push(Item { it: It::Error(format!("unexpected right paren {}", go_u(c))), line });
                        return out;
                    }
                    (It::RParen, 1)
                }
                c if c.is_ascii() && !c.is_ascii_control() => (It::Char(c), 1),
                c => {
                    out.push(Item { it: It::Error(format!("unrecognized character in action: {}", go_u(c))), line });
                    return out;
                }
            };
            line += lines(&rest[..len]);
            pos += len;
            out.push(Item { it, line: item_line });
        }
    }
}

/// `}}` or ` -}}` at the start of `s`: (length, trims the following text).
fn at_right_delim(s: &str) -> Option<(usize, bool)> {
    if s.len() >= 4 && s.starts_with(is_space) && s[1..].starts_with("-}}") {
        return Some((4, true));
    }
    s.starts_with("}}").then_some((2, false))
}

fn at_terminator(s: &str) -> bool {
    match s.chars().next() {
        None => true,
        Some(c) if is_space(c) => true,
        Some('.' | ',' | '|' | ':' | ')' | '(') => true,
        _ => s.starts_with("}}"),
    }
}

/// Length of `.name` or `$name` starting at `s` (`start` is the length of the sigil).
fn field_or_var(s: &str, start: usize) -> Result<usize, String> {
    let body = &s[start..];
    let n = body.len() - body.trim_start_matches(is_alnum).len();
    let rest = &body[n..];
    if !at_terminator(rest) {
        let bad = rest.chars().next().unwrap_or(' ');
        return Err(format!("bad character {}", go_u(bad)));
    }
    Ok(start + n)
}

/// Length of a quoted literal (with its quotes), or `None` when unterminated.
fn scan_quoted(s: &str, quote: char) -> Option<usize> {
    let mut it = s.char_indices().skip(1);
    while let Some((i, c)) = it.next() {
        match c {
            '\\' => match it.next() {
                None | Some((_, '\n')) => return None,
                Some(_) => {}
            },
            '\n' => return None,
            c if c == quote => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// Go template number scanning; returns (length, valid).
fn scan_number(s: &str) -> (usize, bool) {
    let b = s.as_bytes();
    let mut i = 0;
    let accept = |i: &mut usize, set: &str| {
        if *i < b.len() && set.as_bytes().contains(&b[*i]) {
            *i += 1;
            true
        } else {
            false
        }
    };
    let accept_run = |i: &mut usize, set: &str| {
        while *i < b.len() && set.as_bytes().contains(&b[*i]) {
            *i += 1;
        }
    };
    accept(&mut i, "+-");
    let mut digits = "0123456789_";
    if accept(&mut i, "0") {
        if accept(&mut i, "xX") {
            digits = "0123456789abcdefABCDEF_";
        } else if accept(&mut i, "oO") {
            digits = "01234567_";
        } else if accept(&mut i, "bB") {
            digits = "01_";
        }
    }
    accept_run(&mut i, digits);
    if accept(&mut i, ".") {
        accept_run(&mut i, digits);
    }
    if digits.len() == 11 && accept(&mut i, "eE") {
        accept(&mut i, "+-");
        accept_run(&mut i, "0123456789_");
    }
    if digits.len() == 23 && accept(&mut i, "pP") {
        accept(&mut i, "+-");
        accept_run(&mut i, "0123456789_");
    }
    accept(&mut i, "i");
    match s[i..].chars().next() {
        Some(c) if is_alnum(c) => (i + c.len_utf8(), false),
        _ => (i, true),
    }
}
