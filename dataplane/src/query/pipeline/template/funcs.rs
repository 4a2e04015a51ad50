//! The functions Loki adds to `line_format`/`label_format` templates: its own (`ToLower`,
//! `regexReplaceAll`, `bytes`, `unixToTime`, ...) and the sprig subset it exposes (`lower`,
//! `trunc`, `add`, `addf`, `date`, `default`, ...), with their Go signatures and behaviour.

use std::borrow::Cow;
use std::rc::Rc;

use crate::logql::GoRegex;
use crate::logql::units::{go_quote, parse_bytes_go, parse_go_duration};

use super::gotime::GoTime;
use super::value::{Value, from_json, is_empty, to_float64, to_int64};

/// A parameter type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum P {
    Str,
    Int,
    Float,
    Any,
    Time,
}

impl P {
    pub(crate) fn go_name(self) -> &'static str {
        match self {
            P::Str => "string",
            P::Int => "int",
            P::Float => "float64",
            P::Any => "interface {}",
            P::Time => "time.Time",
        }
    }
}

/// A function's parameters: fixed ones, then optionally a variadic tail.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sig {
    pub(crate) params: &'static [P],
    pub(crate) variadic: Option<P>,
}

const fn sig(params: &'static [P]) -> Sig {
    Sig { params, variadic: None }
}

const fn var(params: &'static [P], v: P) -> Sig {
    Sig { params, variadic: Some(v) }
}

/// The signature of a Loki template function (not the Go builtins).
pub(crate) fn signature(name: &str) -> Option<Sig> {
    use P::*;
    Some(match name {
        "ToLower" | "ToUpper" | "TrimSpace" | "urldecode" | "urlencode" | "bytes" | "duration" | "duration_seconds"
        | "unixToTime" | "b64enc" | "b64dec" | "lower" | "upper" | "title" | "trim" | "fromJson" => sig(&[Str]),
        "Replace" => sig(&[Str, Str, Str, Int]),
        "Trim" | "TrimLeft" | "TrimRight" | "TrimPrefix" | "TrimSuffix" | "count" | "contains" | "hasPrefix"
        | "hasSuffix" | "trimAll" | "trimSuffix" | "trimPrefix" | "toDate" => sig(&[Str, Str]),
        "regexReplaceAll" | "regexReplaceAllLiteral" | "replace" | "toDateInZone" => sig(&[Str, Str, Str]),
        "unixEpochMillis" | "unixEpochNanos" | "unixEpoch" => sig(&[Time]),
        "alignLeft" | "alignRight" | "trunc" | "indent" | "nindent" | "repeat" => sig(&[Int, Str]),
        "substr" => sig(&[Int, Int, Str]),
        "int" | "float64" | "ceil" | "floor" => sig(&[Any]),
        "add" | "addf" => var(&[], Any),
        "sub" | "div" | "mod" => sig(&[Any, Any]),
        "mul" | "subf" | "mulf" | "divf" | "max" | "min" | "maxf" | "minf" | "default" => var(&[Any], Any),
        "round" => var(&[Any, Int], Float),
        "date" => sig(&[Str, Any]),
        "now" | "__line__" | "__timestamp__" => sig(&[]),
        _ => return None,
    })
}

/// What the functions may read besides their arguments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FnEnv<'d> {
    pub(crate) line: &'d [u8],
    pub(crate) ts: i64,
}

fn s<'a>(v: &'a Value<'_>) -> &'a str {
    match v {
        Value::Str(s) => s,
        _ => "",
    }
}

fn i(v: &Value<'_>) -> i64 {
    match v {
        Value::Int(i) | Value::I64(i) => *i,
        _ => 0,
    }
}

fn owned<'d>(s: String) -> Value<'d> {
    Value::Str(Cow::Owned(s))
}

fn time<'d>(t: GoTime) -> Value<'d> {
    Value::Time(Rc::new(t))
}

/// Calls function `name` with arguments already converted to its signature.
pub(crate) fn call<'d>(name: &str, a: Vec<Value<'d>>, env: FnEnv<'d>) -> Result<Value<'d>, String> {
    let arg = |k: usize| a.get(k).unwrap_or(&Value::Nil);
    Ok(match name {
        "__line__" => owned(String::from_utf8_lossy(env.line).into_owned()),
        "__timestamp__" => time(GoTime::from_unix_nanos(i128::from(env.ts))),
        "ToLower" | "lower" => owned(s(arg(0)).to_lowercase()),
        "ToUpper" | "upper" => owned(s(arg(0)).to_uppercase()),
        "TrimSpace" | "trim" => owned(s(arg(0)).trim().to_string()),
        "Replace" => {
            let (src, old, new, n) = (s(arg(0)), s(arg(1)), s(arg(2)), i(arg(3)));
            owned(if n < 0 { src.replace(old, new) } else { src.replacen(old, new, n as usize) })
        }
        "replace" => owned(s(arg(2)).replace(s(arg(0)), s(arg(1)))),
        "Trim" => owned(s(arg(0)).trim_matches(|c| s(arg(1)).contains(c)).to_string()),
        "TrimLeft" => owned(s(arg(0)).trim_start_matches(|c| s(arg(1)).contains(c)).to_string()),
        "TrimRight" => owned(s(arg(0)).trim_end_matches(|c| s(arg(1)).contains(c)).to_string()),
        "TrimPrefix" => owned(s(arg(0)).strip_prefix(s(arg(1))).unwrap_or(s(arg(0))).to_string()),
        "TrimSuffix" => owned(s(arg(0)).strip_suffix(s(arg(1))).unwrap_or(s(arg(0))).to_string()),
        "trimAll" => owned(s(arg(1)).trim_matches(|c| s(arg(0)).contains(c)).to_string()),
        "trimPrefix" => owned(s(arg(1)).strip_prefix(s(arg(0))).unwrap_or(s(arg(1))).to_string()),
        "trimSuffix" => owned(s(arg(1)).strip_suffix(s(arg(0))).unwrap_or(s(arg(1))).to_string()),
        "contains" => Value::Bool(s(arg(1)).contains(s(arg(0)))),
        "hasPrefix" => Value::Bool(s(arg(1)).starts_with(s(arg(0)))),
        "hasSuffix" => Value::Bool(s(arg(1)).ends_with(s(arg(0)))),
        "regexReplaceAll" | "regexReplaceAllLiteral" => {
            let re = GoRegex::with_names(s(arg(0)))?;
            let out = if name == "regexReplaceAll" {
                re.regex().replace_all(s(arg(1)), s(arg(2)))
            } else {
                re.regex().replace_all(s(arg(1)), regex::NoExpand(s(arg(2))))
            };
            owned(out.into_owned())
        }
        "count" => Value::Int(GoRegex::new(s(arg(0)))?.regex().find_iter(s(arg(1))).count() as i64),
        "urlencode" => owned(query_escape(s(arg(0)))),
        "urldecode" => owned(query_unescape(s(arg(0)))?),
        "bytes" => Value::Float(parse_bytes_go(s(arg(0)))? as f64),
        "duration" | "duration_seconds" => Value::Float(parse_go_duration(s(arg(0)))? as f64 / 1e9),
        "unixEpochMillis" => owned(t(arg(0)).unix_millis().to_string()),
        "unixEpochNanos" => owned(t(arg(0)).unix_nanos().to_string()),
        "unixEpoch" => owned(t(arg(0)).secs.to_string()),
        "toDateInZone" => {
            // Only UTC can be loaded without a zone database; Loki falls back to UTC too.
            time(super::gotime::parse(s(arg(0)), s(arg(2)), 0, "UTC").unwrap_or_else(|_| GoTime::zero()))
        }
        "toDate" => time(super::gotime::parse(s(arg(0)), s(arg(1)), 0, "UTC").unwrap_or_else(|_| GoTime::zero())),
        "unixToTime" => time(unix_to_time(s(arg(0)))?),
        "now" => time(GoTime::now()),
        "date" => {
            let t = match arg(1) {
                Value::Time(t) => (**t).clone(),
                Value::Int(n) | Value::I64(n) => GoTime::from_unix_nanos(i128::from(*n) * 1_000_000_000),
                _ => GoTime::now(),
            };
            owned(t.format(s(arg(0))))
        }
        "alignLeft" | "alignRight" => {
            check_size(usize::try_from(i(arg(0))).unwrap_or(0))?;
            owned(align(name == "alignLeft", i(arg(0)), s(arg(1))))
        }
        "trunc" => owned(trunc(i(arg(0)), s(arg(1)))),
        "substr" => owned(substring(i(arg(0)), i(arg(1)), s(arg(2)))),
        "indent" | "nindent" => {
            let n = usize::try_from(i(arg(0))).map_err(|_| "strings: negative Repeat count".to_string())?;
            check_size(n.saturating_mul(s(arg(1)).matches('\n').count() + 1))?;
            let pad = " ".repeat(n);
            let body = format!("{pad}{}", s(arg(1)).replace('\n', &format!("\n{pad}")));
            owned(if name == "nindent" { format!("\n{body}") } else { body })
        }
        "repeat" => {
            let n = usize::try_from(i(arg(0))).map_err(|_| "strings: negative Repeat count".to_string())?;
            check_size(n.saturating_mul(s(arg(1)).len()))?;
            owned(s(arg(1)).repeat(n))
        }
        "title" => owned(title(s(arg(0)))),
        "b64enc" => owned(b64_encode(s(arg(0)).as_bytes())),
        "b64dec" => owned(match b64_decode(s(arg(0))) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => e,
        }),
        "int" => Value::Int(to_int64(arg(0))),
        "float64" => Value::Float(to_float64(arg(0))),
        "add" => Value::I64(a.iter().map(to_int64).fold(0i64, i64::wrapping_add)),
        "sub" => Value::I64(to_int64(arg(0)).wrapping_sub(to_int64(arg(1)))),
        "mul" => Value::I64(a.iter().map(to_int64).fold(1i64, i64::wrapping_mul)),
        "div" | "mod" => {
            let (x, y) = (to_int64(arg(0)), to_int64(arg(1)));
            if y == 0 {
                return Err("runtime error: integer divide by zero".to_string());
            }
            Value::I64(if name == "div" { x.wrapping_div(y) } else { x.wrapping_rem(y) })
        }
        "max" => Value::I64(a.iter().map(to_int64).max().unwrap_or(0)),
        "min" => Value::I64(a.iter().map(to_int64).min().unwrap_or(0)),
        "maxf" => Value::Float(a.iter().map(to_float64).fold(f64::NEG_INFINITY, go_max)),
        "minf" => Value::Float(a.iter().map(to_float64).fold(f64::INFINITY, go_min)),
        "addf" => Value::Float(decimal_fold(0.0, a.iter().map(to_float64), DecOp::Add)),
        "subf" | "mulf" | "divf" => {
            let op = match name {
                "subf" => DecOp::Sub,
                "mulf" => DecOp::Mul,
                _ => DecOp::Div,
            };
            if op == DecOp::Div && a[1..].iter().any(|v| to_float64(v) == 0.0) {
                return Err("decimal division by zero".to_string());
            }
            Value::Float(decimal_fold(to_float64(arg(0)), a[1..].iter().map(to_float64), op))
        }
        "ceil" => Value::Float(to_float64(arg(0)).ceil()),
        "floor" => Value::Float(to_float64(arg(0)).floor()),
        "round" => {
            let round_on = match a.get(2) {
                Some(Value::Float(f)) => *f,
                _ => 0.5,
            };
            let pow = 10f64.powf(i(arg(1)) as f64);
            let digit = pow * to_float64(arg(0));
            let frac = digit - digit.trunc();
            Value::Float(if frac >= round_on { digit.ceil() } else { digit.floor() } / pow)
        }
        "fromJson" => from_json(s(arg(0))).unwrap_or(Value::Nil),
        "default" => {
            let given = a.get(1);
            match given {
                Some(g) if !is_empty(g) => g.clone(),
                _ => arg(0).clone(),
            }
        }
        _ => return Err(format!("function {} not defined", go_quote(name))),
    })
}

/// Refuses results larger than a template may produce.
fn check_size(n: usize) -> Result<(), String> {
    if n > super::MAX_OUTPUT {
        return Err(format!("result of {n} bytes exceeds the template output limit"));
    }
    Ok(())
}

fn t<'a>(v: &'a Value<'_>) -> &'a GoTime {
    static ZERO: std::sync::OnceLock<GoTime> = std::sync::OnceLock::new();
    match v {
        Value::Time(t) => t,
        _ => ZERO.get_or_init(GoTime::zero),
    }
}

fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) }
}

/// Loki's rune-based `trunc`: the first `c` characters, or the last `-c`.
fn trunc(c: i64, s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let l = chars.len() as i64;
    if c < 0 && l + c > 0 {
        return chars[(l + c) as usize..].iter().collect();
    }
    if c >= 0 && l > c {
        return chars[..c as usize].iter().collect();
    }
    s.to_string()
}

/// Loki's rune-based `substr(start, end, s)`.
fn substring(start: i64, end: i64, s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let l = chars.len() as i64;
    let end = end.min(l);
    let start = start.min(l);
    if start < 0 {
        if end < 0 {
            return String::new();
        }
        return chars[..end as usize].iter().collect();
    }
    if end < 0 {
        return chars[start as usize..].iter().collect();
    }
    if start > end {
        return String::new();
    }
    chars[start as usize..end as usize].iter().collect()
}

fn align(left: bool, count: i64, src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let l = chars.len() as i64;
    if count < 0 || count == l {
        return src.to_string();
    }
    let pad = count - l;
    if pad > 0 {
        let spaces = " ".repeat(pad as usize);
        return if left { format!("{src}{spaces}") } else { format!("{spaces}{src}") };
    }
    if left { chars[..count as usize].iter().collect() } else { chars[(l - count) as usize..].iter().collect() }
}

/// Go's deprecated `strings.Title`: upper-cases the first letter of every word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        if is_separator(prev) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

fn is_separator(c: char) -> bool {
    if c.is_ascii() {
        return !(c.is_ascii_alphanumeric() || c == '_');
    }
    if c.is_alphanumeric() {
        return false;
    }
    c.is_whitespace()
}

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[(b >> 4) as usize]));
                out.push(char::from(b"0123456789ABCDEF"[(b & 15) as usize]));
            }
        }
    }
    out
}

/// Go's `url.QueryUnescape`.
fn query_unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let Some(hex) = hex else {
                    let end = (i + 3).min(b.len());
                    return Err(format!("invalid URL escape {}", go_quote(&String::from_utf8_lossy(&b[i..end]))));
                };
                let v = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("00"), 16).unwrap_or(0);
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn unix_to_time(epoch: &str) -> Result<GoTime, String> {
    let n: i64 = match epoch.parse() {
        Ok(n) if !epoch.starts_with('+') => n,
        _ => {
            return Err(format!(
                "unable to parse time '{epoch}': strconv.ParseInt: parsing {}: invalid syntax",
                go_quote(epoch)
            ));
        }
    };
    let nanos: i128 = match epoch.len() {
        5 => i128::from(n) * 86_400 * 1_000_000_000,
        10 => i128::from(n) * 1_000_000_000,
        13 => i128::from(n) * 1_000_000,
        16 => i128::from(n) * 1_000,
        19 => i128::from(n),
        _ => return Err(format!("unable to parse time '{epoch}': %!w(<nil>)")),
    };
    Ok(GoTime::from_unix_nanos(nanos))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding; the error reads like Go's `illegal base64 data at input byte N`.
fn b64_decode(s: &str) -> Result<Vec<u8>, String> {
    let b: Vec<u8> = s.bytes().filter(|c| *c != b'\n' && *c != b'\r').collect();
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    let err = |i: usize| format!("illegal base64 data at input byte {i}");
    if !b.len().is_multiple_of(4) {
        let valid = b.iter().position(|c| !B64.contains(c) && *c != b'=').unwrap_or(b.len() - b.len() % 4);
        return Err(err(valid.min(b.len() - b.len() % 4)));
    }
    for (ci, chunk) in b.chunks(4).enumerate() {
        let mut n = 0u32;
        let mut pad = 0;
        for (k, &c) in chunk.iter().enumerate() {
            let v = if c == b'=' {
                if k < 2 || ci * 4 + 4 != b.len() {
                    return Err(err(ci * 4 + k));
                }
                pad += 1;
                0
            } else {
                if pad > 0 {
                    return Err(err(ci * 4 + k));
                }
                B64.iter().position(|x| *x == c).ok_or_else(|| err(ci * 4 + k))? as u32
            };
            n = (n << 6) | v;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// A decimal number `m * 10^e`, as shopspring/decimal builds it from a float's shortest form.
#[derive(Debug, Clone, Copy)]
struct Dec {
    m: i128,
    e: i32,
}

impl Dec {
    fn from_f64(f: f64) -> Option<Dec> {
        if !f.is_finite() {
            return None;
        }
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e')?;
        let exp: i32 = exp.parse().ok()?;
        let neg = mant.starts_with('-');
        let mant = mant.trim_start_matches('-');
        let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
        let digits = format!("{int}{frac}");
        let m: i128 = digits.parse().ok()?;
        Some(Dec { m: if neg { -m } else { m }, e: exp - frac.len() as i32 })
    }

    fn to_f64(self) -> f64 {
        format!("{}e{}", self.m, self.e).parse().unwrap_or(f64::NAN)
    }

    fn align(a: Dec, b: Dec) -> Option<(i128, i128, i32)> {
        let e = a.e.min(b.e);
        let scale = |d: Dec| -> Option<i128> { d.m.checked_mul(10i128.checked_pow((d.e - e) as u32)?) };
        Some((scale(a)?, scale(b)?, e))
    }
}

/// Folds with exact decimal arithmetic (as sprig's `addf`/`subf`/`mulf`/`divf` do), falling
/// back to floats when a value does not fit.
fn decimal_fold(init: f64, values: impl Iterator<Item = f64>, op: DecOp) -> f64 {
    let mut acc = init;
    let mut dec = Dec::from_f64(init);
    for v in values {
        let next = dec.zip(Dec::from_f64(v)).and_then(|(a, b)| match op {
            DecOp::Add => Dec::align(a, b).and_then(|(x, y, e)| Some(Dec { m: x.checked_add(y)?, e })),
            DecOp::Sub => Dec::align(a, b).and_then(|(x, y, e)| Some(Dec { m: x.checked_sub(y)?, e })),
            DecOp::Mul => Some(Dec { m: a.m.checked_mul(b.m)?, e: a.e + b.e }),
            DecOp::Div => None,
        });
        acc = match op {
            DecOp::Add => acc + v,
            DecOp::Sub => acc - v,
            DecOp::Mul => acc * v,
            DecOp::Div => {
                // shopspring rounds quotients to 16 decimal places.
                let q = acc / v;
                format!("{q:.16}").parse().unwrap_or(q)
            }
        };
        dec = match next {
            Some(d) => {
                acc = d.to_f64();
                Some(d)
            }
            None => Dec::from_f64(acc),
        };
    }
    acc
}
