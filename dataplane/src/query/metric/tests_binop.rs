//! Binary operations: literals, vector matching, `bool`, set operators, group modifiers and
//! their errors, NaN and infinities.

use std::sync::Arc;

use crate::query::LogSource;

use super::tests::*;

fn foo_bar() -> Arc<dyn LogSource> {
    source(vec![
        (r#"{app="foo"}"#, repeat("x", 0.0, 10.0, 19)),
        (r#"{app="bar"}"#, repeat("x", 0.0, 20.0, 10)),
        (r#"{app="noise"}"#, repeat("noise", 0.0, 10.0, 19)),
    ])
}

#[test]
fn vector_and_literal_arithmetic() {
    let src = foo_bar();
    assert_vector(instant(&src, r#"count_over_time({app="foo"}[1m]) + 1"#, 60.0), &[(r#"{app="foo"}"#, 7.0)], false);
    assert_matrix(
        range(&src, r#"1 + count_over_time({app="foo"}[1m])"#, 60.0, 180.0, 30.0),
        &[(r#"{app="foo"}"#, &all(7.0, 5))],
    );
    assert_vector(instant(&src, r#"1 - rate({app="bar"}[1m])"#, 60.0), &[(r#"{app="bar"}"#, 0.95)], false);
    assert_vector(instant(&src, r#"rate({app="bar"}[1m]) - 1 / 2"#, 60.0), &[(r#"{app="bar"}"#, -0.45)], false);
    assert_vector(instant(&src, r#"30 / count_over_time({app="foo"}[1m])"#, 60.0), &[(r#"{app="foo"}"#, 5.0)], false);
    assert_vector(instant(&src, r#"16 % count_over_time({app="foo"}[1m])"#, 60.0), &[(r#"{app="foo"}"#, 4.0)], false);
    assert_vector(instant(&src, r#"count_over_time({app="bar"}[1m]) ^ 2"#, 60.0), &[(r#"{app="bar"}"#, 9.0)], false);
    assert_vector(
        instant(&src, r#"count_over_time({app="foo"}[1m]) / 0"#, 60.0),
        &[(r#"{app="foo"}"#, f64::NAN)],
        false,
    );
    assert_vector(
        instant(&src, r#"count_over_time({app="foo"}[1m]) % 0"#, 60.0),
        &[(r#"{app="foo"}"#, f64::NAN)],
        false,
    );
    assert_vector(
        instant(&src, r#"count_over_time({app="foo"}[1m]) * 0 ^ -2"#, 60.0),
        &[(r#"{app="foo"}"#, f64::INFINITY)],
        false,
    );
    assert_vector(
        instant(&src, r#"(count_over_time({app="foo"}[1m]) / 0) ^ 0"#, 60.0),
        &[(r#"{app="foo"}"#, 1.0)],
        false,
    );
    assert_vector(
        instant(&src, r#"(0 - count_over_time({app="foo"}[1m])) ^ 0.5"#, 60.0),
        &[(r#"{app="foo"}"#, f64::NAN)],
        false,
    );
    assert_vector(instant(&src, r#"10 / ((rate({app="foo"}[1m]) / 5))"#, 60.0), &[(r#"{app="foo"}"#, 500.0)], false);
}

#[test]
fn vector_and_literal_comparisons() {
    let src = foo_bar();
    let sel = r#"count_over_time({app=~"foo|bar"}[1m])"#;
    assert_matrix(range(&src, &format!("{sel} > 4"), 60.0, 180.0, 30.0), &[(r#"{app="foo"}"#, &all(6.0, 5))]);
    assert_matrix(range(&src, &format!("4 > {sel}"), 60.0, 180.0, 30.0), &[(r#"{app="bar"}"#, &all(3.0, 5))]);
    assert_vector(instant(&src, &format!("4 < {sel}"), 60.0), &[(r#"{app="foo"}"#, 6.0)], false);
    assert_vector(instant(&src, &format!("{sel} <= 3"), 60.0), &[(r#"{app="bar"}"#, 3.0)], false);
    assert_vector(instant(&src, &format!("3 >= {sel}"), 60.0), &[(r#"{app="bar"}"#, 3.0)], false);
    assert_vector(instant(&src, &format!("6 == {sel}"), 60.0), &[(r#"{app="foo"}"#, 6.0)], false);
    assert_vector(instant(&src, &format!("{sel} != 6"), 60.0), &[(r#"{app="bar"}"#, 3.0)], false);
    assert_matrix(
        range(&src, &format!("{sel} == bool 6"), 60.0, 180.0, 30.0),
        &[(r#"{app="foo"}"#, &all(1.0, 5)), (r#"{app="bar"}"#, &all(0.0, 5))],
    );
    assert_vector(
        instant(&src, &format!("6 == bool {sel}"), 60.0),
        &[(r#"{app="foo"}"#, 1.0), (r#"{app="bar"}"#, 0.0)],
        false,
    );
    // NaN compares false except with !=, which keeps the NaN itself.
    let nan = r#"(count_over_time({app="foo"}[1m]) / 0)"#;
    assert_vector(instant(&src, &format!("{nan} > 1"), 60.0), &[], false);
    assert_vector(instant(&src, &format!("1 > {nan}"), 60.0), &[], false);
    assert_vector(instant(&src, &format!("{nan} != 1"), 60.0), &[(r#"{app="foo"}"#, f64::NAN)], false);
    assert_vector(instant(&src, &format!("{nan} != bool 1"), 60.0), &[(r#"{app="foo"}"#, 1.0)], false);
    assert_vector(instant(&src, &format!("1 > bool {nan}"), 60.0), &[(r#"{app="foo"}"#, 0.0)], false);
}

#[test]
fn bool_comparison_keeps_every_step() {
    let src = source(vec![
        (r#"{app="foo"}"#, [repeat("x", 10.0, 10.0, 5), at("x", 100.0)].concat()),
        (r#"{app="noise"}"#, repeat("noise", 10.0, 10.0, 6)),
    ]);
    let sel = r#"count_over_time({app="foo"}[1m])"#;
    assert_matrix(
        range(&src, &format!("{sel} > 3"), 60.0, 120.0, 30.0),
        &[(r#"{app="foo"}"#, &[Some(5.0), None, None])],
    );
    assert_matrix(
        range(&src, &format!("{sel} > bool 3"), 60.0, 120.0, 30.0),
        &[(r#"{app="foo"}"#, &[Some(1.0), Some(0.0), Some(0.0)])],
    );
}

#[test]
fn set_operators() {
    let src = foo_bar();
    assert_vector(
        instant(&src, r#"rate({app="foo"}[1m]) or rate({app="bar"}[1m])"#, 60.0),
        &[(r#"{app="foo"}"#, 0.1), (r#"{app="bar"}"#, 0.05)],
        false,
    );
    assert_vector(
        instant(&src, r#"rate({app="foo"}[1m]) or vector(0)"#, 60.0),
        &[(r#"{app="foo"}"#, 0.1), ("{}", 0.0)],
        false,
    );
    assert_matrix(
        range(&src, r#"rate({app=~"foo|bar"}[1m]) and rate({app="bar"}[1m])"#, 60.0, 180.0, 30.0),
        &[(r#"{app="bar"}"#, &all(0.05, 5))],
    );
    assert_vector(
        instant(&src, r#"rate({app=~"foo|bar"}[1m]) unless rate({app="bar"}[1m])"#, 60.0),
        &[(r#"{app="foo"}"#, 0.1)],
        false,
    );
    assert_vector(
        instant(&src, r#"rate({app="foo"}[1m]) or rate({app="bar"}[1m]) and vector(0)"#, 60.0),
        &[(r#"{app="foo"}"#, 0.1)],
        false,
    );
    // `or vector(0)` fills the steps where the left side has no point.
    let src = source(vec![(r#"{app="foo"}"#, repeat("x", 0.0, 10.0, 7))]);
    assert_matrix(
        range(&src, r#"sum(count_over_time({app="foo"}[1m])) or vector(0)"#, 60.0, 180.0, 60.0),
        &[("{}", &[Some(6.0), Some(0.0), Some(0.0)])],
    );
}

#[test]
fn vector_matching_on_all_labels() {
    let src = foo_bar();
    assert_vector(
        instant(&src, r#"rate({app=~"foo|bar"}[1m]) + rate({app="bar"}[1m])"#, 60.0),
        &[(r#"{app="bar"}"#, 0.1)],
        false,
    );
    assert_vector(
        instant(&src, r#"count_over_time({app=~"foo|bar"}[1m]) * count_over_time({app="bar"}[1m])"#, 60.0),
        &[(r#"{app="bar"}"#, 9.0)],
        false,
    );
    assert_vector(
        instant(&src, r#"count_over_time({app="bar"}[1m]) ^ count_over_time({app="bar"}[1m])"#, 60.0),
        &[(r#"{app="bar"}"#, 27.0)],
        false,
    );
    assert_vector(
        instant(&src, r#"sum(count_over_time({app="foo"}[1m])) / vector(0)"#, 60.0),
        &[("{}", f64::NAN)],
        false,
    );
    assert!(
        instant(&src, r#"count_over_time({app="foo"}[1m]) > bool count_over_time({app="bar"}[1m])"#, 60.0).is_empty()
    );
    assert_vector(
        instant(
            &src,
            r#"sum without(app) (count_over_time({app="foo"}[1m])) > bool sum without(app) (count_over_time({app="bar"}[1m]))"#,
            60.0,
        ),
        &[("{}", 1.0)],
        false,
    );
    let q = r#"sum by (app) (rate({app=~"foo|bar"}[1m])) + sum by (app) (rate({app=~"foo|bar"}[1m])) / sum by (app) (rate({app=~"foo|bar"}[1m]))"#;
    assert_matrix(
        range(&src, q, 60.0, 180.0, 30.0),
        &[(r#"{app="foo"}"#, &all(1.1, 5)), (r#"{app="bar"}"#, &all(1.05, 5))],
    );
}

fn left_right() -> Arc<dyn LogSource> {
    source(vec![
        (r#"{app="left",  id="lt"}"#, repeat("x", 0.0, 20.0, 10)),
        (r#"{app="left",  id="eq"}"#, repeat("x", 0.0, 20.0, 10)),
        (r#"{app="left",  id="gt"}"#, repeat("x", 0.0, 10.0, 19)),
        (r#"{app="right", id="lt"}"#, repeat("x", 0.0, 10.0, 19)),
        (r#"{app="right", id="eq"}"#, repeat("x", 0.0, 20.0, 10)),
        (r#"{app="right", id="gt"}"#, repeat("x", 0.0, 20.0, 10)),
    ])
}

#[test]
fn vector_comparisons_keep_the_left_value() {
    let src = left_right();
    let l = r#"sum by (id) (count_over_time({app="left"}[1m]))"#;
    let r = r#"sum by (id) (count_over_time({app="right"}[1m]))"#;
    assert_vector(instant(&src, &format!("{l} < {r}"), 60.0), &[(r#"{id="lt"}"#, 3.0)], false);
    assert_vector(instant(&src, &format!("{l} >= {r}"), 60.0), &[(r#"{id="eq"}"#, 3.0), (r#"{id="gt"}"#, 6.0)], false);
    assert_vector(
        instant(&src, &format!("{l} != bool {r}"), 60.0),
        &[(r#"{id="lt"}"#, 1.0), (r#"{id="eq"}"#, 0.0), (r#"{id="gt"}"#, 1.0)],
        false,
    );
    assert_matrix(range(&src, &format!("{l} == {r}"), 60.0, 180.0, 30.0), &[(r#"{id="eq"}"#, &all(3.0, 5))]);
}

#[test]
fn on_and_ignoring() {
    let src = source(vec![(r#"{app="foo", machine="fuzz"}"#, repeat("x", 0.0, 10.0, 19))]);
    let l = r#"sum by (app,machine) (count_over_time({app="foo"}[1m]))"#;
    let r = r#"sum by (app) (count_over_time({app="foo"}[1m]))"#;
    assert_vector(instant(&src, &format!("{l} + on () {r}"), 60.0), &[("{}", 12.0)], false);
    assert_vector(instant(&src, &format!("{l} + on (app) {r}"), 60.0), &[(r#"{app="foo"}"#, 12.0)], false);
    assert_matrix(
        range(&src, &format!("{l} > bool ignoring (machine) {r}"), 60.0, 180.0, 30.0),
        &[(r#"{app="foo"}"#, &all(0.0, 5))],
    );

    let src = source(vec![
        (r#"{app="requests", pod="a"}"#, repeat("x", 0.0, 10.0, 19)),
        (r#"{app="requests", pod="b"}"#, repeat("x", 0.0, 15.0, 19)),
        (r#"{app="errors",   pod="a"}"#, repeat("x", 0.0, 20.0, 10)),
        (r#"{app="errors",   pod="c"}"#, repeat("x", 0.0, 30.0, 10)),
    ]);
    let req = r#"count_over_time({app="requests"}[1m])"#;
    let err = r#"count_over_time({app="errors"}[1m])"#;
    assert_vector(
        instant(&src, &format!("{req} and on (pod) {err}"), 60.0),
        &[(r#"{app="requests", pod="a"}"#, 6.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!("{req} and ignoring (app) {err}"), 60.0),
        &[(r#"{app="requests", pod="a"}"#, 6.0)],
        false,
    );
    assert!(instant(&src, &format!("{req} unless on () vector(1)"), 60.0).is_empty());
    assert_vector(
        instant(&src, &format!(r#"{req} unless on () count_over_time({{app="missing"}}[1m])"#), 60.0),
        &[(r#"{app="requests", pod="a"}"#, 6.0), (r#"{app="requests", pod="b"}"#, 4.0)],
        false,
    );
    assert_matrix(
        range(&src, &format!("{req} or on (pod) ({err} * 100)"), 60.0, 180.0, 30.0),
        &[
            (r#"{app="requests", pod="a"}"#, &all(6.0, 5)),
            (r#"{app="requests", pod="b"}"#, &all(4.0, 5)),
            (r#"{app="errors", pod="c"}"#, &all(200.0, 5)),
        ],
    );
}

#[test]
fn group_modifiers_and_their_errors() {
    let src = source(vec![
        (r#"{app="foo", machine="fuzz", pool="foo"}"#, repeat("x", 0.0, 10.0, 19)),
        (r#"{app="foo", machine="buzz", pool="foo"}"#, repeat("x", 0.0, 15.0, 19)),
    ]);
    let by_machine = r#"sum by (app,machine) (count_over_time({app="foo"}[1m]))"#;
    let by_app = r#"sum by (app) (count_over_time({app="foo"}[1m]))"#;
    let e = error(&src, &format!("{by_machine} > bool ignoring (machine) {by_app}"), params_range(60.0, 180.0, 30.0));
    assert_eq!(
        e.to_string(),
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    );
    assert_vector(
        instant(&src, &format!("{by_machine} > bool on () group_left {by_app}"), 60.0),
        &[(r#"{app="foo", machine="fuzz"}"#, 0.0), (r#"{app="foo", machine="buzz"}"#, 0.0)],
        false,
    );
    assert_vector(
        instant(&src, &format!("{by_app} >= bool on () group_right {by_machine}"), 60.0),
        &[(r#"{app="foo", machine="fuzz"}"#, 1.0), (r#"{app="foo", machine="buzz"}"#, 1.0)],
        false,
    );
    let e = error(&src, &format!("{by_app} >= bool ignoring (machine) {by_machine}"), params_instant(60.0));
    assert!(e.to_string().starts_with("found duplicate series on the right hand-side"), "{e}");
    assert_vector(
        instant(&src, &format!(r#"count_over_time({{app="foo"}}[1m]) / on (app) group_left {by_app}"#), 60.0),
        &[(r#"{app="foo", machine="fuzz", pool="foo"}"#, 0.6), (r#"{app="foo", machine="buzz", pool="foo"}"#, 0.4)],
        false,
    );
    assert_vector(
        instant(
            &src,
            &format!(
                r#"sum by (app,pool) (count_over_time({{app="foo"}}[1m])) > bool on (app) group_right (pool) {by_machine}"#
            ),
            60.0,
        ),
        &[(r#"{app="foo", machine="fuzz", pool="foo"}"#, 1.0), (r#"{app="foo", machine="buzz", pool="foo"}"#, 1.0)],
        false,
    );
    // The one side lacks `pool`: group_left (pool) removes it.
    assert_vector(
        instant(
            &src,
            &format!(
                r#"sum by (app,machine,pool) (count_over_time({{app="foo"}}[1m])) > bool on (app) group_left (pool) {by_app}"#
            ),
            60.0,
        ),
        &[(r#"{app="foo", machine="fuzz"}"#, 0.0), (r#"{app="foo", machine="buzz"}"#, 0.0)],
        false,
    );

    let src = source(vec![
        (r#"{app="foo", machine="fuzz"}"#, repeat("x", 0.0, 10.0, 19)),
        (r#"{app="foo", machine="buzz"}"#, repeat("x", 0.0, 10.0, 19)),
        (r#"{app="foo", pool="z1"}"#, repeat("x", 0.0, 10.0, 19)),
        (r#"{app="foo", pool="z2"}"#, repeat("x", 0.0, 10.0, 19)),
    ]);
    let machines = r#"sum by (app,machine) (count_over_time({app="foo", machine=~".+"}[1m]))"#;
    let pools = r#"sum by (app,pool) (count_over_time({app="foo", pool=~".+"}[1m]))"#;
    let e = error(&src, &format!("{machines} > bool on (app) group_left {pools}"), params_instant(60.0));
    assert!(e.to_string().contains("found duplicate series on the right hand-side"), "{e}");
    let e = error(&src, &format!("{pools} > bool on (app) group_right {machines}"), params_range(60.0, 180.0, 30.0));
    assert!(e.to_string().contains("found duplicate series on the left hand-side"), "{e}");

    let src = source(vec![
        (r#"{app="foo", pool="a"}"#, repeat("x", 0.0, 10.0, 19)),
        (r#"{app="foo", pool="b"}"#, repeat("x", 0.0, 10.0, 19)),
        (r#"{app="foo", pool="z", side="one"}"#, repeat("x", 0.0, 10.0, 19)),
    ]);
    let many = r#"sum by (app,pool) (count_over_time({app="foo", pool=~"a|b"}[1m]))"#;
    let one = r#"sum by (app,pool) (count_over_time({app="foo", side="one"}[1m]))"#;
    let e = error(&src, &format!("{many} > bool on (app) group_left (pool) {one}"), params_instant(60.0));
    assert_eq!(e.to_string(), "multiple matches for labels: grouping labels must ensure unique matches");
    let e = error(&src, &format!("{one} > bool on (app) group_right (pool) {many}"), params_instant(60.0));
    assert_eq!(e.to_string(), "multiple matches for labels: grouping labels must ensure unique matches");
}

#[test]
fn many_to_one_set_operators_need_no_modifier() {
    let src = source(vec![
        (r#"{app="foo", machine="fuzz"}"#, repeat("x", 0.0, 10.0, 19)),
        (r#"{app="foo", machine="buzz"}"#, repeat("x", 0.0, 15.0, 19)),
        (r#"{app="bar", machine="solo"}"#, repeat("x", 0.0, 20.0, 10)),
    ]);
    let l = r#"sum by (app,machine) (count_over_time({app=~"foo|bar"}[1m]))"#;
    let r = r#"sum by (app) (count_over_time({app="foo"}[1m]))"#;
    assert_vector(
        instant(&src, &format!("{l} and ignoring (machine) {r}"), 60.0),
        &[(r#"{app="foo", machine="fuzz"}"#, 6.0), (r#"{app="foo", machine="buzz"}"#, 4.0)],
        false,
    );
    assert_matrix(
        range(&src, &format!("{l} unless ignoring (machine) {r}"), 60.0, 180.0, 30.0),
        &[(r#"{app="bar", machine="solo"}"#, &all(3.0, 5))],
    );
}
