//! Pipeline stage tests: line filters, parsers, label conflicts, label filters, formatters,
//! drop/keep, result caching and block candidates.

use std::sync::Arc;

use crate::chunk::{ChunkReader, MemChunk};
use crate::labels::{Label, Labels, SharedLabels};
use crate::logql::{Expr, SampleExpr, parse_expr, parse_log_selector};

use super::*;

/// The stream labels of `{a="b", ...}`.
pub(super) fn stream(s: &str) -> SharedLabels {
    Arc::new(Labels::parse(s).expect("test labels parse").sorted())
}

pub(super) fn pipeline(query: &str) -> Pipeline {
    let expr = parse_log_selector(query).expect("test query parses");
    Pipeline::new(&expr.stages).expect("test pipeline compiles")
}

/// Runs `query`'s pipeline over one line: the resulting line and labels, `None` when dropped.
pub(super) fn run_md(query: &str, stream_labels: &str, line: &str, md: &[(&str, &str)]) -> Option<(String, String)> {
    let p = pipeline(query);
    let mut sp = p.for_stream(&stream(stream_labels));
    let out = sp.process(1_700_000_000_123_456_789, line.as_bytes(), md)?;
    Some((String::from_utf8_lossy(&out.line).into_owned(), out.labels.all.to_string()))
}

pub(super) fn run(query: &str, stream_labels: &str, line: &str) -> Option<(String, String)> {
    run_md(query, stream_labels, line, &[])
}

/// The labels a line ends with (`"dropped"` when a filter dropped it).
pub(super) fn labels_of(query: &str, line: &str) -> String {
    run(query, r#"{app="a"}"#, line).map_or_else(|| "dropped".to_string(), |(_, l)| l)
}

/// The line after the pipeline.
pub(super) fn line_of(query: &str, line: &str) -> String {
    run(query, r#"{app="a"}"#, line).map_or_else(|| "dropped".to_string(), |(l, _)| l)
}

fn keeps(query: &str, line: &str) -> bool {
    run(query, r#"{app="a"}"#, line).is_some()
}

/// Samples of a range aggregation query for one stream's lines.
pub(super) fn samples(query: &str, stream_labels: &str, lines: &[(&str, &[(&str, &str)])]) -> Vec<(f64, String)> {
    let Ok(Expr::Sample(SampleExpr::RangeAggregation(r))) = parse_expr(query) else {
        panic!("not a range aggregation: {query}");
    };
    let ex = SampleExtractor::with_grouping(&r.range, r.op, r.grouping.as_ref()).expect("extractor compiles");
    let mut sx = ex.for_stream(&stream(stream_labels));
    let mut out = Vec::new();
    for (line, md) in lines {
        if let Some((v, l)) = sx.process(0, line.as_bytes(), md) {
            out.push((v, l.all.to_string()));
        }
    }
    out
}

// ---- line filters ---------------------------------------------------------------------------

#[test]
fn substring_filters() {
    assert!(keeps(r#"{app="a"} |= "err""#, "req id=1 err=connrefused"));
    assert!(!keeps(r#"{app="a"} |= "err""#, "req id=2 ok"));
    assert!(!keeps(r#"{app="a"} |= "ERR""#, "err"));
    assert!(keeps(r#"{app="a"} != "err""#, "ok"));
    assert!(!keeps(r#"{app="a"} != "err""#, "an err"));
    assert!(keeps(r#"{app="a"} |= """#, "anything"));
    // `!= ""` drops everything: every line contains the empty string.
    assert!(!keeps(r#"{app="a"} != """#, "anything"));
    assert!(keeps(r#"{app="a"} |= "error" or "warn""#, "level=warn"));
    assert!(!keeps(r#"{app="a"} != "error" or "warn""#, "level=warn"));
    assert!(keeps(r#"{app="a"} != "error" or "warn""#, "level=info"));
    assert!(keeps(r#"{app="a"} |= "error" != "status=500""#, "error status=200"));
}

#[test]
fn regex_filters() {
    assert!(keeps(r#"{app="a"} |~ "code=5..""#, "code=500 fail"));
    assert!(!keeps(r#"{app="a"} |~ "code=5..""#, "CODE=503 down"));
    assert!(keeps(r#"{app="a"} |~ "(?i)code=5..""#, "CODE=503 down"));
    assert!(keeps(r#"{app="a"} !~ "code=5..""#, "code=200"));
    assert!(!keeps(r#"{app="a"} !~ "err.r" or "wa.n""#, "level=warn"));
    // Unanchored, Go semantics (\d is ASCII).
    assert!(keeps(r#"{app="a"} |~ `\d{3}`"#, "status 404"));
    assert!(!keeps(r#"{app="a"} |~ `^\d`"#, "٣ arabic digit"));
}

#[test]
fn pattern_filters() {
    assert!(keeps(r#"{app="a"} |> "GET <_> 200""#, "GET /api 200"));
    assert!(!keeps(r#"{app="a"} |> "GET <_> 200""#, "POST /api 500"));
    assert!(keeps(r#"{app="a"} !> "GET <_> 200""#, "POST /api 500"));
    // Without a trailing capture the pattern must reach the end of the line.
    assert!(!keeps(r#"{app="a"} |> "GET /api""#, "GET /api 200"));
    assert!(keeps(r#"{app="a"} |> "<_> bar <_>""#, "foo bar baz"));
    // Empty captures do not match.
    assert!(!keeps(r#"{app="a"} |> "<_> bar <_>""#, " bar "));
    assert!(keeps(r#"{app="a"} |> "level=error <_>" or "level=warn <_>""#, "level=warn y"));
}

#[test]
fn ip_line_filters() {
    let q = r#"{app="a"} |= ip("192.168.1.0/24")"#;
    assert!(keeps(q, "src 192.168.1.10 ok"));
    assert!(!keeps(q, "src 10.0.0.9 ok"));
    assert!(!keeps(q, "no ip here"));
    assert!(keeps(r#"{app="a"} != ip("192.168.1.0/24")"#, "no ip here"));
    assert!(keeps(r#"{app="a"} |= ip("10.0.0.0/8") or "special""#, "special no ip"));
    assert!(keeps(r#"{app="a"} |= ip("192.168.1.1-192.168.1.9")"#, "from 192.168.1.5:8080"));
    assert!(keeps(r#"{app="a"} |= ip("2001:db8::/32")"#, "addr=2001:db8::1 up"));
    assert!(keeps(r#"{app="a"} |= ip("8.8.8.8")"#, "dns=8.8.8.8"));
    // A trailing dot is part of the address run and makes it invalid.
    assert!(!keeps(r#"{app="a"} |= ip("1.2.3.4")"#, "to 1.2.3.4."));
}

// ---- parsers --------------------------------------------------------------------------------

#[test]
fn logfmt_parser() {
    assert_eq!(labels_of(r#"{app="a"} | logfmt"#, "level=info status=200"), r#"{app="a", level="info", status="200"}"#);
    assert_eq!(
        labels_of(r#"{app="a"} | logfmt"#, r#"a-b=1 9x=2 dup=first dup=second msg="hi there" empty="#),
        r#"{_9x="2", a_b="1", app="a", dup="first", msg="hi there"}"#
    );
    assert_eq!(
        labels_of(r#"{app="a"} | logfmt --keep-empty"#, r#"a=1 empty= bare"#),
        r#"{a="1", app="a", bare="", empty=""}"#
    );
    // Escapes in quoted values.
    assert_eq!(labels_of(r#"{app="a"} | logfmt"#, r#"msg="a \"b\" \u00e9""#), r#"{app="a", msg="a \"b\" é"}"#);
}

#[test]
fn logfmt_malformed() {
    // The valid pairs stay, the bad one is skipped, no error.
    assert_eq!(labels_of(r#"{app="a"} | logfmt"#, r#"good=1 bad="unterminated"#), r#"{app="a", good="1"}"#);
    assert_eq!(
        labels_of(r#"{app="a"} | logfmt --strict"#, r#"good=1 bad="unterminated"#),
        r#"{__error__="LogfmtParserErr", __error_details__="logfmt syntax error at pos 25 : unterminated quoted value", app="a", good="1"}"#
    );
    assert_eq!(
        labels_of(r#"{app="a"} | logfmt --strict"#, "a=1 =2 b=3"),
        r#"{__error__="LogfmtParserErr", __error_details__="logfmt syntax error at pos 5 : unexpected '='", a="1", app="a"}"#
    );
    assert_eq!(labels_of(r#"{app="a"} | logfmt"#, "a=1 =2 b=3"), r#"{a="1", app="a", b="3"}"#);
    assert_eq!(labels_of(r#"{app="a"} | logfmt --strict | __error__="""#, r#"bad="x"#), "dropped");
}

#[test]
fn logfmt_extractions() {
    assert_eq!(
        labels_of(r#"{app="a"} | logfmt level, code="status""#, "level=info status=200 msg=hi"),
        r#"{app="a", code="200", level="info"}"#
    );
    // A missing key still yields the label, empty.
    assert_eq!(labels_of(r#"{app="a"} | logfmt nope"#, "level=info"), r#"{app="a", nope=""}"#);
}

#[test]
fn json_parser() {
    assert_eq!(
        labels_of(r#"{app="a"} | json"#, r#"{"level":"info","status":200}"#),
        r#"{app="a", level="info", status="200"}"#
    );
    assert_eq!(
        labels_of(
            r#"{app="a"} | json"#,
            r#"{"lvl":"warn","obj":{"x":1,"y":{"z":2}},"ok":true,"no":false,"nil":null,"arr":[1,2],"f":1.5}"#
        ),
        r#"{app="a", f="1.5", lvl="warn", no="false", obj_x="1", obj_y_z="2", ok="true"}"#
    );
    assert_eq!(
        labels_of(r#"{app="a"} | json"#, r#"{"a.b":1,"dup":"first","dup":"second","9lives":"x","é":"y"}"#),
        r#"{_="y", _9lives="x", a_b="1", app="a", dup="first"}"#
    );
    // Escapes, unicode escapes and surrogate pairs.
    assert_eq!(
        labels_of(r#"{app="a"} | json"#, r#"{"m":"a\"b\\c\n\u00e9\ud83d\ude00","k\u0041":"v"}"#),
        r#"{app="a", kA="v", m="a\"b\\c\né😀"}"#
    );
    // Nested keys: a digit only gets a `_` at the start of the whole name.
    assert_eq!(labels_of(r#"{app="a"} | json"#, r#"{"a":{"1":{"b-c":3}}}"#), r#"{a_1_b_c="3", app="a"}"#);
}

#[test]
fn json_errors() {
    assert_eq!(
        labels_of(r#"{app="a"} | json"#, "broken"),
        r#"{__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol", app="a"}"#
    );
    // Values before the error are kept.
    assert_eq!(
        labels_of(r#"{app="a"} | json"#, r#"{"a":1,"b":tru}"#),
        r#"{__error__="JSONParserErr", __error_details__="Unknown value type", a="1", app="a"}"#
    );
    assert_eq!(labels_of(r#"{app="a"} | json | __error__="""#, "broken"), "dropped");
    assert_eq!(labels_of(r#"{app="a"} | json"#, "{}"), r#"{app="a"}"#);
}

#[test]
fn json_extractions() {
    let line = r#"{"user":{"id":"u1","name":"alice"},"tags":["x","y"],"n":null,"obj":{"k":1},"a.b":"dot"}"#;
    assert_eq!(
        labels_of(r#"{app="a"} | json who="user.id", tag="tags[1]", n, obj, d="[\"a.b\"]", missing="nope.x""#, line),
        r#"{app="a", d="dot", missing="", n="", obj="{\"k\":1}", tag="y", who="u1"}"#
    );
    // A line that cannot start JSON fails before any label is set.
    assert_eq!(labels_of(r#"{app="a"} | json x="a""#, "not json"), r#"{__error__="JSONParserErr", app="a"}"#);
    assert!(Pipeline::new(&parse_log_selector(r#"{app="a"} | json x="a..b""#).expect("parses").stages).is_err());
}

#[test]
fn regexp_and_pattern_parsers() {
    assert_eq!(
        labels_of(r#"{app="a"} | regexp `(?P<method>\w+) (?P<path>\S+) (?P<status>\d+)`"#, "GET /home 200"),
        r#"{app="a", method="GET", path="/home", status="200"}"#
    );
    // No match: nothing extracted, line kept.
    assert_eq!(labels_of(r#"{app="a"} | regexp `(?P<num>\d+)`"#, "PUT /x"), r#"{app="a"}"#);
    // An optional group that did not take part is empty.
    assert_eq!(labels_of(r#"{app="a"} | regexp `(?P<a>x)(?P<b>y)?`"#, "x"), r#"{a="x", app="a", b=""}"#);
    assert_eq!(
        labels_of(r#"{app="a"} | pattern `<method> <_> <status>`"#, "GET /home 200"),
        r#"{app="a", method="GET", status="200"}"#
    );
    // A short line fills the leading captures only.
    assert_eq!(labels_of(r#"{app="a"} | pattern `<method> <path>`"#, "POST"), r#"{app="a", method="POST"}"#);
    assert_eq!(labels_of(r#"{app="a"} | pattern `[<ts>] <msg>`"#, "no bracket"), r#"{app="a"}"#);
}

#[test]
fn unpack_parser() {
    assert_eq!(
        run(r#"{app="a"} | unpack"#, r#"{app="a"}"#, r#"{"lvl":"info","num":5,"_entry":"real message"}"#),
        Some(("real message".to_string(), r#"{app="a", lvl="info"}"#.to_string()))
    );
    let got =
        run(r#"{app="a"} | unpack | logfmt"#, r#"{app="a", lvl="stream"}"#, r#"{"lvl":"packed","_entry":"code=42"}"#);
    assert_eq!(got.map(|(_, l)| l).as_deref(), Some(r#"{app="a", code="42", lvl="stream", lvl_extracted="packed"}"#));
    assert_eq!(
        labels_of(r#"{app="a"} | unpack"#, "not json"),
        r#"{__error__="JSONParserErr", __error_details__="expecting json object(6), but it is not", app="a"}"#
    );
    // Without `_entry` nothing is unpacked.
    assert_eq!(labels_of(r#"{app="a"} | unpack"#, r#"{"lvl":"info"}"#), r#"{app="a"}"#);
}

#[test]
fn label_conflicts() {
    let md = [("md", "m"), ("sm", "m"), ("tri", "m")];
    let got = run_md(r#"{app="a"} | logfmt"#, r#"{app="a", sl="s", sm="s", tri="s"}"#, "sl=p md=p tri=p", &md);
    assert_eq!(
        got.map(|(_, l)| l).as_deref(),
        Some(
            r#"{app="a", md="m", md_extracted="p", sl="s", sl_extracted="p", sm="s", sm_extracted="m", tri="s", tri_extracted="p"}"#
        )
    );
    // Without a parser, metadata that loses to a stream label keeps `_extracted`.
    let got = run_md(r#"{app="a"}"#, r#"{app="a", k="s"}"#, "x", &[("k", "m")]);
    assert_eq!(got.map(|(_, l)| l).as_deref(), Some(r#"{app="a", k="s", k_extracted="m"}"#));
    // The base name filters on the winner.
    let q = r#"{app="a"} | logfmt | tri="s" and tri_extracted="p""#;
    assert!(run_md(q, r#"{app="a", tri="s"}"#, "tri=p", &[("tri", "m")]).is_some());
    // Metadata shows as labels to later stages.
    assert!(run_md(r#"{app="a"} | lvl="error""#, r#"{app="a"}"#, "msg", &[("lvl", "error")]).is_some());
    assert!(run_md(r#"{app="a"} | lvl="error""#, r#"{app="a"}"#, "msg", &[("lvl", "info")]).is_none());
}

#[test]
fn categories_of_result_labels() {
    let p = pipeline(r#"{app="a"} | logfmt | label_format app2=app"#);
    let mut sp = p.for_stream(&stream(r#"{app="a", env="prod"}"#));
    let out = sp.process(0, b"x=1", &[("trace", "t1")]).expect("kept");
    assert_eq!(out.labels.stream.to_string(), r#"{env="prod"}"#);
    assert_eq!(out.labels.structured_metadata, vec![Label::new("trace", "t1")]);
    assert_eq!(out.labels.parsed, vec![Label::new("app2", "a"), Label::new("x", "1")]);
    assert_eq!(out.labels.hash, out.labels.all.fingerprint(""));
}

// ---- label filters --------------------------------------------------------------------------

#[test]
fn string_label_filters() {
    assert!(keeps(r#"{app="a"} | logfmt | name="alpha""#, "name=alpha"));
    assert!(!keeps(r#"{app="a"} | logfmt | name=~"alph""#, "name=alpha"));
    assert!(keeps(r#"{app="a"} | logfmt | name=~"(?i)ALPHA""#, "name=alpha"));
    // An absent label compares as empty.
    assert!(keeps(r#"{app="a"} | logfmt | name="""#, "other=1"));
    assert!(!keeps(r#"{app="a"} | logfmt | name=~".+""#, "other=1"));
    assert!(keeps(r#"{app="a"} | logfmt | x="1" or y="1" and z="1""#, "x=0 y=1 z=1"));
    assert!(!keeps(r#"{app="a"} | logfmt | (x="1" or y="1") and z="1""#, "x=1 y=0 z=0"));
}

#[test]
fn numeric_label_filters() {
    assert!(keeps(r#"{app="a"} | logfmt | status >= 500"#, "status=500"));
    assert!(!keeps(r#"{app="a"} | logfmt | status >= 500"#, "status=200"));
    assert!(keeps(r#"{app="a"} | logfmt | code == 200"#, "code=200.0"));
    assert!(keeps(r#"{app="a"} | logfmt | code == 1.5e3"#, "code=1500"));
    assert!(keeps(r#"{app="a"} | logfmt | v > 1"#, "v=+Inf"));
    // A missing label drops the line, without error.
    assert_eq!(labels_of(r#"{app="a"} | logfmt | status > 400"#, "other=1"), "dropped");
    assert_eq!(
        labels_of(r#"{app="a"} | logfmt | status > 400"#, "status=oops"),
        r#"{__error__="LabelFilterErr", __error_details__="strconv.ParseFloat: parsing \"oops\": invalid syntax", app="a", status="oops"}"#
    );
}

#[test]
fn duration_and_bytes_filters() {
    assert!(keeps(r#"{app="a"} | logfmt | took > 1s"#, "took=2s"));
    assert!(keeps(r#"{app="a"} | logfmt | took == 1h"#, "took=3600000000µs"));
    assert!(keeps(r#"{app="a"} | logfmt | took == 90m"#, "took=1h30m"));
    assert_eq!(
        labels_of(r#"{app="a"} | logfmt | took > 1s"#, "took=90"),
        r#"{__error__="LabelFilterErr", __error_details__="time: missing unit in duration \"90\"", app="a", took="90"}"#
    );
    assert!(keeps(r#"{app="a"} | logfmt | size > 1MB"#, "size=2048KiB"));
    assert!(keeps(r#"{app="a"} | logfmt | size > 1MB"#, "size=3mb"));
    assert!(keeps(r#"{app="a"} | logfmt | size == 3000KB"#, "size=3MB"));
    assert!(!keeps(r#"{app="a"} | logfmt | size < 2KiB"#, "size=3MB"));
    assert_eq!(
        labels_of(r#"{app="a"} | logfmt | size > 1MB"#, "size=oops"),
        r#"{__error__="LabelFilterErr", __error_details__="strconv.ParseFloat: parsing \"\": invalid syntax", app="a", size="oops"}"#
    );
}

#[test]
fn label_filter_error_rules() {
    // `or` stops at a true left side; a conversion failure on the left keeps the line.
    assert!(keeps(r#"{app="a"} | logfmt | lvl="error" or took > 1s"#, "lvl=error took=oops"));
    assert_eq!(
        labels_of(r#"{app="a"} | logfmt | lvl="error" or took > 1s"#, "lvl=error took=oops"),
        r#"{app="a", lvl="error", took="oops"}"#
    );
    assert!(
        labels_of(r#"{app="a"} | logfmt | took > 1s or lvl="error""#, "lvl=error took=oops").contains("LabelFilterErr")
    );
    // The first failing filter owns the details.
    assert!(labels_of(r#"{app="a"} | logfmt | x > 1s and y > 1s"#, "x=nope y=90").contains("invalid duration"));
    assert!(labels_of(r#"{app="a"} | logfmt | y > 1s and x > 1s"#, "x=nope y=90").contains("missing unit"));
    // A comparison that fails after a conversion error still drops the line.
    assert_eq!(labels_of(r#"{app="a"} | logfmt | took > 1s and size < 1MB"#, "took=oops size=3MB"), "dropped");
    // Only ip() keeps a line that already failed; number filters need their label.
    assert!(labels_of(r#"{app="a"} | json | addr = ip("1.2.3.0/24")"#, "not json").contains("JSONParserErr"));
    assert_eq!(labels_of(r#"{app="a"} | json | took > 1s"#, "not json"), "dropped");
    assert_eq!(labels_of(r#"{app="a"} | json | addr="1.2.3.4""#, "not json"), "dropped");
    // A string filter on __error__.
    assert!(keeps(r#"{app="a"} | logfmt | took > 1s | __error__!="""#, "took=oops"));
    assert_eq!(labels_of(r#"{app="a"} | logfmt | took > 1s | __error__!="LabelFilterErr""#, "took=oops"), "dropped");
}

#[test]
fn ip_label_filters() {
    assert!(keeps(r#"{app="a"} | logfmt | addr = ip("192.168.0.0/16")"#, "addr=192.168.1.5"));
    assert!(keeps(r#"{app="a"} | logfmt | addr = ip("10.0.0.0/8")"#, r#"addr="client 10.0.0.7:80""#));
    assert!(keeps(r#"{app="a"} | logfmt | addr != ip("192.168.0.0/16")"#, "addr=notanip"));
    assert!(!keeps(r#"{app="a"} | logfmt | addr != ip("192.168.0.0/16")"#, "other=1"));
}

// ---- formatters, drop, keep -----------------------------------------------------------------

#[test]
fn line_format() {
    assert_eq!(line_of(r#"{app="a", level="error"} | line_format "L={{.level}}""#, "x"), "L=");
    let got = run(r#"{app="a"} | line_format "L={{.level}}" |= "L=error""#, r#"{app="a", level="error"}"#, "x");
    assert_eq!(got.map(|(l, _)| l).as_deref(), Some("L=error"));
    assert_eq!(line_of(r#"{app="a"} | logfmt | line_format "{{.msg}}""#, "msg=hello x=1"), "hello");
    assert_eq!(line_of(r#"{app="a"} | line_format "{{.missing}}""#, "x"), "");
    assert_eq!(line_of(r#"{app="a"} | line_format "{{ __line__ | upper }}""#, "abc"), "ABC");
    assert_eq!(
        labels_of(r#"{app="a"} | line_format "{{ .app | trunc 1.5 }}""#, "abc"),
        r#"{__error__="TemplateFormatErr", __error_details__="template: line: executing \"line\" at <trunc>: expected integer; found 1.5", app="a"}"#
    );
    assert_eq!(line_of(r#"{app="a"} | line_format "{{ .app | trunc 1.5 }}""#, "abc"), "abc");
}

#[test]
fn label_format() {
    assert_eq!(labels_of(r#"{app="a", method="get"} | label_format verb=method"#, "x"), r#"{app="a"}"#);
    let got = run(r#"{app="a"} | label_format verb=method"#, r#"{app="a", method="get"}"#, "x");
    assert_eq!(got.map(|(_, l)| l).as_deref(), Some(r#"{app="a", verb="get"}"#));
    let got = run(r#"{app="a"} | label_format method="{{.method}}!""#, r#"{app="a", method="get"}"#, "x");
    assert_eq!(got.map(|(_, l)| l).as_deref(), Some(r#"{app="a", method="get!"}"#));
    // Templates of one stage read the labels as they were before it.
    assert_eq!(
        labels_of(r#"{app="a"} | logfmt | label_format a="{{.b}}", c="{{.a}}""#, "a=1 b=2"),
        r#"{a="2", app="a", b="2", c="1"}"#
    );
    assert_eq!(
        labels_of(r#"{app="a"} | label_format t="{{ __timestamp__ | unixEpoch }}""#, "x"),
        r#"{app="a", t="1700000000"}"#
    );
}

#[test]
fn decolorize() {
    assert_eq!(line_of(r#"{app="a"} | decolorize"#, "\x1b[31mred\x1b[0m plain"), "red plain");
    assert_eq!(line_of(r#"{app="a"} | decolorize"#, "plain"), "plain");
    assert_eq!(line_of(r#"{app="a"} | line_format `{{ printf "\x1b[31m%s\x1b[0m" .app }}` | decolorize"#, "x"), "a");
}

#[test]
fn drop_and_keep() {
    let s = r#"{app="a", code="500", zone="eu"}"#;
    let l = |q: &str| run(q, s, "lvl=info").map(|(_, l)| l).unwrap_or_default();
    assert_eq!(l(r#"{app="a"} | drop code, zone"#), r#"{app="a"}"#);
    assert_eq!(l(r#"{app="a"} | drop code="500""#), r#"{app="a", zone="eu"}"#);
    assert_eq!(l(r#"{app="a"} | drop code="200""#), r#"{app="a", code="500", zone="eu"}"#);
    assert_eq!(l(r#"{app="a"} | keep zone"#), r#"{zone="eu"}"#);
    assert_eq!(l(r#"{app="a"} | keep code="200""#), r#"{}"#);
    assert_eq!(l(r#"{app="a"} | logfmt | keep lvl, code"#), r#"{code="500", lvl="info"}"#);
    // keep leaves the error labels; drop can remove them.
    let bad = |q: &str| run(q, s, "not json").map(|(_, l)| l).unwrap_or_default();
    assert_eq!(bad(r#"{app="a"} | json | keep app"#).matches("__error").count(), 2);
    assert_eq!(bad(r#"{app="a"} | json | drop __error__, __error_details__"#), s);
    assert_eq!(bad(r#"{app="a"} | json | drop __error__="JSONParserErr""#).matches("__error").count(), 1);
}

// ---- caching, candidates --------------------------------------------------------------------

#[test]
fn result_labels_are_shared() {
    let p = pipeline(r#"{app="a"} | logfmt | drop ts"#);
    let mut sp = p.for_stream(&stream(r#"{app="a"}"#));
    let first = Arc::clone(&sp.process(0, b"ts=1 level=info", &[]).expect("kept").labels.all);
    let second = Arc::clone(&sp.process(1, b"ts=2 level=info", &[]).expect("kept").labels.all);
    assert!(Arc::ptr_eq(&first, &second));
    let other = Arc::clone(&sp.process(2, b"ts=3 level=warn", &[]).expect("kept").labels.all);
    assert!(!Arc::ptr_eq(&first, &other));
    let again = Arc::clone(&sp.process(3, b"ts=4 level=info", &[]).expect("kept").labels.all);
    assert!(Arc::ptr_eq(&first, &again));
    // A pipeline that changes nothing returns the stream's own labels.
    let p = pipeline(r#"{app="a"} |= "x""#);
    let labels = stream(r#"{app="a"}"#);
    let mut sp = p.for_stream(&labels);
    assert!(Arc::ptr_eq(&sp.process(0, b"x", &[]).expect("kept").labels.all, &labels));
}

#[test]
fn result_cache_gives_up_on_unique_labels() {
    let p = pipeline(r#"{app="a"} | logfmt"#);
    let mut sp = p.for_stream(&stream(r#"{app="a"}"#));
    for i in 0..3000 {
        let line = format!("id={i}");
        let out = sp.process(i, line.as_bytes(), &[]).expect("kept");
        assert_eq!(out.labels.all.to_string(), format!(r#"{{app="a", id="{i}"}}"#));
        assert_eq!(out.labels.hash, out.labels.all.fingerprint(""));
    }
    // Still shared between consecutive lines, and unchanged lines still get the stream's labels.
    let a = Arc::clone(&sp.process(0, b"id=x", &[]).expect("kept").labels.all);
    let b = Arc::clone(&sp.process(0, b"id=x", &[]).expect("kept").labels.all);
    assert!(Arc::ptr_eq(&a, &b));
    let labels = stream(r#"{app="a"}"#);
    let p = pipeline(r#"{app="a"} | logfmt"#);
    let mut sp = p.for_stream(&labels);
    for i in 0..1000 {
        sp.process(i, format!("id={i}").as_bytes(), &[]);
    }
    assert!(Arc::ptr_eq(&sp.process(0, b"", &[]).expect("kept").labels.all, &labels));
}

fn block_of(lines: &[&str]) -> crate::chunk::DecodedBlock {
    let mut c = MemChunk::new(crate::chunk::Codec::None, 1 << 20);
    for (i, l) in lines.iter().enumerate() {
        c.append(i as i64, l.as_bytes(), &[]).expect("append");
    }
    let handles = c.block_handles(0, i64::MAX).expect("blocks");
    handles.into_iter().next().expect("one block").decode().expect("decodes")
}

#[test]
fn candidates() {
    let block = block_of(&["abc trace=1", "def", "trace=2 xyz", "tra", "ce=3", "", "tr"]);
    let c = |q: &str| pipeline(q).candidates(&block);
    assert_eq!(c(r#"{app="a"} |= "trace=""#), Some(vec![0, 2]));
    // A match across two lines ("tra" + "ce=3") is not a hit.
    assert_eq!(c(r#"{app="a"} |= "trace=3""#), Some(vec![]));
    assert_eq!(c(r#"{app="a"} |= "def" or "xyz""#), Some(vec![1, 2]));
    assert_eq!(c(r#"{app="a"} |~ "trace=[0-9]+""#), Some(vec![0, 2]));
    assert_eq!(c(r#"{app="a"} != "trace=""#), None);
    assert_eq!(c(r#"{app="a"} != "x" |= "trace=""#), Some(vec![0, 2]));
    // The pattern's literal includes the space before `trace=`.
    assert_eq!(c(r#"{app="a"} |> "<_> trace=<_>""#), Some(vec![0]));
    assert_eq!(c(r#"{app="a"} | logfmt |= "x""#), None);
    assert_eq!(c(r#"{app="a"} |~ "a|b""#), None);
    assert_eq!(c(r#"{app="a"} |~ "(?i)trace""#), None);
}

#[test]
fn regex_required_literals() {
    use super::line_filter::required_literal;
    let lit = |s: &str| required_literal(s).map(|b| String::from_utf8(b).unwrap_or_default());
    assert_eq!(lit("status=5[0-9]{2}").as_deref(), Some("status=5"));
    assert_eq!(lit(r"trace_id=\w+").as_deref(), Some("trace_id="));
    assert_eq!(lit("abcd?ef").as_deref(), Some("abc"));
    assert_eq!(lit("x(abc)+yz").as_deref(), None);
    assert_eq!(lit("foo|bar"), None);
    assert_eq!(lit("(?i)hello"), None);
    assert_eq!(lit(r"a\.b\.c").as_deref(), Some("a.b.c"));
    assert_eq!(lit("ab{0,2}cde").as_deref(), Some("cde"));
    assert_eq!(lit("err+or").as_deref(), Some("err"));
}

#[test]
fn pipelines_cross_threads() {
    fn shared<T: Send + Sync>() {}
    fn sendable<T: Send>() {}
    shared::<Pipeline>();
    shared::<SampleExtractor>();
    sendable::<StreamPipeline>();
    sendable::<StreamSampleExtractor>();
}

#[test]
fn first_parsed_value_wins_across_stages() {
    assert_eq!(
        labels_of(r#"{app="a"} | json | line_format "{{.inner}}" | logfmt"#, r#"{"level":"a","inner":"level=b x=1"}"#),
        r#"{app="a", inner="level=b x=1", level="a", x="1"}"#
    );
    // A label_format result is not overwritten by a later parser either.
    assert_eq!(
        labels_of(r#"{app="a"} | label_format level="fixed" | logfmt"#, "level=b"),
        r#"{app="a", level="fixed"}"#
    );
}
