//! Log query benchmarks over an ingester-like in-memory dataset.
//!
//! Run: `cargo bench -p norn --bench logs` (add a filter such as `-- needle` for one group).
//! The dataset follows `shared/bench/loadgen.py`: 160 streams (`app`, `namespace`, `pod`,
//! `cluster="east"`), logfmt access lines and JSON job lines, timestamps 180-225 ms apart per
//! stream, in zstd chunks of 256 KiB blocks as the ingester keeps them — 586 MB of raw lines by
//! default (the size of the bench README's push), `NORN_BENCH_LOG_MB` to change it. One line
//! carries the needle's trace id. Throughput is in raw line bytes of the whole dataset.
//!
//! - `needle`: `{cluster="east"} |= "trace_id=00000000deadbeef"`, forward, limit 1000 — every
//!   block decompressed and searched (target: ≤ 0.35 s on 2 cores).
//! - `selector_limit`: `{app="api"}`, limit 1000, both directions — stops after the first
//!   blocks of each stream.
//! - `selector_limit_rf3`: the same over three replicas of every stream (a querier merging what
//!   three ingesters return): blocks overlap, entries are merged and deduplicated.
//! - `scan_floor`: decompress every block and run `memmem` over it on the same threads, without
//!   the engine: the floor the needle query cannot beat.
//!
//! `NORN_BENCH_CPU=1` also prints each query's wall and CPU time per run: on a shared machine
//! the CPU time (divided by the thread count) shows the cost when other load inflates wall times.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use norn::chunk::{ChunkReader, Codec, DEFAULT_BLOCK_SIZE, MemChunk};
use norn::entry::Direction;
use norn::labels::{Labels, SharedLabels};
use norn::logql::{Expr, Matcher, parse_expr};
use norn::query::source::matches_all;
use norn::query::{EvalError, LogSource, QueryParams, StreamBlocks, Value, logs};

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
const NEEDLE: &str = "trace_id=00000000deadbeef";
const T0: i64 = 1_700_000_000_000_000_000;

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
    let trace_id = format!("{:016x}", rng.next() | 1 << 63);
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

/// Stream `i`'s labels, as the load generator names them.
fn stream_labels(i: usize) -> Labels {
    let app = APPS[i % APPS.len()];
    let ns = NSS[(i / APPS.len()) % NSS.len()];
    let pod = format!("{app}-{}", i / (APPS.len() * NSS.len()));
    Labels::from_pairs([("app", app), ("cluster", "east"), ("namespace", ns), ("pod", pod.as_str())]).sorted()
}

/// Ingester memory: one open chunk per stream (cut blocks plus a head).
struct Dataset {
    streams: Vec<(SharedLabels, MemChunk)>,
    raw: usize,
    end: i64,
}

#[async_trait]
impl LogSource for Dataset {
    async fn select(&self, matchers: &[Matcher], from: i64, through: i64) -> Result<Vec<StreamBlocks>, EvalError> {
        let mut out = Vec::new();
        for (labels, chunk) in &self.streams {
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

/// Every stream of the dataset three times, as replicas returned by three ingesters.
struct Replicated(Arc<Dataset>);

#[async_trait]
impl LogSource for Replicated {
    async fn select(&self, matchers: &[Matcher], from: i64, through: i64) -> Result<Vec<StreamBlocks>, EvalError> {
        let one = self.0.select(matchers, from, through).await?;
        Ok(one.into_iter().flat_map(|s| std::iter::repeat_n(StreamBlocks { overlapping: true, ..s }, 3)).collect())
    }
}

/// Builds the dataset on two threads.
fn dataset(raw_target: usize) -> Dataset {
    let per_stream = raw_target / STREAMS;
    let build = |i: usize| {
        let labels = stream_labels(i);
        let app = labels.get("app").unwrap_or_default().to_string();
        let mut rng = Rng(7_000 + i as u64);
        let mut chunk = MemChunk::new(Codec::default(), DEFAULT_BLOCK_SIZE);
        let (mut ts, mut raw) = (T0 + i as i64 * 7_000_000, 0usize);
        let mut n = 0usize;
        while raw < per_stream {
            ts += 180_000_000 + rng.below(45_000_000) as i64;
            let mut line = line_for(&mut rng, &app);
            if i == 77 && n == 1234 {
                line = format!("level=error msg=\"found it\" {NEEDLE}");
            }
            raw += line.len();
            chunk.append(ts, line.as_bytes(), &[]).expect("append");
            n += 1;
        }
        (Arc::new(labels), chunk, raw, ts)
    };
    let next = AtomicUsize::new(0);
    let mut built: Vec<(usize, (SharedLabels, MemChunk, usize, i64))> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= STREAMS {
                            return mine;
                        }
                        mine.push((i, build(i)));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("builder")).collect()
    });
    built.sort_by_key(|(i, _)| *i);
    let raw = built.iter().map(|(_, b)| b.2).sum();
    let end = built.iter().map(|(_, b)| b.3).max().unwrap_or(T0) + 1;
    let streams = built.into_iter().map(|(_, (l, c, _, _))| (l, c)).collect();
    Dataset { streams, raw, end }
}

fn log_expr(q: &str) -> norn::logql::LogExpr {
    match parse_expr(q) {
        Ok(Expr::Log(e)) => e,
        other => panic!("{q}: {other:?}"),
    }
}

fn bench_queries(c: &mut Criterion) {
    let mb: usize = std::env::var("NORN_BENCH_LOG_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(586);
    let data = Arc::new(dataset(mb << 20));
    let blocks: usize = data.streams.iter().map(|(_, c)| c.blocks().len() + 1).sum();
    let compressed: usize = data.streams.iter().map(|(_, c)| c.compressed_size()).sum();
    println!(
        "dataset: {} streams, {:.0} MB raw, {:.0} MB compressed, {blocks} blocks, {} threads",
        STREAMS,
        data.raw as f64 / 1e6,
        compressed as f64 / 1e6,
        logs::worker_threads()
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let source: Arc<dyn LogSource> = data.clone();
    let params = |direction| QueryParams {
        start: T0,
        end: data.end,
        step: 0,
        interval: 0,
        direction,
        limit: 1000,
        instant: false,
    };
    let run = |expr: &norn::logql::LogExpr, p: &QueryParams| -> usize {
        match rt.block_on(logs::eval(source.clone(), expr, p)) {
            Ok(Value::Streams(s)) => s.iter().map(|s| s.entries.len()).sum(),
            other => panic!("{other:?}"),
        }
    };

    let mut group = c.benchmark_group("logs");
    group.throughput(Throughput::Bytes(data.raw as u64));
    let needle = log_expr(&format!(r#"{{cluster="east"}} |= "{NEEDLE}""#));
    let api = log_expr(r#"{app="api"}"#);
    println!("needle: {} entries", run(&needle, &params(Direction::Forward)));
    if std::env::var("NORN_BENCH_CPU").is_ok() {
        report_cpu("needle", || run(&needle, &params(Direction::Forward)));
        report_cpu("selector_limit/forward", || run(&api, &params(Direction::Forward)));
        report_cpu("selector_limit/backward", || run(&api, &params(Direction::Backward)));
        report_cpu("scan_floor", || scan_floor(&data));
    }
    group.bench_function("needle", |b| b.iter(|| black_box(run(&needle, &params(Direction::Forward)))));
    for (name, dir) in [("forward", Direction::Forward), ("backward", Direction::Backward)] {
        group.bench_function(format!("selector_limit/{name}"), |b| b.iter(|| black_box(run(&api, &params(dir)))));
    }
    let replicated: Arc<dyn LogSource> = Arc::new(Replicated(data.clone()));
    for dir in [Direction::Forward, Direction::Backward] {
        let once = rt.block_on(logs::eval(source.clone(), &api, &params(dir))).expect("query");
        let thrice = rt.block_on(logs::eval(replicated.clone(), &api, &params(dir))).expect("query");
        assert_eq!(once, thrice, "replicas must merge into the same result");
    }
    for (name, dir) in [("forward", Direction::Forward), ("backward", Direction::Backward)] {
        group.bench_function(format!("selector_limit_rf3/{name}"), |b| {
            b.iter(|| match rt.block_on(logs::eval(replicated.clone(), &api, &params(dir))) {
                Ok(Value::Streams(s)) => black_box(s.iter().map(|s| s.entries.len()).sum::<usize>()),
                other => panic!("{other:?}"),
            })
        });
    }
    group.bench_function("scan_floor", |b| b.iter(|| black_box(scan_floor(&data))));
    group.finish();
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (Linux only).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// Prints the wall and CPU time per run of `f` over a few runs.
fn report_cpu(name: &str, mut f: impl FnMut() -> usize) {
    const RUNS: u32 = 5;
    let (cpu0, wall0) = (cpu_time(), std::time::Instant::now());
    for _ in 0..RUNS {
        black_box(f());
    }
    let wall = wall0.elapsed() / RUNS;
    let cpu = cpu_time().zip(cpu0).map(|(b, a)| (b - a) / RUNS);
    println!(
        "{name:<24} wall {:>8.1} ms   cpu {:>8.1} ms per run",
        wall.as_secs_f64() * 1e3,
        cpu.map_or(f64::NAN, |c| c.as_secs_f64() * 1e3)
    );
}

/// Every block decompressed and searched for the needle on the engine's thread count, nothing
/// else: what the needle query costs at the least.
fn scan_floor(data: &Dataset) -> usize {
    let handles: Vec<_> =
        data.streams.iter().flat_map(|(_, c)| c.block_handles(i64::MIN, i64::MAX).expect("handles")).collect();
    let next = AtomicUsize::new(0);
    let finder = memchr::memmem::Finder::new(NEEDLE);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..logs::worker_threads())
            .map(|_| {
                s.spawn(|| {
                    let mut hits = 0;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(h) = handles.get(i) else {
                            return hits;
                        };
                        let block = h.clone().decode().expect("decode");
                        hits += finder.find_iter(block.lines_buf()).count();
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    })
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = bench_queries
}
criterion_main!(benches);
