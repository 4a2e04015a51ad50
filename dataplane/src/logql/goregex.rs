//! Go (RE2) regular expressions on top of the `regex` crate.
//!
//! LogQL regexes are Go regexes. The `regex` crate accepts nearly the same language, with a few
//! differences this module bridges by rewriting the pattern before compiling it:
//! - `\d`, `\w`, `\s`, `\b` and their negations are ASCII-only in Go, Unicode-aware in Rust;
//! - Go reads `{` that does not start a valid repetition, `[` inside a class and `&&`, `--`, `~~`
//!   inside a class literally, Rust does not;
//! - Go supports `\Q...\E`, `\C` and octal escapes, and rejects stacked repetitions (`a**`),
//!   repeat counts above 1000, `\<`/`\>` as assertions and flags other than `imsU`;
//! - Go allows duplicate capture names; capture names are only kept where they matter.
//!
//! Errors are reported with Go's wording: `error parsing regexp: missing closing ): `(``.

use std::cell::RefCell;
use std::fmt;

use regex::Regex;

/// How many compiled regexes each thread keeps for reuse.
pub(crate) const CACHE_SIZE: usize = 128;

thread_local! {
    static CACHE: RefCell<Vec<(Anchor, bool, GoRegex)>> = const { RefCell::new(Vec::new()) };
}

/// How the pattern is embedded when compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// Unanchored, as line filters and the `regexp` parser use it.
    None,
    /// `^(?s:re)$`, as Prometheus label matchers compile it.
    FullDotAll,
}

/// A compiled Go regular expression that keeps its source.
///
/// Two values are equal when they were compiled from the same source in the same mode.
#[derive(Clone)]
pub struct GoRegex {
    source: String,
    re: Regex,
}

impl GoRegex {
    /// Compiles `source` unanchored, dropping capture names (for matching only).
    pub fn new(source: &str) -> Result<GoRegex, String> {
        GoRegex::compile(source, Anchor::None, false)
    }

    /// Compiles `source` in the given mode; `keep_names` preserves capture names (the caller
    /// must have rejected duplicate names, which Go allows and Rust does not).
    ///
    /// Compiled regexes are cached per thread (the last [`CACHE_SIZE`] distinct ones), so a query
    /// that repeats a matcher, or a dashboard that sends the same query again, compiles once.
    pub(crate) fn compile(source: &str, anchor: Anchor, keep_names: bool) -> Result<GoRegex, String> {
        let hit = CACHE.with(|c| {
            c.borrow()
                .iter()
                .find(|(a, k, r)| *a == anchor && *k == keep_names && r.source == source)
                .map(|(_, _, r)| r.clone())
        });
        if let Some(re) = hit {
            return Ok(re);
        }
        let re = GoRegex::compile_uncached(source, anchor, keep_names)?;
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= CACHE_SIZE {
                c.remove(0);
            }
            c.push((anchor, keep_names, re.clone()));
        });
        Ok(re)
    }

    fn compile_uncached(source: &str, anchor: Anchor, keep_names: bool) -> Result<GoRegex, String> {
        let translated = translate(source, keep_names).map_err(|e| e.message())?;
        let pattern = match anchor {
            Anchor::None => translated.pattern,
            Anchor::FullDotAll => format!("^(?s:{})$", translated.pattern),
        };
        let re = Regex::new(&pattern).map_err(|e| map_rust_error(&e, source).message())?;
        Ok(GoRegex { source: source.to_string(), re })
    }

    /// Compiles `source` unanchored, keeping capture names (for `${name}` references in
    /// replacements); a pattern that repeats a name (legal in Go) is compiled without names.
    pub fn with_names(source: &str) -> Result<GoRegex, String> {
        GoRegex::compile(source, Anchor::None, true).or_else(|_| GoRegex::new(source))
    }

    /// The pattern as written in the query.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The compiled regex (the translated, possibly anchored pattern).
    pub fn regex(&self) -> &Regex {
        &self.re
    }

    /// Whether the regex matches anywhere in `s` (everywhere, for anchored modes).
    pub fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }
}

impl PartialEq for GoRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.re.as_str() == other.re.as_str()
    }
}

impl fmt::Debug for GoRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GoRegex({:?})", self.source)
    }
}

/// The capture group names of a Go regex in order (unnamed groups excluded), or Go's error.
pub(crate) fn capture_names(source: &str) -> Result<Vec<String>, String> {
    translate(source, false).map(|t| t.names).map_err(|e| e.message())
}

/// A Go regexp parse error: a code and the offending fragment.
#[derive(Debug)]
struct GoError {
    code: &'static str,
    expr: String,
}

impl GoError {
    fn new(code: &'static str, expr: &str) -> GoError {
        GoError { code, expr: expr.to_string() }
    }

    fn message(&self) -> String {
        format!("error parsing regexp: {}: `{}`", self.code, self.expr)
    }
}

const MISSING_PAREN: &str = "missing closing )";
const UNEXPECTED_PAREN: &str = "unexpected )";
const MISSING_BRACKET: &str = "missing closing ]";
const INVALID_ESCAPE: &str = "invalid escape sequence";
const INVALID_CHAR_RANGE: &str = "invalid character class range";
const INVALID_NAMED_CAPTURE: &str = "invalid named capture";
const INVALID_PERL_OP: &str = "invalid or unsupported Perl syntax";
const INVALID_REPEAT_OP: &str = "invalid nested repetition operator";
const INVALID_REPEAT_SIZE: &str = "invalid repeat count";
const MISSING_REPEAT_ARG: &str = "missing argument to repetition operator";
const TRAILING_BACKSLASH: &str = "trailing backslash at end of expression";

fn map_rust_error(err: &regex::Error, source: &str) -> GoError {
    let text = err.to_string();
    let last = text.lines().last().unwrap_or("").to_ascii_lowercase();
    let code = if last.contains("size limit") {
        "expression too large"
    } else if last.contains("nest") {
        "expression nests too deeply"
    } else if last.contains("unclosed group") {
        MISSING_PAREN
    } else if last.contains("unopened group") {
        UNEXPECTED_PAREN
    } else if last.contains("unclosed character class") {
        MISSING_BRACKET
    } else if last.contains("repetition operator missing") {
        MISSING_REPEAT_ARG
    } else if last.contains("repetition") || last.contains("decimal") {
        INVALID_REPEAT_SIZE
    } else if last.contains("class") || last.contains("unicode") || last.contains("property") {
        INVALID_CHAR_RANGE
    } else if last.contains("escape") || last.contains("backreference") {
        INVALID_ESCAPE
    } else if last.contains("capture") || last.contains("group name") {
        INVALID_NAMED_CAPTURE
    } else {
        INVALID_PERL_OP
    };
    GoError::new(code, source)
}

struct Translated {
    pattern: String,
    names: Vec<String>,
}

const ASCII_DIGIT: &str = "0-9";
const ASCII_WORD: &str = "0-9A-Za-z_";
const ASCII_SPACE: &str = "\\t\\n\\x0C\\r ";

struct Translator<'a> {
    src: &'a str,
    pos: usize,
    out: String,
    keep_names: bool,
    names: Vec<String>,
    depth: usize,
    /// Whether something a repetition can apply to precedes (Go rejects `*` after `(` or `|`).
    has_atom: bool,
    /// Start offset of the previous token when it was a repetition operator.
    last_repeat: Option<usize>,
}

fn translate(src: &str, keep_names: bool) -> Result<Translated, GoError> {
    let mut t = Translator {
        src,
        pos: 0,
        out: String::with_capacity(src.len() + 16),
        keep_names,
        names: Vec::new(),
        depth: 0,
        has_atom: false,
        last_repeat: None,
    };
    t.run()?;
    Ok(Translated { pattern: t.out, names: t.names })
}

impl<'a> Translator<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn run(&mut self) -> Result<(), GoError> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            match c {
                '*' | '+' | '?' => {
                    self.pos += 1;
                    let lazy = self.rest().starts_with('?');
                    if lazy {
                        self.pos += 1;
                    }
                    self.repeat(start)?;
                    self.out.push(c);
                    if lazy {
                        self.out.push('?');
                    }
                    continue;
                }
                '{' => {
                    if let Some((len, lo, hi)) = parse_repeat(self.rest()) {
                        let text = &self.src[start..start + len];
                        if lo > 1000 || hi.is_some_and(|h| h > 1000 || h < lo) {
                            return Err(GoError::new(INVALID_REPEAT_SIZE, text));
                        }
                        self.pos += len;
                        let lazy = self.rest().starts_with('?');
                        if lazy {
                            self.pos += 1;
                        }
                        self.repeat(start)?;
                        self.out.push_str(text);
                        if lazy {
                            self.out.push('?');
                        }
                        continue;
                    }
                    self.pos += 1;
                    self.out.push_str("\\{");
                    self.has_atom = true;
                }
                '(' => self.open_group()?,
                ')' => {
                    if self.depth == 0 {
                        return Err(GoError::new(UNEXPECTED_PAREN, self.src));
                    }
                    self.depth -= 1;
                    self.pos += 1;
                    self.out.push(')');
                    self.has_atom = true;
                }
                '|' => {
                    self.pos += 1;
                    self.out.push('|');
                    self.has_atom = false;
                }
                '[' => {
                    self.class()?;
                    self.has_atom = true;
                }
                '\\' => self.escape()?,
                ']' | '}' => {
                    self.pos += 1;
                    self.out.push('\\');
                    self.out.push(c);
                    self.has_atom = true;
                }
                _ => {
                    self.pos += c.len_utf8();
                    self.out.push(c);
                    self.has_atom = true;
                }
            }
            self.last_repeat = None;
        }
        if self.depth != 0 {
            return Err(GoError::new(MISSING_PAREN, self.src));
        }
        Ok(())
    }

    /// Checks a repetition operator that spans `start..self.pos`.
    fn repeat(&mut self, start: usize) -> Result<(), GoError> {
        if let Some(prev) = self.last_repeat {
            return Err(GoError::new(INVALID_REPEAT_OP, &self.src[prev..self.pos]));
        }
        if !self.has_atom {
            return Err(GoError::new(MISSING_REPEAT_ARG, &self.src[start..self.pos]));
        }
        self.last_repeat = Some(start);
        Ok(())
    }

    fn open_group(&mut self) -> Result<(), GoError> {
        let rest = self.rest();
        if !rest.starts_with("(?") {
            self.pos += 1;
            self.depth += 1;
            self.out.push('(');
            self.names.push(String::new());
            self.has_atom = false;
            return Ok(());
        }
        let named_begin = if rest.starts_with("(?P<") {
            Some(4)
        } else if rest.starts_with("(?<") {
            Some(3)
        } else {
            None
        };
        if let Some(begin) = named_begin {
            let Some(end) = rest.find('>') else {
                return Err(GoError::new(INVALID_NAMED_CAPTURE, rest));
            };
            let name = &rest[begin..end];
            if name.is_empty() || !name.bytes().all(|b| b == b'_' || b.is_ascii_alphanumeric()) {
                return Err(GoError::new(INVALID_NAMED_CAPTURE, &rest[..=end]));
            }
            let name = name.to_string();
            self.pos += end + 1;
            self.depth += 1;
            if self.keep_names {
                self.out.push_str("(?P<");
                self.out.push_str(&name);
                self.out.push('>');
            } else {
                self.out.push('(');
            }
            self.names.push(name);
            self.has_atom = false;
            return Ok(());
        }
        // Flags: (?flags) or (?flags:...), flags from imsU with one optional '-'.
        let bytes = rest.as_bytes();
        let mut i = 2;
        let mut negated = false;
        let mut saw_flag = false;
        while i < bytes.len() {
            match bytes[i] {
                b'i' | b'm' | b's' | b'U' => saw_flag = true,
                b'-' if !negated => {
                    negated = true;
                    saw_flag = false;
                }
                b':' | b')' if !negated || saw_flag => {
                    let close = bytes[i] == b')';
                    self.out.push_str(&rest[..=i]);
                    self.pos += i + 1;
                    if !close {
                        self.depth += 1;
                        self.has_atom = false;
                    }
                    return Ok(());
                }
                _ => break,
            }
            i += 1;
        }
        let end = (i + 1).min(rest.len());
        let end = (0..=end).rev().find(|e| rest.is_char_boundary(*e)).unwrap_or(0);
        Err(GoError::new(INVALID_PERL_OP, &rest[..end]))
    }

    fn escape(&mut self) -> Result<(), GoError> {
        let rest = self.rest();
        let mut chars = rest.chars();
        chars.next();
        let Some(c) = chars.next() else {
            return Err(GoError::new(TRAILING_BACKSLASH, ""));
        };
        self.has_atom = true;
        match c {
            'A' | 'z' => {
                self.pos += 2;
                self.out.push('\\');
                self.out.push(c);
            }
            'b' => {
                self.pos += 2;
                self.out.push_str("(?-u:\\b)");
            }
            'B' => {
                self.pos += 2;
                self.out.push_str("(?-u:\\B)");
            }
            'C' => {
                self.pos += 2;
                self.out.push_str("(?s:.)");
            }
            'Q' => {
                let body = &rest[2..];
                let (lit, consumed) = match body.find("\\E") {
                    Some(i) => (&body[..i], i + 2),
                    None => (body, body.len()),
                };
                self.out.push_str("(?:");
                self.out.push_str(&regex::escape(lit));
                self.out.push(')');
                self.pos += 2 + consumed;
            }
            'd' | 'D' | 'w' | 'W' | 's' | 'S' => {
                self.pos += 2;
                let (set, neg) = perl_class(c);
                self.out.push('[');
                if neg {
                    self.out.push('^');
                }
                self.out.push_str(set);
                self.out.push(']');
            }
            'p' | 'P' => {
                let len = unicode_class_len(rest).ok_or_else(|| GoError::new(INVALID_CHAR_RANGE, rest))?;
                self.out.push_str(&rest[..len]);
                self.pos += len;
            }
            _ => {
                let (ch, len) = parse_escape(rest)?;
                self.pos += len;
                push_char_escaped(&mut self.out, ch);
            }
        }
        Ok(())
    }

    fn class(&mut self) -> Result<(), GoError> {
        let whole = self.rest();
        let whole_len = whole.len();
        let mut i = 1;
        let mut out = String::from("[");
        if whole[i..].starts_with('^') {
            out.push('^');
            i += 1;
        }
        let mut first = true;
        loop {
            let t = &whole[i..];
            if t.is_empty() {
                return Err(GoError::new(MISSING_BRACKET, whole));
            }
            if t.starts_with(']') && !first {
                i += 1;
                break;
            }
            first = false;
            if let Some(inner) = t.strip_prefix("[:")
                && let Some(end) = inner.find(":]")
            {
                let name = &inner[..end];
                let bare = name.strip_prefix('^').unwrap_or(name);
                if !POSIX_CLASSES.contains(&bare) {
                    return Err(GoError::new(INVALID_CHAR_RANGE, &t[..end + 4]));
                }
                out.push_str(&t[..end + 4]);
                i += end + 4;
                continue;
            }
            if t.starts_with("\\p") || t.starts_with("\\P") {
                let len = unicode_class_len(t).ok_or_else(|| GoError::new(INVALID_CHAR_RANGE, t))?;
                out.push_str(&t[..len]);
                i += len;
                continue;
            }
            if let Some(c @ ('d' | 'D' | 'w' | 'W' | 's' | 'S')) = t.strip_prefix('\\').and_then(|r| r.chars().next()) {
                let (set, neg) = perl_class(c);
                if neg {
                    out.push_str("[^");
                    out.push_str(set);
                    out.push(']');
                } else {
                    out.push_str(set);
                }
                i += 2;
                continue;
            }
            let (lo, len) = class_char(t, whole)?;
            let item_start = i;
            i += len;
            let mut hi = lo;
            let t2 = &whole[i..];
            if t2.len() >= 2 && t2.starts_with('-') && !t2[1..].starts_with(']') {
                i += 1;
                let (h, len2) = class_char(&whole[i..], whole)?;
                i += len2;
                hi = h;
                if hi < lo {
                    return Err(GoError::new(INVALID_CHAR_RANGE, &whole[item_start..i]));
                }
            }
            push_class_char(&mut out, lo);
            if hi != lo {
                out.push('-');
                push_class_char(&mut out, hi);
            }
        }
        out.push(']');
        debug_assert!(i <= whole_len);
        self.out.push_str(&out);
        self.pos += i;
        Ok(())
    }
}

const POSIX_CLASSES: [&str; 14] = [
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct", "space", "upper", "word",
    "xdigit",
];

fn perl_class(c: char) -> (&'static str, bool) {
    match c {
        'd' => (ASCII_DIGIT, false),
        'D' => (ASCII_DIGIT, true),
        'w' => (ASCII_WORD, false),
        'W' => (ASCII_WORD, true),
        's' => (ASCII_SPACE, false),
        _ => (ASCII_SPACE, true),
    }
}

/// Length of `\pN`, `\p{Name}`, `\PN` or `\P{Name}` at the start of `s`.
fn unicode_class_len(s: &str) -> Option<usize> {
    let after = &s[2..];
    if after.starts_with('{') {
        after.find('}').map(|e| 2 + e + 1)
    } else {
        after.chars().next().map(|c| 2 + c.len_utf8())
    }
}

/// One character of a class: a literal or an escape. Returns the character and bytes consumed.
fn class_char(t: &str, whole: &str) -> Result<(char, usize), GoError> {
    match t.chars().next() {
        None => Err(GoError::new(MISSING_BRACKET, whole)),
        Some('\\') => parse_escape(t),
        Some(c) => Ok((c, c.len_utf8())),
    }
}

/// Parses a single-character escape (octal, hex, C escapes, escaped punctuation) at the start of
/// `s` (which begins with a backslash), following Go's rules.
fn parse_escape(s: &str) -> Result<(char, usize), GoError> {
    let t = &s[1..];
    let Some(c) = t.chars().next() else {
        return Err(GoError::new(TRAILING_BACKSLASH, ""));
    };
    let invalid = |len: usize| {
        let end = (1 + len).min(s.len());
        let end = (0..=end).rev().find(|e| s.is_char_boundary(*e)).unwrap_or(0);
        GoError::new(INVALID_ESCAPE, &s[..end])
    };
    let bytes = t.as_bytes();
    match c {
        '1'..='7' if !bytes.get(1).is_some_and(|b| (b'0'..=b'7').contains(b)) => Err(invalid(1)),
        '0'..='7' => {
            let mut v = u32::from(bytes[0] - b'0');
            let mut n = 1;
            while n < 3 && bytes.get(n).is_some_and(|b| (b'0'..=b'7').contains(b)) {
                v = v * 8 + u32::from(bytes[n] - b'0');
                n += 1;
            }
            Ok((char::from_u32(v).unwrap_or('\0'), 1 + n))
        }
        'x' => {
            if t[1..].starts_with('{') {
                let Some(end) = t[2..].find('}') else {
                    return Err(invalid(t.len()));
                };
                let hex = &t[2..2 + end];
                let v = u32::from_str_radix(hex, 16)
                    .ok()
                    .filter(|_| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()));
                match v.and_then(char::from_u32) {
                    Some(ch) => Ok((ch, 1 + 2 + end + 1)),
                    None => Err(invalid(2 + end + 1)),
                }
            } else {
                let hex = t.get(1..3).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
                match hex.and_then(|h| u32::from_str_radix(h, 16).ok()).and_then(char::from_u32) {
                    Some(ch) => Ok((ch, 4)),
                    None => Err(invalid(t.chars().take(3).map(char::len_utf8).sum())),
                }
            }
        }
        'a' => Ok(('\u{07}', 2)),
        'f' => Ok(('\u{0c}', 2)),
        'n' => Ok(('\n', 2)),
        'r' => Ok(('\r', 2)),
        't' => Ok(('\t', 2)),
        'v' => Ok(('\u{0b}', 2)),
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok((c, 2)),
        c => Err(invalid(c.len_utf8())),
    }
}

fn push_char_escaped(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() || c == '_' || c == ' ' || (!c.is_ascii() && !c.is_control()) {
        out.push(c);
    } else {
        use std::fmt::Write as _;
        let _ = write!(out, "\\x{{{:X}}}", c as u32);
    }
}

fn push_class_char(out: &mut String, c: char) {
    push_char_escaped(out, c);
}

/// Parses `{n}`, `{n,}` or `{n,m}` at the start of `s`: (length, n, m) with m = None for `{n,}`
/// and m = Some(n) for `{n}`.
fn parse_repeat(s: &str) -> Option<(usize, u32, Option<u32>)> {
    let b = s.as_bytes();
    let mut i = 1;
    let num = |i: &mut usize| -> Option<u32> {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        if *i == start {
            return None;
        }
        // Go caps parsing at 1e8 and then rejects counts above 1000.
        Some(s[start..*i].parse::<u64>().map_or(u32::MAX, |v| v.min(u64::from(u32::MAX)) as u32))
    };
    let lo = num(&mut i)?;
    let hi = if b.get(i) == Some(&b',') {
        i += 1;
        if b.get(i) == Some(&b'}') { None } else { Some(num(&mut i)?) }
    } else {
        Some(lo)
    };
    if b.get(i) != Some(&b'}') {
        return None;
    }
    Some((i + 1, lo, hi))
}
