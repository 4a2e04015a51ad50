//! Template values: the Go types Loki's templates produce (strings, `int`, `int64`, `float64`,
//! `bool`, `time.Time`, JSON maps and slices), with Go's printing, truth and comparison rules.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::rc::Rc;

use crate::logql::units::fmt_go_float_v;

use super::gotime::GoTime;

/// A value during template execution.
#[derive(Debug, Clone)]
pub(crate) enum Value<'a> {
    /// An invalid value (a missing key of a JSON map): prints `<no value>`.
    Missing,
    /// `nil`.
    Nil,
    Bool(bool),
    /// Go `int`.
    Int(i64),
    /// Go `int64` (sprig's arithmetic results).
    I64(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Time(Rc<GoTime>),
    /// `map[string]interface{}` from `fromJson`.
    Map(Rc<BTreeMap<String, Value<'static>>>),
    /// `[]interface{}` from `fromJson`.
    List(Rc<Vec<Value<'static>>>),
    /// The template's data: the entry's labels (`map[string]string`).
    Labels,
}

impl<'a> Value<'a> {
    pub(crate) fn str(s: impl Into<Cow<'a, str>>) -> Value<'a> {
        Value::Str(s.into())
    }

    /// The Go type name, for error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Missing | Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::I64(_) => "int64",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Time(_) => "time.Time",
            Value::Map(_) => "map[string]interface {}",
            Value::List(_) => "[]interface {}",
            Value::Labels => "map[string]string",
        }
    }

    /// Go's template truth: false for zero values and empty containers.
    pub(crate) fn truth(&self, labels_len: usize) -> bool {
        match self {
            Value::Missing | Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) | Value::I64(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Time(_) => true,
            Value::Map(m) => !m.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Labels => labels_len > 0,
        }
    }
}

/// Appends a value as Go's `fmt.Sprint` (`%v`) prints it; the labels map is printed by the
/// caller, which has it.
pub(crate) fn write_value(out: &mut String, v: &Value<'_>, labels: &[(String, String)]) {
    match v {
        Value::Missing => out.push_str("<no value>"),
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) | Value::I64(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => fmt_go_float_v(out, *f),
        Value::Str(s) => out.push_str(s),
        Value::Time(t) => out.push_str(&t.go_string()),
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_value(out, v, labels);
            }
            out.push(']');
        }
        Value::List(l) => {
            out.push('[');
            for (i, v) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_value(out, v, labels);
            }
            out.push(']');
        }
        Value::Labels => {
            out.push_str("map[");
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                out.push_str(v);
            }
            out.push(']');
        }
    }
}

/// Parses JSON text into template values (numbers are `float64`), `None` when invalid.
pub(crate) fn from_json(s: &str) -> Option<Value<'static>> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    Some(convert_json(v))
}

fn convert_json(v: serde_json::Value) -> Value<'static> {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Value::Str(Cow::Owned(s)),
        serde_json::Value::Array(a) => Value::List(Rc::new(a.into_iter().map(convert_json).collect())),
        serde_json::Value::Object(o) => Value::Map(Rc::new(o.into_iter().map(|(k, v)| (k, convert_json(v))).collect())),
    }
}

/// The kinds Go's comparison functions know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Str,
    Other,
}

fn kind(v: &Value<'_>) -> Kind {
    match v {
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) | Value::I64(_) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::Str(_) => Kind::Str,
        _ => Kind::Other,
    }
}

/// Go's `eq arg1 arg2`: basic values of the same kind compare by value; other kinds are an
/// error.
pub(crate) fn go_eq(a: &Value<'_>, b: &Value<'_>) -> Result<bool, String> {
    let (ka, kb) = (kind(a), kind(b));
    if ka == Kind::Other || kb == Kind::Other {
        if matches!(a, Value::Nil | Value::Missing) || matches!(b, Value::Nil | Value::Missing) {
            return Ok(matches!(a, Value::Nil | Value::Missing) && matches!(b, Value::Nil | Value::Missing));
        }
        return Err("invalid type for comparison".to_string());
    }
    if ka != kb {
        return Err("incompatible types for comparison".to_string());
    }
    Ok(match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x) | Value::I64(x), Value::Int(y) | Value::I64(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        _ => false,
    })
}

/// Go's `lt arg1 arg2`.
pub(crate) fn go_lt(a: &Value<'_>, b: &Value<'_>) -> Result<bool, String> {
    let (ka, kb) = (kind(a), kind(b));
    if matches!(ka, Kind::Other | Kind::Bool) || matches!(kb, Kind::Other | Kind::Bool) {
        return Err("invalid type for comparison".to_string());
    }
    if ka != kb {
        return Err("incompatible types for comparison".to_string());
    }
    Ok(match (a, b) {
        (Value::Int(x) | Value::I64(x), Value::Int(y) | Value::I64(y)) => x < y,
        (Value::Float(x), Value::Float(y)) => x < y,
        (Value::Str(x), Value::Str(y)) => x < y,
        _ => false,
    })
}

/// `strconv.ParseInt(s, 0, 64)`: decimal, `0x`, `0o`/`0`, `0b`, with `_` separators after a
/// base prefix.
pub(crate) fn parse_int_base0(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(h) = lower.strip_prefix("0x") {
        (16, h.to_string(), true)
    } else if let Some(o) = lower.strip_prefix("0o") {
        (8, o.to_string(), true)
    } else if let Some(b) = lower.strip_prefix("0b") {
        (2, b.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    let digits = if prefixed { digits.replace('_', "") } else { digits };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let v = i128::from_str_radix(&digits, radix).ok()?;
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// spf13/cast's `ToInt64`: numbers convert (floats truncate), strings parse as integers (a
/// `.0` tail is allowed), booleans are 0/1, anything else is 0.
pub(crate) fn to_int64(v: &Value<'_>) -> i64 {
    match v {
        Value::Int(i) | Value::I64(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => parse_int_base0(trim_zero_decimal(s)).unwrap_or(0),
        _ => 0,
    }
}

/// spf13/cast's `ToFloat64`: numbers convert, strings parse as floats, booleans are 0/1,
/// anything else is 0.
pub(crate) fn to_float64(v: &Value<'_>) -> f64 {
    match v {
        Value::Int(i) | Value::I64(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(s) => super::super::label_filter::parse_float(s).unwrap_or(0.0),
        _ => 0.0,
    }
}

fn trim_zero_decimal(s: &str) -> &str {
    let b = s.as_bytes();
    let mut found_zero = false;
    for i in (1..=b.len()).rev() {
        match b[i - 1] {
            b'.' => {
                if found_zero {
                    return &s[..i - 1];
                }
            }
            b'0' => found_zero = true,
            _ => return s,
        }
    }
    s
}

/// Sprig's `empty`: zero values and empty containers.
pub(crate) fn is_empty(v: &Value<'_>) -> bool {
    match v {
        Value::Missing | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::Int(i) | Value::I64(i) => *i == 0,
        Value::Float(f) => *f == 0.0,
        Value::Str(s) => s.is_empty(),
        Value::Time(_) => false,
        Value::Map(m) => m.is_empty(),
        Value::List(l) => l.is_empty(),
        Value::Labels => false,
    }
}
