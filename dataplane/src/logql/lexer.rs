//! The LogQL lexer.
//!
//! It reproduces the token rules of Loki's lexer, which is built on Go's `text/scanner`:
//! Go identifiers, numbers and string literals; `#`, `//` and `/* */` comments; keywords matched
//! case-insensitively; function names (`rate`, `sum`, `ip`, ...) that are tokens only when
//! followed by `(` or a grouping clause; numbers glued to a unit that become durations (`5m`,
//! `1.5s`) or byte sizes (`10KB`); `[...]` scanned whole as a range; `--strict`-style parser
//! flags.
//!
//! Positions follow the scanner too: lines and columns are 1-based and columns count characters.
//! Loki's lexer advances the scanner with `Next()` for multi-character operators, ranges,
//! durations, byte sizes and flags, which invalidates the line of the position it reports; such
//! tokens carry `line_valid = false` so errors can print `line 0` exactly as Loki does.

use super::token::{Tok, function_token, keyword};
use super::units::{parse_bytes, parse_loki_duration, parse_prom_duration};

/// A parser flag of the `logfmt` stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flag {
    Strict,
    KeepEmpty,
}

/// The decoded value a token carries, when it carries one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TokVal {
    None,
    Str(String),
    Duration(i64),
    Bytes(u64),
    Flag(Flag),
    Error(String),
}

/// One token with its source span and position.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub kind: Tok,
    /// Byte offsets of the token in the query.
    pub start: usize,
    pub end: usize,
    pub line: u32,
    pub col: u32,
    /// False when Loki's lexer would report this token's line as 0 (see the module docs).
    pub line_valid: bool,
    pub val: TokVal,
}

struct Cursor<'a> {
    src: &'a str,
    pos: usize,
    line: u32,
    col: u32,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.src[self.pos..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }
}

/// Splits a query into tokens. The last token is `Eof`, or `Error` when a lexical error stops
/// the scan.
pub(crate) fn tokenize(src: &str) -> Vec<Token> {
    let mut cur = Cursor { src, pos: 0, line: 1, col: 1 };
    if cur.peek() == Some('\u{feff}') {
        cur.pos += '\u{feff}'.len_utf8();
    }
    let mut out = Vec::with_capacity(src.len() / 3 + 2);
    loop {
        let tok = next_token(&mut cur);
        let stop = matches!(tok.kind, Tok::Eof | Tok::Error);
        out.push(tok);
        if stop {
            return out;
        }
    }
}

fn token(kind: Tok, start: usize, end: usize, line: u32, col: u32, line_valid: bool, val: TokVal) -> Token {
    Token { kind, start, end, line, col, line_valid, val }
}

fn next_token(cur: &mut Cursor<'_>) -> Token {
    loop {
        while matches!(cur.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            cur.bump();
        }
        let (start, line, col) = (cur.pos, cur.line, cur.col);
        let err =
            |msg: &str, valid: bool| token(Tok::Error, start, start, line, col, valid, TokVal::Error(msg.to_string()));
        let Some(c) = cur.peek() else {
            // Loki reports no position at all for the end of an empty query.
            let (line, col) = if cur.src.is_empty() { (0, 0) } else { (line, col) };
            return token(Tok::Eof, start, start, line, col, true, TokVal::None);
        };
        match c {
            '#' => {
                while !matches!(cur.peek(), None | Some('\n')) {
                    cur.bump();
                }
                continue;
            }
            '/' if cur.peek2() == Some('/') => {
                while !matches!(cur.peek(), None | Some('\n')) {
                    cur.bump();
                }
                continue;
            }
            '/' if cur.peek2() == Some('*') => {
                cur.bump();
                cur.bump();
                loop {
                    match cur.bump() {
                        None => return err("comment not terminated", true),
                        Some('*') if cur.peek() == Some('/') => {
                            cur.bump();
                            break;
                        }
                        Some(_) => {}
                    }
                }
                continue;
            }
            '\0' => return err("invalid character NUL", true),
            '0'..='9' => return lex_number(cur, start, line, col),
            '.' if cur.peek2().is_some_and(|c| c.is_ascii_digit()) => {
                return lex_number(cur, start, line, col);
            }
            '"' => return lex_string(cur, start, line, col),
            '`' => {
                cur.bump();
                loop {
                    match cur.bump() {
                        None => return err("literal not terminated", true),
                        Some('`') => break,
                        Some(_) => {}
                    }
                }
                let text = cur.src[start + 1..cur.pos - 1].to_string();
                return token(Tok::Str, start, cur.pos, line, col, true, TokVal::Str(text));
            }
            '\'' => return lex_char_literal(cur, start, line, col),
            '[' => {
                cur.bump();
                let content_start = cur.pos;
                loop {
                    match cur.peek() {
                        None => return err("missing closing ']' in duration", false),
                        Some(']') => break,
                        Some(_) => {
                            cur.bump();
                        }
                    }
                }
                let content = &cur.src[content_start..cur.pos];
                cur.bump();
                return match parse_prom_duration(content) {
                    Ok(d) => token(Tok::Range, start, cur.pos, line, col, false, TokVal::Duration(d)),
                    Err(msg) => err(&msg, false),
                };
            }
            '-' => {
                if let Some(tok) = lex_dash(cur, start, line, col) {
                    return tok;
                }
                cur.bump();
                return token(Tok::Sub, start, cur.pos, line, col, true, TokVal::None);
            }
            c if c == '_' || c.is_alphabetic() => return lex_ident(cur, start, line, col),
            _ => return lex_operator(cur, c, start, line, col),
        }
    }
}

fn lex_operator(cur: &mut Cursor<'_>, c: char, start: usize, line: u32, col: u32) -> Token {
    let two = match (c, cur.peek2()) {
        ('!', Some('=')) => Some(Tok::Neq),
        ('=', Some('~')) => Some(Tok::Re),
        ('!', Some('~')) => Some(Tok::Nre),
        ('!', Some('>')) => Some(Tok::Npa),
        ('|', Some('=')) => Some(Tok::PipeExact),
        ('|', Some('~')) => Some(Tok::PipeMatch),
        ('|', Some('>')) => Some(Tok::PipePattern),
        ('=', Some('=')) => Some(Tok::CmpEq),
        ('>', Some('=')) => Some(Tok::Gte),
        ('<', Some('=')) => Some(Tok::Lte),
        _ => None,
    };
    if let Some(kind) = two {
        cur.bump();
        cur.bump();
        return token(kind, start, cur.pos, line, col, false, TokVal::None);
    }
    let kind = match c {
        ',' => Tok::Comma,
        '.' => Tok::Dot,
        '{' => Tok::LBrace,
        '}' => Tok::RBrace,
        '=' => Tok::Eq,
        '|' => Tok::Pipe,
        '(' => Tok::LParen,
        ')' => Tok::RParen,
        ']' => Tok::RBracket,
        '+' => Tok::Add,
        '*' => Tok::Mul,
        '/' => Tok::Div,
        '%' => Tok::Mod,
        '^' => Tok::Pow,
        '>' => Tok::Gt,
        '<' => Tok::Lt,
        _ => Tok::Invalid,
    };
    cur.bump();
    token(kind, start, cur.pos, line, col, true, TokVal::None)
}

fn lex_ident(cur: &mut Cursor<'_>, start: usize, line: u32, col: u32) -> Token {
    while cur.peek().is_some_and(|c| c == '_' || c.is_alphanumeric()) {
        cur.bump();
    }
    let text = &cur.src[start..cur.pos];
    let lower;
    let lower_ref = if text.bytes().any(|b| b.is_ascii_uppercase()) || !text.is_ascii() {
        lower = text.to_lowercase();
        lower.as_str()
    } else {
        text
    };
    let kind = if let Some(kind) = function_token(lower_ref) {
        if is_function(cur.rest()) { kind } else { Tok::Ident }
    } else {
        keyword(lower_ref).unwrap_or(Tok::Ident)
    };
    token(kind, start, cur.pos, line, col, true, TokVal::None)
}

/// Loki's rule for telling a function name from an identifier: after optional white space comes
/// `(`, or `by`/`without` followed by optional white space and `(`.
fn is_function(rest: &str) -> bool {
    let rest = rest.trim_start();
    if rest.starts_with('(') {
        return true;
    }
    let starts_with_ci = |s: &str, word: &str| {
        s.len() >= word.len() && s.is_char_boundary(word.len()) && s[..word.len()].eq_ignore_ascii_case(word)
    };
    for word in ["by", "without"] {
        if starts_with_ci(rest, word) {
            return rest[word.len()..].trim_start().starts_with('(');
        }
    }
    false
}

fn is_duration_rune(c: char) -> bool {
    matches!(c, 'n' | 'u' | '\u{b5}' | 'm' | 's' | 'h' | 'd' | 'w' | 'y')
}

fn is_bytes_rune(c: char) -> bool {
    matches!(c, 'B' | 'i' | 'k' | 'K' | 'M' | 'G' | 'T' | 'P')
}

/// The characters following a number that Loki considers for a unit suffix.
fn unit_suffix(rest: &str, accept: fn(char) -> bool) -> &str {
    let end = rest
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || !(c.is_numeric() || accept(*c) || *c == '.'))
        .map_or(rest.len(), |(i, _)| i);
    &rest[..end]
}

fn advance_bytes(cur: &mut Cursor<'_>, n: usize) {
    let target = cur.pos + n;
    while cur.pos < target {
        cur.bump();
    }
}

/// Handles `-` starting a parser flag (`--strict`) or a negative duration (`-5m`).
fn lex_dash(cur: &mut Cursor<'_>, start: usize, line: u32, col: u32) -> Option<Token> {
    let after = &cur.src[start + 1..];
    if after.starts_with('-') {
        let end = after.char_indices().find(|(_, c)| !(c.is_alphabetic() || *c == '-')).map_or(after.len(), |(i, _)| i);
        let flag = match &cur.src[start..start + 1 + end] {
            "--strict" => Some(Flag::Strict),
            "--keep-empty" => Some(Flag::KeepEmpty),
            _ => None,
        };
        if let Some(flag) = flag {
            advance_bytes(cur, 1 + end);
            return Some(token(Tok::ParserFlag, start, cur.pos, line, col, false, TokVal::Flag(flag)));
        }
    }
    let suffix = unit_suffix(after, is_duration_rune);
    if !suffix.is_empty() {
        let text = &cur.src[start..start + 1 + suffix.len()];
        if let Some(d) = parse_loki_duration(text) {
            advance_bytes(cur, 1 + suffix.len());
            return Some(token(Tok::Duration, start, cur.pos, line, col, false, TokVal::Duration(d)));
        }
    }
    None
}

fn lex_number(cur: &mut Cursor<'_>, start: usize, line: u32, col: u32) -> Token {
    let scan_err = scan_go_number(cur);
    let text_end = cur.pos;
    if let Some(msg) = scan_err {
        return token(Tok::Error, start, text_end, line, col, true, TokVal::Error(msg));
    }
    let text = &cur.src[start..text_end];
    let rest = &cur.src[text_end..];
    let dur_suffix = unit_suffix(rest, is_duration_rune);
    if !dur_suffix.is_empty() {
        let full = &cur.src[start..text_end + dur_suffix.len()];
        if let Some(d) = parse_loki_duration(full) {
            advance_bytes(cur, dur_suffix.len());
            return token(Tok::Duration, start, cur.pos, line, col, false, TokVal::Duration(d));
        }
    }
    let bytes_suffix = unit_suffix(rest, is_bytes_rune);
    if !bytes_suffix.is_empty() {
        let full = format!("{text}{bytes_suffix}");
        if let Some(b) = parse_bytes(&full) {
            advance_bytes(cur, bytes_suffix.len());
            return token(Tok::Bytes, start, cur.pos, line, col, false, TokVal::Bytes(b));
        }
    }
    token(Tok::Number, start, text_end, line, col, true, TokVal::None)
}

/// Scans a Go number literal the way `text/scanner` does, returning its first error.
fn scan_go_number(cur: &mut Cursor<'_>) -> Option<String> {
    let mut err: Option<String> = None;
    let mut set_err = |e: String| {
        if err.is_none() {
            err = Some(e);
        }
    };
    let mut base = 10u32;
    let mut prefix = '\0';
    let mut digsep = 0u8;
    let mut invalid: Option<char> = None;
    let mut is_float = false;
    let mut seen_dot = cur.peek() == Some('.');
    if seen_dot {
        cur.bump();
    } else {
        if cur.peek() == Some('0') {
            cur.bump();
            match cur.peek().map(|c| c.to_ascii_lowercase()) {
                Some('x') => {
                    cur.bump();
                    base = 16;
                    prefix = 'x';
                }
                Some('o') => {
                    cur.bump();
                    base = 8;
                    prefix = 'o';
                }
                Some('b') => {
                    cur.bump();
                    base = 2;
                    prefix = 'b';
                }
                _ => {
                    base = 8;
                    prefix = '0';
                    digsep = 1;
                }
            }
        }
        digsep |= scan_digits(cur, base, &mut invalid);
        if cur.peek() == Some('.') {
            cur.bump();
            seen_dot = true;
        }
    }
    if seen_dot {
        is_float = true;
        if prefix == 'o' || prefix == 'b' {
            set_err(format!("invalid radix point in {}", lit_name(prefix)));
        }
        digsep |= scan_digits(cur, base, &mut invalid);
    }
    if digsep & 1 == 0 {
        set_err(format!("{} has no digits", lit_name(prefix)));
    }
    let e = cur.peek().map(|c| c.to_ascii_lowercase());
    if e == Some('e') || e == Some('p') {
        if e == Some('e') && prefix != '\0' && prefix != '0' {
            set_err(format!("'{}' exponent requires decimal mantissa", cur.peek().unwrap_or('e')));
        } else if e == Some('p') && prefix != 'x' {
            set_err(format!("'{}' exponent requires hexadecimal mantissa", cur.peek().unwrap_or('p')));
        }
        cur.bump();
        is_float = true;
        if matches!(cur.peek(), Some('+' | '-')) {
            cur.bump();
        }
        let mut none = None;
        let ds = scan_digits(cur, 10, &mut none);
        if ds & 1 == 0 {
            set_err("exponent has no digits".to_string());
        }
    } else if prefix == 'x' && is_float {
        set_err("hexadecimal mantissa requires a 'p' exponent".to_string());
    }
    if !is_float && let Some(c) = invalid {
        set_err(format!("invalid digit {} in {}", go_quote_char(c), lit_name(prefix)));
    }
    err
}

fn go_quote_char(c: char) -> String {
    format!("'{c}'")
}

fn scan_digits(cur: &mut Cursor<'_>, base: u32, invalid: &mut Option<char>) -> u8 {
    let mut digsep = 0u8;
    while let Some(c) = cur.peek() {
        let ok = if base <= 10 { c.is_ascii_digit() } else { c.is_ascii_hexdigit() };
        if ok {
            if base <= 10 && c.to_digit(10).is_some_and(|d| d >= base) && invalid.is_none() {
                *invalid = Some(c);
            }
            digsep |= 1;
        } else if c == '_' {
            digsep |= 2;
        } else {
            break;
        }
        cur.bump();
    }
    digsep
}

fn lit_name(prefix: char) -> &'static str {
    match prefix {
        'x' => "hexadecimal literal",
        'o' | '0' => "octal literal",
        'b' => "binary literal",
        _ => "decimal literal",
    }
}

/// Scans the escape after a backslash (at the cursor) in a literal quoted with `quote`, Go's
/// rules; false when it is not a valid escape.
fn scan_escape(cur: &mut Cursor<'_>, quote: char) -> bool {
    cur.bump();
    match cur.peek() {
        Some(c @ ('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\' | '"' | '\''))
            if c == quote || !matches!(c, '"' | '\'') =>
        {
            cur.bump();
            true
        }
        Some('0'..='7') => scan_escape_digits(cur, 8, 3),
        Some('x') => {
            cur.bump();
            scan_escape_digits(cur, 16, 2)
        }
        Some('u') => {
            cur.bump();
            scan_escape_digits(cur, 16, 4)
        }
        Some('U') => {
            cur.bump();
            scan_escape_digits(cur, 16, 8)
        }
        _ => false,
    }
}

fn lex_string(cur: &mut Cursor<'_>, start: usize, line: u32, col: u32) -> Token {
    let err = |msg: &str, end: usize| token(Tok::Error, start, end, line, col, true, TokVal::Error(msg.to_string()));
    cur.bump();
    let mut first_err: Option<&'static str> = None;
    loop {
        match cur.peek() {
            None | Some('\n') => {
                return err(first_err.unwrap_or("literal not terminated"), cur.pos);
            }
            Some('"') => {
                cur.bump();
                break;
            }
            Some('\\') => {
                let ok = scan_escape(cur, '"');
                if !ok && first_err.is_none() {
                    first_err = Some("invalid char escape");
                }
            }
            Some('\0') => {
                if first_err.is_none() {
                    first_err = Some("invalid character NUL");
                }
                cur.bump();
            }
            Some(_) => {
                cur.bump();
            }
        }
    }
    if let Some(msg) = first_err {
        return err(msg, cur.pos);
    }
    let raw = &cur.src[start + 1..cur.pos - 1];
    match unquote_go(raw) {
        Ok(s) => token(Tok::Str, start, cur.pos, line, col, true, TokVal::Str(s)),
        Err(msg) => err(msg, cur.pos),
    }
}

fn scan_escape_digits(cur: &mut Cursor<'_>, base: u32, n: usize) -> bool {
    for _ in 0..n {
        match cur.peek() {
            Some(c) if c.is_digit(base) => {
                cur.bump();
            }
            _ => return false,
        }
    }
    true
}

/// Decodes the body of a double-quoted Go string literal whose escapes are syntactically valid.
fn unquote_go(raw: &str) -> Result<String, &'static str> {
    if !raw.contains('\\') {
        return Ok(raw.to_string());
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut chars = raw.char_indices().peekable();
    let hex = |s: &str| u32::from_str_radix(s, 16).map_err(|_| "invalid syntax");
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some((_, e)) = chars.next() else {
            return Err("invalid syntax");
        };
        let simple = match e {
            'a' => Some(7u8),
            'b' => Some(8),
            'f' => Some(12),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(11),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let body_start = i + 2;
        let (len, radix) = match e {
            '0'..='7' => (2, 8),
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            _ => return Err("invalid syntax"),
        };
        let (digits_start, digits_len) = if radix == 8 { (i + 1, 3) } else { (body_start, len) };
        let digits = raw.get(digits_start..digits_start + digits_len).ok_or("invalid syntax")?;
        for _ in 0..len {
            chars.next();
        }
        match e {
            '0'..='7' => {
                let v = u32::from_str_radix(digits, 8).map_err(|_| "invalid syntax")?;
                out.push(u8::try_from(v).map_err(|_| "invalid syntax")?);
            }
            'x' => out.push(hex(digits)? as u8),
            _ => {
                let c = char::from_u32(hex(digits)?).ok_or("invalid syntax")?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    String::from_utf8(out).map_err(|_| "invalid UTF-8 in string literal")
}

fn lex_char_literal(cur: &mut Cursor<'_>, start: usize, line: u32, col: u32) -> Token {
    cur.bump();
    let mut n = 0;
    let mut first_err: Option<&'static str> = None;
    loop {
        match cur.peek() {
            None | Some('\n') => {
                return token(
                    Tok::Error,
                    start,
                    cur.pos,
                    line,
                    col,
                    true,
                    TokVal::Error("literal not terminated".into()),
                );
            }
            Some('\'') => {
                cur.bump();
                break;
            }
            Some('\\') => {
                let ok = scan_escape(cur, '\'');
                if !ok && first_err.is_none() {
                    first_err = Some("invalid char escape");
                }
            }
            Some(_) => {
                cur.bump();
            }
        }
        n += 1;
    }
    if first_err.is_none() && n != 1 {
        first_err = Some("invalid char literal");
    }
    match first_err {
        Some(msg) => token(Tok::Error, start, cur.pos, line, col, true, TokVal::Error(msg.into())),
        None => token(Tok::Invalid, start, cur.pos, line, col, true, TokVal::None),
    }
}
