//! Chunk format benchmarks: append + compress, block decompression, block scan and entry
//! iteration, for every codec, on realistic log lines; the column-only read of a block
//! (`block_columns`) and the needle index skip of a trace id search (`needle`).
//!
//! Run: `cargo bench -p norn --bench chunk` for every group, or add a filter for one, e.g.
//! `cargo bench -p norn --bench chunk -- block_decompress/zstd`. Throughput is in bytes of raw log
//! lines, so MB/s figures compare directly with ingest rates and scan budgets. The compression
//! ratio of every codec is printed once before the groups run.
//!
//! Note: the first benchmarks of a run can include page-fault costs of fresh allocations that
//! later ones do not (glibc trims the heap between iterations); compare codecs within one run.
//!
//! Lines follow the load generator in `shared/bench/loadgen.py` (`line_for`): logfmt access
//! lines and JSON job lines with random words, trace ids and numbers, timestamps ~180 ms apart,
//! generated from a fixed seed.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use norn::chunk::{Chunk, ChunkReader, Codec, DEFAULT_BLOCK_SIZE, MemChunk};
use norn::entry::Direction;

mod common;
use common::{Format, dataset};

/// Raw line bytes per benchmarked chunk: four default-size blocks.
const CHUNK_RAW: usize = 4 * DEFAULT_BLOCK_SIZE;

fn build(codec: Codec, entries: &[(i64, Vec<u8>)]) -> MemChunk {
    let mut c = MemChunk::new(codec, DEFAULT_BLOCK_SIZE);
    for (ts, line) in entries {
        c.append(*ts, line, &[]).expect("append");
    }
    c.close();
    c
}

fn encoded(codec: Codec, entries: &[(i64, Vec<u8>)]) -> Chunk {
    let bytes: Bytes = build(codec, entries).encode();
    Chunk::decode(bytes).expect("decode")
}

fn print_ratios() {
    for format in [Format::Logfmt, Format::Json] {
        let (entries, raw) = dataset(format, CHUNK_RAW);
        let avg = raw / entries.len();
        for codec in Codec::ALL {
            let c = build(codec, &entries);
            println!(
                "ratio {:<6} {:<6}: {:.2} (raw {raw} B in {} lines of {avg} B avg, compressed {} B)",
                format.name(),
                codec.as_str(),
                raw as f64 / c.compressed_size() as f64,
                entries.len(),
                c.compressed_size()
            );
        }
    }
}

fn bench_append(c: &mut Criterion) {
    print_ratios();
    let mut group = c.benchmark_group("chunk_append");
    for format in [Format::Logfmt, Format::Json] {
        let (entries, raw) = dataset(format, CHUNK_RAW);
        group.throughput(Throughput::Bytes(raw as u64));
        for codec in Codec::ALL {
            group.bench_with_input(BenchmarkId::new(codec.as_str(), format.name()), &entries, |b, entries| {
                b.iter(|| black_box(build(codec, entries)))
            });
        }
    }
    group.finish();
}

fn bench_decompress(c: &mut Criterion) {
    let mut group = c.benchmark_group("block_decompress");
    for format in [Format::Logfmt, Format::Json] {
        let (entries, _) = dataset(format, CHUNK_RAW);
        for codec in Codec::ALL {
            let chunk = encoded(codec, &entries);
            let block = chunk.decode_block(0).expect("block");
            group.throughput(Throughput::Bytes(block.lines_buf().len() as u64));
            group.bench_function(BenchmarkId::new(codec.as_str(), format.name()), |b| {
                b.iter(|| black_box(chunk.decode_block(0).expect("block")))
            });
        }
    }
    group.finish();
}

fn bench_scan(c: &mut Criterion) {
    // What a substring filter costs per block: decompress, memmem over the lines, map hits.
    let mut group = c.benchmark_group("block_scan");
    let (entries, _) = dataset(Format::Logfmt, CHUNK_RAW);
    let finder = memchr::memmem::Finder::new("status=503");
    for codec in Codec::ALL {
        let chunk = encoded(codec, &entries);
        let raw = chunk.decode_block(0).expect("block").lines_buf().len();
        group.throughput(Throughput::Bytes(raw as u64));
        group.bench_function(BenchmarkId::new(codec.as_str(), "logfmt"), |b| {
            b.iter(|| {
                let block = chunk.decode_block(0).expect("block");
                let mut hits = 0usize;
                let mut last = usize::MAX;
                for off in finder.find_iter(block.lines_buf()) {
                    let i = block.entry_index_at(off);
                    if i != last {
                        hits += 1;
                        last = i;
                    }
                }
                black_box(hits)
            })
        });
    }
    group.finish();
}

fn bench_iter(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunk_iter");
    let (entries, raw) = dataset(Format::Logfmt, CHUNK_RAW);
    group.throughput(Throughput::Bytes(raw as u64));
    for codec in Codec::ALL {
        let chunk = encoded(codec, &entries);
        group.bench_function(BenchmarkId::new(codec.as_str(), "forward"), |b| {
            b.iter(|| chunk.iter(i64::MIN, i64::MAX, Direction::Forward).map(|e| e.line.len()).sum::<usize>())
        });
    }
    // The ingester's view: a MemChunk with an uncompressed head, read backward.
    let mut mem = MemChunk::new(Codec::default(), DEFAULT_BLOCK_SIZE);
    for (ts, line) in &entries {
        mem.append(*ts, line, &[]).expect("append");
    }
    group.bench_function(BenchmarkId::new("memchunk_with_head", "backward"), |b| {
        b.iter(|| ChunkReader::iter(&mem, i64::MIN, i64::MAX, Direction::Backward).map(|e| e.line.len()).sum::<usize>())
    });
    group.finish();
}

fn bench_columns(c: &mut Criterion) {
    // What `count_over_time` / `bytes_over_time` cost per block: the column section only,
    // against decompressing the whole block.
    let mut group = c.benchmark_group("block_columns");
    let (entries, _) = dataset(Format::Logfmt, CHUNK_RAW);
    for codec in [Codec::Lz4, Codec::Zstd] {
        let chunk = encoded(codec, &entries);
        let raw = chunk.decode_block(0).expect("block").lines_buf().len();
        let handle = chunk.block_handles(i64::MIN, i64::MAX).expect("handles").remove(0);
        group.throughput(Throughput::Bytes(raw as u64));
        group.bench_function(BenchmarkId::new(codec.as_str(), "columns"), |b| {
            b.iter(|| {
                let cols = handle.clone().decode_columns().expect("columns");
                black_box((0..cols.len()).map(|i| cols.line_len(i)).sum::<usize>())
            })
        });
        group.bench_function(BenchmarkId::new(codec.as_str(), "full"), |b| {
            b.iter(|| {
                let block = handle.clone().decode().expect("block");
                black_box((0..block.len()).map(|i| block.line_range(i).len()).sum::<usize>())
            })
        });
    }
    group.finish();
}

fn bench_needle(c: &mut Criterion) {
    // A trace id search over a chunk: the needle index rules out every block, against
    // decompressing and searching each.
    let mut group = c.benchmark_group("needle");
    let (entries, raw) = dataset(Format::Logfmt, CHUNK_RAW);
    let chunk = encoded(Codec::Zstd, &entries);
    println!(
        "needle index: {} B for {} B of blocks ({:.2}%), {} blocks",
        chunk.index_size(),
        chunk.compressed_size(),
        100.0 * chunk.index_size() as f64 / chunk.compressed_size() as f64,
        chunk.blocks().len()
    );
    // Generated trace ids have the top bit set: this one is in no line.
    let literal = "trace_id=0123456789abcdef ";
    let tokens = norn::chunk::needle::literal_tokens(literal.as_bytes());
    let finder = memchr::memmem::Finder::new(literal);
    let handles = chunk.block_handles(i64::MIN, i64::MAX).expect("handles");
    group.throughput(Throughput::Bytes(raw as u64));
    group.bench_function("skip/zstd", |b| {
        b.iter(|| black_box(handles.iter().filter(|h| h.may_contain_tokens(&tokens)).count()))
    });
    group.bench_function("scan/zstd", |b| {
        b.iter(|| {
            let mut hits = 0usize;
            for h in &handles {
                let block = h.clone().decode().expect("block");
                hits += finder.find_iter(block.lines_buf()).count();
            }
            black_box(hits)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_append, bench_decompress, bench_scan, bench_iter, bench_columns, bench_needle
}
criterion_main!(benches);
