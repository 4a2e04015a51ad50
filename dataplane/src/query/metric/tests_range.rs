//! Range aggregations: window bounds, offsets, every operation, absent series, overlapping
//! blocks, pipeline errors, and many streams and blocks on several threads.

use std::sync::Arc;

use async_trait::async_trait;

use crate::entry::Entry;
use crate::labels::Labels;
use crate::logql::Matcher;
use crate::query::source::matches_all;
use crate::query::{EvalError, LogSource, MemorySource, StreamBlocks};

use super::tests::*;

#[test]
fn windows_are_left_open_right_closed() {
    let src = source(vec![
        (r#"{app="foo"}"#, repeat("xbar", 0.0, 10.0, 13)),
        (r#"{app="noise"}"#, repeat("noise", 0.0, 10.0, 13)),
    ]);
    assert_matrix(range(&src, r#"rate({app="foo"}[30s])"#, 60.0, 120.0, 15.0), &[(r#"{app="foo"}"#, &all(0.1, 5))]);
    assert_matrix(
        range(&src, r#"bytes_over_time({app="foo"}[30s])"#, 60.0, 120.0, 15.0),
        &[(r#"{app="foo"}"#, &all(12.0, 5))],
    );
    // A sample exactly on a window's lower bound is out, on its upper bound in.
    assert_vector(instant(&src, r#"count_over_time({app="foo"}[10s])"#, 60.0), &[(r#"{app="foo"}"#, 1.0)], false);
    assert_vector(instant(&src, r#"count_over_time({app="foo"}[10s])"#, 65.0), &[(r#"{app="foo"}"#, 1.0)], false);
    assert_vector(instant(&src, r#"count_over_time({app="foo"}[5s])"#, 65.0), &[], false);
}

#[test]
fn offsets_shift_windows_back() {
    let src = source(vec![(r#"{app="a"}"#, repeat("keep", 0.0, 10.0, 61))]);
    assert_vector(instant(&src, r#"count_over_time({app="a"}[1m] offset 90s)"#, 90.0), &[(r#"{app="a"}"#, 1.0)], false);
    assert_matrix(
        range(&src, r#"count_over_time({app="a"}[1m] offset 90s)"#, 60.0, 150.0, 30.0),
        &[(r#"{app="a"}"#, &[None, Some(1.0), Some(4.0), Some(6.0)])],
    );
    assert_matrix(
        range(&src, r#"count_over_time({app="a"}[10s])"#, 40.0, 60.0, 10.0),
        &[(r#"{app="a"}"#, &all(1.0, 3))],
    );
    assert_matrix(
        range(&src, r#"count_over_time({app="a"}[1m])"#, 60.0, 180.0, 90.0),
        &[(r#"{app="a"}"#, &all(6.0, 2))],
    );

    let src =
        source(vec![(r#"{app="a"}"#, repeat("xbar", 0.0, 10.0, 13)), (r#"{app="b"}"#, repeat("xxbar", 0.0, 10.0, 13))]);
    let q = r#"bytes_rate({app=~"a|b"}[20s] offset 90s)"#;
    assert_vector(instant(&src, q, 90.0), &[(r#"{app="a"}"#, 0.2), (r#"{app="b"}"#, 0.25)], false);
    assert_matrix(
        range(&src, q, 60.0, 150.0, 30.0),
        &[
            (r#"{app="a"}"#, &[None, Some(0.2), Some(0.4), Some(0.4)]),
            (r#"{app="b"}"#, &[None, Some(0.25), Some(0.5), Some(0.5)]),
        ],
    );
}

#[test]
fn sub_second_ranges() {
    let src = source(vec![(r#"{app="b"}"#, repeat("keep", 0.1, 0.2, 6))]);
    assert_vector(instant(&src, r#"rate({app="b"}[500ms])"#, 0.5), &[(r#"{app="b"}"#, 6.0)], false);
    assert_matrix(range(&src, r#"rate({app="b"}[500ms])"#, 0.5, 1.1, 0.6), &[(r#"{app="b"}"#, &all(6.0, 2))]);
    assert_matrix(
        range(&src, r#"rate({app="b"}[500ms] offset 500ms)"#, 1.0, 1.6, 0.3),
        &[(r#"{app="b"}"#, &[Some(6.0), Some(4.0), Some(6.0)])],
    );
}

#[test]
fn bytes_over_time_counts_line_bytes() {
    let src = source(vec![(r#"{app="a"}"#, [at("a", 20.0), at("bb", 30.0), at("ccc", 40.0)].concat())]);
    assert_vector(instant(&src, r#"bytes_over_time({app="a"}[1m])"#, 60.0), &[(r#"{app="a"}"#, 6.0)], false);
    assert_matrix(
        range(&src, r#"bytes_over_time({app="a"}[1m])"#, 40.0, 60.0, 20.0),
        &[(r#"{app="a"}"#, &all(6.0, 2))],
    );
    assert_matrix(
        range(&src, r#"bytes_over_time({app="a"}[1m])"#, 60.0, 130.0, 70.0),
        &[(r#"{app="a"}"#, &[Some(6.0), None])],
    );
    assert_vector(
        instant(&src, r#"bytes_over_time({app="a"}[20s] offset 20s)"#, 60.0),
        &[(r#"{app="a"}"#, 5.0)],
        false,
    );
}

fn values(points: &[(f64, usize)]) -> Vec<Entry> {
    points.iter().flat_map(|&(t, x)| at(&v(x), t)).collect()
}

#[test]
fn first_and_last_over_time() {
    let src = source(vec![(r#"{app="a"}"#, values(&[(10.0, 10), (20.0, 20), (30.0, 30), (90.0, 40)]))]);
    let first = r#"first_over_time({app="a"} | logfmt | unwrap v [20s])"#;
    let last = r#"last_over_time({app="a"} | logfmt | unwrap v [20s])"#;
    assert_vector(
        instant(&src, r#"first_over_time({app="a"} | logfmt | unwrap v [1m])"#, 60.0),
        &[(r#"{app="a"}"#, 10.0)],
        false,
    );
    assert_vector(instant(&src, first, 40.0), &[(r#"{app="a"}"#, 30.0)], false);
    assert_vector(instant(&src, last, 40.0), &[(r#"{app="a"}"#, 30.0)], false);
    assert_matrix(range(&src, last, 20.0, 40.0, 10.0), &[(r#"{app="a"}"#, &[Some(20.0), Some(30.0), Some(30.0)])]);
    assert_matrix(range(&src, first, 30.0, 90.0, 30.0), &[(r#"{app="a"}"#, &[Some(20.0), None, Some(40.0)])]);
    assert_matrix(range(&src, last, 30.0, 90.0, 30.0), &[(r#"{app="a"}"#, &[Some(30.0), None, Some(40.0)])]);
    let off = r#"first_over_time({app="a"} | logfmt | unwrap v [20s] offset 30s)"#;
    assert_matrix(range(&src, off, 60.0, 120.0, 30.0), &[(r#"{app="a"}"#, &[Some(20.0), None, Some(40.0)])]);
}

#[test]
fn grouped_unwrapped_aggregations_merge_streams() {
    let src = source(vec![
        (r#"{app="a", pod="1"}"#, values(&[(20.0, 20), (30.0, 40)])),
        (r#"{app="a", pod="2"}"#, values(&[(40.0, 100), (50.0, 200)])),
    ]);
    let u = r#"{app="a"} | logfmt | unwrap v [1m]"#;
    assert_vector(
        instant(&src, &format!("first_over_time({u}) by (pod)"), 60.0),
        &[(r#"{pod="1"}"#, 20.0), (r#"{pod="2"}"#, 100.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!("first_over_time({u}) without (pod)"), 60.0),
        &[(r#"{app="a"}"#, 20.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!("last_over_time({u}) without (pod)"), 60.0),
        &[(r#"{app="a"}"#, 200.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!("quantile_over_time(0.5, {u}) by (app)"), 60.0),
        &[(r#"{app="a"}"#, 70.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!("quantile_over_time(0.5, {u}) by (pod)"), 60.0),
        &[(r#"{pod="1"}"#, 30.0), (r#"{pod="2"}"#, 150.0)],
        false,
    );
    assert_vector(instant(&src, &format!("avg_over_time({u}) by ()"), 60.0), &[("{}", 90.0)], false);
    assert_vector(
        instant(&src, &format!("max_over_time({u}) by (pod)"), 60.0),
        &[(r#"{pod="1"}"#, 40.0), (r#"{pod="2"}"#, 200.0)],
        false,
    );
    assert_vector(instant(&src, &format!("min_over_time({u}) without (pod)"), 60.0), &[(r#"{app="a"}"#, 20.0)], false);
    assert_vector(
        instant(&src, &format!("stddev_over_time({u}) by (pod)"), 60.0),
        &[(r#"{pod="1"}"#, 10.0), (r#"{pod="2"}"#, 50.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!("stdvar_over_time({u}) by (pod)"), 60.0),
        &[(r#"{pod="1"}"#, 100.0), (r#"{pod="2"}"#, 2500.0)],
        false,
    );
    // A narrow window only sees the samples near each step.
    let narrow = r#"first_over_time({app="a"} | logfmt | unwrap v [10s]) by (pod)"#;
    assert_matrix(
        range(&src, narrow, 20.0, 50.0, 10.0),
        &[
            (r#"{pod="1"}"#, &[Some(20.0), Some(40.0), None, None]),
            (r#"{pod="2"}"#, &[None, None, Some(100.0), Some(200.0)]),
        ],
    );
}

#[test]
fn quantile_interpolates_between_ranks() {
    let src = source(vec![(
        r#"{app="a"}"#,
        values(&[(10.0, 10), (20.0, 20), (30.0, 30), (40.0, 40), (50.0, 50), (110.0, 60)]),
    )]);
    let q = |phi: &str, r: &str| format!(r#"quantile_over_time({phi}, {{app="a"}} | logfmt | unwrap v [{r}])"#);
    assert_vector(instant(&src, &q("0", "1m"), 60.0), &[(r#"{app="a"}"#, 10.0)], false);
    assert_vector(instant(&src, &q("0.4", "1m"), 60.0), &[(r#"{app="a"}"#, 26.0)], false);
    assert_vector(instant(&src, &q("0.5", "1m"), 60.0), &[(r#"{app="a"}"#, 30.0)], false);
    assert_vector(instant(&src, &q("1", "1m"), 60.0), &[(r#"{app="a"}"#, 50.0)], false);
    assert_vector(instant(&src, &q("1.5", "1m"), 60.0), &[(r#"{app="a"}"#, f64::INFINITY)], false);
    assert_matrix(range(&src, &q("0.5", "1m"), 30.0, 60.0, 30.0), &[(r#"{app="a"}"#, &[Some(20.0), Some(30.0)])]);
    assert_matrix(
        range(&src, &q("0.5", "15s"), 50.0, 110.0, 30.0),
        &[(r#"{app="a"}"#, &[Some(45.0), None, Some(60.0)])],
    );
    assert_vector(instant(&src, &q("0.5", "5s"), 10.0), &[(r#"{app="a"}"#, 10.0)], false);
}

#[test]
fn sums_averages_and_rates_of_unwrapped_values() {
    let src = source(vec![
        (r#"{app="a", c="multi"}"#, values(&[(20.0, 7), (30.0, 13)])),
        (r#"{app="a", c="late"}"#, values(&[(80.0, 10), (90.0, 30)])),
    ]);
    let u = r#"{app="a"} | logfmt | unwrap v"#;
    assert_vector(
        instant(&src, &format!("avg_over_time({u} [1m])"), 60.0),
        &[(r#"{app="a", c="multi"}"#, 10.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!("sum_over_time({u} [1m])"), 60.0),
        &[(r#"{app="a", c="multi"}"#, 20.0)],
        false,
    );
    assert_vector(instant(&src, &format!("rate({u} [20s])"), 30.0), &[(r#"{app="a", c="multi"}"#, 1.0)], false);
    assert_matrix(
        range(&src, &format!("sum_over_time({u} [1m])"), 40.0, 100.0, 30.0),
        &[
            (r#"{app="a", c="multi"}"#, &[Some(20.0), Some(20.0), None]),
            (r#"{app="a", c="late"}"#, &[None, None, Some(40.0)]),
        ],
    );
    assert_matrix(
        range(&src, &format!("stdvar_over_time({u} [20s] offset 20s)"), 110.0, 150.0, 20.0),
        &[(r#"{app="a", c="late"}"#, &[Some(100.0), None, None])],
    );
    assert_matrix(
        range(&src, &format!("max_over_time({u} [1m])"), 40.0, 60.0, 20.0),
        &[(r#"{app="a", c="multi"}"#, &all(13.0, 2))],
    );
    assert_matrix(
        range(&src, &format!("min_over_time({u} [1m])"), 40.0, 60.0, 20.0),
        &[(r#"{app="a", c="multi"}"#, &all(7.0, 2))],
    );
}

#[test]
fn rate_counter_extrapolates_like_prometheus() {
    let counter = |pts: &[(f64, usize)]| source(vec![(r#"{app="a"}"#, values(pts))]);
    let q = |r: &str| format!(r#"rate_counter({{app="a"}} | logfmt | unwrap v [{r}])"#);
    let src = counter(&[
        (90.0, 100),
        (120.0, 130),
        (150.0, 160),
        (180.0, 250),
        (210.0, 280),
        (240.0, 340),
        (330.0, 400),
        (360.0, 430),
        (390.0, 460),
        (420.0, 550),
        (450.0, 580),
        (480.0, 640),
    ]);
    assert_vector(instant(&src, &q("1m"), 480.0), &[(r#"{app="a"}"#, 2.0)], false);
    assert_matrix(range(&src, &q("1m"), 60.0, 180.0, 60.0), &[(r#"{app="a"}"#, &[None, Some(1.0), Some(3.0)])]);
    assert_matrix(range(&src, &q("3m"), 240.0, 360.0, 60.0), &[(r#"{app="a"}"#, &[Some(1.6), Some(1.5), Some(1.0)])]);
    assert_vector(instant(&src, &q("10s"), 90.0), &[(r#"{app="a"}"#, 0.0)], false);
    assert_vector(instant(&src, &q("10s"), 300.0), &[], false);
    // A reset adds the value before the drop back.
    let src = counter(&[(30.0, 30), (60.0, 60), (90.0, 90), (120.0, 30), (150.0, 60)]);
    assert_vector(instant(&src, &q("2m"), 150.0), &[(r#"{app="a"}"#, 1.0)], false);
    assert_vector(instant(&src, &q("1m"), 120.0), &[(r#"{app="a"}"#, 1.0)], false);
    // Never extrapolated below zero.
    let src = counter(&[(75.0, 30), (105.0, 90), (135.0, 150)]);
    assert_vector(instant(&src, &q("1m"), 105.0), &[(r#"{app="a"}"#, 1.5)], false);
    assert_vector(instant(&src, &q("1m"), 135.0), &[(r#"{app="a"}"#, 2.0)], false);
    // Far edges extrapolate only half an interval.
    let src = counter(&[(150.0, 600), (180.0, 660)]);
    assert_matrix(range(&src, &q("90s"), 180.0, 210.0, 30.0), &[(r#"{app="a"}"#, &[Some(1.0), Some(2.0)])]);
    assert_vector(instant(&src, &q("150s"), 240.0), &[(r#"{app="a"}"#, 0.8)], false);
}

#[test]
fn absent_over_time_reports_selector_labels() {
    let src = source(vec![
        (r#"{job="x", env="prod"}"#, at("present", 60.0)),
        (r#"{app="noise"}"#, repeat("noise", 20.0, 10.0, 12)),
    ]);
    let q = r#"absent_over_time({job="x", env=~".+"}[1m])"#;
    assert_vector(instant(&src, q, 120.0), &[(r#"{job="x"}"#, 1.0)], false);
    assert_matrix(range(&src, q, 120.0, 180.0, 60.0), &[(r#"{job="x"}"#, &all(1.0, 2))]);
    assert!(range(&src, q, 60.0, 110.0, 50.0).is_empty());
    assert!(instant(&src, r#"absent_over_time({job="x", env=~".+"}[1m] offset 60s)"#, 120.0).is_empty());
    assert_vector(instant(&src, r#"absent_over_time({job="y", job="z"}[1m])"#, 60.0), &[("{}", 1.0)], false);
    let src = source(vec![(r#"{app="foo"}"#, repeat("xbar", 130.0, 30.0, 6))]);
    assert_matrix(
        range(&src, r#"absent_over_time({app="foo"}[1m])"#, 60.0, 420.0, 60.0),
        &[(r#"{app="foo"}"#, &[Some(1.0), Some(1.0), None, None, None, Some(1.0), Some(1.0)])],
    );
}

#[test]
fn series_with_error_labels_fail_the_query() {
    let src = source(vec![
        (
            r#"{app="a", __error__="SampleExtractionErr", __error_details__="strconv.ParseFloat: parsing \"x\": invalid syntax"}"#,
            repeat("x", 10.0, 10.0, 3),
        ),
        (r#"{app="b"}"#, repeat("x", 10.0, 10.0, 3)),
    ]);
    let e = error(&src, r#"sum(count_over_time({app=~"a|b"}[1m]))"#, params_instant(60.0));
    let m = e.to_string();
    assert!(
        m.starts_with("pipeline error: 'SampleExtractionErr' for series: '{__error__=\"SampleExtractionErr\""),
        "{m}"
    );
    assert!(m.contains(r#"parsing \"x\": invalid syntax"#), "{m}");
    assert!(matches!(e, EvalError::Invalid(_)));
    // Outside every window the error series does not count.
    assert_vector(instant(&src, r#"count_over_time({app=~"a|b"}[1m])"#, 200.0), &[], false);
}

/// A source serving each stream's blocks twice, flagged as overlapping (like a replica and a
/// flushed copy of the same chunk).
struct Doubled(MemorySource);

#[async_trait]
impl LogSource for Doubled {
    async fn select(&self, matchers: &[Matcher], from: i64, through: i64) -> Result<Vec<StreamBlocks>, EvalError> {
        let mut out = self.0.select(matchers, from, through).await?;
        for s in &mut out {
            let copy = s.blocks.clone();
            s.blocks.extend(copy);
            s.blocks.sort_by_key(|b| b.meta().min_ts);
            s.overlapping = true;
        }
        Ok(out)
    }
}

#[test]
fn overlapping_blocks_are_merged_without_duplicates() {
    let mut entries = repeat("line one", 0.0, 1.0, 3000);
    // Same timestamp, different lines: both count.
    entries.extend(repeat("line two", 0.0, 1.0, 3000));
    entries.sort_by_key(|e| e.ts);
    let labels = Labels::parse(r#"{app="a"}"#).expect("labels");
    let src: Arc<dyn LogSource> = Arc::new(Doubled(MemorySource::new(vec![(labels, entries)])));
    assert_vector(instant(&src, r#"count_over_time({app="a"}[1m])"#, 60.0), &[(r#"{app="a"}"#, 120.0)], false);
    assert_matrix(
        range(&src, r#"bytes_over_time({app="a"}[10s])"#, 100.0, 2000.0, 100.0),
        &[(r#"{app="a"}"#, &all(160.0, 20))],
    );
    let entries = [repeat(&v(8), 0.0, 1.0, 30), repeat(&v(9), 0.5, 1.0, 30)].concat();
    let mut entries = entries;
    entries.sort_by_key(|e| e.ts);
    let labels = Labels::parse(r#"{app="a"}"#).expect("labels");
    let src: Arc<dyn LogSource> = Arc::new(Doubled(MemorySource::new(vec![(labels, entries)])));
    assert_vector(
        instant(&src, r#"avg_over_time({app="a"} | logfmt | unwrap v [1m])"#, 29.75),
        &[(r#"{app="a"}"#, 8.5)],
        false,
    );
}

#[test]
fn many_streams_and_blocks_on_all_threads() {
    // 40 streams x 4000 lines of ~40 bytes: several 64 KiB blocks per stream, many work units.
    let mut streams = Vec::new();
    for s in 0..40 {
        let labels = format!(r#"{{app="app{}", pod="pod{s}"}}"#, s % 4);
        let entries: Vec<Entry> = (0..4000)
            .map(|i| Entry::new(i64::from(i) * S / 4 + i64::from(s), format!("line {i:06} of stream {s:03} ok")))
            .collect();
        streams.push((labels, entries));
    }
    let src = source(streams.iter().map(|(l, e)| (l.as_str(), e.clone())).collect());
    // Each stream has 4 lines per second: 240 per minute.
    let got = range(&src, r#"sum by (app) (count_over_time({app=~"app.*"}[1m]))"#, 60.0, 960.0, 60.0);
    let want: Vec<(String, Vec<Option<f64>>)> =
        (0..4).map(|a| (format!(r#"{{app="app{a}"}}"#), all(2400.0, 16))).collect();
    assert_matrix(got, &want.iter().map(|(l, v)| (l.as_str(), v.as_slice())).collect::<Vec<_>>());
    let got = range(&src, r#"sum(bytes_rate({app=~"app.*"}[2m]))"#, 120.0, 960.0, 60.0);
    // 40 streams x 480 lines per 2 minutes.
    let len = "line 000000 of stream 000 ok".len() as f64;
    assert_matrix(got, &[("{}", &all(40.0 * 480.0 * len / 120.0, 15))]);
    let topk = instant(&src, r#"topk(3, sum by (pod) (count_over_time({app="app1"}[5m])))"#, 900.0);
    assert_eq!(topk.len(), 3);
    assert!(topk.iter().all(|(_, v)| *v == 1200.0), "{topk:?}");
}

#[test]
fn source_matching_uses_all_matchers() {
    // Sanity of the helper the tests rely on.
    let labels = Labels::parse(r#"{app="a", env="prod"}"#).expect("labels");
    let m = crate::logql::parse_matchers(r#"{app="a", env=~"p.*"}"#).expect("matchers");
    assert!(matches_all(&labels, &m));
}

#[test]
fn locator_agrees_with_direct_computation() {
    use super::window::{Locator, Window};
    let mut seed = 11u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    for _ in 0..200 {
        let w = Window {
            first: next() as i64 % 1000 - 500,
            step: 1 + (next() % 100) as i64,
            n: 1 + (next() % 20) as usize,
            range: 1 + (next() % 300) as i64,
        };
        let mut loc = Locator::new(w);
        let mut ts: Vec<i64> = (0..300).map(|_| next() as i64 % 4000 - 1500).collect();
        if next() % 2 == 0 {
            ts.sort_unstable();
        }
        for t in ts {
            assert_eq!(loc.locate(t), w.steps_of(t), "{w:?} at {t}");
        }
    }
}

#[test]
fn too_many_series_times_steps_fail_instead_of_exhausting_memory() {
    let streams: Vec<(String, Vec<Entry>)> =
        (0..1600).map(|i| (format!(r#"{{app="a", pod="p{i}"}}"#), at("x", f64::from(i) + 1.0))).collect();
    let src = source(streams.iter().map(|(l, e)| (l.as_str(), e.clone())).collect());
    let e = error(&src, r#"sum(count_over_time({app="a"}[1s])) by (pod)"#, params_range(0.0, 11000.0, 1.0));
    assert!(matches!(&e, EvalError::Limit(m) if m.contains("memory budget")), "{e}");
    // The same series over few steps are fine.
    assert_eq!(range(&src, r#"count(count_over_time({app="a"}[1h]))"#, 3600.0, 3600.0, 1.0).len(), 1);
}
