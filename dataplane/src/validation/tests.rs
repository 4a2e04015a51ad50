use bytes::Bytes;

use super::*;
use crate::config::units::ByteSize;
use crate::distributor::decode::RawStream;
use crate::labels::Label;

const NOW: i64 = 1_700_000_000_000_000_000;

fn text(labels: &str, entries: Vec<Entry>) -> RawStream {
    RawStream { labels: RawLabels::Text(Bytes::from(labels.to_string())), entries }
}

fn run(streams: Vec<RawStream>, limits: &Limits) -> (Validated, Discards) {
    validate("t", RawPush { streams }, limits, NOW)
}

fn reasons(d: &Discards) -> Vec<&'static str> {
    d.by_reason.iter().map(|(r, _)| r.as_str()).collect()
}

#[test]
fn valid_streams_pass_sorted_and_fingerprinted() {
    let (v, d) = run(vec![text(r#"{b="2", a="1"}"#, vec![Entry::new(NOW, "x")])], &Limits::default());
    assert!(d.is_empty());
    assert_eq!(v.streams[0].labels.to_string(), r#"{a="1", b="2", service_name="unknown_service"}"#);
    assert_eq!(v.streams[0].fingerprint, v.streams[0].labels.fingerprint("t"));
    assert_eq!((v.lines, v.bytes), (1, 1));
}

#[test]
fn service_name_and_detected_level_are_discovered() {
    let (v, _) = run(vec![text(r#"{app="api"}"#, vec![Entry::new(NOW, "level=error msg=boom")])], &Limits::default());
    assert_eq!(v.streams[0].labels.to_string(), r#"{app="api", service_name="api"}"#);
    assert_eq!(v.streams[0].entries[0].metadata, vec![Label::new("detected_level", "error")]);
    assert_eq!(v.bytes, 20 + 14 + 5, "the detected level counts in the entry's size");
    let off = Limits { discover_service_name: vec![], discover_log_levels: false, ..Limits::default() };
    let (v, _) = run(vec![text(r#"{app="api"}"#, vec![Entry::new(NOW, "level=error msg=boom")])], &off);
    assert_eq!(v.streams[0].labels.to_string(), r#"{app="api"}"#);
    assert!(v.streams[0].entries[0].metadata.is_empty());
}

#[test]
fn invalid_entries_are_dropped_and_the_rest_kept() {
    let limits = Limits::default();
    let week = limits.reject_old_samples_max_age.as_nanos_i64();
    let entries = vec![
        Entry::new(NOW, "ok"),
        Entry::new(NOW - week - 1, "old"),
        Entry::new(NOW + 11 * 60 * 1_000_000_000, "future"),
        Entry::new(NOW, vec![b'x'; 256_001]),
        Entry::new(NOW, vec![b'y'; 256_000]),
    ];
    let (v, d) = run(vec![text(r#"{a="1"}"#, entries)], &limits);
    assert_eq!(v.lines, 2);
    assert_eq!(reasons(&d), vec!["greater_than_max_sample_age", "too_far_in_future", "line_too_long"]);
    assert!(d.messages[0].starts_with(r#"entry for stream '{a="1"}' has timestamp too old: 2023-11-07T22:13:19Z, oldest acceptable timestamp is: 2023-11-07T22:13:20Z"#), "{}", d.messages[0]);
    assert_eq!(d.messages[1], r#"entry for stream '{a="1"}' has timestamp too new: 2023-11-14T22:24:20Z"#);
    assert_eq!(
        d.messages[2],
        r#"Max entry size '256000' bytes exceeded for stream '{a="1"}' while adding an entry with length '256001' bytes"#
    );
}

#[test]
fn long_lines_are_truncated_when_configured() {
    let limits = Limits { max_line_size: ByteSize(4), max_line_size_truncate: true, ..Limits::default() };
    let (v, d) = run(vec![text(r#"{a="1"}"#, vec![Entry::new(NOW, "abcdefgh")])], &limits);
    assert!(d.is_empty());
    assert_eq!(&v.streams[0].entries[0].line[..], b"abcd");
}

#[test]
fn label_problems_use_lokis_texts() {
    let limits = Limits::default();
    let many: String = (0..16).map(|i| format!("l{i}=\"v\"")).collect::<Vec<_>>().join(", ");
    let cases = vec![
        (format!("{{{many}}}"), "max_label_names_per_series", "has 16 label names; limit 15"),
        (format!("{{{}=\"v\"}}", "n".repeat(1025)), "label_name_too_long", "has label name too long: 'nnn"),
        (format!("{{a=\"{}\"}}", "v".repeat(2049)), "label_value_too_long", "has label value too long: 'vvv"),
        (
            r#"{a="1", a="2"}"#.to_string(),
            "duplicate_label_names",
            r#"stream '{a="1", a="2"}' has duplicate label name: 'a'"#,
        ),
        (r#"{a="1""#.to_string(), "invalid_labels", r#"Error parsing labels '{a="1"' with error: parse error"#),
        ("{}".to_string(), "missing_labels", "error at least one label pair is required per stream"),
    ];
    for (labels, reason, msg) in cases {
        let (v, d) = run(vec![text(&labels, vec![Entry::new(NOW, "x")])], &limits);
        assert!(v.streams.is_empty(), "{labels}");
        assert_eq!(reasons(&d), vec![reason], "{labels}");
        assert!(d.messages[0].contains(msg), "{labels}: {}", d.messages[0]);
    }
}

#[test]
fn invalid_utf8_in_labels_is_a_stream_error() {
    let raw = RawStream {
        labels: RawLabels::Text(Bytes::from_static(b"{a=\"\xff\xfe\"}")),
        entries: vec![Entry::new(NOW, "x")],
    };
    let (v, d) = run(vec![raw, text(r#"{a="ok"}"#, vec![Entry::new(NOW, "y")])], &Limits::default());
    assert_eq!(v.streams.len(), 1);
    assert_eq!(reasons(&d), vec!["invalid_labels"]);
    assert!(d.messages[0].contains("invalid UTF-8"), "{}", d.messages[0]);
}

#[test]
fn json_label_maps_reject_invalid_names() {
    let raw = RawStream {
        labels: RawLabels::Map(vec![("bad-name".into(), "v".into())]),
        entries: vec![Entry::new(NOW, "x")],
    };
    let (_, d) = run(vec![raw], &Limits::default());
    assert_eq!(reasons(&d), vec!["invalid_labels"]);
}

#[test]
fn structured_metadata_limits() {
    let mut e = Entry::new(NOW, "x");
    e.metadata = vec![Label::new("k", "v".repeat(100))];
    let limits = Limits { max_structured_metadata_size: ByteSize(50), ..Limits::default() };
    let (_, d) = run(vec![text(r#"{a="1"}"#, vec![e.clone()])], &limits);
    assert_eq!(reasons(&d), vec!["structured_metadata_too_large"]);
    let limits = Limits { allow_structured_metadata: false, ..Limits::default() };
    let (_, d) = run(vec![text(r#"{a="1"}"#, vec![e])], &limits);
    assert_eq!(reasons(&d), vec!["disallowed_structured_metadata"]);
}

#[test]
fn rendering_caps_the_number_of_messages() {
    let mut d = Discards::default();
    for i in 0..5 {
        d.add(Reason::LineTooLong, 1, 1, Some(format!("m{i}")));
    }
    assert_eq!(d.render(3), "m0\nm1\nm2\n(and 2 more errors)");
    assert_eq!(d.by_reason, vec![(Reason::LineTooLong, Dropped { lines: 5, bytes: 5 })]);
}

#[test]
fn tenant_ids_follow_lokis_rules() {
    assert!(validate_tenant_id("team-a_1.prod").is_ok());
    assert!(validate_tenant_id("").is_err());
    assert!(validate_tenant_id("..").is_err());
    assert!(validate_tenant_id("a/b").is_err());
    assert!(validate_tenant_id(&"x".repeat(151)).is_err());
}
