//! Label sets: parsing Loki's `{name="value", ...}` form, the canonical string, and stream
//! fingerprints.
//!
//! A stream is identified by its tenant and its label set. Label sets are kept sorted by name so
//! that two pushes naming the same labels in a different order land in the same stream, and the
//! canonical string (`{a="1", b="2"}`, values quoted like Go's `strconv.Quote`) is what responses,
//! error messages and the WAL carry.

use std::fmt;
use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3;

/// One `name="value"` pair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: value.into() }
    }
}

/// A label set sorted by name. Construction through [`Labels::from_pairs`] or [`Labels::parse`]
/// keeps pairs in the order given so duplicates can still be reported; [`Labels::sorted`] gives
/// the normalized form used as a stream identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

/// Why a label string could not be parsed. The message follows Loki's parser wording closely
/// enough that clients see the same kind of text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse error at line 1, col {col}: {msg}")]
pub struct LabelParseError {
    /// 1-based column of the offending character.
    pub col: usize,
    pub msg: String,
}

impl Labels {
    /// Builds a label set from pairs, keeping their order.
    pub fn from_pairs<I, N, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<String>,
    {
        Self(pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect())
    }

    pub fn from_vec(labels: Vec<Label>) -> Self {
        Self(labels)
    }

    /// Parses `{a="b", c="d"}` (the `labels` string of a protobuf push). Only `=` matchers are
    /// allowed; values use Go string-literal escapes (`\"`, `\\`, `\n`, `\t`, `\uXXXX`, ...).
    /// Backtick-quoted values are taken literally, as Loki does. The result keeps input order.
    pub fn parse(input: &str) -> Result<Self, LabelParseError> {
        Parser { src: input, pos: 0 }.labels()
    }

    /// The same set sorted by name (stable, so duplicate names stay adjacent and in input order).
    pub fn sorted(mut self) -> Self {
        self.0.sort_by(|a, b| a.name.cmp(&b.name));
        self
    }

    pub fn is_sorted(&self) -> bool {
        self.0.windows(2).all(|w| w[0].name <= w[1].name)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|l| l.name == name).map(|l| l.value.as_str())
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// First name that appears twice, assuming the set is sorted.
    pub fn first_duplicate(&self) -> Option<&str> {
        self.0.windows(2).find(|w| w[0].name == w[1].name).map(|w| w[0].name.as_str())
    }

    /// Fingerprint of a stream: the tenant and the canonical label string hashed together, so the
    /// same labels in two tenants are two streams.
    pub fn fingerprint(&self, tenant: &str) -> u64 {
        let mut h = Xxh3::new();
        h.update(tenant.as_bytes());
        h.update(&[0xff]);
        for l in &self.0 {
            h.update(l.name.as_bytes());
            h.update(&[0xfe]);
            h.update(l.value.as_bytes());
            h.update(&[0xff]);
        }
        h.digest()
    }
}

impl fmt::Display for Labels {
    /// The canonical form, `{a="1", b="2"}`, with values quoted like Go's `strconv.Quote`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(&l.name)?;
            f.write_str("=")?;
            write_go_quoted(f, &l.value)?;
        }
        f.write_str("}")
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Writes `s` as a double-quoted Go string literal (the escaping `strconv.Quote` applies).
pub fn write_go_quoted(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            '\u{07}' => out.write_str("\\a")?,
            '\u{08}' => out.write_str("\\b")?,
            '\u{0c}' => out.write_str("\\f")?,
            '\u{0b}' => out.write_str("\\v")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(out, "\\x{:02x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

/// Whether `name` is a valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// A label set shared between a stream, its chunks and query results without copying.
pub type SharedLabels = Arc<Labels>;

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, LabelParseError> {
        let col = self.src[..self.pos.min(self.src.len())].chars().count() + 1;
        Err(LabelParseError { col, msg: msg.into() })
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    fn expect(&mut self, want: char) -> Result<(), LabelParseError> {
        self.skip_ws();
        match self.peek() {
            Some(c) if c == want => {
                self.pos += c.len_utf8();
                Ok(())
            }
            Some(c) => self.err(format!("syntax error: unexpected {}, expecting {}", describe(c), describe(want))),
            None => self.err(format!("syntax error: unexpected end of input, expecting {}", describe(want))),
        }
    }

    fn labels(mut self) -> Result<Labels, LabelParseError> {
        self.expect('{')?;
        let mut out = Vec::new();
        self.skip_ws();
        if self.peek() == Some('}') {
            self.pos += 1;
        } else {
            loop {
                let name = self.ident()?;
                self.skip_ws();
                match self.peek() {
                    Some('=') => {
                        self.pos += 1;
                        if matches!(self.peek(), Some('~') | Some('=')) {
                            return self.err("syntax error: only equality matchers are allowed in a label set");
                        }
                    }
                    Some('!') => {
                        return self.err("syntax error: only equality matchers are allowed in a label set");
                    }
                    Some(c) => {
                        return self.err(format!("syntax error: unexpected {}, expecting =", describe(c)));
                    }
                    None => return self.err("syntax error: unexpected end of input, expecting ="),
                }
                let value = self.string()?;
                out.push(Label { name, value });
                self.skip_ws();
                match self.peek() {
                    Some(',') => {
                        self.pos += 1;
                    }
                    Some('}') => {
                        self.pos += 1;
                        break;
                    }
                    Some(c) => {
                        return self.err(format!("syntax error: unexpected {}, expecting , or }}", describe(c)));
                    }
                    None => {
                        return self.err("syntax error: unexpected end of input, expecting , or }");
                    }
                }
            }
        }
        self.skip_ws();
        if let Some(c) = self.peek() {
            return self.err(format!("syntax error: unexpected {} after the label set", describe(c)));
        }
        Ok(Labels(out))
    }

    fn ident(&mut self) -> Result<String, LabelParseError> {
        self.skip_ws();
        let start = self.pos;
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() {
            let c = bytes[self.pos];
            let ok = c.is_ascii_alphabetic() || c == b'_' || (self.pos > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return match self.peek() {
                Some(c) => self.err(format!("syntax error: unexpected {}, expecting IDENTIFIER", describe(c))),
                None => self.err("syntax error: unexpected end of input, expecting IDENTIFIER"),
            };
        }
        Ok(self.src[start..self.pos].to_string())
    }

    fn string(&mut self) -> Result<String, LabelParseError> {
        self.skip_ws();
        match self.peek() {
            Some('"') => {}
            Some('`') => {
                self.pos += 1;
                let rest = &self.src[self.pos..];
                return match rest.find('`') {
                    Some(end) => {
                        self.pos += end + 1;
                        Ok(rest[..end].to_string())
                    }
                    None => self.err("literal not terminated"),
                };
            }
            Some(c) => {
                return self.err(format!("syntax error: unexpected {}, expecting STRING", describe(c)));
            }
            None => return self.err("syntax error: unexpected end of input, expecting STRING"),
        }
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return self.err("literal not terminated");
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\n' => return self.err("literal not terminated"),
                '\\' => self.escape(&mut out)?,
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), LabelParseError> {
        let Some(c) = self.peek() else {
            return self.err("literal not terminated");
        };
        self.pos += c.len_utf8();
        let simple = match c {
            'a' => Some('\u{07}'),
            'b' => Some('\u{08}'),
            'f' => Some('\u{0c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{0b}'),
            '\\' => Some('\\'),
            '"' => Some('"'),
            '\'' => Some('\''),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            return Ok(());
        }
        let digits = match c {
            'x' => 2,
            'u' => 4,
            'U' => 8,
            '0'..='7' => {
                let rest = &self.src[self.pos..];
                if rest.len() < 2 || !rest.as_bytes()[..2].iter().all(|b| (b'0'..=b'7').contains(b)) {
                    return self.err("invalid syntax: bad octal escape");
                }
                let v = u32::from_str_radix(&format!("{c}{}", &rest[..2]), 8).unwrap_or(256);
                self.pos += 2;
                return match char::from_u32(v).filter(|_| v < 256) {
                    Some(ch) => {
                        out.push(ch);
                        Ok(())
                    }
                    None => self.err("invalid syntax: octal escape value > 255"),
                };
            }
            _ => return self.err(format!("invalid syntax: unknown escape sequence \\{c}")),
        };
        let rest = &self.src[self.pos..];
        if rest.len() < digits || !rest.as_bytes()[..digits].iter().all(u8::is_ascii_hexdigit) {
            return self.err("invalid syntax: bad hex escape");
        }
        let v = u32::from_str_radix(&rest[..digits], 16).unwrap_or(u32::MAX);
        self.pos += digits;
        match char::from_u32(v) {
            Some(ch) => {
                out.push(ch);
                Ok(())
            }
            None => self.err("invalid syntax: escape is not a valid unicode code point"),
        }
    }
}

fn describe(c: char) -> String {
    match c {
        '{' => "{".into(),
        '}' => "}".into(),
        ',' => ",".into(),
        '=' => "=".into(),
        c => format!("{c:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonical_form() {
        let l = Labels::parse(r#"{job="api", app = "web\"x\n"}"#).unwrap().sorted();
        assert_eq!(l.to_string(), r#"{app="web\"x\n", job="api"}"#);
        assert_eq!(l.get("job"), Some("api"));
    }

    #[test]
    fn empty_set_and_backticks() {
        assert!(Labels::parse("{}").unwrap().is_empty());
        let l = Labels::parse(r"{a=`x\y`}").unwrap();
        assert_eq!(l.get("a"), Some(r"x\y"));
    }

    #[test]
    fn rejects_malformed_input_with_position() {
        let e = Labels::parse(r#"{a="b""#).unwrap_err();
        assert!(e.to_string().starts_with("parse error at line 1, col 7"), "{e}");
        assert!(Labels::parse(r#"{a=~"b"}"#).is_err());
        assert!(Labels::parse(r#"{1a="b"}"#).is_err());
        assert!(Labels::parse(r#"a="b""#).is_err());
        assert!(Labels::parse(r#"{a="b"} x"#).is_err());
        assert!(Labels::parse(r#"{a="\q"}"#).is_err());
    }

    #[test]
    fn duplicates_survive_parsing_and_are_found_after_sorting() {
        let l = Labels::parse(r#"{b="1", a="2", b="3"}"#).unwrap().sorted();
        assert_eq!(l.first_duplicate(), Some("b"));
    }

    #[test]
    fn fingerprint_depends_on_tenant_and_labels_not_input_order() {
        let a = Labels::parse(r#"{a="1", b="2"}"#).unwrap().sorted();
        let b = Labels::parse(r#"{b="2", a="1"}"#).unwrap().sorted();
        assert_eq!(a.fingerprint("t"), b.fingerprint("t"));
        assert_ne!(a.fingerprint("t"), a.fingerprint("u"));
        // name/value boundaries matter
        let c = Labels::from_pairs([("ab", "c")]);
        let d = Labels::from_pairs([("a", "bc")]);
        assert_ne!(c.fingerprint("t"), d.fingerprint("t"));
    }

    #[test]
    fn label_name_validity() {
        assert!(is_valid_label_name("__name__"));
        assert!(is_valid_label_name("a1"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name("a-b"));
        assert!(!is_valid_label_name(""));
    }

    #[test]
    fn go_quoting_round_trips_through_the_parser() {
        let v = "tab\there \"q\" back\\slash \u{1} é";
        let l = Labels::from_pairs([("a", v)]);
        let again = Labels::parse(&l.to_string()).unwrap();
        assert_eq!(again.get("a"), Some(v));
    }
}
