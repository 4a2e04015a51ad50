//! Go's `fmt.Sprintf`, `fmt.Sprint` and `fmt.Sprintln` for template values: verbs `v s q d b
//! o x X c U e E f F g G t T %`, flags `+ - # 0 space`, width and precision (also `*`), and
//! Go's `%!verb(type=value)` error forms.

use std::fmt::Write;

use crate::logql::units::{fmt_go_float_v, push_go_quoted};

use super::value::{Value, write_value};

#[derive(Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// `fmt.Sprintf(format, args...)`.
pub(crate) fn sprintf(format: &str, args: &[Value<'_>], labels: &[(String, String)]) -> String {
    let mut out = String::with_capacity(format.len() + 16);
    let mut argi = 0;
    let mut chars = format.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&(_, f)) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                _ => break,
            }
            chars.next();
        }
        spec.width = read_num(&mut chars, args, &mut argi);
        if chars.peek().map(|p| p.1) == Some('.') {
            chars.next();
            spec.prec = Some(read_num(&mut chars, args, &mut argi).unwrap_or(0));
        }
        let Some((_, verb)) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argi) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        argi += 1;
        let body = format_arg(verb, arg, &spec, labels);
        pad(&mut out, &body, &spec, verb);
    }
    if argi < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[argi..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(a.type_name());
            out.push('=');
            write_value(&mut out, a, labels);
        }
        out.push(')');
    }
    out
}

/// Widths and precisions beyond this are clamped (a template cannot ask for gigabytes).
const MAX_WIDTH: usize = 1 << 16;

fn read_num(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    args: &[Value<'_>],
    argi: &mut usize,
) -> Option<usize> {
    if chars.peek().map(|p| p.1) == Some('*') {
        chars.next();
        let n = match args.get(*argi) {
            Some(Value::Int(i) | Value::I64(i)) => Some(((*i).max(0) as usize).min(MAX_WIDTH)),
            _ => None,
        };
        *argi += 1;
        return n;
    }
    let mut n: Option<usize> = None;
    while let Some(&(_, d)) = chars.peek() {
        let Some(v) = d.to_digit(10) else { break };
        n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(v as usize).min(MAX_WIDTH));
        chars.next();
    }
    n
}

fn pad(out: &mut String, body: &str, spec: &Spec, verb: char) {
    let len = body.chars().count();
    let width = spec.width.unwrap_or(0);
    if len >= width {
        out.push_str(body);
        return;
    }
    let fill = width - len;
    if spec.minus {
        out.push_str(body);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if spec.zero && matches!(verb, 'd' | 'f' | 'F' | 'e' | 'E' | 'g' | 'G' | 'x' | 'X' | 'o' | 'b') {
        // Zero padding goes after the sign.
        let (sign, digits) = match body.strip_prefix(['-', '+']) {
            Some(rest) => (&body[..1], rest),
            None => ("", body),
        };
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(digits);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(body);
    }
}

fn bad(verb: char, arg: &Value<'_>, labels: &[(String, String)]) -> String {
    let mut s = format!("%!{verb}({}=", arg.type_name());
    write_value(&mut s, arg, labels);
    s.push(')');
    s
}

fn sign(spec: &Spec, neg: bool) -> &'static str {
    if neg {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    }
}

fn format_arg(verb: char, arg: &Value<'_>, spec: &Spec, labels: &[(String, String)]) -> String {
    match (verb, arg) {
        ('T', a) => a.type_name().to_string(),
        ('v', Value::Float(f)) => format_float('g', *f, spec, true),
        ('v', a) => {
            let mut s = String::new();
            if spec.sharp
                && let Value::Str(st) = a
            {
                push_go_quoted(&mut s, st);
                return s;
            }
            if spec.plus
                && let Value::Int(i) | Value::I64(i) = a
            {
                return format!("{}{}", sign(spec, *i < 0), i.unsigned_abs());
            }
            write_value(&mut s, a, labels);
            s
        }
        ('s', Value::Str(s)) => truncate(s, spec.prec),
        ('s', a @ (Value::Map(_) | Value::List(_) | Value::Labels | Value::Time(_))) => {
            let mut s = String::new();
            write_value(&mut s, a, labels);
            s
        }
        ('q', Value::Str(s)) => {
            let mut out = String::new();
            if spec.sharp && !s.contains('`') {
                out.push('`');
                out.push_str(s);
                out.push('`');
            } else {
                push_go_quoted(&mut out, s);
            }
            out
        }
        ('q', Value::Int(i) | Value::I64(i)) => match char::from_u32(*i as u32) {
            Some(c) => format!("{c:?}").replace('"', "'"),
            None => bad(verb, arg, labels),
        },
        ('x' | 'X', Value::Str(s)) => {
            let mut out = String::new();
            for b in s.as_bytes() {
                if verb == 'x' {
                    let _ = write!(out, "{b:02x}");
                } else {
                    let _ = write!(out, "{b:02X}");
                }
            }
            out
        }
        ('d' | 'b' | 'o' | 'O' | 'x' | 'X' | 'c' | 'U', Value::Int(i) | Value::I64(i)) => format_int(verb, *i, spec),
        ('t', Value::Bool(b)) => b.to_string(),
        ('e' | 'E' | 'f' | 'F' | 'g' | 'G', Value::Float(f)) => format_float(verb, *f, spec, false),
        _ => bad(verb, arg, labels),
    }
}

fn truncate(s: &str, prec: Option<usize>) -> String {
    match prec {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    }
}

fn format_int(verb: char, i: i64, spec: &Spec) -> String {
    let u = i.unsigned_abs();
    let digits = match verb {
        'd' => u.to_string(),
        'b' => format!("{u:b}"),
        'o' | 'O' => format!("{u:o}"),
        'x' => format!("{u:x}"),
        'X' => format!("{u:X}"),
        'c' => return char::from_u32(i as u32).map_or("\u{fffd}".to_string(), |c| c.to_string()),
        _ => return format!("U+{:04X}", u),
    };
    let digits = match spec.prec {
        Some(p) if digits.len() < p => format!("{}{digits}", "0".repeat(p - digits.len())),
        _ => digits,
    };
    let prefix = match (spec.sharp, verb) {
        (true, 'x') => "0x",
        (true, 'X') => "0X",
        (true, 'o') => "0",
        (_, 'O') => "0o",
        (true, 'b') => "0b",
        _ => "",
    };
    format!("{}{prefix}{digits}", sign(spec, i < 0))
}

fn format_float(verb: char, f: f64, spec: &Spec, is_v: bool) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-Inf" } else { "+Inf" }.to_string();
    }
    let s = sign(spec, f.is_sign_negative());
    let a = f.abs();
    let body = match verb {
        'f' | 'F' => format!("{:.*}", spec.prec.unwrap_or(6), a),
        'e' | 'E' => {
            let b = go_exp(a, spec.prec.unwrap_or(6));
            if verb == 'E' { b.to_uppercase() } else { b }
        }
        _ => match spec.prec {
            None => {
                let mut out = String::new();
                fmt_go_float_v(&mut out, a);
                if verb == 'G' { out.to_uppercase() } else { out }
            }
            Some(p) => {
                let p = p.max(1);
                let exp = if a == 0.0 { 0 } else { a.log10().floor() as i32 };
                let b = if exp < -4 || exp >= p as i32 {
                    trim_exp(&go_exp(a, p - 1))
                } else {
                    trim_zeros(&format!("{:.*}", (p as i32 - 1 - exp).max(0) as usize, a))
                };
                if verb == 'G' { b.to_uppercase() } else { b }
            }
        },
    };
    let _ = is_v;
    format!("{s}{body}")
}

/// `%.{prec}e` with Go's two-digit signed exponent.
fn go_exp(a: f64, prec: usize) -> String {
    let s = format!("{:.*e}", prec, a);
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.unsigned_abs())
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s.to_string() }
}

fn trim_exp(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) => format!("{}e{e}", trim_zeros(m)),
        None => s.to_string(),
    }
}

/// `fmt.Sprint(args...)`: spaces between operands when neither is a string.
pub(crate) fn sprint(args: &[Value<'_>], labels: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        write_value(&mut out, a, labels);
    }
    out
}

/// `fmt.Sprintln(args...)`: spaces between every operand and a trailing newline.
pub(crate) fn sprintln(args: &[Value<'_>], labels: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_value(&mut out, a, labels);
    }
    out.push('\n');
    out
}
