//! WAL append throughput (group commit) and this disk's `fdatasync` latency.
//!
//! Run: `cargo bench --bench wal` (or `-- wal_append`, `-- fdatasync` for one group).
//! Files go to the system temp directory: set `TMPDIR` to a directory on the disk the WAL will
//! live on, since fsync latency is a property of the disk, not of the code.
//!
//! - `wal_append/<policy>/<size>`: 8 tokio tasks on a 2-worker runtime each submit a record and
//!   await its ticket, back to back — the ingester's pattern (a push is acknowledged after its
//!   fsync). 16 records per task per iteration. Reports MB/s and records/s. After each group,
//!   the WAL's own counters are printed: records per fsync and mean fsync time.
//! - `wal_recovery/{replay,checkpoint}/64MiB`: replay of a page-cached WAL, and writing (with
//!   fsync) a checkpoint of 64 MiB in 64 KiB records.
//! - `fdatasync/256KiB`: append 256 KiB to a file and `fdatasync` it. Before the criterion run,
//!   p50/p99/max of 200 single `fdatasync`s (each after a 256 KiB write) go to stderr.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use norn::wal::{SyncPolicy, Wal, WalConfig};

const TASKS: usize = 8;
const RECORDS_PER_TASK: usize = 16;

async fn push_round(wal: &Wal, payload: &Bytes) {
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (wal, payload) = (wal.clone(), payload.clone());
            tokio::spawn(async move {
                for _ in 0..RECORDS_PER_TASK {
                    let ticket = wal.submit_async(payload.clone()).await.expect("submit");
                    ticket.await.expect("durable");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
}

fn wal_append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("wal_append");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(6));
    for (policy_name, policy) in [("batch", SyncPolicy::Batch), ("never", SyncPolicy::Never)] {
        for size in [64usize << 10, 256 << 10] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let wal = Wal::open(WalConfig { sync: policy, ..WalConfig::new(tmp.path()) }).expect("open");
            let payload = Bytes::from(vec![0xa5u8; size]);
            let records = (TASKS * RECORDS_PER_TASK) as u64;
            group.throughput(Throughput::ElementsAndBytes { elements: records, bytes: records * size as u64 });
            let id = BenchmarkId::new(policy_name, format!("{}KiB", size >> 10));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut measured = Duration::ZERO;
                    for _ in 0..iters {
                        let started = Instant::now();
                        rt.block_on(push_round(&wal, &payload));
                        measured += started.elapsed();
                        // Untimed: keep disk usage bounded with an (empty) checkpoint.
                        if wal.stats().segments_on_disk > 3 {
                            let n = wal.rotate().expect("rotate");
                            wal.write_checkpoint(n, Vec::<Bytes>::new()).expect("checkpoint");
                        }
                    }
                    measured
                })
            });
            let stats = wal.stats();
            if stats.records_written == 0 {
                wal.close().expect("close");
                continue; // filtered out
            }
            eprintln!(
                "wal_append/{policy_name}/{}KiB: {} records in {} batches ({:.1} records/batch), \
                 {} fsyncs, mean fsync {:.2} ms",
                size >> 10,
                stats.records_written,
                stats.batches,
                stats.records_written as f64 / stats.batches.max(1) as f64,
                stats.fsyncs,
                stats.fsync_time.as_secs_f64() * 1e3 / stats.fsyncs.max(1) as f64,
            );
            wal.close().expect("close");
        }
    }
    group.finish();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn fdatasync(c: &mut Criterion) {
    const SIZE: usize = 256 << 10;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut file = OpenOptions::new().create(true).append(true).open(tmp.path().join("fsync.bin")).expect("open");
    let block = vec![0x5au8; SIZE];

    let mut samples = Vec::with_capacity(200);
    file.set_len(0).expect("truncate");
    for i in 0..210 {
        file.write_all(&block).expect("write");
        let started = Instant::now();
        file.sync_data().expect("fdatasync");
        if i >= 10 {
            samples.push(started.elapsed());
        }
    }
    samples.sort();
    eprintln!(
        "fdatasync after a 256 KiB append, {} samples: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );

    let mut group = c.benchmark_group("fdatasync");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.bench_function("256KiB", |b| {
        b.iter_custom(|iters| {
            let mut measured = Duration::ZERO;
            for i in 0..iters {
                let started = Instant::now();
                file.write_all(&block).expect("write");
                file.sync_data().expect("fdatasync");
                measured += started.elapsed();
                // Untimed: keep the file small (appends go to the new end).
                if i % 256 == 255 {
                    file.set_len(0).expect("truncate");
                }
            }
            measured
        })
    });
    group.finish();
}

/// Replay and checkpoint of 64 MiB in 64 KiB records (replay reads from the page cache: this is
/// the CPU cost of framing, CRC and copies, the floor under restart time).
fn wal_recovery(c: &mut Criterion) {
    const TOTAL: usize = 64 << 20;
    const SIZE: usize = 64 << 10;
    let records: Vec<Bytes> = (0..TOTAL / SIZE).map(|i| Bytes::from(vec![i as u8; SIZE])).collect();
    let tmp = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(WalConfig { sync: SyncPolicy::Never, ..WalConfig::new(tmp.path()) }).expect("open");
    let tickets: Vec<_> = records.iter().map(|r| wal.submit(r.clone()).expect("submit")).collect();
    for t in tickets {
        futures::executor::block_on(t).expect("durable");
    }

    let mut group = c.benchmark_group("wal_recovery");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.bench_function("replay/64MiB", |b| {
        b.iter(|| {
            let mut n = 0usize;
            norn::wal::replay(tmp.path(), |_, p| {
                n += p.len();
                Ok::<(), std::convert::Infallible>(())
            })
            .expect("replay");
            assert_eq!(n, TOTAL);
        })
    });
    let ckpt = wal.rotate().expect("rotate");
    group.bench_function("checkpoint/64MiB", |b| {
        b.iter(|| wal.write_checkpoint(ckpt, records.iter().cloned()).expect("checkpoint"))
    });
    group.finish();
    wal.close().expect("close");
}

criterion_group!(benches, fdatasync, wal_append, wal_recovery);
criterion_main!(benches);
