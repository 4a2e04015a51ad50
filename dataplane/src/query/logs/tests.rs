//! Tests of log query evaluation.
//!
//! The tests at the top level hold with any pipeline that passes lines through unchanged (the
//! selector-only queries they run), so they pass on the interface stub. The ones in
//! [`needs_pipeline`] exercise filters and parsers and need the real pipeline.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{INSTANT_LOOKBACK, Query};
use crate::chunk::{BlockHandle, ChunkReader, Codec, MemChunk};
use crate::entry::{Direction, Entry};
use crate::labels::{Label, Labels};
use crate::logql::{Expr, Matcher, parse_expr};
use crate::query::pipeline::Pipeline;
use crate::query::value::StreamResult;
use crate::query::{EvalError, LogSource, MemorySource, QueryParams, StreamBlocks, Value};

const S: i64 = 1_000_000_000;

fn labels(s: &str) -> Labels {
    Labels::parse(s).expect("test labels").sorted()
}

fn params(start: i64, end: i64, direction: Direction, limit: usize) -> QueryParams {
    QueryParams { start, end, step: 0, interval: 0, direction, limit, instant: false }
}

/// A source handing out prepared streams (several may share labels), matched by selector.
struct BlockSource(Vec<StreamBlocks>);

#[async_trait]
impl LogSource for BlockSource {
    async fn select(&self, matchers: &[Matcher], _from: i64, _through: i64) -> Result<Vec<StreamBlocks>, EvalError> {
        Ok(self.0.iter().filter(|s| crate::query::source::matches_all(&s.labels, matchers)).cloned().collect())
    }
}

/// The blocks of one chunk holding `entries`, cut every `block_size` bytes.
fn blocks(entries: &[(i64, String)], block_size: usize) -> Vec<BlockHandle> {
    let mut chunk = MemChunk::new(Codec::Snappy, block_size);
    for (ts, line) in entries {
        chunk.append(*ts, line.as_bytes(), &[]).expect("append");
    }
    chunk.block_handles(i64::MIN, i64::MAX).expect("handles")
}

fn stream_blocks(l: &str, entries: &[(i64, String)], block_size: usize) -> StreamBlocks {
    StreamBlocks { labels: Arc::new(labels(l)), blocks: blocks(entries, block_size), overlapping: false }
}

async fn run(source: impl LogSource + 'static, query: &str, p: QueryParams) -> Result<Vec<StreamResult>, EvalError> {
    let Ok(Expr::Log(expr)) = parse_expr(query) else {
        panic!("not a log query: {query}");
    };
    match super::eval(Arc::new(source), &expr, &p).await? {
        Value::Streams(s) => Ok(s),
        other => panic!("log query returned {}", other.result_type()),
    }
}

/// (labels, [(ts, line)]) of a result, for compact assertions.
fn flat(result: &[StreamResult]) -> Vec<(String, Vec<(i64, String)>)> {
    result
        .iter()
        .map(|s| {
            let entries = s.entries.iter().map(|e| (e.ts, String::from_utf8_lossy(&e.line).into_owned())).collect();
            (s.labels.to_string(), entries)
        })
        .collect()
}

fn lines(n: usize, start: i64, step: i64, prefix: &str) -> Vec<(i64, String)> {
    (0..n).map(|i| (start + i as i64 * step, format!("{prefix}{i}"))).collect()
}

#[tokio::test]
async fn forward_and_backward_order_within_the_window() {
    let source = || {
        MemorySource::new(vec![(labels(r#"{app="a"}"#), (0..10).map(|i| Entry::new(i * S, format!("l{i}"))).collect())])
    };
    let fwd = run(source(), r#"{app="a"}"#, params(2 * S, 5 * S, Direction::Forward, 100)).await.unwrap();
    assert_eq!(
        flat(&fwd),
        vec![(r#"{app="a"}"#.into(), vec![(2 * S, "l2".into()), (3 * S, "l3".into()), (4 * S, "l4".into())])]
    );
    let bwd = run(source(), r#"{app="a"}"#, params(2 * S, 5 * S, Direction::Backward, 100)).await.unwrap();
    assert_eq!(
        flat(&bwd),
        vec![(r#"{app="a"}"#.into(), vec![(4 * S, "l4".into()), (3 * S, "l3".into()), (2 * S, "l2".into())])]
    );
}

#[tokio::test]
async fn instant_query_looks_back_thirty_seconds() {
    let source = MemorySource::new(vec![(
        labels(r#"{app="a"}"#),
        (0..10).map(|i| Entry::new(i * 10 * S, format!("l{i}"))).collect(),
    )]);
    let p = QueryParams { instant: true, ..params(60 * S, 60 * S, Direction::Forward, 100) };
    let got = run(source, r#"{app="a"}"#, p).await.unwrap();
    // [30s, 60s): the line at 60s itself is outside.
    assert_eq!(INSTANT_LOOKBACK, 30 * S);
    assert_eq!(flat(&got)[0].1, vec![(30 * S, "l3".into()), (40 * S, "l4".into()), (50 * S, "l5".into())]);
}

#[tokio::test]
async fn limit_takes_the_first_entries_across_streams() {
    // a: 0,3,6,..  b: 1,4,7,..  c: 2,5,8,..
    let source = || {
        MemorySource::new(
            ["a", "b", "c"]
                .iter()
                .enumerate()
                .map(|(k, app)| {
                    let entries = (0..5).map(|i| Entry::new((3 * i + k as i64) * S, format!("{app}{i}"))).collect();
                    (labels(&format!(r#"{{app="{app}"}}"#)), entries)
                })
                .collect(),
        )
    };
    let fwd = run(source(), r#"{app=~".+"}"#, params(0, 100 * S, Direction::Forward, 4)).await.unwrap();
    assert_eq!(
        flat(&fwd),
        vec![
            (r#"{app="a"}"#.into(), vec![(0, "a0".into()), (3 * S, "a1".into())]),
            (r#"{app="b"}"#.into(), vec![(S, "b0".into())]),
            (r#"{app="c"}"#.into(), vec![(2 * S, "c0".into())]),
        ]
    );
    let bwd = run(source(), r#"{app=~".+"}"#, params(0, 100 * S, Direction::Backward, 4)).await.unwrap();
    assert_eq!(
        flat(&bwd),
        vec![
            (r#"{app="a"}"#.into(), vec![(12 * S, "a4".into())]),
            (r#"{app="b"}"#.into(), vec![(13 * S, "b4".into())]),
            (r#"{app="c"}"#.into(), vec![(14 * S, "c4".into()), (11 * S, "c3".into())]),
        ]
    );
}

#[tokio::test]
async fn interval_returns_one_entry_per_step_across_streams() {
    let source = || {
        MemorySource::new(vec![
            (labels(r#"{app="a"}"#), (0..=10).step_by(2).map(|i| Entry::new(i * S, format!("a{i}"))).collect()),
            (labels(r#"{app="b"}"#), (1..=10).step_by(2).map(|i| Entry::new(i * S, format!("b{i}"))).collect()),
        ])
    };
    let p = QueryParams { interval: 3 * S, ..params(0, 100 * S, Direction::Forward, 100) };
    let fwd = run(source(), r#"{app=~"a|b"}"#, p).await.unwrap();
    // Returned: 0 (a), 3 (b), 6 (a), 9 (b).
    assert_eq!(
        flat(&fwd),
        vec![
            (r#"{app="a"}"#.into(), vec![(0, "a0".into()), (6 * S, "a6".into())]),
            (r#"{app="b"}"#.into(), vec![(3 * S, "b3".into()), (9 * S, "b9".into())]),
        ]
    );
    let p = QueryParams { interval: 3 * S, ..params(0, 100 * S, Direction::Backward, 3) };
    let bwd = run(source(), r#"{app=~"a|b"}"#, p).await.unwrap();
    // Returned: 10 (a), 7 (b), 4 (a); the limit counts returned entries only.
    assert_eq!(
        flat(&bwd),
        vec![
            (r#"{app="a"}"#.into(), vec![(10 * S, "a10".into()), (4 * S, "a4".into())]),
            (r#"{app="b"}"#.into(), vec![(7 * S, "b7".into())]),
        ]
    );
}

#[tokio::test]
async fn overlapping_blocks_merge_in_order_and_drop_exact_duplicates() {
    // Two chunks of one stream (a replica, or memory and store), overlapping in time, sharing
    // some entries exactly; one entry shares a timestamp but not its line.
    let first: Vec<(i64, String)> = (0..6).map(|i| (i * 2 * S, format!("x{}", i * 2))).collect();
    let mut second: Vec<(i64, String)> = (0..6).map(|i| (i * 3 * S, format!("x{}", i * 3))).collect();
    second.push((4 * S, "other".into()));
    second.sort();
    let source = || {
        BlockSource(vec![
            stream_blocks(r#"{app="a"}"#, &first, 16),
            StreamBlocks { overlapping: true, ..stream_blocks(r#"{app="a"}"#, &second, 16) },
        ])
    };
    let want: Vec<(i64, String)> = vec![
        (0, "x0".into()),
        (2 * S, "x2".into()),
        (3 * S, "x3".into()),
        (4 * S, "x4".into()),
        (4 * S, "other".into()),
        (6 * S, "x6".into()),
        (8 * S, "x8".into()),
        (9 * S, "x9".into()),
        (10 * S, "x10".into()),
        (12 * S, "x12".into()),
        (15 * S, "x15".into()),
    ];
    let fwd = run(source(), r#"{app="a"}"#, params(0, 100 * S, Direction::Forward, 100)).await.unwrap();
    assert_eq!(flat(&fwd), vec![(r#"{app="a"}"#.into(), want.clone())]);
    let bwd = run(source(), r#"{app="a"}"#, params(0, 100 * S, Direction::Backward, 100)).await.unwrap();
    let mut rev = want.clone();
    rev.reverse();
    // Equal timestamps come back in the reverse of their forward order.
    assert_eq!(flat(&bwd), vec![(r#"{app="a"}"#.into(), rev)]);
    let limited = run(source(), r#"{app="a"}"#, params(0, 100 * S, Direction::Forward, 5)).await.unwrap();
    assert_eq!(flat(&limited)[0].1, want[..5].to_vec());
}

#[tokio::test]
async fn result_streams_sort_by_label_string() {
    let source = MemorySource::new(vec![
        (labels(r#"{a="1"}"#), vec![Entry::new(S, "x")]),
        (labels(r#"{a="1", b="2"}"#), vec![Entry::new(S, "y")]),
        (labels(r#"{a="0", z="9"}"#), vec![Entry::new(S, "z")]),
    ]);
    let got = run(source, r#"{a=~".+"}"#, params(0, 10 * S, Direction::Backward, 100)).await.unwrap();
    let names: Vec<String> = got.iter().map(|s| s.labels.to_string()).collect();
    // Loki sorts by the label string: `,` sorts before `}`.
    assert_eq!(names, vec![r#"{a="0", z="9"}"#, r#"{a="1", b="2"}"#, r#"{a="1"}"#]);
    assert_eq!(got[0].stream_labels.to_string(), r#"{a="0", z="9"}"#);
}

#[tokio::test]
async fn empty_results() {
    let source = || MemorySource::new(vec![(labels(r#"{app="a"}"#), vec![Entry::new(S, "x")])]);
    assert!(run(source(), r#"{app="b"}"#, params(0, 10 * S, Direction::Forward, 10)).await.unwrap().is_empty());
    assert!(run(source(), r#"{app="a"}"#, params(0, 10 * S, Direction::Forward, 0)).await.unwrap().is_empty());
    assert!(run(source(), r#"{app="a"}"#, params(2 * S, 10 * S, Direction::Forward, 10)).await.unwrap().is_empty());
    // The end is exclusive.
    assert!(run(source(), r#"{app="a"}"#, params(0, S, Direction::Forward, 10)).await.unwrap().is_empty());
}

#[test]
fn categorize_regroups_by_stream_labels() {
    let l = |s: &str| Arc::new(labels(s));
    let e = |ts: i64, line: &'static str, md: &[(&str, &str)]| crate::query::value::LogEntry {
        ts,
        line: Bytes::from_static(line.as_bytes()),
        structured_metadata: md.iter().map(|(n, v)| Label::new(*n, *v)).collect(),
        parsed: Vec::new(),
    };
    let result = vec![
        StreamResult {
            labels: l(r#"{app="a", t="1"}"#),
            stream_labels: l(r#"{app="a"}"#),
            entries: vec![e(3 * S, "x", &[("t", "1")]), e(S, "y", &[("t", "1")])],
        },
        StreamResult { labels: l(r#"{app="a"}"#), stream_labels: l(r#"{app="a"}"#), entries: vec![e(2 * S, "z", &[])] },
        StreamResult { labels: l(r#"{app="0"}"#), stream_labels: l(r#"{app="0"}"#), entries: vec![e(2 * S, "w", &[])] },
    ];
    let got = super::categorize(result, Direction::Backward);
    assert_eq!(
        flat(&got),
        vec![
            (r#"{app="0"}"#.into(), vec![(2 * S, "w".into())]),
            (r#"{app="a"}"#.into(), vec![(3 * S, "x".into()), (2 * S, "z".into()), (S, "y".into())]),
        ]
    );
    assert_eq!(got[1].entries[0].structured_metadata, vec![Label::new("t", "1")]);
    assert_eq!(got[1].stream_labels, got[1].labels);
}

/// splitmix64, for deterministic random data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What Loki's `readStreams` returns for these streams, computed the obvious way: every entry
/// in the window (duplicates dropped) sorted in direction order, equal timestamps by label
/// string, then the interval rule and the limit.
fn reference(streams: &[(String, Vec<(i64, String)>)], q: &QueryParams) -> Vec<(String, Vec<(i64, String)>)> {
    let mut all: Vec<(i64, String, String)> = Vec::new();
    for (l, entries) in streams {
        for (ts, line) in entries {
            if *ts >= q.start && *ts < q.end && !all.iter().any(|(t, ll, li)| t == ts && ll == l && li == line) {
                all.push((*ts, l.clone(), line.clone()));
            }
        }
    }
    all.sort_by(|a, b| match q.direction {
        Direction::Forward => (a.0, &a.1).cmp(&(b.0, &b.1)),
        Direction::Backward => (b.0, &a.1).cmp(&(a.0, &b.1)),
    });
    let mut out: Vec<(String, Vec<(i64, String)>)> = Vec::new();
    let mut last: Option<i64> = None;
    let mut n = 0;
    for (ts, l, line) in all {
        if n == q.limit {
            break;
        }
        let take = match last {
            None => true,
            Some(p) => match q.direction {
                Direction::Forward => ts >= p + q.interval,
                Direction::Backward => ts <= p - q.interval,
            },
        };
        if !take {
            continue;
        }
        last = Some(ts);
        n += 1;
        match out.iter_mut().find(|(ol, _)| *ol == l) {
            Some((_, v)) => v.push((ts, line)),
            None => out.push((l, vec![(ts, line)])),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn matches_the_reference_on_random_data() {
    let mut rng = Rng(7);
    for case in 0..300 {
        let nstreams = 1 + rng.below(5) as usize;
        let mut data: Vec<(String, Vec<(i64, String)>)> = Vec::new();
        let mut sources = Vec::new();
        for s in 0..nstreams {
            let l = format!(r#"{{app="s{s}"}}"#);
            let n = rng.below(60) as usize;
            let mut ts = rng.below(5) as i64;
            let mut entries = Vec::new();
            for i in 0..n {
                ts += 1 + rng.below(4) as i64;
                entries.push((ts, format!("s{s}-{i}")));
            }
            let block_size = [8usize, 40, 200, 1 << 16][rng.below(4) as usize];
            sources.push(stream_blocks(&l, &entries, block_size));
            if rng.below(3) == 0 && !entries.is_empty() {
                // A replica holding part of the stream, plus lines of its own.
                let mut replica: Vec<(i64, String)> = entries.iter().filter(|_| rng.below(2) == 0).cloned().collect();
                for k in 0..rng.below(4) {
                    // Lines of a stream never share a timestamp here: their order would be
                    // arbitrary.
                    let t = rng.below(ts as u64 + 1) as i64;
                    if !entries.iter().chain(&replica).any(|e| e.0 == t) {
                        replica.push((t, format!("r{s}-{k}")));
                    }
                }
                replica.sort_by_key(|e| e.0);
                sources.push(StreamBlocks { overlapping: true, ..stream_blocks(&l, &replica, block_size) });
                entries.extend(replica);
            }
            data.push((l, entries));
        }
        let direction = if rng.below(2) == 0 { Direction::Forward } else { Direction::Backward };
        let q = QueryParams {
            interval: [0, 0, 1, 3][rng.below(4) as usize],
            ..params(rng.below(20) as i64, 20 + rng.below(200) as i64, direction, 1 + rng.below(40) as usize)
        };
        let query = Query {
            pipeline: Pipeline::new(&[]).expect("empty pipeline"),
            from: q.start,
            through: q.end,
            direction,
            interval: q.interval,
            limit: q.limit,
        };
        for threads in [1, 2, 3] {
            let got = query.run(sources.clone(), threads).expect("run");
            assert_eq!(flat(&got), reference(&data, &q), "case {case} threads {threads} params {q:?}");
        }
    }
}

#[test]
fn the_first_entries_of_many_streams_read_few_blocks() {
    // 10 streams, interleaved in time, each 40 blocks of one entry: the first 5 entries overall
    // are in the first blocks of 5 streams, so nearly every other block is skipped (scanning
    // each stream until it holds 5 entries would read 50).
    let sources: Vec<StreamBlocks> = (0..10)
        .map(|s| {
            let entries: Vec<(i64, String)> = (0..40).map(|i| ((i * 10 + s) * S, format!("s{s}-{i}"))).collect();
            stream_blocks(&format!(r#"{{app="s{s}"}}"#), &entries, 1)
        })
        .collect();
    for (direction, want_first) in [(Direction::Forward, 0), (Direction::Backward, 399)] {
        let query = Query {
            pipeline: Pipeline::new(&[]).expect("empty pipeline"),
            from: 0,
            through: 1000 * S,
            direction,
            interval: 0,
            limit: 5,
        };
        for threads in [1, 2] {
            let (got, scanned) = query.run_counted(sources.clone(), threads).expect("run");
            let mut all: Vec<i64> = got.iter().flat_map(|s| s.entries.iter().map(|e| e.ts / S)).collect();
            all.sort_unstable();
            let want: Vec<i64> = match direction {
                Direction::Forward => (want_first..want_first + 5).collect(),
                Direction::Backward => (want_first - 4..=want_first).collect(),
            };
            assert_eq!(all, want, "{direction:?} threads {threads}");
            assert!(scanned <= 5 + 2 * threads, "{direction:?} threads {threads}: scanned {scanned} of 400 blocks");
        }
    }
}

#[test]
fn limit_stops_a_stream_early() {
    // 50 blocks of one entry each; a backward limit of 3 needs the newest three only, so the
    // worker skips the rest (observable as the result being right with a tiny limit; the
    // cutoff bookkeeping is checked by the reference test).
    let entries = lines(50, 0, S, "l");
    let source = vec![stream_blocks(r#"{app="a"}"#, &entries, 1)];
    assert_eq!(source[0].blocks.len(), 50);
    let query = Query {
        pipeline: Pipeline::new(&[]).expect("empty pipeline"),
        from: 0,
        through: 100 * S,
        direction: Direction::Backward,
        interval: 0,
        limit: 3,
    };
    let got = query.run(source, 2).expect("run");
    assert_eq!(flat(&got)[0].1, vec![(49 * S, "l49".into()), (48 * S, "l48".into()), (47 * S, "l47".into())]);
}

#[tokio::test]
async fn entries_keep_their_bytes_and_metadata_slots() {
    let source = MemorySource::new(vec![(
        labels(r#"{app="a"}"#),
        vec![Entry { ts: S, line: Bytes::from_static(b"hello"), metadata: vec![Label::new("trace", "1")] }],
    )]);
    let got = run(source, r#"{app="a"}"#, params(0, 10 * S, Direction::Forward, 10)).await.unwrap();
    assert_eq!(got[0].entries[0].line, Bytes::from_static(b"hello"));
    assert_eq!(got[0].stream_labels.to_string(), r#"{app="a"}"#);
}

/// Tests that need the real pipeline (filters, parsers, structured metadata in result labels);
/// they fail on the interface stub, which ignores stages.
#[cfg(test)]
mod needs_pipeline {
    use super::*;

    fn metadata_source() -> MemorySource {
        MemorySource::new(vec![(
            labels(r#"{app="a"}"#),
            vec![
                Entry {
                    ts: S,
                    line: Bytes::from_static(b"level=info msg=one"),
                    metadata: vec![Label::new("trace", "t1")],
                },
                Entry { ts: 2 * S, line: Bytes::from_static(b"level=error msg=two"), metadata: vec![] },
                Entry { ts: 3 * S, line: Bytes::from_static(b"level=info msg=three"), metadata: vec![] },
            ],
        )])
    }

    #[tokio::test]
    async fn a_parser_splits_a_stream_by_parsed_labels() {
        let got =
            run(metadata_source(), r#"{app="a"} | logfmt | drop msg"#, params(0, 10 * S, Direction::Backward, 100))
                .await
                .unwrap();
        let names: Vec<String> = got.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(
            names,
            vec![r#"{app="a", level="error"}"#, r#"{app="a", level="info", trace="t1"}"#, r#"{app="a", level="info"}"#]
        );
        assert_eq!(flat(&got)[2].1, vec![(3 * S, "level=info msg=three".into())]);
        let info_meta = &got[1].entries[0];
        assert_eq!(info_meta.structured_metadata, vec![Label::new("trace", "t1")]);
        assert_eq!(info_meta.parsed, vec![Label::new("level", "info")]);
        assert!(got.iter().all(|s| s.stream_labels.to_string() == r#"{app="a"}"#));
    }

    #[tokio::test]
    async fn line_filters_pick_lines_and_the_limit_counts_matches() {
        let entries: Vec<Entry> = (0..200)
            .map(|i| Entry::new(i * S, if i % 50 == 7 { format!("needle {i}") } else { format!("hay {i}") }))
            .collect();
        let source = MemorySource::new(vec![(labels(r#"{app="a"}"#), entries)]);
        let got = run(source, r#"{app="a"} |= "needle""#, params(0, 1000 * S, Direction::Backward, 3)).await.unwrap();
        assert_eq!(
            flat(&got)[0].1,
            vec![(157 * S, "needle 157".into()), (107 * S, "needle 107".into()), (57 * S, "needle 57".into())]
        );
    }

    #[tokio::test]
    async fn line_format_rewrites_lines() {
        let got = run(
            metadata_source(),
            r#"{app="a"} | logfmt | line_format "{{.level}}!" | level="error""#,
            params(0, 10 * S, Direction::Forward, 100),
        )
        .await
        .unwrap();
        assert_eq!(flat(&got), vec![(r#"{app="a", level="error", msg="two"}"#.into(), vec![(2 * S, "error!".into())])]);
    }

    #[tokio::test]
    async fn structured_metadata_is_part_of_the_result_labels() {
        let got = run(metadata_source(), r#"{app="a"}"#, params(0, 10 * S, Direction::Forward, 100)).await.unwrap();
        let names: Vec<String> = got.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(names, vec![r#"{app="a", trace="t1"}"#, r#"{app="a"}"#]);
        assert_eq!(got[0].entries[0].structured_metadata, vec![Label::new("trace", "t1")]);
        assert_eq!(got[0].stream_labels.to_string(), r#"{app="a"}"#);
    }

    /// Lines with one 24-hex-digit id each, `id=<id> `; the id of line `i`.
    fn id(i: u64) -> String {
        format!("{:024x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 8)
    }

    fn id_lines(n: u64) -> Vec<(i64, String)> {
        (0..n).map(|i| (i as i64 * S, format!("level=info id={} msg=\"request done\" n={i}", id(i)))).collect()
    }

    fn selector_pipeline(q: &str) -> Pipeline {
        let Ok(Expr::Log(expr)) = parse_expr(q) else { panic!("not a log query: {q}") };
        Pipeline::new(&expr.stages).expect("pipeline")
    }

    #[tokio::test]
    async fn needle_index_skips_blocks_and_keeps_every_match() {
        let entries = id_lines(3000);
        let stream = stream_blocks(r#"{app="a"}"#, &entries, 8192);
        let handles = stream.blocks.clone();
        assert!(handles.len() > 10);
        for probe in [0u64, 1, 1234, 2999] {
            let q = format!(r#"{{app="a"}} |= "id={} ""#, id(probe));
            let pipeline = selector_pipeline(&q);
            let skipped = handles.iter().filter(|h| pipeline.skips_block(h)).count();
            // All but the block holding it (and a false positive now and then) are skipped.
            assert!(skipped + 3 >= handles.len(), "{skipped} of {} skipped", handles.len());
            let holding =
                handles.iter().find(|h| h.meta().min_ts <= probe as i64 * S && probe as i64 * S <= h.meta().max_ts);
            assert!(!holding.is_some_and(|h| pipeline.skips_block(h)), "the block with the match is read");
            let got =
                run(BlockSource(vec![stream.clone()]), &q, params(0, 4000 * S, Direction::Forward, 10)).await.unwrap();
            let want = vec![(probe as i64 * S, entries[probe as usize].1.clone())];
            assert_eq!(flat(&got), vec![(r#"{app="a"}"#.to_string(), want)]);
        }
        // A prefix of an id: the line's token is longer, the index must not be trusted with it.
        let prefix = &id(42)[..12];
        let q = format!(r#"{{app="a"}} |= "id={prefix}""#);
        assert!(handles.iter().all(|h| !selector_pipeline(&q).skips_block(h)));
        let got =
            run(BlockSource(vec![stream.clone()]), &q, params(0, 4000 * S, Direction::Forward, 10)).await.unwrap();
        assert_eq!(flat(&got)[0].1[0].0, 42 * S);
        // `or`: skipped only when neither alternative can be there.
        let q = format!(r#"{{app="a"}} |= "id={} " or "id={} ""#, id(5), id(2500));
        let got =
            run(BlockSource(vec![stream.clone()]), &q, params(0, 4000 * S, Direction::Forward, 10)).await.unwrap();
        assert_eq!(flat(&got)[0].1.iter().map(|e| e.0).collect::<Vec<_>>(), vec![5 * S, 2500 * S]);
    }

    #[tokio::test]
    async fn a_false_positive_reads_the_block_and_filters_it() {
        let entries = id_lines(200);
        // One cut block (a head snapshot has no index).
        let mut chunk = MemChunk::new(Codec::Snappy, 1 << 20);
        for (ts, line) in &entries {
            chunk.append(*ts, line.as_bytes(), &[]).unwrap();
        }
        chunk.close();
        let handles = chunk.block_handles(i64::MIN, i64::MAX).unwrap();
        assert_eq!(handles.len(), 1);
        // Find an absent id the index answers "maybe" for: a false positive (~1% of them).
        let fp = (1_000_000u64..1_100_000)
            .map(id)
            .find(|t| {
                let tokens = crate::chunk::needle::literal_tokens(format!("={t} ").as_bytes());
                handles[0].may_contain_tokens(&tokens)
            })
            .expect("a false positive within 100k tries");
        assert!(entries.iter().all(|(_, l)| !l.contains(&fp)));
        let q = format!(r#"{{app="a"}} |= "id={fp} ""#);
        assert!(!selector_pipeline(&q).skips_block(&handles[0]), "a false positive is not skipped");
        let source = BlockSource(vec![StreamBlocks {
            labels: Arc::new(labels(r#"{app="a"}"#)),
            blocks: handles.clone(),
            overlapping: false,
        }]);
        let got = run(source, &q, params(0, 4000 * S, Direction::Forward, 10)).await.unwrap();
        assert!(got.is_empty(), "the line filter still drops every line: {got:?}");
        // And a true negative is skipped.
        let absent = (1_000_000u64..1_100_000)
            .map(id)
            .find(|t| {
                !handles[0].may_contain_tokens(&crate::chunk::needle::literal_tokens(format!("={t} ").as_bytes()))
            })
            .expect("a true negative");
        assert!(selector_pipeline(&format!(r#"{{app="a"}} |= "id={absent} ""#)).skips_block(&handles[0]));
    }
}
