use super::*;
use crate::entry::Entry;
use crate::labels::{Label, Labels};

fn stream(labels: &str, entries: Vec<(i64, &str, Option<&str>)>) -> PushStream {
    let labels = Arc::new(Labels::parse(labels).unwrap().sorted());
    PushStream {
        fingerprint: labels.fingerprint("t"),
        labels,
        entries: entries
            .into_iter()
            .map(|(ts, line, level)| {
                let mut e = Entry::new(ts, line.to_string());
                if let Some(l) = level {
                    e.metadata.push(Label::new(DETECTED_LEVEL, l));
                }
                e
            })
            .collect(),
    }
}

fn batch(tenant: &str, streams: &[PushStream]) -> Batch {
    Batch::new(tenant, streams)
}

const S: i64 = 1_000_000_000;

#[test]
fn counts_per_step_summed_over_streams_most_frequent_first() {
    let p = PatternIngester::start(PatternConfig::default());
    let t0 = 1_700_000_000 * S;
    let a = stream(
        r#"{app="a"}"#,
        vec![
            (t0, "user 1 logged in", Some("info")),
            (t0 + 5 * S, "user 2 logged in", Some("info")),
            (t0 + 65 * S, "user 3 logged in", Some("info")),
            (t0 + 1, "disk full", Some("error")),
        ],
    );
    let b = stream(r#"{app="b"}"#, vec![(t0 + 2 * S, "user 9 logged in", Some("info"))]);
    p.cluster(batch("t", &[a, b]));
    let got = p.query("t", &[], t0, t0 + 120 * S, 60 * S);
    assert_eq!(
        got,
        vec![
            PatternSeries {
                pattern: "user <_> logged in".into(),
                level: Some("info".into()),
                samples: vec![(t0, 3), (t0 + 60 * S, 1)]
            },
            PatternSeries { pattern: "disk full".into(), level: Some("error".into()), samples: vec![(t0, 1)] },
        ]
    );
    let only_b = p.query("t", &crate::logql::parse_matchers(r#"{app="b"}"#).unwrap(), t0, t0 + 120 * S, 60 * S);
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].samples, vec![(t0, 1)]);
    assert!(p.query("t", &[], t0 + 200 * S, t0 + 300 * S, 60 * S).is_empty(), "outside the range");
    assert!(p.query("other", &[], t0, t0 + 120 * S, 60 * S).is_empty(), "tenants are apart");
}

#[test]
fn buckets_older_than_retain_for_go() {
    let p = PatternIngester::start(PatternConfig { retain_for: Dur::mins(1), ..PatternConfig::default() });
    let t0 = 1_700_000_000 * S;
    p.cluster(batch("t", &[stream(r#"{app="a"}"#, vec![(t0, "hello", None)])]));
    p.cluster(batch("t", &[stream(r#"{app="a"}"#, vec![(t0 + 300 * S, "hello", None)])]));
    let got = p.query("t", &[], t0 - 1000 * S, t0 + 1000 * S, 10 * S);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples.len(), 1, "the bucket of t0 was dropped: {got:?}");
    assert_eq!(got[0].level, None);
}

#[test]
fn settings_are_checked() {
    assert!(PatternConfig::default().validate("pattern_ingester").is_ok());
    let e = PatternConfig { similarity: 1.5, ..PatternConfig::default() }.validate("pattern_ingester").unwrap_err();
    assert!(e.contains("pattern_ingester.similarity"), "{e}");
}

#[test]
fn merge_counts_a_replicated_stream_once_and_sums_streams() {
    let p = |fingerprint, buckets: &[(i64, u64)]| StreamPattern {
        fingerprint,
        pattern: "GET <_>".into(),
        level: None,
        buckets: buckets.to_vec(),
    };
    let b = BUCKET_NS;
    // Stream 1 on three replicas, one of which missed a push; stream 2 on one.
    let parts = vec![p(1, &[(0, 5), (b, 3)]), p(1, &[(0, 5), (b, 2)]), p(1, &[(0, 5), (b, 3)]), p(2, &[(b, 4)])];
    let out = merge(parts, 0, 10 * b, b);
    assert_eq!(out, vec![PatternSeries { pattern: "GET <_>".into(), level: None, samples: vec![(0, 5), (b, 7)] }]);
}
