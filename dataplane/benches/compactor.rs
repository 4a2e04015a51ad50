//! A compaction pass over ~10k chunks on S3 (moto): its duration and its object-store calls.
//! A benchmark, not a test: it prints figures and asserts only that the work was done.
//!
//! Run: `NORN_MOTO_SERVER=/path/to/moto_server cargo bench --bench compactor`
//! (`NORN_BENCH_STREAMS` and `NORN_BENCH_DAYS` change the shape, 100 × 100 by default).
//!
//! The data: `streams` streams × `days` days, one chunk per stream and day, each flushed with its
//! own index object (the worst case for the index: one object per chunk). Retention is 30 days,
//! and one delete request (past its cancel period) removes the "secret" lines of a tenth of the
//! streams over 5 days. Two passes run: the first merges every period's index objects, drops
//! the expired chunks and rewrites the deleted lines away; the second runs after
//! `retention_delete_delay` and deletes the dropped chunks from the bucket.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use norn::compactor::testing::{CountingStore, put_chunk};
use norn::compactor::{Compactor, CompactorConfig, DeleteRequests};
use norn::config::units::Dur;
use norn::labels::Labels;
use norn::limits::{Limits, TenantLimits};
use norn::ring::model::ManualClock;
use norn::storage::testing::MotoServer;
use norn::storage::{Index, ObjectStore};

const H: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * H;
const TENANT: &str = "bench";

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn calls(store: &CountingStore) -> String {
    let c = &store.calls;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    format!(
        "{} calls (get {}, put {}, list {}, delete {}, head {})",
        c.total(),
        get(&c.get),
        get(&c.put),
        get(&c.list),
        get(&c.delete),
        get(&c.head)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (streams, days) = (env("NORN_BENCH_STREAMS", 100), env("NORN_BENCH_DAYS", 100));
    let moto = MotoServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let s3: Arc<dyn ObjectStore> = Arc::new(moto.store("bench").await.unwrap());
    let now = 1_800_000_000 * 1_000_000_000i64;
    let index = Arc::new(Index::new(s3.clone(), Duration::from_secs(24 * 3600)));

    let seeding = Instant::now();
    let jobs: Vec<(i64, i64)> = (0..streams).flat_map(|s| (1..=days).map(move |d| (s, d))).collect();
    stream::iter(jobs)
        .map(|(s, d)| {
            let (s3, index) = (s3.clone(), index.clone());
            async move {
                let labels =
                    Arc::new(Labels::from_pairs([("app", format!("s{s}")), ("tenth", (s % 10).to_string())]).sorted());
                let from = now - d * DAY + H;
                let lines: Vec<(i64, String)> = (0..60)
                    .map(|i| {
                        let kind = if i % 2 == 0 { "secret" } else { "public" };
                        (from + i * 60_000_000_000, format!("{kind} request id={i} stream=s{s} day={d} took=12ms"))
                    })
                    .collect();
                let cref = put_chunk(&*s3, TENANT, &labels, &lines).await?;
                index.write(TENANT, &[cref]).await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    let chunks = streams * days;
    eprintln!("seeded {chunks} chunks and {chunks} index objects in {:.1}s", seeding.elapsed().as_secs_f64());
    let deletes = Arc::new(DeleteRequests::new(s3.clone()));
    deletes.add(TENANT, r#"{tenth="0"} |= "secret""#, now - 10 * DAY, now - 5 * DAY, now - 2 * DAY).await.unwrap();

    let counting = Arc::new(CountingStore::new(s3.clone()));
    let index = Arc::new(Index::new(counting.clone(), Duration::from_secs(24 * 3600)));
    let clock = Arc::new(ManualClock::new(now / 1_000_000));
    let limits = Limits { retention_period: Dur::hours(30 * 24), ..Limits::default() };
    let limits = Arc::new(TenantLimits::new(limits, &Default::default()).unwrap());
    let cfg = CompactorConfig { retention_enabled: true, ..CompactorConfig::default() };
    let deletes = Arc::new(DeleteRequests::new(counting.clone()));
    let compactor = Compactor::new(cfg, counting.clone(), index, limits, deletes, clock.clone());

    let started = Instant::now();
    let first = compactor.run_pass().await.unwrap();
    eprintln!("pass 1 (merge, expire, rewrite): {:.2}s, {}", started.elapsed().as_secs_f64(), calls(&counting));
    eprintln!("  {first:?}");
    assert_eq!(first.periods_compacted, days as u64);

    let counting_before = counting.calls.total();
    clock.advance(Duration::from_secs(3 * 3600));
    let started = Instant::now();
    let second = compactor.run_pass().await.unwrap();
    eprintln!(
        "pass 2 (delete after the delay): {:.2}s, {} calls",
        started.elapsed().as_secs_f64(),
        counting.calls.total() - counting_before
    );
    eprintln!("  {second:?}");
    assert!(second.chunks_deleted > 0);
    let left = s3.list(&format!("{TENANT}/chunks/")).await.unwrap().len();
    let index_objects = s3.list(&format!("{TENANT}/index/")).await.unwrap().len();
    eprintln!("left in the bucket: {left} chunks, {index_objects} index objects");
}
