//! The `logfmt` parser stage: a logfmt decoder with go-logfmt's rules and error texts, over
//! borrowed bytes.

use std::ops::Range;

use crate::logql::LogfmtParser;

use super::labels::{Category, LineLabels};
use super::parsers::{Hints, push_label_value, sanitize_key};

/// Loki's `__error__` value for a line `logfmt --strict` cannot parse.
pub(crate) const LOGFMT_ERROR: &str = "LogfmtParserErr";

/// What [`Decoder::scan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A key, with its value when it has one.
    Pair { key: Range<usize>, value: Value },
    /// A malformed pair (the error is kept in [`Decoder::err`]); scanning can go on.
    Bad,
    /// Nothing left.
    End,
}

/// Where a value's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// `key` or `key=`: no value.
    None,
    /// A range of the line.
    Slice(Range<usize>),
    /// An unquoted escaped value, in the decoder's scratch buffer.
    Unquoted,
}

/// A logfmt decoder over one line.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    pos: usize,
    /// The first syntax error, as go-logfmt prints it.
    pub(crate) err: Option<String>,
    /// The value of the last pair when it needed unescaping.
    pub(crate) scratch: Vec<u8>,
}

impl Decoder {
    pub(crate) fn reset(&mut self) {
        self.pos = 0;
        self.err = None;
    }

    pub(crate) fn at_end(&self, line: &[u8]) -> bool {
        self.pos >= line.len()
    }

    fn syntax_error(&mut self, msg: &str) {
        self.err = Some(format!("logfmt syntax error at pos {} : {msg}", self.pos + 1));
    }

    fn unexpected(&mut self, c: u8) {
        let q = match c {
            b'\'' => "'\\''".to_string(),
            b'"' => "'\"'".to_string(),
            c => format!("'{}'", c as char),
        };
        self.syntax_error(&format!("unexpected {q}"));
    }

    fn skip_value(&mut self, line: &[u8]) -> Scan {
        match line[self.pos..].iter().position(|&c| c <= b' ') {
            Some(p) => self.pos += p,
            None => self.pos = line.len(),
        }
        Scan::Bad
    }

    /// Reads the next key/value pair.
    pub(crate) fn scan(&mut self, line: &[u8]) -> Scan {
        match line[self.pos.min(line.len())..].iter().position(|&c| c > b' ') {
            Some(p) => self.pos += p,
            None => {
                self.pos = line.len();
                return Scan::End;
            }
        }
        let start = self.pos;
        let mut multibyte = false;
        let mut i = self.pos;
        while i < line.len() {
            let c = line[i];
            if c == b'=' {
                self.pos = i;
                if self.pos == start {
                    self.unexpected(c);
                    return self.skip_value(line);
                }
                if multibyte && has_rune_error(&line[start..self.pos]) {
                    self.syntax_error("invalid key");
                    return self.skip_value(line);
                }
                return self.after_equal(line, start..self.pos);
            } else if c == b'"' {
                self.pos = i;
                self.unexpected(c);
                return self.skip_value(line);
            } else if c <= b' ' {
                self.pos = i;
                if multibyte && has_rune_error(&line[start..self.pos]) {
                    self.syntax_error("invalid key");
                    return Scan::Bad;
                }
                return Scan::Pair { key: start..self.pos, value: Value::None };
            } else if c >= 0x80 {
                multibyte = true;
            }
            i += 1;
        }
        self.pos = line.len();
        if multibyte && has_rune_error(&line[start..]) {
            self.syntax_error("invalid key");
            return Scan::Bad;
        }
        Scan::Pair { key: start..self.pos, value: Value::None }
    }

    fn after_equal(&mut self, line: &[u8], key: Range<usize>) -> Scan {
        self.pos += 1;
        if self.pos >= line.len() || line[self.pos] <= b' ' {
            return Scan::Pair { key, value: Value::None };
        }
        if line[self.pos] == b'"' {
            return self.quoted(line, key);
        }
        let start = self.pos;
        let mut i = self.pos;
        while i < line.len() {
            let c = line[i];
            if c == b'=' || c == b'"' {
                self.pos = i;
                self.unexpected(c);
                return self.skip_value(line);
            }
            if c <= b' ' {
                self.pos = i;
                return Scan::Pair { key, value: Value::Slice(start..i) };
            }
            i += 1;
        }
        self.pos = line.len();
        Scan::Pair { key, value: Value::Slice(start..line.len()) }
    }

    fn quoted(&mut self, line: &[u8], key: Range<usize>) -> Scan {
        let start = self.pos;
        let mut has_esc = false;
        let mut esc = false;
        let mut i = start + 1;
        while i < line.len() {
            let c = line[i];
            if esc {
                esc = false;
            } else if c == b'\\' {
                has_esc = true;
                esc = true;
            } else if c == b'"' {
                self.pos = i + 1;
                if has_esc {
                    self.scratch.clear();
                    if !unquote(&line[start + 1..i], &mut self.scratch) {
                        self.syntax_error("invalid quoted value");
                        return Scan::Bad;
                    }
                    return Scan::Pair { key, value: Value::Unquoted };
                }
                let value = if i > start + 1 { Value::Slice(start + 1..i) } else { Value::None };
                return Scan::Pair { key, value };
            }
            i += 1;
        }
        self.pos = line.len();
        self.syntax_error("unterminated quoted value");
        Scan::Bad
    }

    /// The bytes of a scanned value.
    pub(crate) fn value<'a>(&'a self, line: &'a [u8], v: &Value) -> &'a [u8] {
        match v {
            Value::None => &[],
            Value::Slice(r) => &line[r.clone()],
            Value::Unquoted => &self.scratch,
        }
    }
}

/// Whether bytes hold invalid UTF-8 or U+FFFD (Go's `bytes.ContainsRune(b, utf8.RuneError)`).
fn has_rune_error(b: &[u8]) -> bool {
    match std::str::from_utf8(b) {
        Ok(s) => s.contains('\u{fffd}'),
        Err(_) => true,
    }
}

/// JSON-style unquoting of a logfmt value body (between the quotes); false on a bad escape or a
/// control character.
fn unquote(body: &[u8], out: &mut Vec<u8>) -> bool {
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c == b'\\' {
            i += 1;
            let Some(&e) = body.get(i) else { return false };
            match e {
                b'"' | b'\\' | b'/' | b'\'' => out.push(e),
                b'b' => out.push(8),
                b'f' => out.push(12),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'u' => {
                    let Some(r) = hex4(&body[i + 1..]) else { return false };
                    i += 4;
                    let mut ch = char::from_u32(r);
                    if (0xd800..0xdc00).contains(&r) {
                        ch = None;
                        if body.get(i + 1) == Some(&b'\\')
                            && body.get(i + 2) == Some(&b'u')
                            && let Some(r2) = hex4(&body[i + 3..]).filter(|r2| (0xdc00..0xe000).contains(r2))
                        {
                            ch = char::from_u32(0x10000 + ((r - 0xd800) << 10) + (r2 - 0xdc00));
                            i += 6;
                        }
                    }
                    let ch = ch.unwrap_or('\u{fffd}');
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => return false,
            }
            i += 1;
        } else if c == b'"' || c < b' ' {
            return false;
        } else {
            out.push(c);
            i += 1;
        }
    }
    true
}

fn hex4(b: &[u8]) -> Option<u32> {
    let h = b.get(..4)?;
    let s = std::str::from_utf8(h).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// A compiled `| logfmt` stage.
#[derive(Debug, Clone)]
pub(crate) struct LogfmtStage {
    strict: bool,
    keep_empty: bool,
    /// `(label, key)` pairs of `logfmt a="b", c`; empty for the plain parser.
    extractions: Vec<(String, String)>,
}

impl LogfmtStage {
    pub(crate) fn new(p: &LogfmtParser) -> Self {
        Self {
            strict: p.strict,
            keep_empty: p.keep_empty,
            extractions: p.extractions.iter().map(|e| (e.label.clone(), e.expr.clone())).collect(),
        }
    }

    /// Parses `line` into `labels`.
    pub(crate) fn process(
        &self,
        line: &[u8],
        labels: &mut LineLabels,
        dec: &mut Decoder,
        key_buf: &mut String,
        hints: Option<&Hints>,
    ) {
        if hints.is_some_and(Hints::no_labels) {
            return;
        }
        if !self.extractions.is_empty() {
            return self.process_extractions(line, labels, dec, key_buf, hints);
        }
        dec.reset();
        while !dec.at_end(line) {
            let (key, value) = match dec.scan(line) {
                Scan::Pair { key, value } => (key, value),
                Scan::Bad if self.strict => break,
                Scan::Bad => continue,
                Scan::End => break,
            };
            let name = sanitize_key(&line[key], key_buf);
            if name.is_empty() || hints.is_some_and(|h| !h.may_extract(name)) {
                continue;
            }
            let suffix = labels.parsed_conflicts(name);
            if let Some(h) = hints
                && !h.should_extract_suffixed(name, suffix)
            {
                continue;
            }
            let bytes = dec.value(line, &value);
            if !self.keep_empty && bytes.is_empty() {
                continue;
            }
            labels.set_extracted(name, suffix, |out| push_label_value(out, bytes));
            if let Some(h) = hints
                && h.record(labels, name, suffix)
            {
                break;
            }
        }
        self.report_strict_error(dec, labels);
    }

    /// `logfmt a="b", c`: every listed label is set (empty when the key is missing); a key is
    /// matched after sanitizing, under its label's name.
    fn process_extractions(
        &self,
        line: &[u8],
        labels: &mut LineLabels,
        dec: &mut Decoder,
        key_buf: &mut String,
        hints: Option<&Hints>,
    ) {
        for (id, _) in &self.extractions {
            if !labels.base_has(id) {
                labels.set(Category::Parsed, id, "");
            }
        }
        dec.reset();
        while !dec.at_end(line) {
            let (key, value) = match dec.scan(line) {
                Scan::Pair { key, value } => (key, value),
                Scan::Bad if self.strict => break,
                Scan::Bad => continue,
                Scan::End => break,
            };
            let sanitized = sanitize_key(&line[key], key_buf);
            if sanitized.is_empty() {
                continue;
            }
            let id = self
                .extractions
                .iter()
                .find(|(_, k)| k == sanitized)
                .or_else(|| self.extractions.iter().find(|(id, _)| id == sanitized))
                .map(|(id, _)| id.as_str());
            let Some(id) = id else { continue };
            let suffix = labels.base_has(id);
            if suffix && hints.is_some_and(|h| !h.should_extract_suffixed(id, true)) {
                break;
            }
            let bytes = dec.value(line, &value);
            // Unlike the plain parser, a value with invalid UTF-8 becomes empty here.
            let valid = std::str::from_utf8(bytes).is_ok_and(|s| !s.contains('\u{fffd}'));
            labels.set_parsed_with(id, suffix, false, |out| {
                if valid {
                    push_label_value(out, bytes);
                }
            });
            if let Some(h) = hints
                && h.record(labels, id, suffix)
            {
                break;
            }
        }
        self.report_strict_error(dec, labels);
    }

    /// With `--strict`, the decoder's first error becomes the line's `__error__`.
    fn report_strict_error(&self, dec: &mut Decoder, labels: &mut LineLabels) {
        if self.strict
            && let Some(e) = dec.err.take()
        {
            labels.set_err(LOGFMT_ERROR);
            labels.set_err_details(&e);
        }
    }
}
