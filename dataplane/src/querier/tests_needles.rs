//! The needle cache: a search fetches only the chunks whose needle indexes may hold its token,
//! and answers exactly what a querier without the cache answers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::chunk::{ChunkReader, Codec, DEFAULT_BLOCK_SIZE, MemChunk, needle};
use crate::compactor::testing::{CountingStore, write_chunk};
use crate::entry::Direction;
use crate::labels::Labels;
use crate::query::{QueryParams, Value};
use crate::storage::{IndexConfig, MemoryStore};

const T: &str = "tenant";
/// The first line's timestamp; lines are 100 ms apart.
const T0: i64 = 1_700_000_000_000_000_000;
const STREAMS: usize = 20;
const LINES: usize = 2_000;
/// The stream whose chunk holds the planted trace id, and the line that holds it.
const PLANTED: (usize, usize) = (7, 1_234);

struct Fixture {
    store: Arc<CountingStore>,
    /// With a needle cache, no chunk cache: every chunk it reads is a GET.
    cached: Querier,
    /// Neither cache: the reference answers.
    plain: Querier,
}

/// Logfmt lines with a pseudo-random 16-hex-digit trace id each (splitmix64).
fn lines(stream: usize) -> Vec<(i64, String)> {
    let mut x = (stream as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..LINES)
        .map(|i| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let id = if (stream, i) == PLANTED { 0xdead_beef } else { z };
            (T0 + i as i64 * 100_000_000, format!("level=info path=/api/{i} status=200 trace_id={id:016x} msg=\"ok\""))
        })
        .collect()
}

async fn fixture() -> Fixture {
    let store = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let index = Arc::new(Index::with_config(store.clone(), &IndexConfig::default()));
    for s in 0..STREAMS {
        let labels = Arc::new(Labels::from_pairs([("cluster", "east"), ("app", &format!("app-{s}"))]).sorted());
        write_chunk(&*store, &index, T, &labels, &lines(s)).await.unwrap();
    }
    let limits = Arc::new(TenantLimits::new(Default::default(), &Default::default()).unwrap());
    let querier = |needles: bool| {
        Querier::new(QuerierConfig::default(), None, store.clone(), index.clone(), limits.clone())
            .with_needle_cache(needles.then(|| Arc::new(NeedleCache::new(1 << 20, Duration::from_secs(3600)))))
    };
    Fixture { cached: querier(true), plain: querier(false), store }
}

impl Fixture {
    /// GETs of chunk objects so far.
    fn chunk_gets(&self) -> u64 {
        self.store.calls.get.load(Ordering::SeqCst) - self.store.index_gets.load(Ordering::SeqCst)
    }

    /// The answer of `q` from `querier` over all the data, and the chunks it fetched.
    async fn run(&self, querier: &Querier, q: &str) -> (Value, u64) {
        let params = QueryParams {
            start: T0,
            end: T0 + LINES as i64 * 100_000_000,
            step: 60_000_000_000,
            interval: 0,
            direction: Direction::Forward,
            limit: 5_000,
            instant: false,
        };
        let before = self.chunk_gets();
        let out = querier.query(&[T.to_string()], q, &params).await.unwrap();
        (out.value, self.chunk_gets() - before)
    }
}

/// How many of the streams' chunks have a block whose needle index may hold every token of
/// the line filter `literal`: what a search for it must fetch, false positives included.
fn admitted(literal: &str) -> u64 {
    let tokens = needle::literal_tokens(literal.as_bytes());
    assert!(!tokens.is_empty(), "{literal} has no token the index holds");
    (0..STREAMS)
        .filter(|&s| {
            let mut chunk = MemChunk::new(Codec::default(), DEFAULT_BLOCK_SIZE);
            for (ts, line) in lines(s) {
                chunk.append(ts, line.as_bytes(), &[]).unwrap();
            }
            chunk.close();
            chunk.block_handles(i64::MIN, i64::MAX).unwrap().iter().any(|h| h.may_contain_tokens(&tokens))
        })
        .count() as u64
}

fn entries(v: &Value) -> Vec<String> {
    let Value::Streams(streams) = v else { panic!("not streams: {v:?}") };
    streams.iter().flat_map(|s| s.entries.iter().map(|e| String::from_utf8_lossy(&e.line).into_owned())).collect()
}

#[tokio::test]
async fn a_search_fetches_only_the_chunks_that_may_hold_its_token() {
    let f = fixture().await;
    let needle = r#"{cluster="east"} |= "trace_id=00000000deadbeef""#;
    let (first, fetched) = f.run(&f.cached, needle).await;
    assert_eq!(fetched, STREAMS as u64, "nothing is known before the first read");
    let planted = entries(&first);
    assert_eq!(planted.len(), 1, "{planted:?}");
    assert!(planted[0].contains("path=/api/1234 "), "{planted:?}");

    // The chunk holding the trace id, and any whose index gives a false positive (about 0.8%
    // of the others), no more.
    let want = admitted("trace_id=00000000deadbeef");
    assert!((1..=3).contains(&want), "{want} chunks admitted");
    let (again, fetched) = f.run(&f.cached, needle).await;
    assert_eq!(entries(&again), planted);
    assert_eq!(fetched, want, "only the chunks whose index may hold the trace id");

    let absent = r#"{cluster="east"} |= "trace_id=11111111deadbeef""#;
    let (none, fetched) = f.run(&f.cached, absent).await;
    assert!(entries(&none).is_empty());
    assert_eq!(fetched, admitted("trace_id=11111111deadbeef"), "false positives only");
    assert!(fetched <= 2);

    let metric = r#"sum(count_over_time({cluster="east"} |= "trace_id=00000000deadbeef" [1h]))"#;
    let (counted, fetched) = f.run(&f.cached, metric).await;
    assert_eq!(fetched, want, "range aggregations skip chunks the same way");
    assert_eq!(counted, f.run(&f.plain, metric).await.0);

    // A filter without a token the index holds reads everything, as before.
    let (_, fetched) = f.run(&f.cached, r#"{cluster="east"} |= "status=200""#).await;
    assert_eq!(fetched, STREAMS as u64);
}

#[tokio::test]
async fn answers_with_the_needle_cache_equal_answers_without_it() {
    let f = fixture().await;
    // Warm the cache with every chunk.
    f.run(&f.cached, r#"{cluster="east"}"#).await;
    let queries = [
        r#"{cluster="east"} |= "trace_id=00000000deadbeef""#,
        r#"{cluster="east"} |= "trace_id=00000000deadbeef" or "trace_id=11111111deadbeef""#,
        r#"{cluster="east"} |~ "trace_id=00000000deadbeef.*""#,
        r#"{cluster="east"} |= "trace_id=00000000deadbeef" |= "level=info""#,
        r#"{cluster="east"} != "trace_id=00000000deadbeef" |= "path=/api/1234 ""#,
        r#"{app="app-7"} |= "=00000000deadbeef ""#,
        r#"sum by (app) (count_over_time({cluster="east"} |= "trace_id=00000000dead" [10m]))"#,
    ];
    for q in queries {
        let (cached, _) = f.run(&f.cached, q).await;
        let (plain, _) = f.run(&f.plain, q).await;
        assert_eq!(cached, plain, "{q}");
    }
    let (neg, _) = f.run(&f.cached, queries[4]).await;
    assert_eq!(entries(&neg).len(), STREAMS - 1, "a negative filter never skips a chunk");
}
