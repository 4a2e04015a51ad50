//! Metric query benchmarks: the load generator's metric queries over its whole dataset held in
//! memory the way an ingester holds it (one chunk per stream, default codec and block size).
//!
//! Run: `cargo bench -p norn --bench metric` (every query) or with a filter, e.g.
//! `cargo bench -p norn --bench metric -- count_over_time`. Building the dataset (4M lines,
//! 586 MB raw, 160 streams, compressed with the default codec) takes a while before the first
//! group runs; set `NORN_BENCH_LINES` to use fewer lines. Throughput is in raw line bytes of the
//! streams the query selects, so MB/s compares with scan budgets.
//!
//! Data follows `shared/bench/loadgen.py`: streams `{app, namespace, pod, cluster="east"}`,
//! logfmt access lines (JSON for `worker` and `billing`), each stream a line every 180-225 ms,
//! queried over 2h10m with a 60 s step. `NORN_BENCH_CPU=1` also prints each query's CPU time
//! per run, which stays meaningful when other load on the machine inflates wall times.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use norn::chunk::{ChunkReader, Codec, DEFAULT_BLOCK_SIZE, MemChunk};
use norn::entry::Direction;
use norn::labels::{Labels, SharedLabels};
use norn::logql::{Matcher, parse_sample_expr};
use norn::query::source::matches_all;
use norn::query::{EvalError, EvalLimits, LogSource, QueryParams, StreamBlocks, metric};

const APPS: [&str; 8] = ["api", "web", "worker", "db", "cache", "auth", "billing", "search"];
const NSS: [&str; 2] = ["prod", "staging"];
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

const STREAMS: usize = 160;
const T0: i64 = 1_700_000_000 * 1_000_000_000;

/// splitmix64: a tiny deterministic generator, enough for test data.
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
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
    fn words(&mut self, n: usize) -> String {
        (0..n).map(|_| self.pick(&WORDS)).collect::<Vec<_>>().join(" ")
    }
}

fn line_for(rng: &mut Rng, app: &str) -> String {
    let level = rng.pick(&LEVELS);
    let status = match level {
        "info" | "debug" => 200,
        "warn" => [404, 429][rng.below(2) as usize],
        _ => [500, 502, 503][rng.below(3) as usize],
    };
    let duration = rng.range(1, 900);
    let trace_id = format!("{:016x}", rng.next());
    if app == "worker" || app == "billing" {
        format!(
            r#"{{"level":"{level}","job":"{}","duration_ms":{duration},"trace_id":"{trace_id}","attempt":{},"msg":"{}"}}"#,
            rng.pick(&WORDS),
            rng.range(1, 5),
            rng.words(6)
        )
    } else {
        format!(
            "level={level} method={} path={}/{} status={status} duration={duration}ms bytes={} trace_id={trace_id} msg=\"{}\"",
            rng.pick(&METHODS),
            rng.pick(&PATHS),
            rng.range(1, 99_999),
            rng.range(100, 90_000),
            rng.words(5)
        )
    }
}

/// The load generator's streams, each a chunk of the default codec and block size, as an
/// ingester holds them.
struct Dataset {
    streams: Vec<(SharedLabels, MemChunk, usize)>,
}

impl Dataset {
    fn build(lines: usize) -> Dataset {
        let per_stream = lines / STREAMS;
        let mut rng = Rng(7);
        let mut streams = Vec::with_capacity(STREAMS);
        for i in 0..STREAMS {
            let app = APPS[i % APPS.len()];
            let ns = NSS[(i / APPS.len()) % NSS.len()];
            let pod = format!("{app}-{}", i / (APPS.len() * NSS.len()));
            let labels =
                Labels::from_pairs([("app", app), ("cluster", "east"), ("namespace", ns), ("pod", pod.as_str())])
                    .sorted();
            let mut chunk = MemChunk::new(Codec::default(), DEFAULT_BLOCK_SIZE);
            let mut ts = T0 + i as i64 * 7_000_000;
            let mut raw = 0;
            for _ in 0..per_stream {
                ts += 180_000_000 + rng.below(45_000_000) as i64;
                let line = line_for(&mut rng, app);
                raw += line.len();
                chunk.append(ts, line.as_bytes(), &[]).expect("append");
            }
            chunk.close();
            streams.push((Arc::new(labels), chunk, raw));
        }
        Dataset { streams }
    }

    /// Raw line bytes of the streams matching a selector.
    fn raw_bytes(&self, matchers: &[Matcher]) -> u64 {
        self.streams.iter().filter(|(l, _, _)| matches_all(l, matchers)).map(|(_, _, raw)| *raw as u64).sum()
    }
}

#[async_trait]
impl LogSource for Dataset {
    async fn select(&self, matchers: &[Matcher], from: i64, through: i64) -> Result<Vec<StreamBlocks>, EvalError> {
        let mut out = Vec::new();
        for (labels, chunk, _) in &self.streams {
            if !matches_all(labels, matchers) {
                continue;
            }
            let blocks = chunk.block_handles(from, through).map_err(|e| EvalError::Storage(e.to_string()))?;
            if !blocks.is_empty() {
                out.push(StreamBlocks { labels: labels.clone(), blocks, overlapping: false });
            }
        }
        Ok(out)
    }
}

const QUERIES: [(&str, &str); 5] = [
    ("count_over_time", r#"sum by (app) (count_over_time({namespace="prod"}[1m]))"#),
    ("rate_filter", r#"sum by (namespace) (rate({cluster="east"} |= "error" [5m]))"#),
    ("bytes_rate", r#"sum(bytes_rate({cluster="east"}[1m]))"#),
    ("unwrap_quantile", r#"quantile_over_time(0.99, {app="worker"} | json | unwrap duration_ms [5m]) by (namespace)"#),
    ("topk", r#"topk(3, sum by (pod) (count_over_time({cluster="east"} |= "level=error" [5m])))"#),
];

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (Linux only).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux configuration that matters here.
    Some(Duration::from_millis(ticks * 10))
}

/// With `NORN_BENCH_CPU=1`, prints each query's wall and CPU time per run: on a shared
/// machine the CPU time shows the cost when wall times are inflated by other load.
fn report_cpu(rt: &tokio::runtime::Runtime, source: &Arc<dyn LogSource>, params: &QueryParams, limits: &EvalLimits) {
    if std::env::var("NORN_BENCH_CPU").is_err() {
        return;
    }
    const RUNS: u32 = 5;
    for (name, q) in QUERIES {
        let expr = parse_sample_expr(q).expect("query parses");
        let (cpu0, wall0) = (cpu_time(), std::time::Instant::now());
        for _ in 0..RUNS {
            black_box(rt.block_on(metric::eval(source.clone(), &expr, params, limits)).expect("query runs"));
        }
        let wall = wall0.elapsed() / RUNS;
        let cpu = cpu_time().zip(cpu0).map(|(b, a)| (b - a) / RUNS);
        println!(
            "{name:<16} wall {:>7.1} ms   cpu {:>7.1} ms per run",
            wall.as_secs_f64() * 1e3,
            cpu.map_or(f64::NAN, |c| c.as_secs_f64() * 1e3)
        );
    }
}

fn bench_queries(c: &mut Criterion) {
    let lines = std::env::var("NORN_BENCH_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(4_000_000);
    let data = Arc::new(Dataset::build(lines));
    let source: Arc<dyn LogSource> = data.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let params = QueryParams {
        start: T0,
        end: T0 + 7_800 * 1_000_000_000,
        step: 60 * 1_000_000_000,
        interval: 0,
        direction: Direction::Forward,
        limit: 100,
        instant: false,
    };
    let limits = EvalLimits::default();
    report_cpu(&rt, &source, &params, &limits);
    let mut group = c.benchmark_group("metric_query");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    for (name, q) in QUERIES {
        let expr = parse_sample_expr(q).expect("query parses");
        let raw = expr.selectors().iter().map(|s| data.raw_bytes(&s.matchers)).sum();
        group.throughput(Throughput::Bytes(raw));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                black_box(rt.block_on(metric::eval(source.clone(), &expr, &params, &limits)).expect("query runs"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_queries);
criterion_main!(benches);
