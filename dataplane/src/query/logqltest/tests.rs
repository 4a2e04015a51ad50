//! Tests of the script parser, the checker and the runner.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::script::{Command, EvalKind, Expect, FailMatch, parse_points};
use super::*;
use crate::entry::Direction;
use crate::labels::Label;
use crate::query::value::{LogEntry, Point, Sample, Series, StreamResult};

const S: i64 = 1_000_000_000;

/// `shared/conformance/logqltest` next to the repository (`$CARGO_MANIFEST_DIR/../../shared`
/// for the main checkout; a worktree nests one level deeper, so the ancestors are searched).
fn conformance_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/conformance/logqltest"))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| manifest.join("../../shared/conformance/logqltest"))
}

fn parse(text: &str) -> Script {
    parse_script("t.logqltest", text).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_err(text: &str) -> ScriptError {
    match parse_script("t.logqltest", text) {
        Ok(_) => panic!("parsed:\n{text}"),
        Err(e) => e,
    }
}

fn only_eval(s: &Script) -> &script::Eval {
    s.evals().next().expect("an eval")
}

fn labels(s: &str) -> Arc<Labels> {
    Arc::new(Labels::parse(s).expect("labels").sorted())
}

#[test]
fn every_conformance_script_parses_with_841_evals() {
    let files = runner::expand(&[conformance_dir()]).expect("list the conformance scripts");
    let mut counts = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read script");
        let name = f.file_name().expect("file name").to_string_lossy().into_owned();
        let script = parse_script(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        counts.push((name, script.evals().count()));
    }
    let want = [
        ("binary_operations.logqltest", 198),
        ("conversions.logqltest", 9),
        ("formatters.logqltest", 23),
        ("functions.logqltest", 23),
        ("label_filters.logqltest", 213),
        ("line_filters.logqltest", 47),
        ("parsers.logqltest", 43),
        ("range_aggregations.logqltest", 195),
        ("vector_aggregations.logqltest", 90),
    ];
    let want: Vec<(String, usize)> = want.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    assert_eq!(counts, want);
    assert_eq!(counts.iter().map(|c| c.1).sum::<usize>(), 841);
}

#[test]
fn load_lines_expand_repeats_metadata_and_index() {
    let s = parse(concat!(
        "load\n",
        "  {b=\"2\", a=\"1\", e=\"\"} \"v={{.i}} # not a comment\" @ 1m30s [repeat every 500ms for 3] [metadata k=\"x y\" \"sp ace\"=\"z\"]   # comment\n",
        "  {a=\"1\", b=\"2\"} `{\"raw\":\"\\x1b\"}` @0\n",
        "eval instant at 1s 1\n",
        "  1\n",
    ));
    let Command::Load(lines) = &s.commands[0] else { panic!("not a load") };
    assert_eq!(lines[0].line, 2);
    assert_eq!(lines[0].labels.to_string(), r#"{a="1", b="2"}"#, "sorted, empty value dropped");
    let got: Vec<(i64, String)> =
        lines[0].entries.iter().map(|e| (e.ts, String::from_utf8_lossy(&e.line).into_owned())).collect();
    assert_eq!(
        got,
        vec![
            (90 * S, "v=0 # not a comment".into()),
            (90 * S + S / 2, "v=1 # not a comment".into()),
            (91 * S, "v=2 # not a comment".into()),
        ]
    );
    assert_eq!(lines[0].entries[2].metadata, vec![Label::new("k", "x y"), Label::new("sp ace", "z")]);
    // Backtick lines are taken literally: the backslash stays.
    assert_eq!(lines[1].entries[0].line, Bytes::from_static(br#"{"raw":"\x1b"}"#));
    assert_eq!(lines[1].entries[0].ts, 0);
}

#[test]
fn eval_headers_and_params() {
    let s = parse("eval range from 1m to 2m step 30s sum(x)   # c\n  {} 1 2 3\n");
    let e = only_eval(&s);
    assert_eq!(e.kind, EvalKind::Range { start: 60 * S, end: 120 * S, step: 30 * S });
    assert_eq!(e.query, "sum(x)");
    assert_eq!(e.text, "eval range from 1m to 2m step 30s sum(x)");
    let p = e.params();
    assert_eq!((p.start, p.end, p.step, p.instant, p.limit), (60 * S, 120 * S, 30 * S, false, 1000));

    let s = parse("eval instant at 500ms {a=\"#\"}\n  expect empty\n");
    let p = only_eval(&s).params();
    assert_eq!(only_eval(&s).query, r##"{a="#"}"##);
    assert_eq!((p.start, p.end, p.instant, p.direction), (S / 2, S / 2, true, Direction::Forward));

    let s = parse(
        "eval select from 0 to 40s backward {a=\"b\"}\n  {a=\"b\"} \"x\" @ 1s [metadata m=\"1\"] [parsed p=\"2\"]\n",
    );
    let e = only_eval(&s);
    assert_eq!(e.kind, EvalKind::Select { start: 0, end: 40 * S, direction: Direction::Backward });
    let Expect::Streams(streams) = &e.expect else { panic!("not streams") };
    assert_eq!(streams[0].entries[0].metadata, vec![Label::new("m", "1")]);
    assert_eq!(streams[0].entries[0].parsed, vec![Label::new("p", "2")]);
}

#[test]
fn expectations_parse() {
    let s = parse(concat!(
        "eval instant at 1s q\n",
        "  skip values-comparison on \"query-frontend + query-scheduler (sharding)\"\n",
        "  expect values-toleration 0.02 on \"some stack\"\n",
        "  {b=\"\", a=\"1\"} 2.5   # a comment\n",
        "  # a comment line\n",
        "  {a=\"2\"} -Inf\n",
        "\n",
        "eval instant at 1s q\n",
        "  expect fail regex: expecting (NUMBER|STRING)\n",
        "eval instant at 1s q\n",
        "  expect fail msg: not defined: x\n",
        "eval instant at 1s q\n",
        "  0x1p3\n",
        "eval instant at 1s q\n",
        "  expect ordered\n",
        "  {a=\"1\"} 1\n",
    ));
    let evals: Vec<_> = s.evals().collect();
    let Expect::Series { ordered: false, series } = &evals[0].expect else { panic!("not series") };
    assert_eq!(series[0].labels.to_string(), r#"{a="1", b=""}"#, "empty values are kept in expectations");
    assert_eq!(series[0].points, vec![Some(2.5)]);
    assert_eq!(series[1].points, vec![Some(f64::NEG_INFINITY)]);
    let Expect::Fail(FailMatch::Regex(re)) = &evals[1].expect else { panic!("not a regex") };
    assert!(re.is_match("syntax error: unexpected x, expecting NUMBER or"));
    assert!(matches!(&evals[2].expect, Expect::Fail(FailMatch::Message(m)) if m == "not defined: x"));
    assert!(matches!(evals[3].expect, Expect::Scalar(v) if v == 8.0));
    assert!(matches!(evals[4].expect, Expect::Series { ordered: true, .. }));
}

#[test]
fn point_shorthand_expands() {
    assert_eq!(parse_points("2+3x2").unwrap(), vec![Some(2.0), Some(5.0), Some(8.0)]);
    assert_eq!(parse_points("4x3").unwrap(), vec![Some(4.0); 4]);
    assert_eq!(parse_points("1-1x2").unwrap(), vec![Some(1.0), Some(0.0), Some(-1.0)]);
    assert_eq!(parse_points("-1+0.5x1 _ 7").unwrap(), vec![Some(-1.0), Some(-0.5), None, Some(7.0)]);
    assert_eq!(parse_points("1x0").unwrap(), vec![Some(1.0)]);
    let special = parse_points("NaN Inf +Inf -Inf").unwrap();
    assert!(special[0].is_some_and(f64::is_nan));
    assert_eq!(&special[1..], &[Some(f64::INFINITY), Some(f64::INFINITY), Some(f64::NEG_INFINITY)]);
    assert!(parse_points("2+3xN").is_err());
    assert!(parse_points("abc").is_err());
}

#[test]
fn malformed_scripts_report_file_and_line() {
    let cases = [
        ("clear\nfrobnicate\n", 2, "unexpected \"frobnicate\""),
        ("load\n\neval instant at 1s q\n  1\n", 1, "no data lines"),
        ("load\n  {a=\"1\"} \"x\"\n", 2, "missing '@"),
        ("load\n  {a=\"1\"} \"x @ 1s\n", 2, "unterminated"),
        ("load\n  {a=\"1\"} \"x\" @ 1q\n", 2, "invalid time"),
        ("load\n  {a=\"1\"} \"x\" @ 1s [repeat every 1s for 0]\n", 2, "at least 1"),
        ("load\n  {a=\"1\"} \"x\" @ 1s [metadata k=v]\n", 2, "double-quoted value"),
        ("load\n  {a=\"1\"} \"x\" @ 1s [metadata k=\"v\"] [repeat every 1s for 2]\n", 2, "unexpected [repeat"),
        ("load\n  {a=\"1\"} \"x\" @ 1s trailing\n", 2, "unexpected \"trailing\""),
        ("load\n  {a=~\"1\"} \"x\" @ 1s\n", 2, "invalid label set"),
        ("# c\neval instant at 1s q\n", 2, "no expectation"),
        ("eval instant at 1s q\n  1\n  expect empty\n", 1, "conflicting"),
        ("eval range from 0s to 60s step 30s q\n  {} 1 2\n", 2, "the range has 3 steps"),
        ("eval range from 0s to 60s step 0s q\n  {} 1\n", 1, "step must be positive"),
        ("eval instant at 1s q\n  {} 1 2\n", 2, "exactly one value"),
        ("eval instant at 1s q\n  {} _\n", 2, "exactly one value"),
        ("eval instant at 1s q\n  expect fail mesg: x\n", 2, "unknown `expect fail` qualifier"),
        ("eval instant at 1s q\n  expect fail regex: (\n", 2, "invalid regex"),
        ("eval instant at 1s q\n  expect sorted\n", 2, "unknown expectation"),
        ("eval instant at 1s q\n  skip values on \"s\"\n", 2, "unknown skip target"),
        ("eval instant at 1s q\n  {a=\"1\"} 1\n  {a=\"1\"} 2\n", 3, "expected twice"),
        ("eval range from 0s to 0s step 1s q\n  expect ordered\n  {} 1\n", 1, "expect ordered"),
        ("eval instant q\n  1\n", 1, "expected \"at\""),
        ("eval later at 1s q\n  1\n", 1, "expected instant, range or select"),
        ("eval instant at 1s\n  1\n", 1, "no query"),
        ("eval select from 0s to 1s sideways q\n  expect empty\n", 1, "forward or backward"),
        ("eval instant at 1s q\n  1\n  2\n", 3, "more than one scalar"),
        (
            "eval instant at 1s q\n  {a=\"1\"} \"x\" @ 1s [parsed a=\"1\"] [metadata b=\"2\"]\n",
            2,
            "unexpected [metadata",
        ),
    ];
    for (text, line, msg) in cases {
        let e = parse_err(text);
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(e.message.contains(msg), "{text:?}: {e}");
        assert!(e.to_string().starts_with(&format!("t.logqltest:{line}: ")), "{e}");
    }
}

#[test]
fn float_comparison_follows_lokis_tolerance() {
    assert!(values_equal(f64::NAN, f64::NAN));
    assert!(!values_equal(f64::NAN, 1.0));
    assert!(!values_equal(1.0, f64::NAN));
    assert!(values_equal(f64::INFINITY, f64::INFINITY));
    assert!(!values_equal(f64::INFINITY, f64::NEG_INFINITY));
    assert!(!values_equal(f64::INFINITY, f64::MAX));
    assert!(values_equal(0.0, 1e-10), "absolute tolerance");
    assert!(!values_equal(0.0, 1e-8));
    assert!(values_equal(1e12, 1e12 + 1.0), "relative tolerance");
    assert!(!values_equal(1.0, 1.00001));
    assert!(values_equal(0.1 + 0.2, 0.3));
    assert!(values_equal(-0.0, 0.0));
}

fn vector(samples: &[(&str, f64)], ts: i64) -> Value {
    Value::Vector(samples.iter().map(|(l, v)| Sample { labels: labels(l), ts, value: *v }).collect())
}

fn checked(script: &str, outcome: Result<Value, EvalFailure>) -> Result<(), String> {
    check(only_eval(&parse(script)), &outcome)
}

#[test]
fn vectors_compare_as_sets_unless_ordered() {
    let script = "eval instant at 60s q\n  {a=\"1\"} 1\n  {a=\"2\", b=\"\"} 2\n";
    assert_eq!(checked(script, Ok(vector(&[(r#"{b="", a="2"}"#, 2.0), (r#"{a="1"}"#, 1.0)], 60 * S))), Ok(()));
    let wrong = checked(script, Ok(vector(&[(r#"{a="2"}"#, 2.0), (r#"{a="1"}"#, 1.0)], 60 * S))).unwrap_err();
    assert!(wrong.contains(r#"missing {a="2", b=""}"#), "{wrong}");
    let value = checked(script, Ok(vector(&[(r#"{a="2", b=""}"#, 2.5), (r#"{a="1"}"#, 1.0)], 60 * S))).unwrap_err();
    assert!(value.contains("want 2, got 2.5"), "{value}");
    let ts = checked(script, Ok(vector(&[(r#"{a="2", b=""}"#, 2.0), (r#"{a="1"}"#, 1.0)], 61 * S))).unwrap_err();
    assert!(ts.contains("timestamp"), "{ts}");
    let extra = checked(script, Ok(vector(&[(r#"{a="2", b=""}"#, 2.0), (r#"{a="1"}"#, 1.0), ("{}", 1.0)], 60 * S)));
    assert!(extra.unwrap_err().contains("unexpected {}"));

    let ordered = "eval instant at 60s q\n  expect ordered\n  {a=\"1\"} 1\n  {a=\"2\"} NaN\n";
    assert_eq!(checked(ordered, Ok(vector(&[(r#"{a="1"}"#, 1.0), (r#"{a="2"}"#, f64::NAN)], 60 * S))), Ok(()));
    let swapped = checked(ordered, Ok(vector(&[(r#"{a="2"}"#, f64::NAN), (r#"{a="1"}"#, 1.0)], 60 * S)));
    assert!(swapped.unwrap_err().contains("position 0"));
}

#[test]
fn matrices_compare_points_per_step() {
    let script = "eval range from 0s to 20s step 10s q\n  {a=\"1\"} 1 _ 3\n";
    let series = |points: &[(i64, f64)]| {
        Ok(Value::Matrix(vec![Series {
            labels: labels(r#"{a="1"}"#),
            points: points.iter().map(|&(ts, value)| Point { ts, value }).collect(),
        }]))
    };
    assert_eq!(checked(script, series(&[(0, 1.0), (20 * S, 3.0)])), Ok(()));
    assert!(checked(script, series(&[(0, 1.0), (10 * S, 2.0), (20 * S, 3.0)])).unwrap_err().contains("want no point"));
    assert!(checked(script, series(&[(0, 1.0)])).unwrap_err().contains("missing point"));
    assert!(checked(script, series(&[(0, 1.0), (5 * S, 1.0), (20 * S, 3.0)])).unwrap_err().contains("not a step"));
    assert!(checked(script, Ok(Value::Matrix(vec![]))).unwrap_err().contains("missing"));
    assert!(checked(script, Ok(vector(&[], 0))).unwrap_err().contains("got a vector"));
}

#[test]
fn scalars_empties_and_failures() {
    let scalar = "eval instant at 60s q\n  2\n";
    assert_eq!(checked(scalar, Ok(Value::Scalar { ts: 60 * S, value: 2.0 })), Ok(()));
    assert!(checked(scalar, Ok(Value::Scalar { ts: 60 * S, value: 3.0 })).is_err());
    assert!(checked(scalar, Ok(vector(&[("{}", 2.0)], 60 * S))).unwrap_err().contains("expected a scalar"));

    let empty = "eval instant at 60s q\n  expect empty\n";
    assert_eq!(checked(empty, Ok(Value::Vector(vec![]))), Ok(()));
    assert_eq!(checked(empty, Ok(Value::Streams(vec![]))), Ok(()));
    assert!(checked(empty, Ok(vector(&[("{}", 2.0)], 60 * S))).is_err());
    assert!(checked(empty, Ok(Value::Scalar { ts: 0, value: 0.0 })).is_err());

    let fail = "eval instant at 60s q\n  expect fail msg: not defined\n";
    assert_eq!(checked(fail, Err(EvalFailure::Query("function \"x\" not defined".into()))), Ok(()));
    assert!(checked(fail, Err(EvalFailure::Query("other".into()))).unwrap_err().contains("does not contain"));
    assert!(checked(fail, Err(EvalFailure::Harness("not defined".into()))).unwrap_err().contains("harness"));
    assert!(checked(fail, Ok(Value::Vector(vec![]))).unwrap_err().contains("expected the query to fail"));
    let any = "eval instant at 60s q\n  expect fail\n";
    assert_eq!(checked(any, Err(EvalFailure::Query("anything".into()))), Ok(()));
    let re = "eval instant at 60s q\n  expect fail regex: ^parse error at line \\d+\n";
    assert_eq!(checked(re, Err(EvalFailure::Query("parse error at line 1, col 2: x".into()))), Ok(()));
    assert!(checked(re, Err(EvalFailure::Query("a parse error at line 1".into()))).is_err());
    assert!(checked(scalar, Err(EvalFailure::Query("boom".into()))).unwrap_err().contains("the query failed: boom"));
}

fn entry(ts: i64, line: &str, metadata: &[(&str, &str)], parsed: &[(&str, &str)]) -> LogEntry {
    LogEntry {
        ts,
        line: Bytes::copy_from_slice(line.as_bytes()),
        structured_metadata: metadata.iter().map(|(n, v)| Label::new(*n, *v)).collect(),
        parsed: parsed.iter().map(|(n, v)| Label::new(*n, *v)).collect(),
    }
}

#[test]
fn streams_compare_by_stream_labels_with_categorized_entries() {
    let script = concat!(
        "eval select from 0s to 1m backward {app=\"a\"}\n",
        "  {app=\"a\"} \"two\" @ 20s [parsed level=\"error\"]\n",
        "  {app=\"a\"} \"one\" @ 10s [metadata trace=\"t\"]\n",
    );
    // Two result streams (split by metadata and a parsed label) with the same stream labels.
    let result = |second_line: &str| {
        Ok(Value::Streams(vec![
            StreamResult {
                labels: labels(r#"{app="a", level="error"}"#),
                stream_labels: labels(r#"{app="a"}"#),
                entries: vec![entry(20 * S, "two", &[], &[("level", "error")])],
            },
            StreamResult {
                labels: labels(r#"{app="a", trace="t"}"#),
                stream_labels: labels(r#"{app="a"}"#),
                entries: vec![entry(10 * S, second_line, &[("trace", "t")], &[])],
            },
        ]))
    };
    assert_eq!(checked(script, result("one")), Ok(()));
    let e = checked(script, result("uno")).unwrap_err();
    assert!(e.contains(r#"line 1: want "one" @ 10s [metadata trace="t"], got "uno" @ 10s"#), "{e}");
    let missing_meta = Ok(Value::Streams(vec![StreamResult {
        labels: labels(r#"{app="a"}"#),
        stream_labels: labels(r#"{app="a"}"#),
        entries: vec![entry(20 * S, "two", &[], &[("level", "error")]), entry(10 * S, "one", &[], &[])],
    }]));
    assert!(checked(script, missing_meta).is_err());
}

/// A harness answering from a table and recording what it was loaded with.
#[derive(Default)]
struct TableHarness {
    answers: HashMap<String, Result<Value, EvalFailure>>,
    loads: Vec<Vec<(Labels, Vec<crate::entry::Entry>)>>,
}

#[async_trait]
impl Harness for TableHarness {
    async fn load(&mut self, streams: Vec<(Labels, Vec<crate::entry::Entry>)>) -> Result<(), String> {
        self.loads.push(streams);
        Ok(())
    }

    async fn eval(&mut self, query: &str, _params: &QueryParams) -> Result<Value, EvalFailure> {
        self.answers.get(query).cloned().unwrap_or_else(|| Err(EvalFailure::Query(format!("unknown query {query}"))))
    }
}

#[tokio::test]
async fn runner_loads_before_evals_and_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("a.logqltest"),
        concat!(
            "eval instant at 1s one\n  1\n",
            "load\n  {x=\"1\"} \"l\" @ 1s\n",
            "load\n  {x=\"1\"} \"m\" @ 2s\n  {x=\"2\"} \"n\" @ 2s\n",
            "flush\n",
            "load\n  {x=\"1\"} \"o\" @ 3s\n",
            "eval instant at 1s one\n  1\n",
            "eval instant at 1s two\n  expect fail msg: nope\n",
            "clear\n",
            "eval instant at 1s one\n  2\n",
        ),
    )
    .expect("write");
    std::fs::write(dir.path().join("b.logqltest"), "eval instant at 1s one\n  1\n").expect("write");
    std::fs::write(dir.path().join("c.logqltest"), "load\n").expect("write");
    std::fs::write(dir.path().join("ignored.txt"), "not a script").expect("write");
    let mut harness = TableHarness::default();
    harness.answers.insert("one".into(), Ok(Value::Scalar { ts: S, value: 1.0 }));
    harness.answers.insert("two".into(), Err(EvalFailure::Query("nope".into())));
    let mut out = Vec::new();
    let summary = run(&[dir.path().to_path_buf()], &mut harness, &mut out).await.expect("run");
    let out = String::from_utf8(out).expect("utf-8");
    assert_eq!(summary, Summary { files: 3, passed: 4, failed: 1, broken_files: 1 }, "{out}");
    assert!(!summary.ok());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "FAIL a.logqltest (1 of 4 failed)", "{out}");
    assert_eq!(lines[1], "  a.logqltest:16: eval instant at 1s one", "{out}");
    assert_eq!(lines[2], "    scalar: want 2, got 1", "{out}");
    assert_eq!(&lines[3..7], &["    expected:", "      2", "    got:", "      1"], "{out}");
    assert_eq!(lines[7], "PASS b.logqltest (1 evals)");
    assert_eq!(lines[8], "FAIL c.logqltest (script error: c.logqltest:1: load block has no data lines)");
    assert_eq!(lines[9], "4 passed, 2 failed");

    // Loads: empty before a's first eval, then the three streams (x=1 twice: split by the
    // flush), nothing after clear, then empty again for b.
    let shapes: Vec<Vec<(String, usize)>> =
        harness.loads.iter().map(|l| l.iter().map(|(labels, e)| (labels.to_string(), e.len())).collect()).collect();
    let s = |l: &str, n| (l.to_string(), n);
    assert_eq!(shapes, vec![vec![], vec![s(r#"{x="1"}"#, 2), s(r#"{x="2"}"#, 1), s(r#"{x="1"}"#, 1)], vec![], vec![],]);
}

#[tokio::test]
async fn memory_harness_runs_log_selection_scripts() {
    let script = parse(concat!(
        "load\n",
        "  {app=\"foo\", pod=\"\"} \"1st\" @ 10s\n",
        "  {app=\"foo\"} \"2nd\" @ 20s\n",
        "  {app=\"bar\"} \"bar {{.i}}\" @ 15s [repeat every 10s for 3]\n",
        "\n",
        "eval select from 0s to 30s backward {app=~\"foo|bar\"}\n",
        "  {app=\"foo\"} \"2nd\" @ 20s\n",
        "  {app=\"foo\"} \"1st\" @ 10s\n",
        "  {app=\"bar\"} \"bar 1\" @ 25s\n",
        "  {app=\"bar\"} \"bar 0\" @ 15s\n",
        "\n",
        "# An instant log query looks back 30s: [−5s, 25s).\n",
        "eval instant at 25s {app=~\"foo|bar\"}\n",
        "  {app=\"foo\"} \"1st\" @ 10s\n",
        "  {app=\"foo\"} \"2nd\" @ 20s\n",
        "  {app=\"bar\"} \"bar 0\" @ 15s\n",
        "\n",
        "eval select from 0s to 20s forward {app=\"foo\"}\n",
        "  {app=\"foo\"} \"1st\" @ 10s\n",
        "\n",
        "eval select from 0s to 1m forward {app=\"none\"}\n",
        "  expect empty\n",
        "\n",
        "eval instant at 1m {app=\"foo\"} |= \n",
        "  expect fail msg: parse error\n",
    ));
    let mut harness = MemoryHarness::default();
    let report = run_script(&script, &mut harness).await;
    let mut out = Vec::new();
    runner::write_report(&mut out, &report).expect("write");
    assert!(report.failures.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert_eq!(report.evals, 5);
}

/// Every eval of Loki's conformance scripts, in process.
#[tokio::test]
async fn conformance_scripts_pass_in_memory() {
    let mut harness = MemoryHarness::default();
    let mut out = Vec::new();
    let summary = run(&[conformance_dir()], &mut harness, &mut out).await.expect("run");
    let out = String::from_utf8_lossy(&out);
    assert!(summary.ok(), "{out}");
    assert_eq!(summary.passed, 841, "{out}");
}
