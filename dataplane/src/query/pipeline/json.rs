//! The `json` and `unpack` parser stages, on a small JSON scanner that walks borrowed bytes the
//! way Loki's JSON library does (lenient about numbers, strict about structure, with its error
//! texts in `__error_details__`).

use std::fmt;

use crate::logql::Extraction;

use super::labels::{Category, LineLabels};
use super::parsers::{Hints, append_sanitized, push_label_value, sanitize_key};

/// Loki's `__error__` value for a line the JSON parsers cannot read.
pub(crate) const JSON_ERROR: &str = "JSONParserErr";

/// The key whose value replaces the line in `unpack`.
const PACKED_ENTRY_KEY: &str = "_entry";

/// A JSON syntax error, with the JSON library's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonError {
    Malformed,
    MalformedString,
    MalformedArray,
    MalformedObject,
    UnknownValueType,
    BadEscape,
    NotAnObject,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonError::Malformed => "Malformed JSON error",
            JsonError::MalformedString => "Value is string, but can't find closing '\"' symbol",
            JsonError::MalformedArray => "Value is array, but can't find closing ']' symbol",
            JsonError::MalformedObject => "Value looks like object, but can't find closing '}' symbol",
            JsonError::UnknownValueType => "Unknown value type",
            JsonError::BadEscape => "Encountered an invalid escape sequence in a string",
            JsonError::NotAnObject => "expecting json object(6), but it is not",
        })
    }
}

/// The type of a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Number,
    Object,
    Array,
    Bool,
    Null,
}

/// A value found by the scanner: its kind, its bytes (a string without its quotes, still
/// escaped), and where the scan continues.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found<'a> {
    pub(crate) kind: Kind,
    pub(crate) raw: &'a [u8],
    pub(crate) escaped: bool,
    end: usize,
}

fn next_token(data: &[u8], from: usize) -> Option<usize> {
    data[from.min(data.len())..].iter().position(|c| !matches!(c, b' ' | b'\n' | b'\r' | b'\t')).map(|p| from + p)
}

/// The end (just past the closing quote) of a string whose body starts at `data[0]`, and
/// whether it holds a backslash.
fn string_end(data: &[u8]) -> Option<(usize, bool)> {
    let mut escaped = false;
    let mut from = 0;
    while let Some(p) = memchr::memchr2(b'"', b'\\', &data[from..]) {
        let i = from + p;
        if data[i] == b'\\' {
            escaped = true;
            from = i + 2;
            if from > data.len() {
                return None;
            }
            continue;
        }
        return Some((i + 1, escaped));
    }
    None
}

/// The end of the block (`{...}` or `[...]`) starting at `data[0]`, skipping strings.
fn block_end(data: &[u8], open: u8, close: u8) -> Option<usize> {
    let mut level = 0i32;
    let mut i = 0;
    while i < data.len() {
        let c = data[i];
        if c == b'"' {
            let (se, _) = string_end(&data[i + 1..])?;
            i += se;
        } else if c == open {
            level += 1;
        } else if c == close {
            level -= 1;
            if level == 0 {
                return Some(i + 1);
            }
        }
        i += 1;
    }
    None
}

fn token_end(data: &[u8]) -> usize {
    data.iter().position(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t' | b',' | b'}' | b']')).unwrap_or(data.len())
}

/// The value starting at the first token at or after `from`.
pub(crate) fn value_at(data: &[u8], from: usize) -> Result<Found<'_>, JsonError> {
    let off = next_token(data, from).ok_or(JsonError::Malformed)?;
    let rest = &data[off..];
    Ok(match rest[0] {
        b'"' => {
            let (end, escaped) = string_end(&rest[1..]).ok_or(JsonError::MalformedString)?;
            Found { kind: Kind::String, raw: &rest[1..end], escaped, end: off + 1 + end }
        }
        b'[' => {
            let end = block_end(rest, b'[', b']').ok_or(JsonError::MalformedArray)?;
            Found { kind: Kind::Array, raw: &rest[..end], escaped: false, end: off + end }
        }
        b'{' => {
            let end = block_end(rest, b'{', b'}').ok_or(JsonError::MalformedObject)?;
            Found { kind: Kind::Object, raw: &rest[..end], escaped: false, end: off + end }
        }
        c => {
            let end = token_end(rest);
            let raw = &rest[..end];
            let kind = match c {
                b't' | b'f' if raw == b"true" || raw == b"false" => Kind::Bool,
                b'n' | b'u' if raw == b"null" => Kind::Null,
                b'0'..=b'9' | b'-' => Kind::Number,
                _ => return Err(JsonError::UnknownValueType),
            };
            Found { kind, raw, escaped: false, end: off + end }
        }
    })
}

/// What an object callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// The callback of [`object_each`]: a key, its value and a scratch buffer.
pub(crate) type ObjectCallback<'a, 'c> = dyn FnMut(&[u8], Found<'a>, &mut Vec<u8>) -> Result<Flow, JsonError> + 'c;

/// Calls `cb` with every key (unescaped into `key_buf` when needed) and value of the object in
/// `data`. Trailing bytes after the object are ignored.
pub(crate) fn object_each<'a>(
    data: &'a [u8],
    key_buf: &mut Vec<u8>,
    cb: &mut ObjectCallback<'a, '_>,
) -> Result<Flow, JsonError> {
    let mut off = match next_token(data, 0) {
        Some(o) if data[o] == b'{' => o + 1,
        _ => return Err(JsonError::MalformedObject),
    };
    off = next_token(data, off).ok_or(JsonError::Malformed)?;
    if data[off] == b'}' {
        return Ok(Flow::Continue);
    }
    while off < data.len() {
        match data[off] {
            b'"' => off += 1,
            b'}' => return Ok(Flow::Continue),
            _ => return Err(JsonError::MalformedObject),
        }
        let (end, escaped) = string_end(&data[off..]).ok_or(JsonError::Malformed)?;
        let raw_key = &data[off..off + end - 1];
        off += end;
        let colon = next_token(data, off).ok_or(JsonError::Malformed)?;
        if data[colon] != b':' {
            return Err(JsonError::Malformed);
        }
        off = colon + 1;
        let value = value_at(data, off)?;
        let flow = if escaped {
            let mut k = std::mem::take(key_buf);
            k.clear();
            if !unescape(raw_key, &mut k) {
                *key_buf = k;
                return Err(JsonError::BadEscape);
            }
            let flow = cb(&k, value, key_buf);
            *key_buf = k;
            flow?
        } else {
            cb(raw_key, value, key_buf)?
        };
        if flow == Flow::Stop {
            return Ok(Flow::Stop);
        }
        off = value.end;
        off = next_token(data, off).ok_or(JsonError::MalformedArray)?;
        match data[off] {
            b'}' => return Ok(Flow::Continue),
            b',' => off += 1,
            _ => return Err(JsonError::MalformedObject),
        }
        off = next_token(data, off).ok_or(JsonError::MalformedArray)?;
    }
    Err(JsonError::MalformedObject)
}

/// Unescapes a JSON string body; false on an invalid escape.
pub(crate) fn unescape(raw: &[u8], out: &mut Vec<u8>) -> bool {
    let mut i = 0;
    while i < raw.len() {
        let Some(p) = memchr::memchr(b'\\', &raw[i..]) else {
            out.extend_from_slice(&raw[i..]);
            return true;
        };
        out.extend_from_slice(&raw[i..i + p]);
        i += p + 1;
        let Some(&e) = raw.get(i) else { return false };
        i += 1;
        match e {
            b'"' | b'\\' | b'/' => out.push(e),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'u' => {
                let Some(r) = hex4(&raw[i..]) else { return false };
                i += 4;
                let c = if (0xd800..0xe000).contains(&r) {
                    // A surrogate must be a high one followed by an escaped low one.
                    if raw.get(i) != Some(&b'\\') || raw.get(i + 1) != Some(&b'u') {
                        return false;
                    }
                    let Some(r2) = hex4(&raw[i + 2..]) else { return false };
                    if !(0xdc00..0xe000).contains(&r2) || r >= 0xdc00 {
                        return false;
                    }
                    i += 6;
                    char::from_u32(0x10000 + ((r - 0xd800) << 10) + (r2 - 0xdc00))
                } else {
                    char::from_u32(r)
                };
                let c = c.unwrap_or('\u{fffd}');
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return false,
        }
    }
    true
}

fn hex4(b: &[u8]) -> Option<u32> {
    let h = b.get(..4)?;
    if !h.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
}

/// Appends a JSON value as a label value: strings unescaped (empty on a bad escape), invalid
/// UTF-8 replaced with spaces; numbers as written; booleans as `true`/`false`.
fn push_value(out: &mut String, v: &Found<'_>, scratch: &mut Vec<u8>) {
    match v.kind {
        Kind::String if v.escaped => {
            scratch.clear();
            if unescape(v.raw, scratch) {
                push_label_value(out, scratch);
            }
        }
        Kind::String => push_label_value(out, v.raw),
        Kind::Number => push_label_value(out, v.raw),
        Kind::Bool => out.push_str(if v.raw == b"true" { "true" } else { "false" }),
        Kind::Null | Kind::Object | Kind::Array => {}
    }
}

/// Per-stream scratch buffers of the JSON stages.
#[derive(Debug, Default)]
pub(crate) struct JsonScratch {
    prefix: String,
    key: String,
    key_bytes: Vec<u8>,
    value: Vec<u8>,
    pending: Vec<(String, String)>,
}

/// `| json`: every string, number and boolean of the object becomes a label; nested objects
/// flatten with `_`; arrays and nulls are skipped.
pub(crate) fn parse_json(line: &[u8], labels: &mut LineLabels, s: &mut JsonScratch, hints: Option<&Hints>) {
    if hints.is_some_and(Hints::no_labels) {
        return;
    }
    s.prefix.clear();
    let JsonScratch { prefix, key, key_bytes, value, .. } = s;
    if let Err(e) = walk(line, prefix, key, key_bytes, value, labels, hints) {
        labels.set_err(JSON_ERROR);
        labels.set_err_details(&e.to_string());
    }
}

fn walk(
    data: &[u8],
    prefix: &mut String,
    key: &mut String,
    key_bytes: &mut Vec<u8>,
    value: &mut Vec<u8>,
    labels: &mut LineLabels,
    hints: Option<&Hints>,
) -> Result<Flow, JsonError> {
    object_each(data, key_bytes, &mut |k, v, key_bytes| match v.kind {
        Kind::String | Kind::Number | Kind::Bool => {
            let name: &str = if prefix.is_empty() {
                sanitize_key(k, key)
            } else {
                key.clear();
                key.push_str(prefix);
                key.push('_');
                append_sanitized(key, k);
                key.as_str()
            };
            if name.is_empty() || hints.is_some_and(|h| !h.may_extract(name)) {
                return Ok(Flow::Continue);
            }
            let suffix = labels.parsed_conflicts(name);
            if hints.is_some_and(|h| !h.should_extract_suffixed(name, suffix)) {
                return Ok(Flow::Continue);
            }
            labels.set_extracted(name, suffix, |out| push_value(out, &v, value));
            if let Some(h) = hints
                && h.record(labels, name, suffix)
            {
                return Ok(Flow::Stop);
            }
            Ok(Flow::Continue)
        }
        Kind::Object => {
            let len = prefix.len();
            if !prefix.is_empty() {
                prefix.push('_');
            }
            append_sanitized(prefix, k);
            let flow = if hints.is_none_or(|h| h.should_extract_prefix(prefix)) {
                walk(v.raw, prefix, key, key_bytes, value, labels, hints)
            } else {
                Ok(Flow::Continue)
            };
            prefix.truncate(len);
            flow
        }
        Kind::Array | Kind::Null => Ok(Flow::Continue),
    })
}

/// One step of a JSON path expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathStep {
    Key(String),
    Index(usize),
}

/// Parses a `json` extraction expression: `a.b`, `a[0]`, `["key with.dots"]`, `a.b[1].c`.
pub(crate) fn parse_path(expr: &str) -> Result<Vec<PathStep>, String> {
    let b = expr.as_bytes();
    let mut steps = Vec::new();
    let mut i = 0;
    let mut expect_field = true;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' => i += 1,
            b'.' if !steps.is_empty() && !expect_field => {
                i += 1;
                expect_field = true;
            }
            b'[' => {
                i += 1;
                while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n') {
                    i += 1;
                }
                if i < b.len() && b[i] == b'"' {
                    let start = i + 1;
                    let mut j = start;
                    while j < b.len() && b[j] != b'"' && b[j] != b']' {
                        j += 1;
                    }
                    steps.push(PathStep::Key(expr[start..j].to_string()));
                    i = j;
                    if i < b.len() && b[i] == b'"' {
                        i += 1;
                    }
                } else {
                    let start = i;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    if i < b.len() && b[i] == b'.' {
                        return Err("cannot use float as array index".to_string());
                    }
                    if start == i {
                        return Err(format!("syntax error: unexpected {}", char_at(expr, i)));
                    }
                    let n = expr[start..i].parse().map_err(|_| "index out of range".to_string())?;
                    steps.push(PathStep::Index(n));
                }
                while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n') {
                    i += 1;
                }
                if i >= b.len() || b[i] != b']' {
                    return Err(format!("syntax error: unexpected {}, expecting ]", char_at(expr, i)));
                }
                i += 1;
                expect_field = false;
            }
            c if expect_field && (c.is_ascii_alphabetic() || c == b'_') => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                steps.push(PathStep::Key(expr[start..i].to_string()));
                expect_field = false;
            }
            _ => return Err(format!("syntax error: unexpected {}", char_at(expr, i))),
        }
    }
    if steps.is_empty() || (expect_field && b.last() == Some(&b'.')) {
        return Err("syntax error: unexpected $end".to_string());
    }
    Ok(steps)
}

fn char_at(s: &str, i: usize) -> String {
    s.get(i..).and_then(|r| r.chars().next()).map_or("$end".to_string(), |c| c.to_string())
}

/// The value at `path` in `data`, or `None` when the path does not exist.
fn find_path<'a>(data: &'a [u8], path: &[PathStep], key_buf: &mut Vec<u8>) -> Result<Option<Found<'a>>, JsonError> {
    let mut cur = value_at(data, 0)?;
    for step in path {
        match step {
            PathStep::Key(k) => {
                if cur.kind != Kind::Object {
                    return Ok(None);
                }
                let mut hit = None;
                object_each(cur.raw, key_buf, &mut |key, v, _| {
                    if key == k.as_bytes() {
                        hit = Some(v);
                        return Ok(Flow::Stop);
                    }
                    Ok(Flow::Continue)
                })?;
                match hit {
                    Some(v) => cur = v,
                    None => return Ok(None),
                }
            }
            PathStep::Index(n) => {
                if cur.kind != Kind::Array {
                    return Ok(None);
                }
                match array_nth(cur.raw, *n)? {
                    Some(v) => cur = v,
                    None => return Ok(None),
                }
            }
        }
    }
    Ok(Some(cur))
}

fn array_nth(data: &[u8], n: usize) -> Result<Option<Found<'_>>, JsonError> {
    let mut off = next_token(data, 0).ok_or(JsonError::Malformed)? + 1;
    let first = next_token(data, off).ok_or(JsonError::MalformedArray)?;
    if data[first] == b']' {
        return Ok(None);
    }
    let mut i = 0;
    loop {
        let v = value_at(data, off)?;
        if i == n {
            return Ok(Some(v));
        }
        i += 1;
        off = next_token(data, v.end).ok_or(JsonError::MalformedArray)?;
        match data[off] {
            b',' => off += 1,
            _ => return Ok(None),
        }
    }
}

/// A compiled `| json a="path", b` stage.
#[derive(Debug, Clone)]
pub(crate) struct JsonExprStage {
    exprs: Vec<(String, Vec<PathStep>)>,
}

impl JsonExprStage {
    pub(crate) fn new(extractions: &[Extraction]) -> Result<Self, String> {
        let mut exprs = Vec::with_capacity(extractions.len());
        for e in extractions {
            let path = parse_path(&e.expr).map_err(|err| format!("cannot parse expression [{}]: {err}", e.expr))?;
            if !crate::labels::is_valid_label_name(&e.label) {
                return Err(format!("invalid extracted label name '{}'", e.label));
            }
            exprs.push((e.label.clone(), path));
        }
        Ok(Self { exprs })
    }

    pub(crate) fn process(&self, line: &[u8], labels: &mut LineLabels, s: &mut JsonScratch, hints: Option<&Hints>) {
        if line.is_empty() || hints.is_some_and(Hints::no_labels) {
            return;
        }
        if !matches!(line[0], b'"' | b'{' | b'[') {
            labels.set_err(JSON_ERROR);
            return;
        }
        for (id, path) in &self.exprs {
            let found = match find_path(line, path, &mut s.key_bytes) {
                Ok(f) => f,
                Err(e) => {
                    labels.set_err(JSON_ERROR);
                    labels.set_err_details(&e.to_string());
                    None
                }
            };
            let Some(v) = found else {
                if labels.get(id).is_none() {
                    labels.set(Category::Parsed, id, "");
                }
                continue;
            };
            let suffix = labels.parsed_conflicts(id);
            let value = &mut s.value;
            labels.set_parsed_with(id, suffix, false, |out| match v.kind {
                Kind::Null => {}
                Kind::Object => super::parsers::push_lossy(out, v.raw),
                _ => {
                    value.clear();
                    if unescape(v.raw, value) {
                        push_label_value(out, value);
                    }
                }
            });
        }
    }
}

/// `| unpack`: the string fields of a packed JSON line become labels and `_entry` becomes the
/// line; labels are only set when the line has an `_entry`. Returns the new line, if any.
pub(crate) fn unpack(
    line: &[u8],
    labels: &mut LineLabels,
    s: &mut JsonScratch,
    hints: Option<&Hints>,
    entry: &mut Vec<u8>,
) -> bool {
    if line.is_empty() || hints.is_some_and(Hints::no_labels) {
        return false;
    }
    if line[0] != b'{' {
        labels.set_err(JSON_ERROR);
        labels.set_err_details(&JsonError::NotAnObject.to_string());
        return false;
    }
    s.pending.clear();
    let mut packed = false;
    let JsonScratch { pending, key_bytes, key, .. } = s;
    let res = object_each(line, key_bytes, &mut |k, v, _| {
        if v.kind != Kind::String {
            return Ok(Flow::Continue);
        }
        if k == PACKED_ENTRY_KEY.as_bytes() {
            entry.clear();
            if !unescape(v.raw, entry) {
                return Err(JsonError::BadEscape);
            }
            packed = true;
            return Ok(Flow::Continue);
        }
        let raw_name = String::from_utf8_lossy(k);
        let suffix = labels.parsed_conflicts(&raw_name);
        if hints.is_some_and(|h| !h.should_extract_suffixed(&raw_name, suffix)) {
            return Ok(Flow::Continue);
        }
        let mut name = sanitize_key(k, key).to_string();
        if suffix {
            name.push_str(super::labels::DUPLICATE_SUFFIX);
        }
        let mut value = String::new();
        let mut buf = Vec::new();
        if unescape(v.raw, &mut buf) {
            push_label_value(&mut value, &buf);
        }
        pending.push((name, value));
        Ok(Flow::Continue)
    });
    if let Err(e) = res {
        labels.set_err(JSON_ERROR);
        labels.set_err_details(&e.to_string());
        return false;
    }
    if packed {
        for (name, value) in pending.iter() {
            labels.set_extracted(name, false, |out| out.push_str(value));
        }
    }
    packed
}
