//! Property test: for random trees in the parser's normal form, `parse(tree.to_string())`
//! gives the tree back.

use proptest::prelude::*;

use super::super::goregex::{Anchor, GoRegex};
use super::super::pattern::{validate_filter_pattern, validate_parser_pattern};
use super::super::pipeline::new_matcher;
use super::super::token::keyword;
use super::super::*;

const REGEXES: &[&str] = &[
    "a.*",
    "(?i)foo",
    "x|y",
    "[a-z]+\\d",
    "^$",
    "",
    "\\w+\\s",
    "(?P<n>x)",
    "a{2,3}",
    "[[:alpha:]]",
    "\\Qa.b\\E",
    "é+",
    "[^\\]x]",
    "x{y",
];
const IP_PATTERNS: &[&str] = &["10.0.0.0/8", "192.168.1.5", "::1", "2001:db8::/32", "10.0.0.1-10.0.0.9"];
const FILTER_PATTERNS: &[&str] = &["", "<_> foo", "a <_> b <_>", "no captures", "<1a>"];
const PARSER_PATTERNS: &[&str] = &["<a> <b>", "<_> <x>", "x<y>z", "<method> <_> <status>"];
const NAMED_REGEXES: &[&str] = &["(?P<a>\\w+)", "(?P<x>.)-(?P<y>.)", "(?<lvl>[A-Z]+) (.*)"];
const TEMPLATES: &[&str] =
    &["", "plain", "{{.foo}}", "{{ .a | ToUpper }} x", "{{ if eq .a \"b\" }}y{{ else }}z{{ end }}"];

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(list).prop_map(str::to_string)
}

fn ident() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,6}".prop_filter("keywords are reserved", |s| keyword(&s.to_lowercase()).is_none())
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..6).prop_map(String::from_iter)
}

fn match_op() -> impl Strategy<Value = MatchOp> {
    prop_oneof![Just(MatchOp::Eq), Just(MatchOp::Neq), Just(MatchOp::Re), Just(MatchOp::Nre)]
}

fn matcher() -> impl Strategy<Value = Matcher> {
    (ident(), match_op(), text(), pick(REGEXES)).prop_map(|(name, op, value, re)| {
        let value = if matches!(op, MatchOp::Re | MatchOp::Nre) { re } else { value };
        new_matcher(name, op, value, 0).expect("generated matchers are valid")
    })
}

fn selector() -> impl Strategy<Value = Vec<Matcher>> {
    (ident(), "[a-z]{1,4}", prop::collection::vec(matcher(), 0..3)).prop_map(|(name, value, rest)| {
        let mut out = vec![new_matcher(name, MatchOp::Eq, value, 0).expect("valid")];
        out.extend(rest);
        out
    })
}

fn cmp_op() -> impl Strategy<Value = CmpOp> {
    prop_oneof![Just(CmpOp::Eq), Just(CmpOp::Neq), Just(CmpOp::Gt), Just(CmpOp::Gte), Just(CmpOp::Lt), Just(CmpOp::Lte)]
}

fn label_filter() -> impl Strategy<Value = LabelFilter> {
    let leaf = prop_oneof![
        matcher().prop_map(LabelFilter::Matcher),
        (ident(), any::<bool>(), pick(IP_PATTERNS))
            .prop_map(|(name, negated, pattern)| { LabelFilter::Ip { name, negated, pattern } }),
        (ident(), cmp_op(), any::<i64>()).prop_map(|(name, op, value)| LabelFilter::Duration { name, op, value }),
        (ident(), cmp_op(), 0u64..(1 << 53)).prop_map(|(name, op, value)| LabelFilter::Bytes { name, op, value }),
        (ident(), cmp_op(), any::<f64>().prop_filter("finite", |v| v.is_finite()))
            .prop_map(|(name, op, value)| LabelFilter::Number { name, op, value }),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| LabelFilter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| LabelFilter::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn line_filter() -> impl Strategy<Value = LineFilter> {
    let op = prop_oneof![
        Just(LineFilterOp::Contains),
        Just(LineFilterOp::NotContains),
        Just(LineFilterOp::Match),
        Just(LineFilterOp::NotMatch),
        Just(LineFilterOp::Pattern),
        Just(LineFilterOp::NotPattern),
    ];
    let alt = (text(), pick(REGEXES), pick(FILTER_PATTERNS), pick(IP_PATTERNS), any::<bool>());
    (op, prop::collection::vec(alt, 1..4)).prop_map(|(op, alts)| {
        let n = if op.is_negative() { 1 } else { alts.len() };
        let alternatives = alts
            .into_iter()
            .take(n)
            .map(|(t, re, pat, ip, use_ip)| match op {
                LineFilterOp::Contains | LineFilterOp::NotContains if use_ip => LineMatch::Ip(ip),
                LineFilterOp::Contains | LineFilterOp::NotContains => {
                    LineMatch::Text { text: t, regex: None, pattern: None }
                }
                LineFilterOp::Match | LineFilterOp::NotMatch => LineMatch::Text {
                    regex: Some(GoRegex::compile(&re, Anchor::None, false).expect("valid")),
                    text: re,
                    pattern: None,
                },
                LineFilterOp::Pattern | LineFilterOp::NotPattern => LineMatch::Text {
                    pattern: Some(validate_filter_pattern(&pat).expect("valid")),
                    text: pat,
                    regex: None,
                },
            })
            .collect();
        LineFilter { op, alternatives }
    })
}

fn extractions() -> impl Strategy<Value = Vec<Extraction>> {
    prop::collection::vec((ident(), text()).prop_map(|(label, expr)| Extraction { label, expr }), 0..3)
}

fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![
        3 => line_filter().prop_map(Stage::LineFilter),
        1 => extractions().prop_map(Stage::Json),
        1 => (any::<bool>(), any::<bool>(), extractions())
            .prop_map(|(strict, keep_empty, extractions)| Stage::Logfmt(LogfmtParser { strict, keep_empty, extractions })),
        1 => pick(NAMED_REGEXES).prop_map(|source| Stage::Regexp(RegexpParser {
            regex: GoRegex::compile(&source, Anchor::None, true).expect("valid"),
            source,
        })),
        1 => pick(PARSER_PATTERNS).prop_map(|source| Stage::Pattern(PatternParser {
            pattern: validate_parser_pattern(&source).expect("valid"),
            source,
        })),
        1 => Just(Stage::Unpack),
        1 => Just(Stage::Decolorize),
        1 => pick(TEMPLATES).prop_map(Stage::LineFormat),
        1 => prop::collection::vec((ident(), ident(), pick(TEMPLATES), any::<bool>()), 1..3).prop_map(|items| {
            let mut seen = Vec::new();
            let fmts = items
                .into_iter()
                .filter(|(name, ..)| {
                    let fresh = !seen.contains(name);
                    seen.push(name.clone());
                    fresh
                })
                .map(|(name, src, tpl, rename)| LabelFmt { name, value: if rename { src } else { tpl }, rename })
                .collect();
            Stage::LabelFormat(fmts)
        }),
        1 => (any::<bool>(), prop::collection::vec((ident(), prop::option::of(matcher())), 1..3)).prop_map(|(keep, items)| {
            let items = items
                .into_iter()
                .map(|(n, m)| m.map_or(NamedMatcher::Name(n), NamedMatcher::Matcher))
                .collect();
            if keep { Stage::Keep(items) } else { Stage::Drop(items) }
        }),
        2 => label_filter().prop_map(Stage::LabelFilter),
    ]
}

/// Whether the parser can produce this stage sequence: a negative line filter (`!=`, `!~`)
/// right after a `drop`/`keep` whose last item is a bare name is read as a matcher of that name,
/// in Loki's grammar as in this one.
fn producible(stages: &[Stage]) -> bool {
    stages.windows(2).all(|w| match w {
        [Stage::Drop(items) | Stage::Keep(items), Stage::LineFilter(f)] => {
            !(matches!(items.last(), Some(NamedMatcher::Name(_)))
                && matches!(f.op, LineFilterOp::NotContains | LineFilterOp::NotMatch))
        }
        _ => true,
    })
}

fn log_expr() -> impl Strategy<Value = LogExpr> {
    (selector(), prop::collection::vec(stage(), 0..4).prop_filter("producible by the parser", |s| producible(s)))
        .prop_map(|(matchers, stages)| LogExpr { matchers, stages })
}

fn grouping() -> impl Strategy<Value = Grouping> {
    (any::<bool>(), prop::collection::vec(ident(), 0..3)).prop_map(|(without, labels)| Grouping { without, labels })
}

fn range_aggregation() -> impl Strategy<Value = SampleExpr> {
    let unwrap = (
        ident(),
        prop::option::of(prop_oneof![
            Just(Conversion::Bytes),
            Just(Conversion::Duration),
            Just(Conversion::DurationSeconds)
        ]),
        prop::collection::vec(label_filter(), 0..2),
    )
        .prop_map(|(label, conversion, post_filters)| Unwrap { label, conversion, post_filters });
    (
        prop::sample::select(&RangeOp::ALL[..]),
        log_expr(),
        0i64..10_000_000_000,
        prop_oneof![Just(0i64), any::<i64>()],
        unwrap,
        any::<bool>(),
        prop::option::of(grouping()),
        0f64..10.0,
    )
        .prop_map(|(op, selector, range_ms, offset, unwrap, want_unwrap, grouping, phi)| {
            use RangeOp::*;
            let needs_unwrap = !matches!(op, CountOverTime | BytesOverTime | BytesRate | Rate | AbsentOverTime);
            let no_unwrap = matches!(op, CountOverTime | BytesOverTime | BytesRate);
            let unwrap = if needs_unwrap || (!no_unwrap && want_unwrap) { Some(unwrap) } else { None };
            let groupable = matches!(
                op,
                AvgOverTime
                    | StddevOverTime
                    | StdvarOverTime
                    | QuantileOverTime
                    | MaxOverTime
                    | MinOverTime
                    | FirstOverTime
                    | LastOverTime
            );
            SampleExpr::RangeAggregation(RangeAggregation {
                op,
                range: LogRange { selector, range: range_ms * 1_000_000, offset, unwrap },
                param: (op == QuantileOverTime).then_some(phi),
                grouping: if groupable { grouping } else { None },
            })
        })
}

fn literal() -> impl Strategy<Value = SampleExpr> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        -1000f64..1000.0
    ]
    .prop_map(|v| SampleExpr::Literal(Number(v)))
}

fn leaf_sample() -> impl Strategy<Value = SampleExpr> {
    prop_oneof![
        3 => range_aggregation(),
        1 => literal(),
        1 => (0f64..1e9).prop_map(|v| SampleExpr::Vector(Number(v))),
    ]
}

fn is_literal(s: &SampleExpr) -> bool {
    matches!(s, SampleExpr::Literal(_))
}

fn sample_expr() -> impl Strategy<Value = SampleExpr> {
    leaf_sample().prop_recursive(3, 10, 2, |inner| {
        let binop_kind = prop::sample::select(
            &[
                BinOpKind::Or,
                BinOpKind::And,
                BinOpKind::Unless,
                BinOpKind::Add,
                BinOpKind::Sub,
                BinOpKind::Mul,
                BinOpKind::Div,
                BinOpKind::Mod,
                BinOpKind::Pow,
                BinOpKind::Eq,
                BinOpKind::Neq,
                BinOpKind::Gt,
                BinOpKind::Gte,
                BinOpKind::Lt,
                BinOpKind::Lte,
            ][..],
        );
        let card = prop_oneof![Just(Cardinality::OneToOne), Just(Cardinality::ManyToOne), Just(Cardinality::OneToMany)];
        let modifier = (
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(ident(), 0..2),
            card,
            prop::collection::vec(ident(), 0..2),
        )
            .prop_map(|(return_bool, on, labels, card, include)| BinOpModifier {
                return_bool,
                matching: VectorMatching {
                    on,
                    labels,
                    card,
                    include: if card == Cardinality::OneToOne { Vec::new() } else { include },
                },
            });
        prop_oneof![
            (binop_kind, inner.clone(), inner.clone(), modifier)
                .prop_filter("literal legs fold or are invalid", |(op, l, r, _)| {
                    if op.is_set_op() { !is_literal(l) && !is_literal(r) } else { !(is_literal(l) && is_literal(r)) }
                })
                .prop_map(|(op, lhs, rhs, modifier)| SampleExpr::BinOp(BinOp {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                    modifier
                })),
            (prop::sample::select(&VectorOp::ALL[..]), inner.clone(), 1i64..=i64::MAX, grouping()).prop_map(
                |(op, expr, k, g)| {
                    let grouping = match op {
                        VectorOp::ApproxTopk => Grouping::default(),
                        VectorOp::Sort | VectorOp::SortDesc => Grouping { without: g.without, labels: Vec::new() },
                        _ => g,
                    };
                    SampleExpr::VectorAggregation(VectorAggregation {
                        op,
                        expr: Box::new(expr),
                        param: op.takes_param().then_some(k),
                        grouping,
                    })
                }
            ),
            (inner, text(), text(), ident(), pick(REGEXES)).prop_map(|(expr, dst, replacement, src, regex_source)| {
                SampleExpr::LabelReplace(LabelReplace {
                    expr: Box::new(expr),
                    dst,
                    replacement,
                    src,
                    regex: GoRegex::compile(&format!("^(?:{regex_source})$"), Anchor::None, true)
                        .or_else(|_| GoRegex::compile(&format!("^(?:{regex_source})$"), Anchor::None, false))
                        .expect("valid"),
                    regex_source,
                })
            }),
        ]
    })
}

fn expr() -> impl Strategy<Value = Expr> {
    prop_oneof![1 => log_expr().prop_map(Expr::Log), 3 => sample_expr().prop_map(Expr::Sample)]
}

proptest! {
    #[test]
    fn printed_trees_parse_back_to_the_same_tree(e in expr()) {
        let printed = e.to_string();
        prop_assume!(printed.len() < MAX_QUERY_BYTES);
        let parsed = parse_expr(&printed);
        prop_assert_eq!(parsed.as_ref(), Ok(&e), "printed: {}", printed);
    }

    #[test]
    fn pretty_printed_trees_parse_back_to_the_same_tree(e in expr()) {
        let printed = pretty(&e);
        prop_assume!(printed.len() < MAX_QUERY_BYTES);
        let parsed = parse_expr(&printed);
        prop_assert_eq!(parsed.as_ref(), Ok(&e), "printed:\n{}", printed);
    }

    #[test]
    fn the_lexer_and_parser_never_panic(s in "\\PC{0,40}") {
        let _ = parse_expr(&s);
    }

    #[test]
    fn mutated_queries_never_panic(cut in 0usize..200, insert in "[(){}\\[\\]|=~!<>\"`, a-z0-9.-]{0,3}") {
        let base = r#"sum by (app) (rate({app=~"foo|bar"} |= "x" | json | a > 5 and b="c" | unwrap d [5m] offset 1h)) / on (app) group_left count_over_time({app="x"}[1m])"#;
        let cut = cut.min(base.len());
        let mut q = base[..cut].to_string();
        q.push_str(&insert);
        q.push_str(&base[cut..]);
        let _ = parse_expr(&q);
    }
}
