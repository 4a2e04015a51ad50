//! Loki's canonical `String()` form of a query.
//!
//! The output matches Loki's printer: binary operations are fully parenthesised
//! (`(a + b)`), aggregations print as `sum by (a)(expr)`, a range prints right after its
//! pipeline (`{a="b"} |= "x"[5m]`), binary label filters print as `( a , b )`, durations and
//! numbers print as Go prints them. Where Loki's form would not parse back to the same query
//! (a byte size humanized with rounding, `vector(1e-7)` printed as `vector(0.000000)`, a group
//! modifier under an empty `ignoring ()`, `-0`), an exact equivalent is printed instead, so
//! `parse(e.to_string()) == e` always holds.

use std::fmt::{self, Write as _};

use super::ast::*;
use super::units::{fmt_bytes, fmt_go_duration, fmt_go_float_f, fmt_go_float_v, fmt_prom_duration, push_go_quoted};

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Log(l) => l.fmt(f),
            Expr::Sample(s) => s.fmt(f),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(self.name.len() + self.value.len() + 5);
        s.push_str(&self.name);
        s.push_str(match self.op {
            MatchOp::Eq => "=",
            MatchOp::Neq => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        });
        push_go_quoted(&mut s, &self.value);
        f.write_str(&s)
    }
}

impl fmt::Display for LogExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('{')?;
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            m.fmt(f)?;
        }
        f.write_char('}')?;
        for stage in &self.stages {
            f.write_char(' ')?;
            stage.fmt(f)?;
        }
        Ok(())
    }
}

fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_go_quoted(&mut out, s);
    out
}

fn write_extractions(f: &mut fmt::Formatter<'_>, list: &[Extraction]) -> fmt::Result {
    for (i, e) in list.iter().enumerate() {
        if i > 0 {
            f.write_char(',')?;
        }
        write!(f, "{}={}", e.label, quoted(&e.expr))?;
    }
    Ok(())
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::LineFilter(lf) => lf.fmt(f),
            Stage::Json(list) if list.is_empty() => f.write_str("| json"),
            Stage::Json(list) => {
                f.write_str("| json ")?;
                write_extractions(f, list)
            }
            Stage::Logfmt(p) if p.extractions.is_empty() => {
                f.write_str("| logfmt")?;
                if p.strict {
                    f.write_str(" --strict")?;
                }
                if p.keep_empty {
                    f.write_str(" --keep-empty")?;
                }
                Ok(())
            }
            Stage::Logfmt(p) => {
                f.write_str("| logfmt ")?;
                if p.strict {
                    f.write_str("--strict ")?;
                }
                if p.keep_empty {
                    f.write_str("--keep-empty ")?;
                }
                write_extractions(f, &p.extractions)
            }
            Stage::Regexp(r) => write!(f, "| regexp {}", quoted(&r.source)),
            Stage::Pattern(p) => write!(f, "| pattern {}", quoted(&p.source)),
            Stage::Unpack => f.write_str("| unpack"),
            Stage::Decolorize => f.write_str("| decolorize"),
            Stage::LineFormat(t) => write!(f, "| line_format {}", quoted(t)),
            Stage::LabelFormat(list) => {
                f.write_str("| label_format ")?;
                for (i, lf) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    if lf.rename {
                        write!(f, "{}={}", lf.name, lf.value)?;
                    } else {
                        write!(f, "{}={}", lf.name, quoted(&lf.value))?;
                    }
                }
                Ok(())
            }
            Stage::Drop(list) | Stage::Keep(list) => {
                f.write_str(if matches!(self, Stage::Drop(_)) { "| drop " } else { "| keep " })?;
                for (i, m) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    match m {
                        NamedMatcher::Name(n) => f.write_str(n)?,
                        NamedMatcher::Matcher(m) => m.fmt(f)?,
                    }
                }
                Ok(())
            }
            Stage::LabelFilter(lf) => write!(f, "| {lf}"),
        }
    }
}

impl fmt::Display for LineFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.op {
            LineFilterOp::Contains => "|=",
            LineFilterOp::NotContains => "!=",
            LineFilterOp::Match => "|~",
            LineFilterOp::NotMatch => "!~",
            LineFilterOp::Pattern => "|>",
            LineFilterOp::NotPattern => "!>",
        })?;
        for (i, alt) in self.alternatives.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { " or " })?;
            match alt {
                LineMatch::Text { text, .. } => f.write_str(&quoted(text))?,
                LineMatch::Ip(p) => write!(f, "ip({})", quoted(p))?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Eq => "==",
            CmpOp::Neq => "!=",
            CmpOp::Gt => ">",
            CmpOp::Gte => ">=",
            CmpOp::Lt => "<",
            CmpOp::Lte => "<=",
        })
    }
}

impl fmt::Display for LabelFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelFilter::Matcher(m) => m.fmt(f),
            LabelFilter::Ip { name, negated, pattern } => {
                write!(f, "{name}{}ip({})", if *negated { "!=" } else { "=" }, quoted(pattern))
            }
            LabelFilter::Duration { name, op, value } => {
                let mut s = String::new();
                fmt_go_duration(&mut s, *value);
                write!(f, "{name}{op}{s}")
            }
            LabelFilter::Bytes { name, op, value } => {
                let mut s = String::new();
                fmt_bytes(&mut s, *value);
                write!(f, "{name}{op}{s}")
            }
            LabelFilter::Number { name, op, value } => {
                let mut s = String::new();
                if *value == 0.0 && value.is_sign_negative() {
                    // `-0` would lex as a duration.
                    s.push_str("-0.0");
                } else {
                    fmt_go_float_f(&mut s, *value);
                }
                write!(f, "{name}{op}{s}")
            }
            LabelFilter::And(a, b) => write!(f, "( {a} , {b} )"),
            LabelFilter::Or(a, b) => write!(f, "( {a} or {b} )"),
        }
    }
}

impl fmt::Display for Grouping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.without { " without (" } else { " by (" })?;
        f.write_str(&self.labels.join(","))?;
        f.write_char(')')
    }
}

impl fmt::Display for Unwrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.conversion {
            Some(c) => write!(f, " | unwrap {}({})", c.name(), self.label)?,
            None => write!(f, " | unwrap {}", self.label)?,
        }
        for pf in &self.post_filters {
            write!(f, " | {pf}")?;
        }
        Ok(())
    }
}

impl fmt::Display for LogRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.selector.fmt(f)?;
        if let Some(u) = &self.unwrap {
            u.fmt(f)?;
        }
        let mut s = String::new();
        fmt_prom_duration(&mut s, self.range);
        write!(f, "[{s}]")?;
        if self.offset != 0 {
            s.clear();
            fmt_go_duration(&mut s, self.offset);
            write!(f, " offset {s}")?;
        }
        Ok(())
    }
}

impl fmt::Display for SampleExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SampleExpr::Literal(n) => f.write_str(&literal_string(n.0)),
            SampleExpr::Vector(n) => {
                let six = format!("{:.6}", n.0);
                if six.parse::<f64>().ok() == Some(n.0) {
                    write!(f, "vector({six})")
                } else {
                    let mut s = String::new();
                    fmt_go_float_f(&mut s, n.0);
                    write!(f, "vector({s})")
                }
            }
            SampleExpr::LabelReplace(l) => write!(
                f,
                "label_replace({},{},{},{},{})",
                l.expr,
                quoted(&l.dst),
                quoted(&l.replacement),
                quoted(&l.src),
                quoted(&l.regex_source)
            ),
            SampleExpr::RangeAggregation(r) => {
                write!(f, "{}(", r.op.name())?;
                if let Some(p) = r.param {
                    let mut s = String::new();
                    fmt_go_float_f(&mut s, p);
                    write!(f, "{s},")?;
                }
                write!(f, "{})", r.range)?;
                if let Some(g) = &r.grouping {
                    g.fmt(f)?;
                }
                Ok(())
            }
            SampleExpr::VectorAggregation(v) => {
                f.write_str(v.op.name())?;
                if v.grouping.without || !v.grouping.labels.is_empty() {
                    v.grouping.fmt(f)?;
                }
                f.write_char('(')?;
                if let Some(k) = v.param {
                    write!(f, "{k},")?;
                }
                write!(f, "{})", v.expr)
            }
            SampleExpr::BinOp(b) => {
                write!(f, "({} {}", b.lhs, b.op.symbol())?;
                let m = &b.modifier;
                if m.return_bool {
                    f.write_str(" bool")?;
                }
                let vm = &m.matching;
                let group = match vm.card {
                    Cardinality::OneToOne => "",
                    Cardinality::ManyToOne => "group_left",
                    Cardinality::OneToMany => "group_right",
                };
                // A parenthesised right-hand side right after a group modifier would read as its
                // label list, so an empty list is spelled out then.
                let rhs_parenthesised = matches!(*b.rhs, SampleExpr::BinOp(_));
                let include = if !vm.include.is_empty() {
                    format!(" ({})", vm.include.join(","))
                } else if vm.card != Cardinality::OneToOne && rhs_parenthesised {
                    " ()".to_string()
                } else {
                    String::new()
                };
                if vm.on || !vm.labels.is_empty() || vm.card != Cardinality::OneToOne {
                    let on = if vm.on { "on" } else { "ignoring" };
                    write!(f, " {on} ({}) {group}{include}", vm.labels.join(","))?;
                }
                write!(f, " {})", b.rhs)
            }
        }
    }
}

/// A literal as Go's `fmt.Sprint` prints it, except `-0`, which would lex as a duration.
fn literal_string(v: f64) -> String {
    if v == 0.0 && v.is_sign_negative() {
        return "-0.0".to_string();
    }
    let mut s = String::new();
    fmt_go_float_v(&mut s, v);
    s
}
