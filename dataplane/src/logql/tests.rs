//! Unit tests of the LogQL parser and printer. Property tests are in `tests_prop.rs`; the
//! conformance-script extraction test is in `tests_conformance.rs`.

use super::*;

#[path = "tests_conformance.rs"]
mod conformance;
#[path = "tests_prop.rs"]
mod prop;
#[path = "tests_template.rs"]
mod template_tests;

fn ok(q: &str) -> Expr {
    match parse_expr(q) {
        Ok(e) => {
            let printed = e.to_string();
            let again = parse_expr(&printed)
                .unwrap_or_else(|err| panic!("{q}: printed form {printed:?} does not parse: {err}"));
            assert_eq!(again, e, "{q}: printed form {printed:?} parses to a different tree");
            e
        }
        Err(err) => panic!("{q}: unexpected error: {err}"),
    }
}

fn printed(q: &str) -> String {
    ok(q).to_string()
}

fn err(q: &str) -> String {
    match parse_expr(q) {
        Ok(e) => panic!("{q}: expected an error, parsed {e}"),
        Err(e) => e.to_string(),
    }
}

fn sample(q: &str) -> SampleExpr {
    match ok(q) {
        Expr::Sample(s) => s,
        Expr::Log(l) => panic!("{q}: expected a metric query, got {l}"),
    }
}

fn log(q: &str) -> LogExpr {
    match ok(q) {
        Expr::Log(l) => l,
        Expr::Sample(s) => panic!("{q}: expected a log query, got {s}"),
    }
}

fn label_filter(q: &str) -> LabelFilter {
    match log(q).stages.pop() {
        Some(Stage::LabelFilter(f)) => f,
        other => panic!("{q}: last stage is not a label filter: {other:?}"),
    }
}

// ---- selectors and matchers -----------------------------------------------------------------

#[test]
fn selector_matchers() {
    let l = log(r#"{ namespace="buzz", foo != "bar", a=~"x.+", b!~"y" }"#);
    let ops: Vec<_> = l.matchers.iter().map(|m| (m.name.as_str(), m.op, m.value.as_str())).collect();
    assert_eq!(
        ops,
        vec![
            ("namespace", MatchOp::Eq, "buzz"),
            ("foo", MatchOp::Neq, "bar"),
            ("a", MatchOp::Re, "x.+"),
            ("b", MatchOp::Nre, "y"),
        ]
    );
    assert!(l.stages.is_empty());
    assert_eq!(l.to_string(), r#"{namespace="buzz", foo!="bar", a=~"x.+", b!~"y"}"#);
}

#[test]
fn matcher_regexes_are_fully_anchored_and_dot_matches_newline() {
    let l = log(r#"{a=~"fo+", b=~"x.y"}"#);
    assert!(l.matchers[0].matches("foo"));
    assert!(!l.matchers[0].matches("xfoo"));
    assert!(!l.matchers[0].matches("foox"));
    assert!(l.matchers[1].matches("x\ny"));
}

#[test]
fn go_regex_semantics_are_kept() {
    // \d and \w are ASCII-only in Go.
    let l = log(r#"{a=~"\\d+", b=~"\\w+"}"#);
    assert!(l.matchers[0].matches("123"));
    assert!(!l.matchers[0].matches("١٢٣"));
    assert!(!l.matchers[1].matches("é"));
    // A `{` that is not a repetition is literal in Go.
    let l = log(r#"{a=~"x{y}", b=~"[[a]+"}"#);
    assert!(l.matchers[0].matches("x{y}"));
    assert!(l.matchers[1].matches("[a["));
}

#[test]
fn empty_selector_is_an_error() {
    let msg = "parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will";
    assert_eq!(err("{}"), msg);
    assert_eq!(err(r#"{foo!="bar"}"#), msg);
    assert_eq!(err(r#"{app=~".*"}"#), msg);
    assert_eq!(err(r#"{foo!~"bar|baz"}"#), msg);
    assert_eq!(err(r#"1 + count_over_time({app=~".*"}[5m])"#), msg);
    ok(r#"{app=~".+"}"#);
    ok(r#"{app="baz", foo!="bar"}"#);
}

#[test]
fn invalid_matcher_regex() {
    assert_eq!(err(r#"{a=~"("}"#), "parse error : error parsing regexp: missing closing ): `(`");
    assert_eq!(err(r#"{a=~"x**"}"#), "parse error : error parsing regexp: invalid nested repetition operator: `**`");
    assert_eq!(err(r#"{a=~"\\q"}"#), "parse error : error parsing regexp: invalid escape sequence: `\\q`");
    assert_eq!(err(r#"{a=~"[z-a]"}"#), "parse error : error parsing regexp: invalid character class range: `z-a`");
    assert_eq!(
        err(r#"{a="b"} | c=~"(?=x)""#),
        "parse error : error parsing regexp: invalid or unsupported Perl syntax: `(?=`"
    );
}

#[test]
fn parse_matchers_accepts_only_selectors() {
    let m = parse_matchers(r#"{app="foo",cluster=~".+bar"}"#).unwrap_or_default();
    assert_eq!(m.len(), 2);
    let e = parse_matchers(r#"{app="foo"} |= "x""#).err().map(|e| e.to_string());
    assert_eq!(e.as_deref(), Some("only label matchers is supported"));
    assert!(parse_matchers(r#"{app="foo""#).is_err());
    let e = parse_log_selector(r#"count_over_time({a="b"}[1m])"#).err().map(|e| e.to_string());
    assert_eq!(e.as_deref(), Some("only log selector is supported"));
    let e = parse_sample_expr(r#"{a="b"}"#).err().map(|e| e.to_string());
    assert_eq!(e.as_deref(), Some("only sample expression supported"));
}

// ---- line filters ---------------------------------------------------------------------------

#[test]
fn line_filters() {
    let l = log(r#"{a="b"} |= "x" != "y" |~ "z.+" !~ "w" |> "<_> ok" !> "<_> no""#);
    let ops: Vec<_> = l
        .stages
        .iter()
        .map(|s| match s {
            Stage::LineFilter(f) => f.op,
            other => panic!("not a line filter: {other:?}"),
        })
        .collect();
    use LineFilterOp::*;
    assert_eq!(ops, vec![Contains, NotContains, Match, NotMatch, Pattern, NotPattern]);
    assert_eq!(l.to_string(), r#"{a="b"} |= "x" != "y" |~ "z.+" !~ "w" |> "<_> ok" !> "<_> no""#);
}

#[test]
fn or_chains() {
    let l = log(r#"{a="b"} |= "x" or "y" or ip("10.0.0.0/8")"#);
    assert_eq!(l.stages.len(), 1);
    assert_eq!(l.to_string(), r#"{a="b"} |= "x" or "y" or ip("10.0.0.0/8")"#);
    // A negative chain means "none of them", which is a sequence of negative filters.
    assert_eq!(printed(r#"{a="b"} != "x" or "y""#), r#"{a="b"} != "x" != "y""#);
    assert_eq!(printed(r#"{a="b"} !~ "x" or "y" |= "z""#), r#"{a="b"} !~ "x" !~ "y" |= "z""#);
    assert_eq!(printed(r#"{a="b"} |> "<_> a" or "<_> b""#), r#"{a="b"} |> "<_> a" or "<_> b""#);
}

#[test]
fn line_filter_validation() {
    assert_eq!(
        err(r#"{a="b"} |~ "(""#),
        r#"parse error : stage '|~ "("' : error parsing regexp: missing closing ): `(`"#
    );
    assert!(err(r#"{a="b"} |> "<verb> /api""#).contains("named captures are not allowed"));
    assert!(err(r#"{a="b"} |> "<_><_>""#).contains("found consecutive capture '<_><_>': invalid expression"));
    assert!(err(r#"{a="b"} |~ ip("1.2.3.4")"#).contains("ip: invalid operation"));
    assert!(err(r#"{a="b"} |= "x" or ip("nope")"#).contains("ip: invalid pattern"));
    assert!(err(r#"{a="b"} | addr=ip("1.2.3.4/99")"#).contains("ip: invalid pattern"));
    ok(r#"{a="b"} |= ip("192.168.0.1-192.168.0.9") != ip("::1") |= ip("2001:db8::/32")"#);
}

#[test]
fn line_filter_regexes_are_compiled() {
    let l = log(r#"{a="b"} |~ "(?i)err.r""#);
    let Some(Stage::LineFilter(f)) = l.stages.first() else {
        panic!("no line filter");
    };
    let LineMatch::Text { regex: Some(re), .. } = &f.alternatives[0] else {
        panic!("regex not compiled");
    };
    assert!(re.is_match("an ERROR here"));
}

// ---- parsers and formatters -----------------------------------------------------------------

#[test]
fn parser_stages() {
    let q = r#"{a="b"} | json | json x="a.b[0]", y | logfmt | logfmt --strict --keep-empty | logfmt --keep-empty x, y="z" | unpack | regexp "(?P<x>\\w+)" | pattern "<x> <_>" | decolorize"#;
    let l = log(q);
    assert_eq!(l.stages.len(), 9);
    assert_eq!(
        l.to_string(),
        r#"{a="b"} | json | json x="a.b[0]",y="y" | logfmt | logfmt --strict --keep-empty | logfmt --keep-empty x="x",y="z" | unpack | regexp "(?P<x>\\w+)" | pattern "<x> <_>" | decolorize"#
    );
    let Stage::Regexp(r) = &l.stages[6] else {
        panic!("not a regexp stage");
    };
    assert_eq!(r.regex.regex().capture_names().flatten().collect::<Vec<_>>(), vec!["x"]);
}

#[test]
fn parser_stage_validation() {
    assert_eq!(
        err(r#"{a="b"} | regexp "nocapture""#),
        "parse error : invalid regexp parser: at least one named capture must be supplied"
    );
    assert_eq!(
        err(r#"{a="b"} | regexp "(?P<x>.)(?P<x>.)""#),
        "parse error : invalid regexp parser: duplicate extracted label name 'x'"
    );
    assert_eq!(
        err(r#"{a="b"} | regexp "(""#),
        "parse error : invalid regexp parser: error parsing regexp: missing closing ): `(`"
    );
    assert_eq!(
        err(r#"{a="b"} | pattern "no captures""#),
        "parse error : invalid pattern parser: at least one capture is required"
    );
    assert_eq!(
        err(r#"{a="b"} | pattern "<a> <a>""#),
        "parse error : invalid pattern parser: duplicate capture name (a): invalid expression"
    );
    assert_eq!(
        err(r#"{a="b"} | pattern "<a><b>""#),
        "parse error : invalid pattern parser: found consecutive capture '<a><b>': invalid expression"
    );
}

#[test]
fn formatters_drop_keep() {
    let q = r#"{a="b"} | line_format "{{.foo}} {{ .bar | ToUpper }}" | label_format x=y, z="{{.w}}" | drop a, b="c" | keep d, e=~"f.*""#;
    assert_eq!(
        printed(q),
        r#"{a="b"} | line_format "{{.foo}} {{ .bar | ToUpper }}" | label_format x=y,z="{{.w}}" | drop a,b="c" | keep d,e=~"f.*""#
    );
    assert!(
        err(r#"{a="b"} | label_format x=y, x=z"#)
            .contains("multiple label name 'x' not allowed in a single format operation")
    );
    assert_eq!(
        err(r#"{a="b"} | drop"#),
        "parse error at line 1, col 15: syntax error: unexpected $end, expecting IDENTIFIER"
    );
}

// ---- label filters --------------------------------------------------------------------------

#[test]
fn label_filter_kinds() {
    use LabelFilter as F;
    let f = label_filter(r#"{a="b"} | x == 5"#);
    assert_eq!(f, F::Number { name: "x".into(), op: CmpOp::Eq, value: 5.0 });
    let f = label_filter(r#"{a="b"} | x = -1.5e3"#);
    assert_eq!(f, F::Number { name: "x".into(), op: CmpOp::Eq, value: -1500.0 });
    let f = label_filter(r#"{a="b"} | took > 1m30s"#);
    assert_eq!(f, F::Duration { name: "took".into(), op: CmpOp::Gt, value: 90_000_000_000 });
    let f = label_filter(r#"{a="b"} | took <= 1.5h"#);
    assert_eq!(f, F::Duration { name: "took".into(), op: CmpOp::Lte, value: 5_400_000_000_000 });
    let f = label_filter(r#"{a="b"} | size >= 10KB"#);
    assert_eq!(f, F::Bytes { name: "size".into(), op: CmpOp::Gte, value: 10_000 });
    let f = label_filter(r#"{a="b"} | size < 2.5KiB"#);
    assert_eq!(f, F::Bytes { name: "size".into(), op: CmpOp::Lt, value: 2560 });
    let f = label_filter(r#"{a="b"} | addr != ip("10.0.0.0/8")"#);
    assert_eq!(f, F::Ip { name: "addr".into(), negated: true, pattern: "10.0.0.0/8".into() });
    assert!(matches!(label_filter(r#"{a="b"} | x != "y""#), F::Matcher(Matcher { op: MatchOp::Neq, .. })));
}

#[test]
fn label_filter_precedence() {
    // and binds tighter than or.
    assert_eq!(printed(r#"{a="b"} | x="1" or y="1" and z="1""#), r#"{a="b"} | ( x="1" or ( y="1" , z="1" ) )"#);
    assert_eq!(printed(r#"{a="b"} | x="1" and y="1" or z="1""#), r#"{a="b"} | ( ( x="1" , y="1" ) or z="1" )"#);
    // A comma or a space takes everything to its right.
    assert_eq!(printed(r#"{a="b"} | x="1" or y="1", z="1""#), r#"{a="b"} | ( x="1" or ( y="1" , z="1" ) )"#);
    assert_eq!(printed(r#"{a="b"} | x="1" or y="1" z="1""#), r#"{a="b"} | ( x="1" or ( y="1" , z="1" ) )"#);
    assert_eq!(printed(r#"{a="b"} | x="1", y="1" or z="1""#), r#"{a="b"} | ( x="1" , ( y="1" or z="1" ) )"#);
    assert_eq!(printed(r#"{a="b"} | (x="1" or y="1") and z="1""#), r#"{a="b"} | ( ( x="1" or y="1" ) , z="1" )"#);
    assert_eq!(printed(r#"{a="b"} | a="1" or b="1" or c="1""#), r#"{a="b"} | ( ( a="1" or b="1" ) or c="1" )"#);
    // The tree Loki's own tests expect.
    assert_eq!(
        printed(r#"{app="foo"} | foo="bar" buzz!="blip", blop=~"boop" or fuzz==5"#),
        r#"{app="foo"} | ( foo="bar" , ( buzz!="blip" , ( blop=~"boop" or fuzz==5 ) ) )"#
    );
}

#[test]
fn label_filter_printing() {
    assert_eq!(printed(r#"{a="b"} | b>=10GB"#), r#"{a="b"} | b>=10GB"#);
    assert_eq!(printed(r#"{a="b"} | b>=1MB"#), r#"{a="b"} | b>=1.0MB"#);
    assert_eq!(printed(r#"{a="b"} | b>=1500B"#), r#"{a="b"} | b>=1.5kB"#);
    // Loki would print 2.0kB (2000 bytes); the exact form keeps the value.
    assert_eq!(printed(r#"{a="b"} | b>=2KiB"#), r#"{a="b"} | b>=2KiB"#);
    assert_eq!(printed(r#"{a="b"} | b>=1234B"#), r#"{a="b"} | b>=1234B"#);
    assert_eq!(printed(r#"{a="b"} | t > 90m"#), r#"{a="b"} | t>1h30m0s"#);
    assert_eq!(printed(r#"{a="b"} | t > 250ms"#), r#"{a="b"} | t>250ms"#);
    assert_eq!(printed(r#"{a="b"} | t > -1s"#), r#"{a="b"} | t>-1s"#);
    assert_eq!(printed(r#"{a="b"} | n = 5"#), r#"{a="b"} | n==5"#);
    assert_eq!(printed(r#"{a="b"} | n > 0.25"#), r#"{a="b"} | n>0.25"#);
    assert_eq!(printed(r#"{a="b"} | n > - 0"#), r#"{a="b"} | n>-0.0"#);
    assert_eq!(printed(r#"{a="b"} | addr = ip("1.2.3.4")"#), r#"{a="b"} | addr=ip("1.2.3.4")"#);
}

#[test]
fn label_filter_errors() {
    assert_eq!(err(r#"{a="b"} | code == "200""#), "parse error at line 1, col 19: syntax error: unexpected STRING");
    assert_eq!(err(r#"{a="b"} | addr >= ip("1.2.3.4")"#), "parse error at line 1, col 19: syntax error: unexpected ip");
    assert!(err(r#"{a="b"} | size > 1mb"#).contains("syntax error"));
    assert!(
        err(r#"{a="b"} | code > 0x10"#)
            .contains("unable to parse literal as a float: strconv.ParseFloat: parsing \"0x10\": invalid syntax")
    );
    assert_eq!(
        err(r#"{a="b"} | x="1" and"#),
        "parse error at line 1, col 20: syntax error: unexpected $end, expecting IDENTIFIER or ("
    );
}

// ---- range aggregations ---------------------------------------------------------------------

#[test]
fn range_positions() {
    let a = sample(r#"count_over_time({a="b"} |= "x" [5m])"#);
    let b = sample(r#"count_over_time({a="b"}[5m] |= "x")"#);
    let c = sample(r#"count_over_time(({a="b"} |= "x")[5m])"#);
    let d = sample(r#"count_over_time((({a="b"} |= "x" [5m])))"#);
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a, d);
    assert_eq!(a.to_string(), r#"count_over_time({a="b"} |= "x"[5m])"#);
    let e = sample(r#"sum_over_time({a="b"}[5m] offset 1h | logfmt | unwrap bytes(x) | __error__="")"#);
    assert_eq!(e.to_string(), r#"sum_over_time({a="b"} | logfmt | unwrap bytes(x) | __error__=""[5m] offset 1h0m0s)"#);
    let f = sample(r#"max_over_time(({a="b"}) [5m] offset 5m | unwrap x)"#);
    assert_eq!(f.to_string(), r#"max_over_time({a="b"} | unwrap x[5m] offset 5m0s)"#);
}

#[test]
fn range_aggregation_tree() {
    let s = sample(
        r#"quantile_over_time(0.99, {a="b"} | json | unwrap duration_seconds(latency) | __error__="" [1m] offset 30s) by (pod)"#,
    );
    let SampleExpr::RangeAggregation(r) = s else {
        panic!("not a range aggregation");
    };
    assert_eq!(r.op, RangeOp::QuantileOverTime);
    assert_eq!(r.param, Some(0.99));
    assert_eq!(r.range.range, 60_000_000_000);
    assert_eq!(r.range.offset, 30_000_000_000);
    assert_eq!(r.grouping, Some(Grouping { without: false, labels: vec!["pod".into()] }));
    let u = r.range.unwrap.as_ref().map(|u| (u.label.as_str(), u.conversion, u.post_filters.len()));
    assert_eq!(u, Some(("latency", Some(Conversion::DurationSeconds), 1)));
}

#[test]
fn range_aggregation_validation() {
    assert_eq!(
        err(r#"bytes_rate({a="b"} | logfmt | unwrap v [30s])"#),
        "parse error : invalid aggregation bytes_rate with unwrap"
    );
    assert_eq!(
        err(r#"count_over_time({a="b"} | unwrap v [30s])"#),
        "parse error : invalid aggregation count_over_time with unwrap"
    );
    assert_eq!(err(r#"sum_over_time({a="b"}[30s])"#), "parse error : invalid aggregation sum_over_time without unwrap");
    assert_eq!(err(r#"rate({a="b"}[30s]) by (x)"#), "parse error : grouping not allowed for rate aggregation");
    assert_eq!(
        err(r#"absent_over_time({a="b"}[5h]) by (foo)"#),
        "parse error : grouping not allowed for absent_over_time aggregation"
    );
    assert_eq!(
        err(r#"quantile_over_time({a="b"} | unwrap x [5m])"#),
        "parse error : parameter required for operation quantile_over_time"
    );
    assert_eq!(
        err(r#"sum_over_time(50, {a="b"} | unwrap x [5m])"#),
        "parse error : parameter 50 not supported for operation sum_over_time"
    );
    assert_eq!(
        err(r#"quantile_over_time(-0.1, {a="b"} | unwrap x [5m])"#),
        "parse error at line 1, col 20: syntax error: unexpected -, expecting NUMBER or { or ("
    );
    assert_eq!(
        err(r#"quantile_over_time(foo,{a="b"} | unwrap x [5m])"#),
        "parse error at line 1, col 20: syntax error: unexpected IDENTIFIER, expecting NUMBER or { or ("
    );
    // Rates accept unwrap.
    ok(r#"rate({a="b"} | unwrap x [5m])"#);
    ok(r#"rate_counter({a="b"} | unwrap x [5m])"#);
    ok(r#"avg_over_time({a="b"} | unwrap x [5m]) without ()"#);
}

#[test]
fn unwrap_errors() {
    assert_eq!(err(r#"{a="b"} | unwrap x"#), "parse error at line 1, col 11: syntax error: unexpected unwrap");
    assert_eq!(
        err(r#"sum_over_time({a="b"} | unwrap x)"#),
        "parse error at line 1, col 33: syntax error: unexpected ), expecting RANGE or |"
    );
    assert_eq!(
        err(r#"sum_over_time({a="b"} | unwrap [1m])"#),
        "parse error at line 0, col 32: syntax error: unexpected RANGE, expecting IDENTIFIER or BYTES_CONV or DURATION_CONV or DURATION_SECONDS_CONV"
    );
    assert_eq!(
        err(r#"sum_over_time({a="b"} | unwrap x | json [1m])"#),
        "parse error at line 1, col 36: syntax error: unexpected json, expecting IDENTIFIER or ("
    );
    assert_eq!(
        err(r#"rate({a="b"} |= "x" [5m] |= "y")"#),
        "parse error at line 0, col 26: syntax error: unexpected |=, expecting )"
    );
}

#[test]
fn ranges_and_offsets() {
    assert_eq!(
        err(r#"rate({ foo = "bar" }[5minutes])"#),
        "parse error at line 0, col 21: not a valid duration string: \"5minutes\""
    );
    assert_eq!(err(r#"rate({ foo = "bar" }[5)"#), "parse error at line 0, col 21: missing closing ']' in duration");
    assert_eq!(err(r#"rate({a="b"}[1.5m])"#), "parse error at line 0, col 13: not a valid duration string: \"1.5m\"");
    assert_eq!(printed(r#"rate({a="b"}[90s])"#), r#"rate({a="b"}[1m30s])"#);
    assert_eq!(printed(r#"rate({a="b"}[1w])"#), r#"rate({a="b"}[1w])"#);
    assert_eq!(printed(r#"rate({a="b"}[1y2d])"#), r#"rate({a="b"}[367d])"#);
    assert_eq!(printed(r#"rate({a="b"}[5m] offset 1.5h)"#), r#"rate({a="b"}[5m] offset 1h30m0s)"#);
    assert_eq!(printed(r#"rate({a="b"}[5m] offset -5m)"#), r#"rate({a="b"}[5m] offset -5m0s)"#);
    assert_eq!(printed(r#"rate({a="b"}[5m] offset 10d)"#), r#"rate({a="b"}[5m] offset 240h0m0s)"#);
    assert_eq!(
        err(r#"rate({a="b"}[5m] offset)"#),
        "parse error at line 1, col 24: syntax error: unexpected ), expecting DURATION"
    );
}

// ---- vector aggregations --------------------------------------------------------------------

#[test]
fn vector_aggregation_grouping_positions() {
    let a = sample(r#"sum by (x) (rate({a="b"}[1m]))"#);
    let b = sample(r#"sum(rate({a="b"}[1m])) by (x)"#);
    assert_eq!(a, b);
    assert_eq!(a.to_string(), r#"sum by (x)(rate({a="b"}[1m]))"#);
    // `by ()` is the same as no grouping.
    assert_eq!(sample(r#"sum by () (rate({a="b"}[1m]))"#), sample(r#"sum(rate({a="b"}[1m]))"#));
    assert_eq!(printed(r#"sum without () (rate({a="b"}[1m]))"#), r#"sum without ()(rate({a="b"}[1m]))"#);
    assert_eq!(printed(r#"topk by (x) (10, rate({a="b"}[1m]))"#), r#"topk by (x)(10,rate({a="b"}[1m]))"#);
    assert_eq!(
        printed(r#"bottomk(3, rate({a="b"}[1m])) without (y, z)"#),
        r#"bottomk without (y,z)(3,rate({a="b"}[1m]))"#
    );
    for op in ["sum", "avg", "min", "max", "count", "stddev", "stdvar", "sort", "sort_desc"] {
        ok(&format!(r#"{op}(rate({{a="b"}}[1m]))"#));
    }
}

#[test]
fn vector_aggregation_validation() {
    assert_eq!(err(r#"topk(count_over_time({a="b"}[5h]))"#), "parse error : parameter required for operation topk");
    assert_eq!(err(r#"bottomk(1.2,count_over_time({a="b"}[5h]))"#), "parse error : invalid parameter bottomk(1.2,");
    assert_eq!(
        err(r#"topk(0, count_over_time({a="b"}[5h]))"#),
        "parse error : invalid parameter (must be greater than 0) topk(0"
    );
    assert_eq!(
        err(r#"sum(3 ,count_over_time({a="b"}[5h]))"#),
        "parse error : unsupported parameter for operation sum(3,"
    );
    assert_eq!(
        err(r#"bottomk(he,count_over_time({a="b"}[5h]))"#),
        "parse error at line 1, col 9: syntax error: unexpected IDENTIFIER"
    );
    assert_eq!(
        err(r#"sort(rate({a="b"}[1m])) by (app)"#),
        "parse error : sort and sort_desc doesn't allow grouping by "
    );
    assert_eq!(
        err(r#"approx_topk(2, rate({a="b"}[1m])) by (app)"#),
        "parse error : grouping not allowed for approx_topk aggregation"
    );
    ok(r#"approx_topk(2, rate({a="b"}[1m]))"#);
    assert_eq!(err(r#"stddev({ foo = "bar" })"#), "parse error at line 1, col 23: syntax error: unexpected )");
    assert_eq!(
        err(r#"sum by (a (rate({a="b"}[1m]))"#),
        "parse error at line 1, col 11: syntax error: unexpected (, expecting , or )"
    );
}

// ---- binary operations ----------------------------------------------------------------------

#[test]
fn literal_folding() {
    assert_eq!(printed("1 + 1 + 1"), "3");
    assert_eq!(printed("1 + -2 / 1"), "-1");
    assert_eq!(printed("2 ^ 3 ^ 2"), "512");
    assert_eq!(printed("-2 ^ 2"), "4");
    assert_eq!(printed("1+1--1"), "3");
    assert_eq!(printed("10 / (5 / 2)"), "4");
    assert_eq!(printed("1 > 1 > bool 1"), "0");
    assert_eq!(printed("1 >= 1"), "1");
    assert_eq!(printed("10 / 0"), "NaN");
    assert_eq!(printed("-10 % 0"), "NaN");
    assert_eq!(printed("1.6"), "1.6");
    assert_eq!(printed("1000000"), "1e+06");
    assert_eq!(printed("0x1p3"), "8");
    assert_eq!(printed("0x1.8p3"), "12");
    assert_eq!(printed("1_000"), "1000");
    assert_eq!(printed("2 * 1e308 * 10"), "+Inf");
    assert_eq!(printed("0 * -1"), "-0.0");
    assert!(
        err("0x1A")
            .contains("unable to parse literal as a float: strconv.ParseFloat: parsing \"0x1A\": invalid syntax")
    );
    assert!(err("0b1010").contains("unable to parse literal as a float"));
    assert!(err("0o17").contains("unable to parse literal as a float"));
    assert!(err("1e400").contains("value out of range"));
}

#[test]
fn binary_operator_precedence() {
    let q = r#"sum(rate({a="b"}[1m])) + sum(rate({a="c"}[1m])) / sum(rate({a="d"}[1m]))"#;
    assert_eq!(printed(q), r#"(sum(rate({a="b"}[1m])) + (sum(rate({a="c"}[1m])) / sum(rate({a="d"}[1m]))))"#);
    let q = r#"rate({a="b"}[1m]) / rate({a="c"}[1m]) / rate({a="d"}[1m])"#;
    assert_eq!(printed(q), r#"((rate({a="b"}[1m]) / rate({a="c"}[1m])) / rate({a="d"}[1m]))"#);
    let q = r#"rate({a="b"}[1m]) ^ rate({a="c"}[1m]) ^ 2"#;
    assert_eq!(printed(q), r#"(rate({a="b"}[1m]) ^ (rate({a="c"}[1m]) ^ 2))"#);
    let q = r#"rate({a="b"}[1m]) or rate({a="c"}[1m]) and vector(0) > 1"#;
    assert_eq!(printed(q), r#"(rate({a="b"}[1m]) or (rate({a="c"}[1m]) and (vector(0.000000) > 1)))"#);
    assert_eq!(
        printed(r#"1 > bool 1 > count_over_time({foo="bar"}[1m])"#),
        r#"(0 > count_over_time({foo="bar"}[1m]))"#
    );
    assert_eq!(printed(r#"vector(1) + vector(2)"#), "(vector(1.000000) + vector(2.000000))");
}

#[test]
fn vector_matching() {
    let q = r#"rate({a="b"}[1m]) > bool on (x, y) group_left (z) rate({a="c"}[1m])"#;
    let SampleExpr::BinOp(b) = sample(q) else {
        panic!("not a binop");
    };
    assert!(b.modifier.return_bool);
    assert_eq!(
        b.modifier.matching,
        VectorMatching {
            on: true,
            labels: vec!["x".into(), "y".into()],
            card: Cardinality::ManyToOne,
            include: vec!["z".into()],
        }
    );
    assert_eq!(printed(q), r#"(rate({a="b"}[1m]) > bool on (x,y) group_left (z) rate({a="c"}[1m]))"#);
    assert_eq!(
        printed(r#"rate({a="b"}[1m]) / ignoring (x) group_right rate({a="c"}[1m])"#),
        r#"(rate({a="b"}[1m]) / ignoring (x) group_right rate({a="c"}[1m]))"#
    );
    assert_eq!(
        printed(r#"rate({a="b"}[1m]) + on () rate({a="c"}[1m])"#),
        r#"(rate({a="b"}[1m]) + on ()  rate({a="c"}[1m]))"#
    );
    // `ignoring ()` is the default and disappears, unless a group modifier needs it.
    assert_eq!(
        printed(r#"rate({a="b"}[1m]) + ignoring () rate({a="c"}[1m])"#),
        r#"(rate({a="b"}[1m]) + rate({a="c"}[1m]))"#
    );
    assert_eq!(
        printed(r#"rate({a="b"}[1m]) + ignoring () group_left () rate({a="c"}[1m])"#),
        r#"(rate({a="b"}[1m]) + ignoring () group_left rate({a="c"}[1m]))"#
    );
    // `(` after a group modifier always opens its label list.
    assert_eq!(
        err(r#"rate({a="b"}[1m]) + on (x) group_left (sum(rate({a="c"}[1m])))"#),
        "parse error at line 1, col 40: syntax error: unexpected SUM, expecting IDENTIFIER or )"
    );
}

#[test]
fn binary_operation_errors() {
    assert_eq!(
        err(r#"{foo="bar"} + {foo="bar"}"#),
        "parse error : unexpected type for left leg of binary operation (+): *syntax.MatchersExpr"
    );
    assert_eq!(
        err(r#"sum(count_over_time({foo="bar"}[5m])) by (foo) - {foo="bar"} |= "x""#),
        "parse error : unexpected type for right leg of binary operation (-): *syntax.PipelineExpr"
    );
    assert_eq!(
        err("1 and 2"),
        "parse error : unexpected literal for left leg of logical/set binary operation (and): 1.000000"
    );
    assert_eq!(
        err(r#"1 unless sum(count_over_time({foo="bar"}[5m]))"#),
        "parse error : unexpected literal for left leg of logical/set binary operation (unless): 1.000000"
    );
    assert_eq!(
        err(r#"-count_over_time({app="foo"}[1m])"#),
        "parse error at line 1, col 2: syntax error: unexpected COUNT_OVER_TIME, expecting NUMBER"
    );
    assert_eq!(err("bool 1 > 1"), "parse error at line 1, col 1: syntax error: unexpected bool");
    assert_eq!(
        err(r#"vector(count_over_time({a="b"}[1m]))"#),
        "parse error at line 1, col 8: syntax error: unexpected COUNT_OVER_TIME, expecting NUMBER"
    );
}

// ---- label_replace, vector, misc ------------------------------------------------------------

#[test]
fn label_replace_and_vector() {
    let q = r#"label_replace(rate({a="b"}[1m]), "dst", "$1", "src", "(.*):.*")"#;
    let SampleExpr::LabelReplace(l) = sample(q) else {
        panic!("not label_replace");
    };
    assert!(l.regex.is_match("a:b"));
    assert!(!l.regex.is_match("ab"));
    assert_eq!(printed(q), r#"label_replace(rate({a="b"}[1m]),"dst","$1","src","(.*):.*")"#);
    assert_eq!(
        err(r#"label_replace(rate({ foo = "bar" }[5m]),"")"#),
        "parse error at line 1, col 43: syntax error: unexpected ), expecting ,"
    );
    assert_eq!(
        err(r#"label_replace(rate({a="b"}[5m]),"foo","$1","bar","^^^^x43\\q")"#),
        "parse error : invalid regex in label_replace: error parsing regexp: invalid escape sequence: `\\q`"
    );
    assert_eq!(printed("vector(3.14)"), "vector(3.140000)");
    assert_eq!(printed("vector(1e-7)"), "vector(0.0000001)");
}

#[test]
fn comments_and_whitespace() {
    let a = log("{app=\"foo\"}\n# |= \"bar\"\n| json");
    assert_eq!(a.to_string(), r#"{app="foo"} | json"#);
    assert_eq!(log(r#"{app="foo"} # |= "bar" | json"#).stages.len(), 0);
    assert_eq!(log(r##"{app="#"} |= "#" | bar="#""##).stages.len(), 2);
    assert_eq!(err(r#"#{app="foo"} | json"#), "parse error at line 1, col 20: syntax error: unexpected $end");
    assert_eq!(log("{app=\"foo\"} // go comment\n| json /* block */ | logfmt").stages.len(), 2);
    assert_eq!(err(""), "parse error : syntax error: unexpected $end");
}

#[test]
fn keywords_are_case_insensitive_and_functions_need_parentheses() {
    assert_eq!(printed(r#"SUM BY (x) (Count_Over_Time({a="b"}[1m]))"#), r#"sum by (x)(count_over_time({a="b"}[1m]))"#);
    // Function names are identifiers where no parenthesis follows.
    ok(r#"{ foo = "bar" }|logfmt|rate="a" | bytes > 1KB | duration > 1s | ip="x""#);
    // Keywords are reserved.
    assert_eq!(
        err(r#"{by="x"}"#),
        "parse error at line 1, col 2: syntax error: unexpected by, expecting IDENTIFIER or }"
    );
}

#[test]
fn strings() {
    let l = log(r#"{a="tab\there\u00e9\x41\101"} |= `raw\n"quote"`"#);
    assert_eq!(l.matchers[0].value, "tab\thereéAA");
    assert_eq!(l.to_string(), r#"{a="tab\there\u00e9AA"} |= "raw\\n\"quote\"""#.replace("\\u00e9", "é"));
    assert_eq!(err(r#"{foo="bar}"#), "parse error at line 1, col 6: literal not terminated");
    assert_eq!(err(r#"{foo="\q"}"#), "parse error at line 1, col 6: invalid char escape");
    assert_eq!(err(r#"{foo="\400"}"#), "parse error at line 1, col 6: invalid syntax");
    assert_eq!(printed("{a=\"\\u200b\"}"), "{a=\"\\u200b\"}");
}

#[test]
fn syntax_error_positions() {
    assert_eq!(err(r#"{foo="bar""#), "parse error at line 1, col 11: syntax error: unexpected $end, expecting } or ,");
    assert_eq!(
        err(r#"{foo="bar"} |~"#),
        "parse error at line 1, col 15: syntax error: unexpected $end, expecting STRING or ip"
    );
    assert_eq!(err(r#"{foo="bar"} "foo""#), "parse error at line 1, col 13: syntax error: unexpected STRING");
    assert_eq!(err(r#"{foo="bar"} foo"#), "parse error at line 1, col 13: syntax error: unexpected IDENTIFIER");
    assert_eq!(err(r#"unk({ foo = "bar" }[5m])"#), "parse error at line 1, col 1: syntax error: unexpected IDENTIFIER");
    assert_eq!(err(r#"min({ foo = "bar" }[5m])"#), "parse error at line 0, col 20: syntax error: unexpected RANGE");
    assert_eq!(err("{a=\"b\"}\n  |= \"x\" foo"), "parse error at line 2, col 10: syntax error: unexpected IDENTIFIER");
    assert_eq!(
        err(r#"{a"#),
        "parse error at line 1, col 3: syntax error: unexpected $end, expecting = or =~ or !~ or !="
    );
    assert_eq!(err(r#"{a=}"#), "parse error at line 1, col 4: syntax error: unexpected }, expecting STRING");
    assert_eq!(
        err(r#"{a="b"} | line_format 5"#),
        "parse error at line 1, col 23: syntax error: unexpected NUMBER, expecting STRING"
    );
    let e = parse_expr(r#"{a="b"} | logfmt | x > "#).err();
    assert_eq!(e.map(|e| (e.offset, e.kind)), Some((23, ParseErrorKind::Syntax)));
}

#[test]
fn input_size_limit() {
    let q = format!(r#"{{a="{}"}}"#, "x".repeat(MAX_QUERY_BYTES));
    assert!(err(&q).starts_with("parse error : input size too long ("));
}

#[test]
fn parsing_is_fast_enough_to_not_matter() {
    // A sanity bound, far above the measured cost (see the bench), that catches accidental
    // quadratic behaviour.
    let q = r#"sum by (app) (rate({app=~"foo|bar", env="prod"} |= "error" != "timeout" | json | status >= 500 and latency > 250ms | line_format "{{.msg}}" [5m])) / sum by (app) (rate({app=~"foo|bar"}[5m]))"#;
    let start = std::time::Instant::now();
    for _ in 0..200 {
        assert!(parse_expr(q).is_ok());
    }
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

// ---- format_query layout --------------------------------------------------------------------

#[test]
fn pretty_keeps_short_queries_on_one_line() {
    let e = ok(r#"sum by (app) (rate({app="foo"} |= "err" [5m]))"#);
    assert_eq!(pretty(&e), r#"sum by (app)(rate({app="foo"} |= "err"[5m]))"#);
}

#[test]
fn pretty_splits_long_queries() {
    let q = r#"quantile_over_time(0.99,{container="ingress-nginx",service="hosted-grafana"}| json| unwrap response_latency_seconds| __error__=""[1m]) by (cluster)"#;
    let e = ok(q);
    let want = "quantile_over_time(\n  0.99,\n  {container=\"ingress-nginx\", service=\"hosted-grafana\"} | json\n    | unwrap response_latency_seconds\n    | __error__=\"\" [1m]\n) by (cluster)";
    assert_eq!(pretty(&e), want);
    assert_eq!(parse_expr(want), Ok(e));

    let q = r#"sum(rate({job="loki", namespace="loki", cluster="loki-dev-us"} |= "err" [5m])) + sum(rate({job="loki-dev", namespace="loki", cluster="loki-dev-eu"}|logfmt | level != "info" [5m])) / sum(rate({job="loki-prod", namespace="loki", cluster="loki-prod-us"} |logfmt | level="error"[5m]))"#;
    let e = ok(q);
    let p = pretty(&e);
    assert!(
        p.starts_with("  sum(rate({job=\"loki\", namespace=\"loki\", cluster=\"loki-dev-us\"} |= \"err\"[5m]))\n+\n"),
        "{p}"
    );
    assert_eq!(parse_expr(&p), Ok(e));
}

#[test]
fn pretty_keeps_parentheses_of_split_operands() {
    let long =
        r#"sum(rate({job="loki", namespace="loki", cluster="loki-dev-us", pod=~"ingester-.*"} |= "error" [5m]))"#;
    let q = format!("({long} + {long}) * 2");
    let e = ok(&q);
    let p = pretty(&e);
    assert_eq!(parse_expr(&p), Ok(e), "{p}");
    let q = format!("{long} / on () group_left () ({long} - {long})");
    let e = ok(&q);
    let p = pretty(&e);
    assert_eq!(parse_expr(&p), Ok(e), "{p}");
}

/// Queries of `MAX_QUERY_BYTES - 1` bytes nesting as deep as that allows, one per way to nest.
fn deepest_queries() -> Vec<(&'static str, String)> {
    let fill = |prefix: &str, open: &str, inner: &str, close: &str| {
        let n = (MAX_QUERY_BYTES - 1 - prefix.len() - inner.len()) / (open.len() + close.len());
        format!("{prefix}{}{inner}{}", open.repeat(n), close.repeat(n))
    };
    let chain = |first: &str, next: &str| {
        let n = (MAX_QUERY_BYTES - 1 - first.len()) / next.len();
        format!("{first}{}", next.repeat(n))
    };
    vec![
        ("parentheses", fill("", "(", "1", ")")),
        ("aggregations", fill("", "sum(", "vector(1)", ")")),
        ("label_replace", fill("", "label_replace(", "vector(1)", r#","d","r","s","x")"#)),
        ("right-associative ^", chain("vector(1)", "^vector(1)")),
        ("left-associative +", chain("vector(1)", "+vector(1)")),
        ("label filter parentheses", fill(r#"{a="b"} | "#, "(", r#"x="1""#, ")")),
        ("label filter juxtaposition", chain(r#"{a="b"} | x="1""#, r#" x="1""#)),
        ("label filter or", chain(r#"{a="b"} | x="1""#, r#" or x="1""#)),
        ("label filter and", chain(r#"{a="b"} | x="1""#, r#" and x="1""#)),
        (
            "unwrap post filters",
            format!(
                "sum_over_time({{a=\"b\"}} | unwrap x | {} [1m])",
                chain(r#"x="1""#, r#" or x="1""#)[..4900].rsplit_once(" or").unwrap().0
            ),
        ),
    ]
}

/// Runs `f` on a thread with a tokio worker's default stack (2 MiB), where HTTP handlers parse,
/// print and evaluate queries.
fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(2 << 20).spawn(f).unwrap().join().unwrap()
}

#[test]
fn deeply_nested_queries_are_refused_without_overflowing_the_stack() {
    // Found by the fuzzer (fuzz/fuzz_targets/logql_roundtrip.rs): 2555 nested parentheses fit
    // in MAX_QUERY_BYTES and overflowed a 2 MiB stack in a debug build.
    for (shape, q) in deepest_queries() {
        assert!(q.len() < MAX_QUERY_BYTES, "{shape}: {} bytes", q.len());
        let e = on_worker_stack(move || parse_expr(&q).map(drop).unwrap_err());
        assert_eq!(e.to_string(), "parse error : query is nested too deeply (more than 64 levels)", "{shape}");
        assert_eq!(e.kind, ParseErrorKind::Invalid, "{shape}");
    }
}

#[test]
fn queries_at_the_nesting_limit_parse_print_and_parse_back_on_a_worker_stack() {
    let d = MAX_NESTING_DEPTH;
    let shapes = [
        // The outermost `expr` is a level of its own.
        format!("{}1{}", "(".repeat(d - 1), ")".repeat(d - 1)),
        format!("{}vector(1){}", "sum(".repeat(d - 1), ")".repeat(d - 1)),
        format!("vector(1){}", "+vector(1)".repeat(d - 1)),
        format!(r#"{{a="b"}} | x="1"{}"#, r#" or x="1""#.repeat(d - 2)),
        format!(r#"sum(count_over_time({{a="b"}} | x="1"{} [1m]))"#, r#" and x="1""#.repeat(d - 5)),
    ];
    for q in shapes {
        let shown = q[..40].to_string();
        on_worker_stack(move || {
            let e = parse_expr(&q).unwrap_or_else(|e| panic!("{shown}: {e}"));
            assert_eq!(parse_expr(&e.to_string()), Ok(e.clone()), "{shown}");
            // Pretty printing indents each level, so deep trees print past MAX_QUERY_BYTES.
            let p = pretty(&e);
            if p.len() < MAX_QUERY_BYTES {
                assert_eq!(parse_expr(&p), Ok(e), "{shown}");
            }
        });
    }
    let one_more = format!("{}vector(1){}", "sum(".repeat(d), ")".repeat(d));
    assert!(parse_expr(&one_more).is_err());
}

#[test]
fn fuzz_found_label_filter_queries_print_to_text_that_parses_back() {
    // Found by the fuzzer in CI (fuzz/fuzz_targets/logql_roundtrip.rs).
    // A byte size of zero printed as Loki prints it, `0B`, lexes as a Go binary literal.
    for q in [
        r#"{app="a"} | json | status >= 500 and dutatus >= 500 and duration > .5Bsration > 10KB"#,
        r#"{app="a"} | logfmt | size >= 0KB or size == 0.4B"#,
    ] {
        let e = parse_expr(q).unwrap();
        let printed = e.to_string();
        let again = parse_expr(&printed).unwrap_or_else(|err| panic!("printed {printed:?} fails: {err}"));
        assert_eq!(format!("{again:?}"), format!("{e:?}"), "printed {printed:?}");
        assert_eq!(again.to_string(), printed);
        let p = pretty(&e);
        assert_eq!(format!("{:?}", parse_expr(&p).unwrap()), format!("{e:?}"), "pretty {p:?}");
    }
}
