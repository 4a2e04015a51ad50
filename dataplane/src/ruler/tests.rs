use std::sync::Arc;
use std::time::Duration;

use super::alerting::{AlertState, AlertingRule};
use super::http::go_float_e;
use super::remote_write::{Label, RemoteWriteQueue, Sample, TimeSeries};
use super::rules::{Rule, decode_name, encode_name, parse_file, parse_group};
use super::store::{Layout, RuleStore};
use super::{OwnerTable, RulerError};
use crate::labels::Labels;
use crate::ring::model::{InstanceDesc, InstanceState, RingDesc};
use crate::storage::{MemoryStore, ObjectStore};

const GOOD: &str = r#"
groups:
  - name: checkout
    interval: 1m
    rules:
      - alert: CheckoutErrors
        expr: sum by (app) (count_over_time({app="checkout"} |= "level=error" [1m])) > 10
        for: 2m
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.app }} logs {{ $value }} errors a minute"
      - record: app:errors:count1m
        expr: sum by (app) (count_over_time({app="checkout"} |= "level=error" [1m]))
"#;

#[test]
fn a_prometheus_rule_file_with_logql_parses() {
    let f = parse_file(GOOD).unwrap();
    assert_eq!(f.groups.len(), 1);
    let g = &f.groups[0];
    assert_eq!(g.interval.unwrap().get(), Duration::from_secs(60));
    assert_eq!(g.rules[0].hold(), Duration::from_secs(120));
    assert!(g.rules[0].is_alert());
    assert_eq!(g.rules[1].name(), "app:errors:count1m");
    // What is stored reads back the same.
    let again = parse_file(&serde_norway::to_string(&f).unwrap()).unwrap();
    assert_eq!(again, f);
}

#[test]
fn invalid_groups_are_refused_with_prometheus_wording() {
    let cases = [
        ("name: g\nrules:\n  - expr: sum(rate({a=\"b\"}[1m]))\n", "one of 'record' or 'alert' must be set"),
        ("name: g\nrules:\n  - alert: A\n    record: b\n    expr: vector(1)\n", "only one of 'record' and 'alert'"),
        ("name: g\nrules:\n  - alert: A\n    expr: sum(rate({a=\"b\"}[1m]) >\n", "could not parse expression"),
        ("name: g\nrules:\n  - alert: A\n    expr: '{a=\"b\"} |= \"x\"'\n", "only sample expression supported"),
        ("name: g\nrules:\n  - record: 'bad name'\n    expr: vector(1)\n", "invalid recording rule name"),
        (
            "name: g\nrules:\n  - record: r\n    expr: vector(1)\n    annotations: {a: b}\n",
            "invalid field 'annotations'",
        ),
        ("name: g\nrules:\n  - alert: A\n    expr: vector(1)\n    labels: {'1x': b}\n", "invalid label name"),
        ("name: g\nrules:\n  - alert: A\n    expr: vector(1)\n    annotations: {a: '{{ .x'}\n", "annotation \"a\""),
        ("name: g\nrules:\n  - alert: A\n    expr: vector(1)\n    severity: page\n", "unknown field `severity`"),
        ("name: ''\nrules: []\n", "Groupname must not be empty"),
        ("rules: [\n", "invalid rule group"),
    ];
    for (text, want) in cases {
        let err = parse_group(text).unwrap_err().0;
        assert!(err.contains(want), "{text}: {err}");
    }
    let dup = "groups:\n  - name: a\n    rules: []\n  - name: a\n    rules: []\n";
    assert!(parse_file(dup).unwrap_err().0.contains("repeated in the same file"));
}

fn alert_rule(yaml: &str) -> AlertingRule {
    let r: Rule = serde_norway::from_str(yaml).unwrap();
    AlertingRule::new(r)
}

fn sample(pairs: &[(&str, &str)], v: f64) -> (Labels, f64) {
    (Labels::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).sorted(), v)
}

#[test]
fn an_alert_is_pending_for_its_hold_then_fires_then_resolves_and_is_resent() {
    let mut a = alert_rule(
        "alert: Errors\nexpr: vector(1)\nfor: 2s\nlabels: {severity: page, team: '{{ $labels.app }}-team'}\nannotations: {summary: '{{ $labels.app }}: {{ $value }} errors'}\n",
    );
    let s = || vec![sample(&[("app", "checkout")], 12.5)];
    let resend = Duration::from_secs(60);
    let iv = Duration::from_secs(1);
    a.apply(1_000, s(), 0).unwrap();
    assert_eq!(a.state(), AlertState::Pending);
    assert!(a.due(1_000, resend, iv, "").is_empty(), "pending alerts are not sent");
    a.apply(2_000, s(), 0).unwrap();
    assert_eq!(a.state(), AlertState::Pending);
    a.apply(3_000, s(), 0).unwrap();
    assert_eq!(a.state(), AlertState::Firing);
    let sent = a.due(3_000, resend, iv, "");
    assert_eq!(sent.len(), 1);
    let n = &sent[0];
    assert_eq!(n.labels["alertname"], "Errors");
    assert_eq!(n.labels["severity"], "page");
    assert_eq!(n.labels["team"], "checkout-team");
    assert_eq!(n.labels["app"], "checkout");
    assert_eq!(n.annotations["summary"], "checkout: 12.5 errors");
    assert_eq!(n.starts_at, "1970-01-01T00:00:03Z");
    // Valid for 4 × max(resend, interval).
    assert_eq!(n.ends_at, "1970-01-01T00:04:03Z");
    assert!(a.due(4_000, resend, iv, "").is_empty(), "not again before resend_delay");
    assert_eq!(a.due(63_000, resend, iv, "").len(), 1, "again after resend_delay");
    // The condition clears: resolved, sent once with endsAt = resolution.
    a.apply(64_000, vec![], 0).unwrap();
    assert_eq!(a.state(), AlertState::Inactive);
    let sent = a.due(64_000, resend, iv, "");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].ends_at, "1970-01-01T00:01:04Z");
    assert!(a.due(65_000, resend, iv, "").is_empty());
    // Kept for 15 minutes, then forgotten.
    a.apply(64_000 + 16 * 60_000, vec![], 0).unwrap();
    assert!(a.active.is_empty());
}

#[test]
fn keep_firing_for_holds_a_cleared_alert_and_pending_alerts_just_vanish() {
    let mut a = alert_rule("alert: A\nexpr: vector(1)\nkeep_firing_for: 10s\n");
    a.apply(0, vec![sample(&[("x", "1")], 1.0)], 0).unwrap();
    assert_eq!(a.state(), AlertState::Firing, "for: 0 fires at once");
    a.apply(5_000, vec![], 0).unwrap();
    assert_eq!(a.state(), AlertState::Firing);
    a.apply(14_000, vec![], 0).unwrap();
    assert_eq!(a.state(), AlertState::Firing, "10s since the condition cleared at 5s");
    a.apply(15_000, vec![], 0).unwrap();
    assert_eq!(a.state(), AlertState::Inactive);

    let mut p = alert_rule("alert: P\nexpr: vector(1)\nfor: 1m\n");
    p.apply(0, vec![sample(&[("x", "1")], 1.0)], 0).unwrap();
    p.apply(1_000, vec![], 0).unwrap();
    assert!(p.active.is_empty());
}

#[test]
fn alert_limits_and_label_collisions_fail_the_evaluation() {
    let mut a = alert_rule("alert: A\nexpr: vector(1)\n");
    let two = vec![sample(&[("x", "1")], 1.0), sample(&[("x", "2")], 1.0)];
    assert!(a.apply(0, two.clone(), 1).unwrap_err().contains("exceeded limit of 1"));
    assert!(a.active.is_empty());
    let mut c = alert_rule("alert: A\nexpr: vector(1)\nlabels: {x: same}\n");
    assert!(c.apply(0, two, 0).unwrap_err().contains("same labelset"));
}

#[test]
fn restored_state_keeps_for_progress_unless_too_old() {
    let mut a = alert_rule("alert: A\nexpr: vector(1)\nfor: 10m\n");
    a.apply(1_000, vec![sample(&[("x", "1")], 1.0)], 0).unwrap();
    let saved: Vec<_> = a.active.values().cloned().collect();
    let mut b = alert_rule("alert: A\nexpr: vector(1)\nfor: 10m\n");
    b.restore(saved.clone(), 2_000, 60_000, Duration::from_secs(3600));
    b.apply(61_000, vec![sample(&[("x", "1")], 1.0)], 0).unwrap();
    assert_eq!(b.active.values().next().unwrap().active_at_ms, 1_000);
    let mut c = alert_rule("alert: A\nexpr: vector(1)\nfor: 10m\n");
    c.restore(saved, 2_000, 2_000 + 7_200_000, Duration::from_secs(3600));
    assert!(c.active.is_empty());
}

#[test]
fn values_print_like_go() {
    assert_eq!(go_float_e(12.0), "1.2e+01");
    assert_eq!(go_float_e(1.0), "1e+00");
    assert_eq!(go_float_e(0.00025), "2.5e-04");
    assert_eq!(go_float_e(f64::NAN), "NaN");
}

#[test]
fn names_encode_into_one_reversible_segment() {
    for n in ["checkout", "team/app", "a b%c", ".hidden", "ünï"] {
        let e = encode_name(n);
        assert!(!e.contains('/') && !e.starts_with('.'), "{e}");
        assert_eq!(decode_name(&e).as_deref(), Some(n));
    }
}

fn ring(instances: &[(&str, &[u32], i64)]) -> RingDesc {
    let mut d = RingDesc::default();
    for (id, tokens, hb) in instances {
        let mut i = InstanceDesc { tokens: tokens.to_vec(), heartbeat_ms: *hb, ..Default::default() };
        i.set_state(InstanceState::Active);
        d.instances.insert(id.to_string(), i);
    }
    d
}

#[test]
fn a_group_belongs_to_the_next_healthy_ruler_clockwise() {
    let d = ring(&[("a", &[100, 300], 1_000), ("b", &[200], 1_000)]);
    let t = OwnerTable::new(&d, 1_000, Duration::from_secs(5));
    assert_eq!(t.owner(50), Some("a"));
    assert_eq!(t.owner(150), Some("b"));
    assert_eq!(t.owner(250), Some("a"));
    assert_eq!(t.owner(400), Some("a"), "wraps around");
    // b's heartbeat is stale: its range moves to a.
    let later =
        OwnerTable::new(&ring(&[("a", &[100, 300], 10_000), ("b", &[200], 1_000)]), 10_000, Duration::from_secs(5));
    assert_eq!(later.owner(150), Some("a"));
    assert_eq!(OwnerTable::new(&RingDesc::default(), 0, Duration::ZERO).owner(1), None);
}

#[tokio::test]
async fn the_store_keeps_groups_per_tenant_and_namespace() {
    let mem: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let store = RuleStore::new(mem.clone(), Layout::Object, mem.clone());
    let g = parse_file(GOOD).unwrap().groups.remove(0);
    store.put_group("t1", "team/checkout", g.clone()).await.unwrap();
    let mut g2 = g.clone();
    g2.name = "other".into();
    store.put_group("t1", "team/checkout", g2).await.unwrap();
    store.put_group("t1", "team/checkout", g.clone()).await.unwrap();
    let (ns, bad) = store.namespaces("t1").await.unwrap();
    assert!(bad.is_empty());
    assert_eq!(ns["team/checkout"].groups.len(), 2, "replacing a group keeps one of that name");
    assert_eq!(store.tenants().await.unwrap(), vec!["t1".to_string()]);
    assert!(store.namespaces("t2").await.unwrap().0.is_empty());
    store.delete_group("t1", "team/checkout", "other").await.unwrap();
    assert!(matches!(store.delete_group("t1", "team/checkout", "other").await, Err(RulerError::NotFound(_))));
    store.delete_namespace("t1", "team/checkout").await.unwrap();
    assert!(store.load_all().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_local_directory_skips_hidden_entries_and_reports_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("fake");
    std::fs::create_dir_all(t.join("..data")).unwrap();
    std::fs::write(t.join("good.yaml"), GOOD).unwrap();
    std::fs::write(t.join("..data/good.yaml"), GOOD).unwrap();
    std::fs::write(t.join("broken.yml"), "groups: [ {name: x, rules: [ {alert: A} ] } ]").unwrap();
    let local: Arc<dyn ObjectStore> = Arc::new(crate::storage::FilesystemStore::new(dir.path()).unwrap());
    let store = RuleStore::new(local, Layout::Local, Arc::new(MemoryStore::new()));
    let (ns, bad) = store.namespaces("fake").await.unwrap();
    assert_eq!(ns.keys().collect::<Vec<_>>(), vec!["good"]);
    assert_eq!(bad.len(), 1);
    assert!(bad[0].error.contains("field 'expr' must be set"), "{}", bad[0].error);
}

fn series(v: f64) -> Vec<TimeSeries> {
    vec![TimeSeries {
        labels: vec![Label { name: "__name__".into(), value: "x".into() }],
        samples: vec![Sample { value: v, timestamp: 1 }],
    }]
}

#[test]
fn the_remote_write_queue_survives_reopening_and_drops_the_oldest_past_its_bound() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let q = RemoteWriteQueue::open(dir.path(), 1 << 20).unwrap();
    q.append(series(1.0)).unwrap();
    q.append(series(2.0)).unwrap();
    drop(q);
    let q = RemoteWriteQueue::open(dir.path(), 1 << 20).unwrap();
    q.append(series(3.0)).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    names.sort();
    assert_eq!(names, vec!["00000000000000000000-1.pb", "00000000000000000001-1.pb", "00000000000000000002-1.pb"]);
    // A bound smaller than two batches keeps only the newest.
    let size = std::fs::metadata(dir.path().join(&names[0])).unwrap().len();
    let small = RemoteWriteQueue::open(dir.path(), size + 1).unwrap();
    small.append(series(4.0)).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    assert_eq!(small.stats.samples_dropped.load(Ordering::Relaxed), 3);
}
