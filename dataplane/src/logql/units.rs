//! Literal syntaxes LogQL borrows from Go and Prometheus, parsed and printed the way Loki does:
//! Go and Prometheus durations, humanized byte sizes, Go float literals, Go number formatting and
//! `strconv.Quote`.
//!
//! Durations are signed nanoseconds (`i64`), as Go's `time.Duration`.

use std::fmt::Write as _;

const NANOS_PER_MS: i64 = 1_000_000;

/// Parses a Prometheus duration (`1y2w3d4h5m6s7ms`, integer units, each at most once, in that
/// order; `0` alone is allowed). Errors carry the Prometheus message.
pub(crate) fn parse_prom_duration(s: &str) -> Result<i64, String> {
    match s {
        "0" => return Ok(0),
        "" => return Err("empty duration string".to_string()),
        _ => {}
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3600 * 1000),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
    ];
    let invalid = || format!("not a valid duration string: {}", go_quote(s));
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    let mut overflow = false;
    while pos < bytes.len() {
        let digits_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == digits_start {
            return Err(invalid());
        }
        let digits = &s[digits_start..pos];
        let unit_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_lowercase() {
            pos += 1;
        }
        let unit = &s[unit_start..pos];
        let Some(idx) = UNITS[next_unit..].iter().position(|(u, _)| *u == unit) else {
            return Err(invalid());
        };
        let idx = next_unit + idx;
        next_unit = idx + 1;
        let mult_ms = UNITS[idx].1;
        // Values too long for an integer overflow like Prometheus does.
        let n: i64 = digits.parse().unwrap_or(i64::MAX);
        if n > i64::MAX / mult_ms / NANOS_PER_MS {
            overflow = true;
        }
        total = total.wrapping_add(n.wrapping_mul(mult_ms).wrapping_mul(NANOS_PER_MS));
        if total < 0 {
            overflow = true;
        }
    }
    if overflow {
        return Err("duration out of range".to_string());
    }
    Ok(total)
}

/// Parses a Go duration (`time.ParseDuration`): an optional sign, then decimal numbers with
/// units `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`. Errors carry Go's message.
pub(crate) fn parse_go_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = orig;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // Integer part.
        let mut i = 0;
        let mut v: u64 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            if v > (1u64 << 63) / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(b[i] - b'0');
            if v > 1u64 << 63 {
                return Err(invalid());
            }
            i += 1;
        }
        let pre = i > 0;
        // Fraction.
        let mut f: u64 = 0;
        let mut scale = 1f64;
        let mut post = false;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            let mut overflow = false;
            while i < b.len() && b[i].is_ascii_digit() {
                if !overflow {
                    if f > (1u64 << 63) / 10 {
                        overflow = true;
                    } else {
                        let y = f * 10 + u64::from(b[i] - b'0');
                        if y > 1u64 << 63 {
                            overflow = true;
                        } else {
                            f = y;
                            scale *= 10.0;
                        }
                    }
                }
                i += 1;
            }
            post = i > start;
        }
        if !pre && !post {
            return Err(invalid());
        }
        // Unit.
        let unit_start = i;
        while i < b.len() && !(b[i] == b'.' || b[i].is_ascii_digit()) {
            i += 1;
        }
        if i == unit_start {
            return Err(format!("time: missing unit in duration {}", go_quote(orig)));
        }
        let unit_str = &s[unit_start..i];
        let unit: u64 = match unit_str {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!("time: unknown unit {} in duration {}", go_quote(unit_str), go_quote(orig)));
            }
        };
        if v > (1u64 << 63) / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > 1u64 << 63 {
                return Err(invalid());
            }
        }
        total += v;
        if total > 1u64 << 63 {
            return Err(invalid());
        }
        s = &s[i..];
    }
    if neg {
        return Ok((total as i64).wrapping_neg());
    }
    if total > i64::MAX as u64 {
        return Err(invalid());
    }
    Ok(total as i64)
}

/// Loki's duration literal rule: a Prometheus duration first, a Go duration otherwise.
pub(crate) fn parse_loki_duration(s: &str) -> Option<i64> {
    parse_prom_duration(s).or_else(|_| parse_go_duration(s)).ok()
}

/// Formats nanoseconds as Go's `time.Duration.String()` does (`1h30m0s`, `1.5s`, `250ms`).
pub(crate) fn fmt_go_duration(out: &mut String, d: i64) {
    let mut u = d.unsigned_abs();
    if d < 0 {
        out.push('-');
    }
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0 => {
                out.push_str("0s");
                return;
            }
            1..=999 => (0, "ns"),
            1_000..=999_999 => (3, "\u{b5}s"),
            _ => (6, "ms"),
        };
        push_frac(out, u, prec);
        out.push_str(unit);
        return;
    }
    let secs_frac = u % 1_000_000_000;
    u /= 1_000_000_000;
    let secs = u % 60;
    u /= 60;
    if u > 0 {
        let mins = u % 60;
        let hours = u / 60;
        if hours > 0 {
            let _ = write!(out, "{hours}h");
        }
        let _ = write!(out, "{mins}m");
    }
    push_frac(out, secs * 1_000_000_000 + secs_frac, 9);
    out.push('s');
}

/// Writes `v / 10^prec` with trailing zeros of the fraction removed.
fn push_frac(out: &mut String, v: u64, prec: u32) {
    let div = 10u64.pow(prec);
    let int = v / div;
    let mut frac = v % div;
    let _ = write!(out, "{int}");
    if frac != 0 {
        let mut digits = prec as usize;
        while frac.is_multiple_of(10) {
            frac /= 10;
            digits -= 1;
        }
        let _ = write!(out, ".{frac:0digits$}");
    }
}

/// Formats nanoseconds as Prometheus' `model.Duration.String()` does (`5m`, `1h30m`, `1d`,
/// `90s` rendered as `1m30s`); sub-millisecond parts are dropped, as in Prometheus.
pub(crate) fn fmt_prom_duration(out: &mut String, d: i64) {
    let mut ms = d / NANOS_PER_MS;
    if ms == 0 {
        out.push_str("0s");
        return;
    }
    if ms < 0 {
        out.push('-');
        ms = -ms;
    }
    const UNITS: [(&str, i64, bool); 7] = [
        ("y", 365 * 24 * 3600 * 1000, true),
        ("w", 7 * 24 * 3600 * 1000, true),
        ("d", 24 * 3600 * 1000, false),
        ("h", 3600 * 1000, false),
        ("m", 60 * 1000, false),
        ("s", 1000, false),
        ("ms", 1, false),
    ];
    for (unit, mult, exact) in UNITS {
        if exact && ms % mult != 0 {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            let _ = write!(out, "{v}{unit}");
            ms -= v * mult;
        }
    }
}

/// Parses a humanized byte size as `go-humanize`'s `ParseBytes` does (`1KB` = 1000,
/// `1KiB` = 1024, units case-insensitive, fractional numbers truncated).
pub(crate) fn parse_bytes(s: &str) -> Option<u64> {
    parse_bytes_go(s).ok()
}

/// `parse_bytes` with `go-humanize`'s error texts (`strconv.ParseFloat: parsing "": invalid
/// syntax`, `unhandled size name: x`, `too large: x`), which Loki shows in
/// `__error_details__` when a bytes label filter or `unwrap bytes()` cannot read a value.
pub(crate) fn parse_bytes_go(s: &str) -> Result<u64, String> {
    let num_end =
        s.char_indices().find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == ',')).map_or(s.len(), |(i, _)| i);
    let num: String = s[..num_end].chars().filter(|c| *c != ',').collect();
    let f = parse_go_float(&num).map_err(|e| e.go_message(&num))?;
    let unit = s[num_end..].trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "ti" | "tib" => 1 << 40,
        "p" | "pb" => 1_000_000_000_000_000,
        "pi" | "pib" => 1 << 50,
        "e" | "eb" => 1_000_000_000_000_000_000,
        "ei" | "eib" => 1 << 60,
        _ => return Err(format!("unhandled size name: {unit}")),
    };
    let v = f * mult as f64;
    if v >= u64::MAX as f64 {
        return Err(format!("too large: {s}"));
    }
    Ok(v as u64)
}

/// Formats a byte size the way Loki prints bytes label filters (`go-humanize`'s SI form without
/// the space, e.g. `1.0MB`, `500kB`) when that form parses back to the same value; otherwise an
/// exact form (`2KiB`, `1234B`) so that printing never changes the query. Zero prints as `0kB`:
/// Loki's `0B` lexes as a Go binary-literal prefix with no digits and does not parse.
pub(crate) fn fmt_bytes(out: &mut String, v: u64) {
    if v == 0 {
        out.push_str("0kB");
        return;
    }
    let human = humanize_bytes(v);
    if parse_bytes(&human) == Some(v) {
        out.push_str(&human);
        return;
    }
    const BINARY: [(&str, u64); 5] =
        [("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, mult) in BINARY {
        if v >= mult && v.is_multiple_of(mult) {
            let _ = write!(out, "{}{unit}", v / mult);
            return;
        }
    }
    let _ = write!(out, "{v}B");
}

fn humanize_bytes(v: u64) -> String {
    if v < 10 {
        return format!("{v}B");
    }
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let f = v as f64;
    let e = (f.ln() / 1000f64.ln()).floor();
    let idx = (e as usize).min(SIZES.len() - 1);
    let val = (f / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 { format!("{val:.1}{}", SIZES[idx]) } else { format!("{val:.0}{}", SIZES[idx]) }
}

/// Why a Go float literal was rejected, as `strconv.ParseFloat` words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FloatError {
    Syntax,
    Range,
}

impl FloatError {
    /// The full `strconv.ParseFloat` error text for input `s`.
    pub(crate) fn go_message(self, s: &str) -> String {
        let what = match self {
            FloatError::Syntax => "invalid syntax",
            FloatError::Range => "value out of range",
        };
        format!("strconv.ParseFloat: parsing {}: {what}", go_quote(s))
    }
}

/// Parses a float the way Go's `strconv.ParseFloat(s, 64)` does for the literals the lexer
/// produces: decimal (with `_` digit separators), and hexadecimal with a mandatory `p` exponent.
pub(crate) fn parse_go_float(s: &str) -> Result<f64, FloatError> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.contains('_') && !underscores_ok(body) {
        return Err(FloatError::Syntax);
    }
    let clean: String;
    let body = if body.contains('_') {
        clean = body.replace('_', "");
        clean.as_str()
    } else {
        body
    };
    let v = if body.len() > 2 && (body.starts_with("0x") || body.starts_with("0X")) {
        parse_hex_float(&body[2..])?
    } else {
        let b = body.as_bytes();
        let valid = !b.is_empty()
            && b.iter().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
            && b.iter().any(u8::is_ascii_digit);
        if !valid {
            return Err(FloatError::Syntax);
        }
        let v: f64 = body.parse().map_err(|_| FloatError::Syntax)?;
        if v.is_infinite() {
            return Err(FloatError::Range);
        }
        v
    };
    Ok(if neg { -v } else { v })
}

fn parse_hex_float(s: &str) -> Result<f64, FloatError> {
    let (mant, exp) = s.split_once(['p', 'P']).ok_or(FloatError::Syntax)?;
    let exp: i64 = {
        let (eneg, digits) = match exp.as_bytes().first() {
            Some(b'-') => (true, &exp[1..]),
            Some(b'+') => (false, &exp[1..]),
            _ => (false, exp),
        };
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(FloatError::Syntax);
        }
        let v: i64 = digits.parse().unwrap_or(100_000).min(100_000);
        if eneg { -v } else { v }
    };
    let mut m: u64 = 0;
    let mut shift: i64 = 0;
    let mut seen_dot = false;
    let mut any = false;
    for c in mant.chars() {
        if c == '.' {
            if seen_dot {
                return Err(FloatError::Syntax);
            }
            seen_dot = true;
            continue;
        }
        let d = c.to_digit(16).ok_or(FloatError::Syntax)?;
        any = true;
        if m >> 59 == 0 {
            m = m * 16 + u64::from(d);
            if seen_dot {
                shift -= 4;
            }
        } else if !seen_dot {
            shift += 4;
        }
    }
    if !any {
        return Err(FloatError::Syntax);
    }
    let e = (exp + shift).clamp(-2000, 2000) as i32;
    let mut v = m as f64;
    // Scale in steps that stay within the exponent range of powi.
    let mut rem = e;
    while rem != 0 {
        let step = rem.clamp(-1000, 1000);
        v *= 2f64.powi(step);
        rem -= step;
    }
    if v.is_infinite() {
        return Err(FloatError::Range);
    }
    Ok(v)
}

/// Go's rule: `_` only between digits, or between a base prefix and a digit.
fn underscores_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let mut saw = b'^';
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1] | 0x20 == b'x';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// Formats a float as Go's `fmt.Sprint` does (`%v`, i.e. `%g` with the shortest precision):
/// `0.5`, `123456`, `1e+06`, `1.234567e+06`, `1e-05`, `NaN`, `+Inf`.
pub(crate) fn fmt_go_float_v(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // Rust's `{:e}` yields the shortest round-trip digits, e.g. `1.234567e6`.
    let e_form = format!("{v:e}");
    let (mantissa, exp) = e_form.split_once('e').unwrap_or((&e_form, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // Go uses the exponent form when the exponent is < -4 or >= the precision, which is 6 for
    // the shortest formatting.
    if !(-4..6).contains(&exp) {
        out.push_str(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.unsigned_abs());
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Formats a float as Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits, no exponent.
pub(crate) fn fmt_go_float_f(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Formats a float as Go's `%f` (six decimals), which Loki uses in a few error messages.
pub(crate) fn fmt_go_float_6(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v:.6}")
    }
}

/// Quotes a string as Go's `strconv.Quote` does.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_go_quoted(&mut out, s);
    out
}

/// Appends `s` quoted as Go's `strconv.Quote` does.
pub(crate) fn push_go_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
}

/// An approximation of Go's `strconv.IsPrint` for non-ASCII characters: everything except
/// controls, format characters, separators other than the ASCII space, and private-use or
/// non-character code points.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    if c.is_control() {
        return false;
    }
    !matches!(
        u,
        0xa0 | 0xad
            | 0x600..=0x605
            | 0x61c
            | 0x6dd
            | 0x70f
            | 0x890..=0x891
            | 0x8e2
            | 0x1680
            | 0x180e
            | 0x2000..=0x200f
            | 0x2028..=0x202f
            | 0x205f..=0x2064
            | 0x2066..=0x206f
            | 0x3000
            | 0xd800..=0xf8ff
            | 0xfdd0..=0xfdef
            | 0xfeff
            | 0xfff9..=0xfffb
            | 0xfffe..=0xffff
            | 0x110bd
            | 0x110cd
            | 0x13430..=0x1343f
            | 0x1bca0..=0x1bca3
            | 0x1d173..=0x1d17a
            | 0xe0001
            | 0xe0020..=0xe007f
            | 0xf0000..
    ) && (u & 0xfffe) != 0xfffe
}
