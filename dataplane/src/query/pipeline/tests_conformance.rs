//! Cases taken from Loki's conformance scripts (`shared/conformance/logqltest/parsers`,
//! `formatters`, `label_filters`, `line_filters`, `conversions`), checked at the level of one
//! stream's samples: the value and labels each line contributes to a range aggregation.

use super::tests::{samples, stream};
use super::*;

type Lines<'a> = &'a [(&'a str, &'a [(&'a str, &'a str)])];

/// The (value, labels) samples of `query` over one stream's lines.
fn s(query: &str, stream_labels: &str, lines: Lines<'_>) -> Vec<(f64, String)> {
    samples(query, stream_labels, lines)
}

fn one(query: &str, stream_labels: &str, line: &str) -> Option<(f64, String)> {
    s(query, stream_labels, &[(line, &[])]).into_iter().next()
}

fn labels(query: &str, stream_labels: &str, line: &str) -> Option<String> {
    one(query, stream_labels, line).map(|(_, l)| l)
}

#[test]
fn parsers_logfmt_edge_cases() {
    let line = r#"a-b=1 9x=2 dup=first dup=second msg="hi there" empty="#;
    assert_eq!(
        labels(r#"count_over_time({app="a"} | logfmt [1m])"#, r#"{app="a"}"#, line).as_deref(),
        Some(r#"{_9x="2", a_b="1", app="a", dup="first", msg="hi there"}"#)
    );
    assert_eq!(
        labels(r#"count_over_time({app="a"} | logfmt --keep-empty [1m])"#, r#"{app="a"}"#, line).as_deref(),
        Some(r#"{_9x="2", a_b="1", app="a", dup="first", empty="", msg="hi there"}"#)
    );
}

#[test]
fn parsers_logfmt_clashes() {
    let got = s(
        r#"count_over_time({app="a"} | logfmt [1m])"#,
        r#"{app="a", sl="s", sm="s", tri="s"}"#,
        &[("sl=p md=p tri=p", &[("md", "m"), ("sm", "m"), ("tri", "m")])],
    );
    assert_eq!(
        got,
        vec![(
            1.0,
            r#"{app="a", md="m", md_extracted="p", sl="s", sl_extracted="p", sm="s", sm_extracted="m", tri="s", tri_extracted="p"}"#
                .to_string()
        )]
    );
}

#[test]
fn parsers_logfmt_strict() {
    let q = r#"count_over_time({app="a"} | logfmt --strict [1m])"#;
    assert!(labels(q, r#"{app="a"}"#, r#"good=1 bad="unterminated"#).is_some_and(|l| l.contains("LogfmtParserErr")));
    let q = r#"count_over_time({app="a"} | logfmt --strict | __error__="" [1m])"#;
    assert_eq!(one(q, r#"{app="a"}"#, r#"good=1 bad="unterminated"#), None);
    let q = r#"count_over_time({app="a"} | logfmt [1m])"#;
    assert_eq!(labels(q, r#"{app="a"}"#, r#"good=1 bad="unterminated"#).as_deref(), Some(r#"{app="a", good="1"}"#));
}

#[test]
fn parsers_json() {
    let q = r#"count_over_time({app="a"} | json [1m])"#;
    assert_eq!(
        labels(q, r#"{app="a", level="stream"}"#, r#"{"level":"parsed","a.b":1,"dup":"first","dup":"second"}"#)
            .as_deref(),
        Some(r#"{a_b="1", app="a", dup="first", level="stream", level_extracted="parsed"}"#)
    );
    let got = s(
        r#"count_over_time({app="a"} | json | __error__="" [1m])"#,
        r#"{app="a"}"#,
        &[(r#"{"ok":1}"#, &[]), ("broken", &[]), (r#"{"ok":1}"#, &[])],
    );
    assert_eq!(got, vec![(1.0, r#"{app="a", ok="1"}"#.to_string()); 2]);
    let q = r#"count_over_time({app="a"} | json who="user.id", tag="tags[0]" [1m])"#;
    assert_eq!(
        labels(q, r#"{app="a"}"#, r#"{"user":{"id":"u1","name":"alice"},"tags":["x","y"]}"#).as_deref(),
        Some(r#"{app="a", tag="x", who="u1"}"#)
    );
}

#[test]
fn parsers_regexp_pattern_unpack() {
    let q = r#"count_over_time({app="a"} | regexp `(?P<method>\w+) (?P<path>\S+)` [1m])"#;
    assert_eq!(
        labels(q, r#"{app="a", method="stream"}"#, "PUT /x").as_deref(),
        Some(r#"{app="a", method="stream", method_extracted="PUT", path="/x"}"#)
    );
    let q = r#"count_over_time({app="a"} | pattern `<method> <path>` [1m])"#;
    assert_eq!(
        labels(q, r#"{app="a", method="stream"}"#, "POST").as_deref(),
        Some(r#"{app="a", method="stream", method_extracted="POST"}"#)
    );
    let q = r#"count_over_time({app="a"} | unpack [1m])"#;
    assert_eq!(
        labels(q, r#"{app="a"}"#, r#"{"lvl":"info","cluster":"eu","num":5,"_entry":"real message"}"#).as_deref(),
        Some(r#"{app="a", cluster="eu", lvl="info"}"#)
    );
    let q = r#"count_over_time({app="a"} | unpack | __error__="" [1m])"#;
    assert_eq!(one(q, r#"{app="a"}"#, "not json"), None);
}

#[test]
fn formatters_line_format() {
    let q = r#"count_over_time({app="a"} | line_format "L={{.level}}" |= "L=error" [1m])"#;
    assert_eq!(labels(q, r#"{app="a", level="error"}"#, "x").as_deref(), Some(r#"{app="a", level="error"}"#));
    assert_eq!(one(q, r#"{app="a", level="warn"}"#, "x"), None);
    let q = r#"count_over_time({app="a"} | line_format "{{.level | upper}}" |= "ERROR" [1m])"#;
    assert!(one(q, r#"{app="a", level="error"}"#, "x").is_some());
    let q = r#"bytes_over_time({app="a", level="error"} | line_format "{{.level}}" [1m])"#;
    assert_eq!(one(q, r#"{app="a", level="error"}"#, "x").map(|(v, _)| v), Some(5.0));
    let q = r#"bytes_over_time({app="a", level="error"} | line_format "V={{.missing}}" [1m])"#;
    assert_eq!(one(q, r#"{app="a", level="error"}"#, "x").map(|(v, _)| v), Some(2.0));
}

#[test]
fn formatters_decolorize() {
    let st = r#"{app="a", msg="hello"}"#;
    let q = r#"bytes_over_time({app="a"} | decolorize [1m])"#;
    assert_eq!(one(q, st, "plaintext").map(|(v, _)| v), Some(9.0));
    let q = r#"bytes_over_time({app="a"} | line_format `{{ printf "\x1b[31m%s\x1b[0m" .msg }}` [1m])"#;
    assert_eq!(one(q, st, "plaintext").map(|(v, _)| v), Some(14.0));
    let q = r#"bytes_over_time({app="a"} | line_format `{{ printf "\x1b[31m%s\x1b[0m" .msg }}` | decolorize [1m])"#;
    assert_eq!(one(q, st, "plaintext").map(|(v, _)| v), Some(5.0));
}

#[test]
fn formatters_label_format_drop_keep() {
    let st = r#"{app="a", method="get"}"#;
    assert_eq!(
        labels(r#"count_over_time({app="a"} | label_format verb=method [1m])"#, st, "msg").as_deref(),
        Some(r#"{app="a", verb="get"}"#)
    );
    let st = r#"{app="a", code="500", zone="eu"}"#;
    assert_eq!(
        labels(r#"count_over_time({app="a"} | drop code, zone [1m])"#, st, "m").as_deref(),
        Some(r#"{app="a"}"#)
    );
    assert_eq!(labels(r#"count_over_time({app="a"} | keep zone [1m])"#, st, "m").as_deref(), Some(r#"{zone="eu"}"#));
    assert_eq!(labels(r#"count_over_time({app="a"} | keep code="200" [1m])"#, st, "m").as_deref(), Some("{}"));
}

#[test]
fn label_filters_absent_and_metadata() {
    // Structured metadata with an empty value is a label with an empty value.
    let got = s(
        r#"count_over_time({app="m"} | name="" [1m])"#,
        r#"{app="m"}"#,
        &[("x", &[("name", "")]), ("x", &[]), ("x", &[("name", "alpha")])],
    );
    assert_eq!(got, vec![(1.0, r#"{app="m", name=""}"#.to_string()), (1.0, r#"{app="m"}"#.to_string())]);
    let q = r#"count_over_time({app="p"} | logfmt --keep-empty | name=~".+" [1m])"#;
    assert_eq!(one(q, r#"{app="p"}"#, "name="), None);
}

#[test]
fn label_filters_numeric_literals() {
    let q = r#"count_over_time({app="a"} | logfmt | code = 200 [1m])"#;
    let got = s(q, r#"{app="a"}"#, &[("code=200", &[]), ("code=200.0", &[]), ("code=-5", &[])]);
    assert_eq!(got.len(), 2);
    let q = r#"count_over_time({app="a"} | logfmt | code = "200" [1m])"#;
    let got = s(q, r#"{app="a"}"#, &[("code=200", &[]), ("code=200.0", &[])]);
    assert_eq!(got, vec![(1.0, r#"{app="a", code="200"}"#.to_string())]);
}

#[test]
fn label_filters_duration_units() {
    let q = r#"count_over_time({app="a"} | logfmt | took == 1h [1m])"#;
    for v in ["3600000000000ns", "3600000000us", "3600000000µs", "3600000ms", "3600s", "60m", "1h"] {
        assert!(one(q, r#"{app="a"}"#, &format!("took={v}")).is_some(), "{v}");
    }
    let q = r#"count_over_time({app="a"} | logfmt | took == 1d [1m])"#;
    assert!(labels(q, r#"{app="a"}"#, "took=1d").is_some_and(|l| l.contains("unknown unit")));
    let q = r#"count_over_time({app="a"} | logfmt | took == 1d | __error__="" [1m])"#;
    assert!(one(q, r#"{app="a"}"#, "took=24h").is_some());
}

#[test]
fn label_filters_or_short_circuit() {
    let q = r#"count_over_time({app="a"} | logfmt | lvl="error" and size > 1MB [1m])"#;
    assert!(
        labels(q, r#"{app="a"}"#, "lvl=error took=oops size=oops")
            .is_some_and(|l| l.contains(r#"parsing \"\": invalid syntax"#))
    );
    let q = r#"count_over_time({app="b"} | logfmt | took > 1s or addr = ip("1.2.3.0/24") [1m])"#;
    assert!(labels(q, r#"{app="b"}"#, "addr=1.2.3.9 took=oops").is_some_and(|l| l.contains("invalid duration")));
}

#[test]
fn label_filters_after_unwrap() {
    let q = r#"sum_over_time({app="p"} | logfmt | unwrap v | lvl="error" [1m])"#;
    let got = s(q, r#"{app="p"}"#, &[("v=2 lvl=error", &[]), ("v=9 lvl=info", &[])]);
    assert_eq!(got, vec![(2.0, r#"{app="p", lvl="error"}"#.to_string())]);
    let got = s(q, r#"{app="m"}"#, &[("v=2", &[("lvl", "error")]), ("v=9", &[("lvl", "info")])]);
    assert_eq!(got, vec![(2.0, r#"{app="m", lvl="error"}"#.to_string())]);
}

#[test]
fn line_filters_ip_or_chains() {
    let q = r#"count_over_time({app=~"net|txt"} |= ip("192.168.1.0/24") or ip("10.0.0.0/8") or "special" [1m])"#;
    let got = s(
        q,
        r#"{app="net"}"#,
        &[("src 192.168.1.10 ok", &[]), ("src 10.0.0.9 ok", &[]), ("src 8.8.8.8 ok", &[]), ("special no ip", &[])],
    );
    assert_eq!(got.len(), 3);
    let q = r#"count_over_time({app=~"net|txt"} != ip("192.168.1.0/24") or ip("10.0.0.0/8") or "special" [1m])"#;
    let got = s(q, r#"{app="net"}"#, &[("src 172.16.5.5 ok", &[]), ("src 10.0.0.9 ok", &[]), ("special", &[])]);
    assert_eq!(got.len(), 1);
}

#[test]
fn conversions_bytes_and_duration() {
    let q = r#"max_over_time({unit=~".+"} | logfmt | unwrap bytes(b) [1m]) by (unit)"#;
    for (line, want) in [
        ("b=1KB", 1000.0),
        ("b=1KiB", 1024.0),
        ("b=1PiB", 1_125_899_906_842_624.0),
        ("b=1.5KB", 1500.0),
        ("b=1024", 1024.0),
        ("b=2Kb", 2000.0),
        ("b=2,048", 2048.0),
        ("b=1.5B", 1.0),
    ] {
        let got = one(q, r#"{unit="x"}"#, line);
        assert_eq!(got, Some((want, r#"{unit="x"}"#.to_string())), "{line}");
    }
    // A line without the unwrapped label yields no sample.
    assert_eq!(one(q, r#"{unit="noise"}"#, "noise"), None);
    let q = r#"max_over_time({unit="bytes"} | logfmt | unwrap bytes(bytes) [1m])"#;
    assert_eq!(one(q, r#"{unit="bytes"}"#, "bytes=25MB"), Some((25_000_000.0, r#"{unit="bytes"}"#.to_string())));
    let q = r#"max_over_time({unit=~".+"} | logfmt | unwrap duration(d) [1m]) by (unit)"#;
    for (line, want) in [("d=2s", 2.0), ("d=500ms", 0.5), ("d=1h30m", 5400.0), ("d=1.5h", 5400.0), ("d=-5s", -5.0)] {
        assert_eq!(one(q, r#"{unit="x"}"#, line).map(|(v, _)| v), Some(want), "{line}");
    }
}

#[test]
fn conversion_failures() {
    let q = r#"max_over_time({unit=~".+"} | logfmt | unwrap bytes(b) [1m]) by (unit)"#;
    assert_eq!(
        one(q, r#"{unit="bad"}"#, "b=1XB"),
        Some((
            0.0,
            r#"{__error__="SampleExtractionErr", __error_details__="unhandled size name: xb", b="1XB", unit="bad"}"#
                .to_string()
        ))
    );
    let q = r#"max_over_time({unit=~".+"} | logfmt | unwrap duration_seconds(d) | __error__="" [1m]) by (unit)"#;
    assert_eq!(one(q, r#"{unit="bad"}"#, "d=1d"), None);
}

#[test]
fn unwrap_drops_the_unwrapped_label() {
    let q = r#"rate({app="foo"} | unwrap foo [30s])"#;
    assert_eq!(one(q, r#"{app="foo", foo="2"}"#, "xbar"), Some((2.0, r#"{app="foo"}"#.to_string())));
    let q = r#"avg_over_time({app="a"} | logfmt | unwrap v [1m]) without (pod)"#;
    assert_eq!(one(q, r#"{app="a", pod="1"}"#, "v=2"), Some((2.0, r#"{app="a"}"#.to_string())));
    let q = r#"avg_over_time({app="a"} | json | drop pod | unwrap v [1m]) by (pod)"#;
    assert_eq!(one(q, r#"{app="a", pod="1"}"#, r#"{"v":2}"#), Some((2.0, "{}".to_string())));
    let q = r#"avg_over_time({app="a"} | logfmt | unwrap v | v > 3 [1m]) by (pod)"#;
    let got = s(q, r#"{app="a", pod="1"}"#, &[("v=2", &[]), ("v=4", &[]), ("noise", &[])]);
    assert_eq!(got, vec![(4.0, r#"{pod="1"}"#.to_string())]);
    // NaN and Inf convert like Go's ParseFloat.
    let q = r#"max_over_time({app="a"} | logfmt | unwrap v [1m])"#;
    assert!(one(q, r#"{app="a"}"#, "v=NaN").is_some_and(|(v, _)| v.is_nan()));
    assert_eq!(one(q, r#"{app="a"}"#, "v=Inf").map(|(v, _)| v), Some(f64::INFINITY));
}

/// Samples of `query` (a range aggregation) grouped as `grouping` says (`by (a, b)`,
/// `without (a)`, `by ()`), as an enclosing vector aggregation would pass it.
fn grouped(query: &str, grouping: &str, stream_labels: &str, line: &str) -> Option<(f64, String)> {
    let Ok(crate::logql::Expr::Sample(crate::logql::SampleExpr::RangeAggregation(r))) = crate::logql::parse_expr(query)
    else {
        panic!("not a range aggregation: {query}");
    };
    let (without, list) = grouping.split_once(' ').unwrap_or((grouping, "()"));
    let labels: Vec<String> =
        list.trim_matches(['(', ')']).split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    let g = crate::logql::Grouping { without: without == "without", labels };
    let ex = SampleExtractor::with_grouping(&r.range, r.op, Some(&g)).expect("extractor compiles");
    let mut sx = ex.for_stream(&stream(stream_labels));
    sx.process(0, line.as_bytes(), &[]).map(|(v, l)| (v, l.all.to_string()))
}

#[test]
fn grouping_hints_extract_only_what_is_read() {
    let q = r#"count_over_time({app="a"} | json | duration_ms > 800 [1m])"#;
    let line = r#"{"level":"error","job":"x","duration_ms":900,"trace_id":"ab"}"#;
    assert_eq!(grouped(q, "by (level)", r#"{app="a"}"#, line).map(|(_, l)| l).as_deref(), Some(r#"{level="error"}"#));
    assert_eq!(grouped(q, "by (level)", r#"{app="a"}"#, r#"{"level":"error","duration_ms":100}"#), None);
    assert_eq!(
        grouped(q, "without (job)", r#"{app="a"}"#, line).map(|(_, l)| l).as_deref(),
        Some(r#"{app="a", duration_ms="900", level="error", trace_id="ab"}"#)
    );
    // `by ()` keeps no label, but a failed line keeps them all so the error shows.
    let q = r#"count_over_time({app="a"} | logfmt | status > 400 [1m])"#;
    assert_eq!(grouped(q, "by ()", r#"{app="a"}"#, "status=500 x=1").map(|(_, l)| l).as_deref(), Some("{}"));
    assert!(grouped(q, "by ()", r#"{app="a"}"#, "status=oops").is_some_and(|(_, l)| l.contains("LabelFilterErr")));
    // With no label needed at all, parsers are skipped (as in Loki).
    let q = r#"count_over_time({app="a"} | json [1m])"#;
    assert_eq!(grouped(q, "by ()", r#"{app="a"}"#, "not json"), Some((1.0, "{}".to_string())));
    // An unwrapped label named in `by` stays.
    let q = r#"max_over_time({app="a"} | logfmt | unwrap v [1m])"#;
    assert_eq!(grouped(q, "by (v)", r#"{app="a"}"#, "v=3 x=1"), Some((3.0, r#"{v="3"}"#.to_string())));
}

#[test]
fn extractor_values() {
    let st = r#"{app="a"}"#;
    assert_eq!(one(r#"count_over_time({app="a"} [1m])"#, st, "hello"), Some((1.0, st.to_string())));
    assert_eq!(one(r#"rate({app="a"} |= "h" [1m])"#, st, "hello"), Some((1.0, st.to_string())));
    assert_eq!(one(r#"bytes_over_time({app="a"} [1m])"#, st, "hello"), Some((5.0, st.to_string())));
    assert_eq!(one(r#"bytes_rate({app="a"} [1m])"#, st, "héllo"), Some((6.0, st.to_string())));
    assert_eq!(one(r#"absent_over_time({app="a"} [1m])"#, st, "x").map(|(v, _)| v), Some(1.0));
    let ex = SampleExtractor::new(
        &match crate::logql::parse_expr(r#"count_over_time({app="a"} |= "x" [1m])"#) {
            Ok(crate::logql::Expr::Sample(crate::logql::SampleExpr::RangeAggregation(r))) => r.range,
            _ => panic!("range aggregation"),
        },
        crate::logql::RangeOp::CountOverTime,
    )
    .expect("compiles");
    assert!(!ex.pipeline().is_noop());
    let mut sx = ex.for_stream(&stream(st));
    assert!(sx.process(0, b"y", &[]).is_none());
}

/// Every range aggregation under `e`.
fn range_aggregations<'a>(e: &'a crate::logql::SampleExpr, out: &mut Vec<&'a crate::logql::RangeAggregation>) {
    use crate::logql::SampleExpr as S;
    match e {
        S::RangeAggregation(r) => out.push(r),
        S::VectorAggregation(v) => range_aggregations(&v.expr, out),
        S::BinOp(b) => {
            range_aggregations(&b.lhs, out);
            range_aggregations(&b.rhs, out);
        }
        S::LabelReplace(l) => range_aggregations(&l.expr, out),
        S::Literal(_) | S::Vector(_) => {}
    }
}

/// Every query of the conformance scripts that parses compiles into pipelines and sample
/// extractors (evaluation-time failures are the engine's, not compile errors here).
#[test]
fn conformance_pipelines_compile() {
    let dir =
        ["../../shared/conformance/logqltest", "../shared/conformance/logqltest", "/work/shared/conformance/logqltest"]
            .iter()
            .map(|p| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p))
            .find(|p| p.is_dir())
            .expect("the conformance scripts (shared/conformance/logqltest) are missing");
    let mut compiled = 0;
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("list scripts").filter_map(Result::ok) {
        let text = std::fs::read_to_string(entry.path()).expect("read script");
        for line in text.lines() {
            let query = if let Some(rest) = line.strip_prefix("eval instant at ") {
                rest.split_once(' ').map(|(_, q)| q)
            } else if let Some(rest) = line.strip_prefix("eval range from ") {
                rest.splitn(6, ' ').nth(5)
            } else {
                None
            };
            let Some(Ok(expr)) = query.map(crate::logql::parse_expr) else { continue };
            for sel in expr.selectors() {
                if let Err(e) = Pipeline::new(&sel.stages) {
                    problems.push(format!("{line}: {e}"));
                }
            }
            if let crate::logql::Expr::Sample(s) = &expr {
                let mut ranges = Vec::new();
                range_aggregations(s, &mut ranges);
                for r in ranges {
                    match SampleExtractor::with_grouping(&r.range, r.op, r.grouping.as_ref()) {
                        Ok(_) => compiled += 1,
                        Err(e) => problems.push(format!("{line}: {e}")),
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(compiled > 700, "only {compiled} extractors");
}
