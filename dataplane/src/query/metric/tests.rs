//! Metric evaluation: helpers shared by the test files, and tests of instant/range results,
//! vector aggregations, `vector()`, literals, `label_replace` and limits.
//!
//! Queries here avoid pipeline stages where a stage would change the result, so they hold with
//! the pipeline stub and the real pipeline alike. Unwrapped values come from logfmt lines padded
//! with spaces to the length of their value (`"v=7    "`): the stub's value (the line length)
//! and `| logfmt | unwrap v` agree.

use std::sync::Arc;

use bytes::Bytes;

use crate::entry::Entry;
use crate::labels::Labels;
use crate::logql::parse_sample_expr;
use crate::query::{EvalError, EvalLimits, LogSource, MemorySource, QueryParams, Value};

use super::eval;

pub(super) const S: i64 = 1_000_000_000;

/// Entries `line` at `start`, `start + every`, ... (`count` of them), times in seconds.
pub(super) fn repeat(line: &str, start: f64, every: f64, count: usize) -> Vec<Entry> {
    (0..count)
        .map(|i| Entry::new(((start + every * i as f64) * S as f64) as i64, Bytes::from(line.to_string())))
        .collect()
}

/// One entry at `at` seconds.
pub(super) fn at(line: &str, at: f64) -> Vec<Entry> {
    repeat(line, at, 0.0, 1)
}

/// A line whose logfmt `v` equals its length, so the stub extractor and `| logfmt | unwrap v`
/// give the same value.
pub(super) fn v(value: usize) -> String {
    let s = format!("v={value}");
    assert!(s.len() <= value, "value {value} too small to pad");
    format!("{s:<value$}")
}

/// A source with one stream per `(labels, entries)`; entries of equal labels are merged.
pub(super) fn source(streams: Vec<(&str, Vec<Entry>)>) -> Arc<dyn LogSource> {
    let mut merged: Vec<(Labels, Vec<Entry>)> = Vec::new();
    for (labels, entries) in streams {
        let labels = Labels::parse(labels).expect("test labels parse").sorted();
        match merged.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, e)) => e.extend(entries),
            None => merged.push((labels, entries)),
        }
    }
    for (_, e) in &mut merged {
        e.sort_by_key(|e| e.ts);
    }
    Arc::new(MemorySource::new(merged))
}

pub(super) fn params_instant(t: f64) -> QueryParams {
    let ts = (t * S as f64) as i64;
    QueryParams {
        start: ts,
        end: ts,
        step: 0,
        interval: 0,
        direction: crate::entry::Direction::Forward,
        limit: 100,
        instant: true,
    }
}

pub(super) fn params_range(start: f64, end: f64, step: f64) -> QueryParams {
    QueryParams {
        start: (start * S as f64) as i64,
        end: (end * S as f64) as i64,
        step: (step * S as f64) as i64,
        interval: 0,
        direction: crate::entry::Direction::Forward,
        limit: 100,
        instant: false,
    }
}

pub(super) fn run_with(
    src: &Arc<dyn LogSource>,
    q: &str,
    params: QueryParams,
    limits: EvalLimits,
) -> Result<Value, EvalError> {
    let expr = parse_sample_expr(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(eval(src.clone(), &expr, &params, &limits))
}

/// An instant query's samples as `(labels, value)`, in result order.
pub(super) fn instant(src: &Arc<dyn LogSource>, q: &str, t: f64) -> Vec<(String, f64)> {
    match run_with(src, q, params_instant(t), EvalLimits::default()) {
        Ok(Value::Vector(v)) => v.into_iter().map(|s| (s.labels.to_string(), s.value)).collect(),
        other => panic!("{q}: expected a vector, got {other:?}"),
    }
}

/// A range query's series as `(labels, value per step)`, sorted by labels.
pub(super) fn range(
    src: &Arc<dyn LogSource>,
    q: &str,
    start: f64,
    end: f64,
    step: f64,
) -> Vec<(String, Vec<Option<f64>>)> {
    let params = params_range(start, end, step);
    match run_with(src, q, params, EvalLimits::default()) {
        Ok(Value::Matrix(m)) => m
            .into_iter()
            .map(|s| {
                let n = ((end - start) / step).round() as usize + 1;
                let mut values = vec![None; n];
                for p in s.points {
                    let i = ((p.ts - params.start) / params.step) as usize;
                    assert_eq!(params.start + i as i64 * params.step, p.ts, "{q}: point off the step grid");
                    values[i] = Some(p.value);
                }
                (s.labels.to_string(), values)
            })
            .collect(),
        other => panic!("{q}: expected a matrix, got {other:?}"),
    }
}

/// The error of a query.
pub(super) fn error(src: &Arc<dyn LogSource>, q: &str, params: QueryParams) -> EvalError {
    match run_with(src, q, params, EvalLimits::default()) {
        Err(e) => e,
        Ok(v) => panic!("{q}: expected an error, got {v:?}"),
    }
}

pub(super) fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Asserts an instant result (order-insensitive unless `ordered`).
pub(super) fn assert_vector(got: Vec<(String, f64)>, want: &[(&str, f64)], ordered: bool) {
    let mut got = got;
    let mut want: Vec<(String, f64)> = want.iter().map(|(l, v)| (normalize(l), *v)).collect();
    if !ordered {
        got.sort_by(|a, b| a.0.cmp(&b.0));
        want.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let ok = got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| g.0 == w.0 && same(g.1, w.1));
    assert!(ok, "got {got:?}\nwant {want:?}");
}

/// Asserts a range result; `want` values are per step, `None` for no point.
pub(super) fn assert_matrix(got: Vec<(String, Vec<Option<f64>>)>, want: &[(&str, &[Option<f64>])]) {
    let mut want: Vec<(String, Vec<Option<f64>>)> = want.iter().map(|(l, v)| (normalize(l), v.to_vec())).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let eq = |a: &[Option<f64>], b: &[Option<f64>]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => same(*x, *y),
                (None, None) => true,
                _ => false,
            })
    };
    let ok = got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| g.0 == w.0 && eq(&g.1, &w.1));
    assert!(ok, "got {got:?}\nwant {want:?}");
}

/// A label set in canonical (sorted) form.
pub(super) fn normalize(labels: &str) -> String {
    Labels::parse(labels).expect("labels parse").sorted().to_string()
}

/// `x` at every one of `n` steps.
pub(super) fn all(x: f64, n: usize) -> Vec<Option<f64>> {
    vec![Some(x); n]
}

fn three_apps() -> Arc<dyn LogSource> {
    source(vec![
        (r#"{app="foo", namespace="a", cluster="c1"}"#, repeat("xbar", 10.0, 10.0, 18)),
        (r#"{app="foo", namespace="a", cluster="c2"}"#, repeat("xbar", 5.0, 5.0, 36)),
        (r#"{app="bar", namespace="b", cluster="c2"}"#, repeat("xbar", 10.0, 10.0, 18)),
    ])
}

#[test]
fn sum_groups_and_without() {
    let src = three_apps();
    let q = r#"sum(count_over_time({app=~"foo|bar"}[1m]))"#;
    assert_matrix(range(&src, q, 20.0, 60.0, 20.0), &[("{}", &[Some(8.0), Some(16.0), Some(24.0)])]);
    let q = r#"sum(count_over_time({app=~"foo|bar"}[1m])) by (app)"#;
    assert_matrix(
        range(&src, q, 20.0, 60.0, 20.0),
        &[
            (r#"{app="foo"}"#, &[Some(6.0), Some(12.0), Some(18.0)]),
            (r#"{app="bar"}"#, &[Some(2.0), Some(4.0), Some(6.0)]),
        ],
    );
    let q = r#"sum(count_over_time({app=~"foo|bar"}[1m])) without (cluster)"#;
    assert_vector(
        instant(&src, q, 60.0),
        &[(r#"{app="foo", namespace="a"}"#, 18.0), (r#"{app="bar", namespace="b"}"#, 6.0)],
        false,
    );
    let q = r#"sum(count_over_time({app=~"foo|bar"}[1m])) without ()"#;
    assert_vector(
        instant(&src, q, 60.0),
        &[
            (r#"{app="foo", namespace="a", cluster="c1"}"#, 6.0),
            (r#"{app="foo", namespace="a", cluster="c2"}"#, 12.0),
            (r#"{app="bar", namespace="b", cluster="c2"}"#, 6.0),
        ],
        false,
    );
    let q = r#"sum(count_over_time({app=~"foo|bar"}[1m] offset 30s)) by (namespace, app)"#;
    assert_vector(
        instant(&src, q, 90.0),
        &[(r#"{app="foo", namespace="a"}"#, 18.0), (r#"{app="bar", namespace="b"}"#, 6.0)],
        false,
    );
}

fn four_pods() -> Arc<dyn LogSource> {
    source(vec![
        (r#"{app="foo", pod="a", zone="eu"}"#, repeat("xbar", 10.0, 10.0, 18)),
        (r#"{app="foo", pod="b", zone="eu"}"#, repeat("xbar", 5.0, 5.0, 36)),
        (r#"{app="bar", pod="a", zone="us"}"#, repeat("xbar", 5.0, 5.0, 36)),
        (r#"{app="bar", pod="b", zone="us"}"#, repeat("xbar", 2.0, 2.0, 90)),
    ])
}

#[test]
fn reducing_aggregations() {
    let src = four_pods();
    let sel = r#"count_over_time({app=~"foo|bar"}[1m])"#;
    assert_vector(instant(&src, &format!("avg({sel})"), 60.0), &[("{}", 15.0)], false);
    assert_vector(
        instant(&src, &format!("avg by (app) ({sel})"), 60.0),
        &[(r#"{app="foo"}"#, 9.0), (r#"{app="bar"}"#, 21.0)],
        false,
    );
    assert_matrix(range(&src, &format!("min({sel})"), 20.0, 60.0, 20.0), &[("{}", &[Some(2.0), Some(4.0), Some(6.0)])]);
    assert_matrix(
        range(&src, &format!("max({sel})"), 20.0, 60.0, 20.0),
        &[("{}", &[Some(10.0), Some(20.0), Some(30.0)])],
    );
    assert_vector(
        instant(&src, &format!("min without (pod) ({sel})"), 60.0),
        &[(r#"{app="foo", zone="eu"}"#, 6.0), (r#"{app="bar", zone="us"}"#, 12.0)],
        false,
    );
    assert_vector(instant(&src, &format!("count({sel})"), 60.0), &[("{}", 4.0)], false);
    assert_vector(instant(&src, &format!("stddev({sel})"), 60.0), &[("{}", 9.0)], false);
    assert_vector(
        instant(&src, &format!("stdvar by (app) ({sel})"), 60.0),
        &[(r#"{app="foo"}"#, 9.0), (r#"{app="bar"}"#, 81.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!("stddev without () ({sel})"), 60.0),
        &[
            (r#"{app="foo", pod="a", zone="eu"}"#, 0.0),
            (r#"{app="foo", pod="b", zone="eu"}"#, 0.0),
            (r#"{app="bar", pod="a", zone="us"}"#, 0.0),
            (r#"{app="bar", pod="b", zone="us"}"#, 0.0),
        ],
        false,
    );
}

#[test]
fn count_follows_streams_entering_the_window() {
    let src = source(vec![
        (r#"{app="foo", pod="a"}"#, repeat("xbar", 10.0, 10.0, 18)),
        (r#"{app="foo", pod="b"}"#, repeat("xbar", 30.0, 10.0, 16)),
        (r#"{app="bar", pod="a"}"#, repeat("xbar", 50.0, 10.0, 14)),
    ]);
    let q = r#"count by (app) (count_over_time({app=~"foo|bar"}[1m]))"#;
    assert_matrix(
        range(&src, q, 20.0, 60.0, 20.0),
        &[(r#"{app="foo"}"#, &[Some(1.0), Some(2.0), Some(2.0)]), (r#"{app="bar"}"#, &[None, None, Some(1.0)])],
    );
}

fn topk_source() -> Arc<dyn LogSource> {
    source(vec![
        (r#"{app="foo", pod="a"}"#, repeat("xbar", 10.0, 10.0, 18)),
        (r#"{app="foo", pod="b"}"#, repeat("xbar", 5.0, 5.0, 36)),
        (r#"{app="bar", pod="a"}"#, repeat("xbar", 4.0, 4.0, 45)),
        (r#"{app="bar", pod="b"}"#, repeat("xbar", 2.0, 2.0, 90)),
    ])
}

#[test]
fn topk_and_bottomk_select_series() {
    let src = topk_source();
    let sel = r#"count_over_time({app=~"foo|bar"}[1m])"#;
    assert_vector(
        instant(&src, &format!("topk(2, {sel})"), 60.0),
        &[(r#"{app="bar", pod="b"}"#, 30.0), (r#"{app="bar", pod="a"}"#, 15.0)],
        false,
    );
    assert_matrix(
        range(&src, &format!("topk(2, {sel})"), 20.0, 60.0, 20.0),
        &[
            (r#"{app="bar", pod="b"}"#, &[Some(10.0), Some(20.0), Some(30.0)]),
            (r#"{app="bar", pod="a"}"#, &[Some(5.0), Some(10.0), Some(15.0)]),
        ],
    );
    assert_vector(
        instant(&src, &format!("topk(1, {sel}) by (app)"), 60.0),
        &[(r#"{app="foo", pod="b"}"#, 12.0), (r#"{app="bar", pod="b"}"#, 30.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!("topk(1, {sel}) without (app, pod)"), 60.0),
        &[(r#"{app="bar", pod="b"}"#, 30.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!("bottomk(2, {sel})"), 60.0),
        &[(r#"{app="foo", pod="a"}"#, 6.0), (r#"{app="foo", pod="b"}"#, 12.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!("bottomk(1, {sel}) by (app)"), 60.0),
        &[(r#"{app="foo", pod="a"}"#, 6.0), (r#"{app="bar", pod="a"}"#, 15.0)],
        false,
    );
    assert_eq!(instant(&src, &format!("topk(1, {sel}) without ()"), 60.0).len(), 4);
}

#[test]
fn approx_topk_is_instant_only() {
    let src = topk_source();
    let q = r#"approx_topk(1, sum by (app, pod) (count_over_time({app=~"foo|bar"}[1m])))"#;
    assert_vector(instant(&src, q, 60.0), &[(r#"{app="bar", pod="b"}"#, 30.0)], false);
    let e = error(&src, q, params_range(20.0, 60.0, 20.0));
    assert!(e.to_string().contains("only supported on instant queries"), "{e}");
}

#[test]
fn sort_and_sort_desc_order_instant_results() {
    let src = source(vec![
        (r#"{app="foo", pod="a"}"#, repeat("xbar", 0.0, 10.0, 19)),
        (r#"{app="foo", pod="b"}"#, repeat("xbar", 0.0, 5.0, 37)),
        (r#"{app="bar", pod="a"}"#, repeat("xbar", 0.0, 20.0, 10)),
        (r#"{app="bar", pod="b"}"#, repeat("xbar", 0.0, 4.0, 46)),
    ]);
    let q = r#"sort_desc(rate({app=~"foo|bar"}[1m])) + 1"#;
    assert_vector(
        instant(&src, q, 60.0),
        &[
            (r#"{app="bar", pod="b"}"#, 1.25),
            (r#"{app="foo", pod="b"}"#, 1.2),
            (r#"{app="foo", pod="a"}"#, 1.1),
            (r#"{app="bar", pod="a"}"#, 1.05),
        ],
        true,
    );
    let q = r#"sort(count_over_time({app=~"foo|bar"}[1m]))"#;
    assert_vector(
        instant(&src, q, 60.0),
        &[
            (r#"{app="bar", pod="a"}"#, 3.0),
            (r#"{app="foo", pod="a"}"#, 6.0),
            (r#"{app="foo", pod="b"}"#, 12.0),
            (r#"{app="bar", pod="b"}"#, 15.0),
        ],
        true,
    );
    // Without sort, an instant vector comes sorted by labels.
    let got = instant(&src, r#"count_over_time({app=~"foo|bar"}[1m])"#, 60.0);
    let labels: Vec<&str> = got.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        labels,
        [r#"{app="bar", pod="a"}"#, r#"{app="bar", pod="b"}"#, r#"{app="foo", pod="a"}"#, r#"{app="foo", pod="b"}"#]
    );
}

#[test]
fn nan_and_infinities_in_aggregations() {
    let src =
        source(vec![(r#"{app="foo"}"#, repeat("x", 0.0, 10.0, 19)), (r#"{app="bar"}"#, repeat("x", 0.0, 10.0, 19))]);
    // sum of NaN is NaN; topk drops NaN below any number; sort puts it last.
    let nan = r#"(count_over_time({app="foo"}[1m]) / 0)"#;
    let inf = r#"(count_over_time({app="bar"}[1m]) / 0.0000001 * 1e308 * 10)"#;
    assert_vector(instant(&src, &format!("sum({nan} or {inf})"), 60.0), &[("{}", f64::NAN)], false);
    assert_vector(instant(&src, &format!("max({nan} or {inf})"), 60.0), &[("{}", f64::INFINITY)], false);
    assert_vector(instant(&src, &format!("min({nan} or {inf})"), 60.0), &[("{}", f64::INFINITY)], false);
    assert_vector(
        instant(&src, &format!("topk(1, {nan} or {inf})"), 60.0),
        &[(r#"{app="bar"}"#, f64::INFINITY)],
        false,
    );
    assert_vector(
        instant(&src, &format!("bottomk(1, {nan} or {inf})"), 60.0),
        &[(r#"{app="bar"}"#, f64::INFINITY)],
        false,
    );
    assert_vector(
        instant(&src, &format!("sort({nan} or {inf})"), 60.0),
        &[(r#"{app="bar"}"#, f64::INFINITY), (r#"{app="foo"}"#, f64::NAN)],
        true,
    );
    assert_vector(
        instant(&src, &format!("sort_desc({nan} or {inf})"), 60.0),
        &[(r#"{app="bar"}"#, f64::INFINITY), (r#"{app="foo"}"#, f64::NAN)],
        true,
    );
    let ninf = r#"(count_over_time({app="foo"}[1m]) / -0.0000001 * 1e308 * 10)"#;
    assert_vector(instant(&src, &format!("avg({inf} or {ninf})"), 60.0), &[("{}", f64::NAN)], false);
    assert_vector(
        instant(&src, &format!("stddev({inf} or count_over_time({{app=\"foo\"}}[1m]))"), 60.0),
        &[("{}", f64::NAN)],
        false,
    );
    assert_vector(instant(&src, &format!("count({nan} or {inf})"), 60.0), &[("{}", 2.0)], false);
    // avg keeps an infinite mean when a finite value is added, in either order.
    let fin = r#"count_over_time({app="foo"}[1m])"#;
    assert_vector(instant(&src, &format!("avg({fin} or {inf})"), 60.0), &[("{}", f64::INFINITY)], false);
    assert_vector(instant(&src, &format!("avg({inf} or {fin})"), 60.0), &[("{}", f64::INFINITY)], false);
}

#[test]
fn vector_and_literals() {
    let src = source(vec![(r#"{app="foo"}"#, repeat("xbar", 0.0, 10.0, 19))]);
    assert_vector(instant(&src, "vector(2)", 60.0), &[("{}", 2.0)], false);
    assert_matrix(range(&src, "vector(2.5)", 60.0, 180.0, 30.0), &[("{}", &all(2.5, 5))]);
    match run_with(&src, "1+1", params_instant(60.0), EvalLimits::default()) {
        Ok(Value::Scalar { ts, value }) => {
            assert_eq!(ts, 60 * S);
            assert_eq!(value, 2.0);
        }
        other => panic!("{other:?}"),
    }
    match run_with(&src, "10 / 0", params_instant(60.0), EvalLimits::default()) {
        Ok(Value::Scalar { value, .. }) => assert!(value.is_nan()),
        other => panic!("{other:?}"),
    }
    assert_matrix(range(&src, "2 ^ 3", 0.0, 20.0, 10.0), &[("{}", &all(8.0, 3))]);
    assert_matrix(range(&src, "(vector(1) / vector(0)) + 1", 60.0, 180.0, 30.0), &[("{}", &all(f64::NAN, 5))]);
}

#[test]
fn label_replace_rewrites_labels() {
    let src = source(vec![
        (r#"{app="foo", tier="1"}"#, repeat("xbar", 0.0, 10.0, 13)),
        (r#"{app="foobar", tier="2"}"#, repeat("xbar", 0.0, 10.0, 13)),
    ]);
    let sel = r#"count_over_time({app=~"foo.*"}[1m])"#;
    assert_vector(
        instant(&src, &format!(r#"label_replace({sel}, "tier", "", "app", "foo")"#), 60.0),
        &[(r#"{app="foo"}"#, 6.0), (r#"{app="foobar", tier="2"}"#, 6.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!(r#"label_replace({sel}, "app", "$1", "app", "foo(.*)")"#), 60.0),
        &[(r#"{tier="1"}"#, 6.0), (r#"{app="bar", tier="2"}"#, 6.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!(r#"label_replace({sel}, "app", "$1", "app", "f(.*)")"#), 60.0),
        &[(r#"{app="oo", tier="1"}"#, 6.0), (r#"{app="oobar", tier="2"}"#, 6.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!(r#"label_replace({sel}, "region", "eu", "missing", ".*")"#), 60.0),
        &[(r#"{app="foo", tier="1", region="eu"}"#, 6.0), (r#"{app="foobar", tier="2", region="eu"}"#, 6.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!(r#"label_replace({sel}, "x", "${{1}}-$$-$1x-$", "app", "(f)(o+)")"#), 60.0),
        &[(r#"{app="foo", tier="1", x="f-$--$"}"#, 6.0), (r#"{app="foobar", tier="2"}"#, 6.0)],
        false,
    );
    // Named groups, and a name Go allows twice (the first participating one is used).
    assert_vector(
        instant(
            &src,
            &format!(r#"label_replace({sel}, "x", "${{rest}}$first", "app", "(?P<first>f)(?P<rest>.*)")"#),
            60.0,
        ),
        &[(r#"{app="foo", tier="1", x="oof"}"#, 6.0), (r#"{app="foobar", tier="2", x="oobarf"}"#, 6.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!(r#"label_replace({sel}, "x", "$1$2", "app", "(?P<a>f)(?P<a>o)o")"#), 60.0),
        &[(r#"{app="foo", tier="1", x="fo"}"#, 6.0), (r#"{app="foobar", tier="2"}"#, 6.0)],
        false,
    );
}

#[test]
fn series_limit() {
    let src = topk_source();
    let q = r#"count_over_time({app=~"foo|bar"}[1m])"#;
    let limits = EvalLimits { max_series: 3 };
    for params in [params_instant(60.0), params_range(20.0, 60.0, 20.0)] {
        match run_with(&src, q, params, limits) {
            Err(EvalError::Limit(m)) => {
                assert!(m.starts_with("maximum number of series (3) reached for a single query"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(run_with(&src, q, params_instant(60.0), EvalLimits { max_series: 4 }).is_ok());
    // Only the result counts: an aggregation below the limit passes.
    assert!(run_with(&src, &format!("sum({q})"), params_instant(60.0), limits).is_ok());
}

#[test]
fn empty_results() {
    let src = source(vec![(r#"{app="a"}"#, repeat("keep", 0.0, 10.0, 61))]);
    assert!(instant(&src, r#"count_over_time({app="a"}[1m])"#, 720.0).is_empty());
    assert!(instant(&src, r#"count_over_time({app="none"}[1m])"#, 60.0).is_empty());
    assert!(range(&src, r#"sum(rate({app="none"}[1m]))"#, 0.0, 600.0, 60.0).is_empty());
    assert_matrix(
        range(&src, r#"count_over_time({app="a"}[1m])"#, 600.0, 720.0, 60.0),
        &[(r#"{app="a"}"#, &[Some(6.0), None, None])],
    );
}

#[test]
fn bad_steps_are_rejected() {
    let src = source(vec![(r#"{app="a"}"#, at("x", 1.0))]);
    let e = error(&src, r#"count_over_time({app="a"}[1m])"#, params_range(0.0, 60.0, 0.0));
    assert!(e.to_string().contains("zero or negative query resolution step"), "{e}");
    let e = error(&src, r#"count_over_time({app="a"}[1m])"#, params_range(0.0, 100000.0, 1.0));
    assert!(e.to_string().contains("11,000 points"), "{e}");
}
