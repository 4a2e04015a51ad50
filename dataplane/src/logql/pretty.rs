//! The multi-line form `/loki/api/v1/format_query` returns (Loki's `Prettify`).
//!
//! An expression whose one-line form fits in 100 characters prints on one line; a longer one
//! splits: pipeline stages one per line, function arguments on their own lines, binary operators
//! between their operands, each level indented by two spaces. Where Loki's layout would change
//! the query when parsed again (a split operand of a binary operation losing its parentheses,
//! `without ()` or `on ()` dropped, negative offsets), the output keeps the query intact.

use std::fmt::Write as _;

use super::ast::*;
use super::units::{fmt_go_duration, fmt_go_float_v, fmt_prom_duration, go_quote};

const MAX_CHARS_PER_LINE: usize = 100;

/// Formats a query the way Loki's `format_query` endpoint does.
pub fn pretty(e: &Expr) -> String {
    let mut out = String::new();
    match e {
        Expr::Log(l) => log_expr(&mut out, l, 0),
        Expr::Sample(s) => sample(&mut out, s, 0),
    }
    out
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn one_line(out: &mut String, level: usize, s: &str) {
    indent(out, level);
    out.push_str(s);
}

fn log_expr(out: &mut String, l: &LogExpr, level: usize) {
    let s = l.to_string();
    if s.len() <= MAX_CHARS_PER_LINE || l.stages.is_empty() {
        one_line(out, level, &s);
        return;
    }
    let selector = LogExpr { matchers: l.matchers.clone(), stages: Vec::new() };
    one_line(out, level, &selector.to_string());
    let mut i = 0;
    while i < l.stages.len() {
        out.push('\n');
        // Consecutive line filters form one stage in Loki's tree.
        let run = l.stages[i..].iter().take_while(|s| matches!(s, Stage::LineFilter(_))).count();
        if run > 0 {
            let joined: Vec<String> = l.stages[i..i + run].iter().map(ToString::to_string).collect();
            let line = joined.join(" ");
            if line.len() <= MAX_CHARS_PER_LINE {
                one_line(out, level + 1, &line);
            } else {
                for (k, f) in joined.iter().enumerate() {
                    if k > 0 {
                        out.push('\n');
                    }
                    one_line(out, level + 1, f);
                }
            }
            i += run;
            continue;
        }
        let stage = &l.stages[i];
        if matches!(stage, Stage::Decolorize) {
            // Loki prints this stage without indentation.
            out.push_str("| decolorize");
        } else {
            one_line(out, level + 1, &stage.to_string());
        }
        i += 1;
    }
}

fn log_range(out: &mut String, r: &LogRange, level: usize) {
    log_expr(out, &r.selector, level);
    if let Some(u) = &r.unwrap {
        out.push('\n');
        indent(out, level + 1);
        match u.conversion {
            Some(c) => {
                let _ = write!(out, "| unwrap {}({})", c.name(), u.label);
            }
            None => {
                let _ = write!(out, "| unwrap {}", u.label);
            }
        }
        for f in &u.post_filters {
            out.push('\n');
            indent(out, level + 1);
            let _ = write!(out, "| {f}");
        }
    }
    out.push_str(" [");
    fmt_prom_duration(out, r.range);
    out.push(']');
    if r.offset != 0 {
        out.push_str(" offset ");
        let mut prom = String::new();
        fmt_prom_duration(&mut prom, r.offset);
        if r.offset > 0 && r.offset % 1_000_000 == 0 {
            out.push_str(&prom);
        } else {
            fmt_go_duration(out, r.offset);
        }
    }
}

fn grouping(out: &mut String, g: &Grouping, empty_by: bool) {
    if g.without {
        out.push_str(" without");
    } else if !g.labels.is_empty() || empty_by {
        out.push_str(" by");
    }
    if !g.labels.is_empty() || g.without || empty_by {
        let _ = write!(out, " ({})", g.labels.join(", "));
    }
}

fn sample(out: &mut String, s: &SampleExpr, level: usize) {
    let line = s.to_string();
    if line.len() <= MAX_CHARS_PER_LINE {
        one_line(out, level, &line);
        return;
    }
    match s {
        SampleExpr::Literal(_) | SampleExpr::Vector(_) => one_line(out, level, &line),
        SampleExpr::RangeAggregation(r) => {
            indent(out, level);
            out.push_str(r.op.name());
            out.push_str("(\n");
            if let Some(p) = r.param {
                indent(out, level + 1);
                fmt_go_float_v(out, p);
                out.push_str(",\n");
            }
            log_range(out, &r.range, level + 1);
            out.push('\n');
            indent(out, level);
            out.push(')');
            if let Some(g) = &r.grouping {
                grouping(out, g, true);
            }
        }
        SampleExpr::VectorAggregation(v) => {
            indent(out, level);
            out.push_str(v.op.name());
            grouping(out, &v.grouping, false);
            out.push_str("(\n");
            if let Some(k) = v.param {
                indent(out, level + 1);
                let _ = writeln!(out, "{k},");
            }
            sample(out, &v.expr, level + 1);
            out.push('\n');
            indent(out, level);
            out.push(')');
        }
        SampleExpr::LabelReplace(l) => {
            indent(out, level);
            out.push_str("label_replace(\n");
            sample(out, &l.expr, level + 1);
            for arg in [&l.dst, &l.replacement, &l.src, &l.regex_source] {
                out.push_str(",\n");
                indent(out, level + 1);
                out.push_str(&go_quote(arg));
            }
            out.push('\n');
            indent(out, level);
            out.push(')');
        }
        SampleExpr::BinOp(b) => {
            operand(out, &b.lhs, level + 1);
            out.push('\n');
            indent(out, level);
            out.push_str(&binop_operator(b));
            out.push('\n');
            operand(out, &b.rhs, level + 1);
        }
    }
}

/// An operand of a split binary operation. A nested binary operation that must split too keeps
/// its parentheses, which Loki's layout drops.
fn operand(out: &mut String, s: &SampleExpr, level: usize) {
    if matches!(s, SampleExpr::BinOp(_)) && s.to_string().len() > MAX_CHARS_PER_LINE {
        indent(out, level);
        out.push_str("(\n");
        sample(out, s, level + 1);
        out.push('\n');
        indent(out, level);
        out.push(')');
    } else {
        sample(out, s, level);
    }
}

fn binop_operator(b: &BinOp) -> String {
    let mut op = b.op.symbol().to_string();
    if b.modifier.return_bool {
        op.push_str(" bool");
    }
    let vm = &b.modifier.matching;
    if vm.on || !vm.labels.is_empty() || vm.card != Cardinality::OneToOne {
        let on = if vm.on { "on" } else { "ignoring" };
        let _ = write!(op, " {on} ({})", vm.labels.join(", "));
        match vm.card {
            Cardinality::OneToOne => {}
            Cardinality::ManyToOne => op.push_str(" group_left"),
            Cardinality::OneToMany => op.push_str(" group_right"),
        }
        if vm.card != Cardinality::OneToOne && (!vm.include.is_empty() || matches!(*b.rhs, SampleExpr::BinOp(_))) {
            let _ = write!(op, " ({})", vm.include.join(", "));
        }
    }
    op
}
