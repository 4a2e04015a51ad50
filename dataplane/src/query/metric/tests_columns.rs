//! The column path of `count_over_time`, `rate`, `bytes_over_time` and `bytes_rate`: format-2
//! blocks read through their timestamp and line-length section only give the results of the
//! line path, and really read no line bytes; the needle index skips blocks without changing
//! results.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use proptest::prelude::*;

use crate::chunk::{BlockHandle, ChunkReader, Codec, MemChunk};
use crate::labels::{Label, Labels};
use crate::logql::Matcher;
use crate::query::source::matches_all;
use crate::query::{EvalError, LogSource, MemorySource, StreamBlocks};

use super::tests::*;

const OPS: [&str; 4] = ["count_over_time", "rate", "bytes_over_time", "bytes_rate"];

/// A test entry: seconds, line, which structured metadata it has ([`metadata`]).
type TestEntry = (f64, String, u8);

/// Structured metadata variant `k`: none, one of two levels, or a level and a trace id.
fn metadata(k: u8) -> Vec<Label> {
    match k {
        0 => Vec::new(),
        1 => vec![Label::new("level", "info")],
        2 => vec![Label::new("level", "error")],
        _ => vec![Label::new("level", "error"), Label::new("trace", "x")],
    }
}

/// A source over chunks with cut format-2 blocks (and a head), one per `(labels, entries)`.
fn chunk_source(streams: &[(&str, Vec<TestEntry>)], block_size: usize) -> Arc<dyn LogSource> {
    let chunks = streams
        .iter()
        .map(|(l, entries)| {
            let mut c = MemChunk::new(Codec::Lz4, block_size);
            for (t, line, md) in entries {
                c.append((t * S as f64) as i64, line.as_bytes(), &metadata(*md)).expect("append");
            }
            (Arc::new(Labels::parse(l).expect("labels").sorted()), c)
        })
        .collect();
    Arc::new(MemorySource::from_chunks(chunks))
}

/// The same query on the column path (no stage) and on the line path (`|= ""`, a stage that
/// keeps every line but sends it through the extractor).
fn both_paths(src: &Arc<dyn LogSource>, op: &str, range_s: u32, (start, end, step): (f64, f64, f64)) {
    let columns = range(src, &format!(r#"{op}({{app=~"a|b"}}[{range_s}s])"#), start, end, step);
    let lines = range(src, &format!(r#"{op}({{app=~"a|b"}} |= "" [{range_s}s])"#), start, end, step);
    assert_eq!(columns, lines, "{op} over {range_s}s");
    // Grouped by a metadata label, which only the metadata column tells.
    let columns = range(src, &format!(r#"sum by (level) ({op}({{app=~"a|b"}}[{range_s}s]))"#), start, end, step);
    let lines = range(src, &format!(r#"sum by (level) ({op}({{app=~"a|b"}} |= "" [{range_s}s]))"#), start, end, step);
    assert_eq!(columns, lines, "{op} over {range_s}s by level");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_column_path_gives_the_line_path_results(
        a in prop::collection::vec((0u32..600, "[a-z0-9 =]{0,40}", prop_oneof![6 => Just(0u8), 4 => 1u8..4]), 1..300),
        b in prop::collection::vec((0u32..600, "[a-z0-9 =]{0,40}", Just(0u8)), 0..100),
        block_size in 128usize..4096,
        range_s in 1u32..120,
    ) {
        let conv = |v: &[(u32, String, u8)]| -> Vec<TestEntry> {
            v.iter().map(|(t, l, m)| (f64::from(*t) / 2.0, l.clone(), *m)).collect()
        };
        let src = chunk_source(&[(r#"{app="a"}"#, conv(&a)), (r#"{app="b"}"#, conv(&b))], block_size);
        for op in OPS {
            both_paths(&src, op, range_s, (0.0, 300.0, 15.0));
        }
    }
}

#[test]
fn metadata_unique_to_each_entry_gives_the_line_path_results() {
    // More distinct metadata per block than the column path remembers.
    let mut c = MemChunk::new(Codec::Zstd, 1 << 16);
    for i in 0..600i64 {
        let md = vec![
            Label::new("level", if i % 3 == 0 { "error" } else { "info" }),
            Label::new("span", format!("{}", i % 50)),
        ];
        c.append(i * S / 2, format!("line {i}").as_bytes(), &md).expect("append");
    }
    c.close();
    let src: Arc<dyn LogSource> = Arc::new(MemorySource::from_chunks(vec![(
        Arc::new(Labels::parse(r#"{app="a"}"#).expect("labels").sorted()),
        c,
    )]));
    for op in OPS {
        both_paths(&src, op, 30, (0.0, 300.0, 15.0));
    }
    let series = range(&src, r#"count_over_time({app="a"}[5m])"#, 300.0, 300.0, 1.0);
    let distinct: std::collections::HashSet<(bool, i64)> = (1..=600).map(|i| (i % 3 == 0, i % 50)).collect();
    assert_eq!(series.len(), distinct.len(), "one series per level and span: {series:?}");
}

/// Hands out the blocks of its chunks with every format-2 line section damaged.
struct DamagedLines(Vec<(Arc<Labels>, Vec<BlockHandle>)>);

#[async_trait]
impl LogSource for DamagedLines {
    async fn select(&self, matchers: &[Matcher], _from: i64, _through: i64) -> Result<Vec<StreamBlocks>, EvalError> {
        Ok(self
            .0
            .iter()
            .filter(|(l, _)| matches_all(l, matchers))
            .map(|(l, b)| StreamBlocks { labels: l.clone(), blocks: b.clone(), overlapping: false })
            .collect())
    }
}

/// Blocks of 400 lines, 4 a second, with format-2 line sections damaged; with `metadata`, every
/// entry has a `level` of structured metadata, `error` for one in four.
fn damaged_lines(metadata: bool) -> Arc<dyn LogSource> {
    let mut c = MemChunk::new(Codec::Zstd, 2048);
    for i in 0..400i64 {
        let md = match (metadata, i % 4) {
            (false, _) => vec![],
            (true, 0) => vec![Label::new("level", "error")],
            (true, _) => vec![Label::new("level", "info")],
        };
        c.append(i * S / 4, format!("level=info n={i} msg=\"some words here\"").as_bytes(), &md).expect("append");
    }
    c.close();
    let handles: Vec<BlockHandle> = c
        .block_handles(i64::MIN, i64::MAX)
        .expect("handles")
        .into_iter()
        .map(|h| {
            let (meta, codec, data) = h.wire();
            let s = meta.sections.expect("format-2 block");
            let mut bad = data.to_vec();
            bad[s.columns_len as usize] ^= 0xff;
            BlockHandle::from_wire(meta, codec, Bytes::from(bad)).expect("wire")
        })
        .collect();
    assert!(handles.len() > 3);
    Arc::new(DamagedLines(vec![(Arc::new(Labels::parse(r#"{app="a"}"#).expect("labels").sorted()), handles)]))
}

#[test]
fn the_column_path_reads_no_line_bytes() {
    let src = damaged_lines(false);
    let want = all(4.0 * 60.0, 1);
    assert_eq!(
        range(&src, r#"count_over_time({app="a"}[1m])"#, 60.0, 60.0, 1.0),
        vec![(r#"{app="a"}"#.to_string(), want)]
    );
    let bytes = range(&src, r#"bytes_over_time({app="a"}[100s])"#, 100.0, 100.0, 1.0);
    assert_eq!(bytes.len(), 1);
    // The line path reads the damaged section and fails.
    let err = error(&src, r#"count_over_time({app="a"} |= "" [1m])"#, params_range(60.0, 60.0, 1.0));
    assert!(matches!(err, EvalError::Storage(_)), "{err:?}");
}

#[test]
fn the_column_path_reads_metadata_without_line_bytes() {
    let src = damaged_lines(true);
    assert_eq!(
        range(&src, r#"count_over_time({app="a"}[1m])"#, 60.0, 60.0, 1.0),
        vec![
            (r#"{app="a", level="error"}"#.to_string(), all(60.0, 1)),
            (r#"{app="a", level="info"}"#.to_string(), all(3.0 * 60.0, 1)),
        ]
    );
    let by_level = range(&src, r#"sum by (level) (bytes_over_time({app="a"}[100s]))"#, 100.0, 100.0, 1.0);
    assert_eq!(by_level.len(), 2, "{by_level:?}");
    let err = error(&src, r#"count_over_time({app="a"} |= "" [1m])"#, params_range(60.0, 60.0, 1.0));
    assert!(matches!(err, EvalError::Storage(_)), "{err:?}");
}

#[test]
fn needle_skips_keep_metric_results() {
    let lines: Vec<TestEntry> = (0..2000u32)
        .map(|i| (f64::from(i) / 10.0, format!("level=info trace_id={:016x}{i:08} msg=\"done\"", u64::from(i) * 31), 0))
        .collect();
    let wanted = format!("{:016x}{:08}", 777u64 * 31, 777);
    let src = chunk_source(&[(r#"{app="a"}"#, lines)], 4096);
    let q = format!(r#"count_over_time({{app="a"}} |= "trace_id={wanted} " [200s])"#);
    assert_eq!(range(&src, &q, 200.0, 200.0, 1.0), vec![(r#"{app="a"}"#.to_string(), all(1.0, 1))]);
    // The same filter that cannot use the index (the token touches the literal's end).
    let q = format!(r#"count_over_time({{app="a"}} |= "{wanted}" [200s])"#);
    assert_eq!(range(&src, &q, 200.0, 200.0, 1.0), vec![(r#"{app="a"}"#.to_string(), all(1.0, 1))]);
    let q = r#"count_over_time({app="a"} |= "trace_id=00000000deadbeef " [200s])"#;
    assert_eq!(range(&src, q, 200.0, 200.0, 1.0), vec![]);
}
