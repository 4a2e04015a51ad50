//! Line filter benchmarks over one decoded 256 KiB block of realistic lines: the block-level
//! substring search behind `Pipeline::candidates`, the same filter line by line, a regex
//! filter (line by line and through its required literal), and a negative filter.
//!
//! Run: `cargo bench -p norn --bench filter` (or `-- filter/candidates` for one group).
//! Throughput is in bytes of raw log lines, so GB/s figures compare with the scan budget
//! (decompression is measured by the `chunk` benchmark). Lines follow the load generator in
//! `shared/bench/loadgen.py` (`line_for`): logfmt access lines with random trace ids, from a
//! fixed seed; one line carries the needle `trace_id=00000000deadbeef`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use norn::chunk::{ChunkReader, Codec, DecodedBlock, MemChunk};
use norn::labels::Labels;
use norn::logql::parse_log_selector;
use norn::query::pipeline::Pipeline;

const WORDS: [&str; 14] = [
    "connection",
    "timeout",
    "retry",
    "cache",
    "miss",
    "hit",
    "upstream",
    "backend",
    "queue",
    "flush",
    "commit",
    "rollback",
    "session",
    "token",
];
const LEVELS: [&str; 20] = [
    "info", "info", "info", "info", "info", "info", "info", "info", "info", "info", "info", "info", "info", "info",
    "warn", "warn", "warn", "error", "error", "debug",
];
const METHODS: [&str; 6] = ["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const PATHS: [&str; 7] = ["/api/v1/users", "/api/v1/orders", "/api/v1/items", "/healthz", "/login", "/search", "/cart"];

/// Raw line bytes of the benchmarked block.
const BLOCK_RAW: usize = 256 * 1024;

/// splitmix64, enough for test data.
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
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

fn logfmt_line(rng: &mut Rng) -> String {
    let level = rng.pick(&LEVELS);
    let status = match level {
        "info" | "debug" => 200,
        "warn" => [404, 429][rng.below(2) as usize],
        _ => [500, 502, 503][rng.below(3) as usize],
    };
    let words: Vec<&str> = (0..5).map(|_| rng.pick(&WORDS)).collect();
    format!(
        "level={level} method={} path={}/{} status={status} duration={}ms bytes={} trace_id={:016x} msg=\"{}\"",
        rng.pick(&METHODS),
        rng.pick(&PATHS),
        1 + rng.below(99_999),
        1 + rng.below(900),
        100 + rng.below(89_900),
        rng.next(),
        words.join(" ")
    )
}

/// A decoded block of about 256 KiB of logfmt lines, one of them holding the needle.
fn block() -> DecodedBlock {
    let mut rng = Rng(42);
    let mut chunk = MemChunk::new(Codec::None, 4 * BLOCK_RAW);
    let (mut total, mut ts, mut i) = (0, 1_700_000_000_000_000_000i64, 0);
    while total < BLOCK_RAW {
        let mut line = logfmt_line(&mut rng);
        if i == 1000 {
            line = line.replace("trace_id=", "trace_id=00000000deadbeef x=");
        }
        total += line.len();
        ts += 200_000_000;
        i += 1;
        chunk.append(ts, line.as_bytes(), &[]).expect("append");
    }
    let handles = chunk.block_handles(0, i64::MAX).expect("handles");
    handles.into_iter().next().expect("a block").decode().expect("decode")
}

fn pipeline(q: &str) -> Pipeline {
    Pipeline::new(&parse_log_selector(q).expect("query parses").stages).expect("pipeline compiles")
}

/// Lines kept when every line of the block goes through the stream pipeline.
fn line_by_line(p: &Pipeline, block: &DecodedBlock) -> usize {
    let labels = Arc::new(Labels::parse(r#"{cluster="east"}"#).expect("labels"));
    let mut sp = p.for_stream(&labels);
    let buf = block.lines_buf();
    let ts = block.timestamps();
    (0..block.len()).filter(|&i| sp.process(ts[i], &buf[block.line_range(i)], &[]).is_some()).count()
}

/// Lines kept when only the block search's candidates go through the pipeline.
fn with_candidates(p: &Pipeline, block: &DecodedBlock) -> usize {
    let labels = Arc::new(Labels::parse(r#"{cluster="east"}"#).expect("labels"));
    let mut sp = p.for_stream(&labels);
    let buf = block.lines_buf();
    let ts = block.timestamps();
    let cands = p.candidates(block).expect("a searchable filter");
    cands.into_iter().filter(|&i| sp.process(ts[i], &buf[block.line_range(i)], &[]).is_some()).count()
}

fn bench_filters(c: &mut Criterion) {
    let block = block();
    let bytes = block.lines_buf().len() as u64;
    println!("block: {} lines, {bytes} bytes", block.len());
    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Bytes(bytes));

    let needle = pipeline(r#"{cluster="east"} |= "trace_id=00000000deadbeef""#);
    assert_eq!(with_candidates(&needle, &block), 1);
    group.bench_function("candidates/substring", |b| b.iter(|| black_box(needle.candidates(black_box(&block)))));
    group.bench_function("candidates+process/substring", |b| {
        b.iter(|| black_box(with_candidates(&needle, black_box(&block))))
    });
    group.bench_function("line_by_line/substring", |b| b.iter(|| black_box(line_by_line(&needle, black_box(&block)))));

    let regex = pipeline(r#"{cluster="east"} |~ "status=5[0-9]{2}""#);
    assert_eq!(line_by_line(&regex, &block), with_candidates(&regex, &block));
    group.bench_function("line_by_line/regex", |b| b.iter(|| black_box(line_by_line(&regex, black_box(&block)))));
    group.bench_function("candidates+process/regex", |b| {
        b.iter(|| black_box(with_candidates(&regex, black_box(&block))))
    });

    // Negative filters have no block search: every line is tested.
    let negative = pipeline(r#"{cluster="east"} != "level=info""#);
    assert!(negative.candidates(&block).is_none());
    group.bench_function("line_by_line/negative", |b| b.iter(|| black_box(line_by_line(&negative, black_box(&block)))));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_filters
}
criterion_main!(benches);
