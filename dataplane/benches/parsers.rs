//! Parser and formatter benchmarks: `logfmt`, `json` (every field, and a metric query that
//! reads one field so parser hints apply), a numeric label filter after `logfmt`, and
//! `line_format`, each over ~256 KiB of realistic lines processed one by one.
//!
//! Run: `cargo bench -p norn --bench parsers` (or `-- parsers/json` for one). Throughput is in
//! bytes of raw log lines. Lines follow the load generator in `shared/bench/loadgen.py`
//! (`line_for`): logfmt access lines and JSON job lines, from a fixed seed.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use norn::labels::{Labels, SharedLabels};
use norn::logql::{Expr, Grouping, SampleExpr, parse_expr, parse_log_selector};
use norn::query::pipeline::{Pipeline, SampleExtractor};

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

const RAW: usize = 256 * 1024;

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
    fn words(&mut self, n: usize) -> String {
        (0..n).map(|_| self.pick(&WORDS)).collect::<Vec<_>>().join(" ")
    }
}

fn line_for(rng: &mut Rng, json: bool) -> String {
    let level = rng.pick(&LEVELS);
    let status = match level {
        "info" | "debug" => 200,
        "warn" => [404, 429][rng.below(2) as usize],
        _ => [500, 502, 503][rng.below(3) as usize],
    };
    let duration = 1 + rng.below(900);
    let trace_id = format!("{:016x}", rng.next());
    if json {
        format!(
            r#"{{"level":"{level}","job":"{}","duration_ms":{duration},"trace_id":"{trace_id}","attempt":{},"msg":"{}"}}"#,
            rng.pick(&WORDS),
            1 + rng.below(5),
            rng.words(6)
        )
    } else {
        format!(
            "level={level} method={} path={}/{} status={status} duration={duration}ms bytes={} trace_id={trace_id} msg=\"{}\"",
            rng.pick(&METHODS),
            rng.pick(&PATHS),
            1 + rng.below(99_999),
            100 + rng.below(89_900),
            rng.words(5)
        )
    }
}

/// Lines totalling about 256 KiB, and their byte count.
fn lines(json: bool) -> (Vec<Vec<u8>>, u64) {
    let mut rng = Rng(7);
    let (mut out, mut total) = (Vec::new(), 0);
    while total < RAW {
        let l = line_for(&mut rng, json).into_bytes();
        total += l.len();
        out.push(l);
    }
    (out, total as u64)
}

fn stream() -> SharedLabels {
    Arc::new(Labels::parse(r#"{app="api", cluster="east"}"#).expect("labels"))
}

fn pipeline(q: &str) -> Pipeline {
    Pipeline::new(&parse_log_selector(q).expect("query parses").stages).expect("pipeline compiles")
}

/// Lines a log pipeline keeps (its labels hashed so the work cannot be optimized away).
fn run(p: &Pipeline, lines: &[Vec<u8>]) -> u64 {
    let mut sp = p.for_stream(&stream());
    let mut acc = 0u64;
    for (i, l) in lines.iter().enumerate() {
        if let Some(out) = sp.process(i as i64, l, &[]) {
            acc = acc.wrapping_add(out.labels.hash ^ out.line.len() as u64);
        }
    }
    acc
}

/// The extractor of a range aggregation, grouped as an enclosing `sum by (...)` would pass.
fn extractor(q: &str, grouping: Option<Grouping>) -> SampleExtractor {
    let Ok(Expr::Sample(SampleExpr::RangeAggregation(r))) = parse_expr(q) else { panic!("range aggregation") };
    SampleExtractor::with_grouping(&r.range, r.op, grouping.as_ref()).expect("extractor compiles")
}

fn extract(ex: &SampleExtractor, lines: &[Vec<u8>]) -> f64 {
    let mut sx = ex.for_stream(&stream());
    let mut sum = 0.0;
    for (i, l) in lines.iter().enumerate() {
        if let Some((v, _)) = sx.process(i as i64, l, &[]) {
            sum += v;
        }
    }
    sum
}

fn bench_parsers(c: &mut Criterion) {
    let (logfmt, logfmt_bytes) = lines(false);
    let (json, json_bytes) = lines(true);
    let mut group = c.benchmark_group("parsers");

    group.throughput(Throughput::Bytes(logfmt_bytes));
    let p = pipeline(r#"{app="api"} | logfmt"#);
    group.bench_function("logfmt", |b| b.iter(|| black_box(run(&p, black_box(&logfmt)))));
    let p = pipeline(r#"{app="api"} | logfmt | status >= 500"#);
    group.bench_function("logfmt+status>=500", |b| b.iter(|| black_box(run(&p, black_box(&logfmt)))));
    let p = pipeline(r#"{app="api"} | logfmt | line_format "{{.level}} {{.method}} {{.path}} -> {{.status}}""#);
    group.bench_function("logfmt+line_format", |b| b.iter(|| black_box(run(&p, black_box(&logfmt)))));
    let ex = extractor(
        r#"count_over_time({app="api"} | logfmt | status >= 500 [5m])"#,
        Some(Grouping { without: false, labels: vec!["level".to_string()] }),
    );
    group.bench_function("metric/logfmt+status>=500 by level", |b| {
        b.iter(|| black_box(extract(&ex, black_box(&logfmt))))
    });

    group.throughput(Throughput::Bytes(json_bytes));
    let p = pipeline(r#"{app="api"} | json"#);
    group.bench_function("json", |b| b.iter(|| black_box(run(&p, black_box(&json)))));
    let p = pipeline(r#"{app="api"} | json | duration_ms > 800"#);
    group.bench_function("json+duration_ms>800", |b| b.iter(|| black_box(run(&p, black_box(&json)))));
    // `sum(count_over_time(... | json | duration_ms > 800 [5m]))`: only duration_ms is read.
    let ex = extractor(
        r#"count_over_time({app="api"} | json | duration_ms > 800 [5m])"#,
        Some(Grouping { without: false, labels: Vec::new() }),
    );
    group.bench_function("metric/json one field", |b| b.iter(|| black_box(extract(&ex, black_box(&json)))));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_parsers
}
criterion_main!(benches);
