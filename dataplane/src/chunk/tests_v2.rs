//! Format 2: sections, the column-only read, the needle index, and reading format 1.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::entry::{Direction, Entry};
use crate::labels::Label;

/// A format-1 chunk written by the code before format 2 (commit f796de1) from
/// [`v1_fixture_entries`] with [`v1_fixture_chunk`]: zstd, 512-byte blocks, head included.
const V1_FIXTURE: &[u8] = include_bytes!("testdata/v1_zstd.chunk");

fn entry(ts: i64, line: &[u8], metadata: Vec<Label>) -> Entry {
    Entry { ts, line: Bytes::copy_from_slice(line), metadata }
}

fn fill(c: &mut MemChunk, input: &[Entry]) {
    for e in input {
        c.append(e.ts, &e.line, &e.metadata).unwrap();
    }
}

fn forward(c: &impl ChunkReader) -> Vec<Entry> {
    let mut it = c.iter(i64::MIN, i64::MAX, Direction::Forward);
    let v: Vec<Entry> = it.by_ref().collect();
    assert_eq!(it.error(), None);
    v
}

fn sorted(input: &[Entry]) -> Vec<Entry> {
    let mut v = input.to_vec();
    v.sort_by_key(|e| e.ts);
    v
}

/// The entries of the committed v1 fixture: out of order, an empty line, structured metadata
/// on every third entry, trace-id-like tokens.
fn v1_fixture_entries() -> Vec<Entry> {
    (0..40usize)
        .map(|i| {
            let ts = 1_700_000_000_000_000_000 + ((i * 7919) % 40) as i64 * 1_000_000;
            let line = if i == 5 {
                Vec::new()
            } else {
                format!("level=info i={i} trace_id=4bf92f3577b34da6a3ce929d0e0e{i:04} msg=\"hello\"").into_bytes()
            };
            let md = if i % 3 == 0 { vec![Label::new("span", format!("s{i}"))] } else { Vec::new() };
            entry(ts, &line, md)
        })
        .collect()
}

/// How the fixture was made (512-byte blocks, the head encoded as the last block).
fn v1_fixture_chunk() -> MemChunk {
    let mut c = MemChunk::new(Codec::Zstd, 512);
    fill(&mut c, &v1_fixture_entries());
    c
}

#[test]
fn reads_the_v1_fixture() {
    let data = Bytes::from_static(V1_FIXTURE);
    assert_eq!(data[4], FORMAT_VERSION_V1);
    let want = sorted(&v1_fixture_entries());
    let chunk = Chunk::decode(data.clone()).unwrap();
    assert!(chunk.blocks().len() > 3, "several blocks");
    assert!(chunk.blocks().iter().all(|m| m.sections.is_none()));
    assert_eq!(chunk.index_size(), 0);
    assert_eq!(forward(&chunk), want);
    // The column read of a format-1 block decodes it whole and agrees with it.
    for h in chunk.block_handles(i64::MIN, i64::MAX).unwrap() {
        assert_eq!(h.has_metadata(), None);
        assert!(
            h.may_contain_tokens(&needle::LiteralTokens::whole(vec![needle::token_hash(b"absent-123456")])),
            "no index, no skip"
        );
        let block = h.clone().decode().unwrap();
        let cols = h.decode_columns().unwrap();
        assert_eq!(cols.timestamps(), block.timestamps());
        assert_eq!(cols.has_metadata(), block.has_metadata());
        assert!((0..cols.len()).all(|i| cols.line_len(i) == block.line_range(i).len()));
    }
    // A v1 checkpoint appended to and encoded again: a format-2 chunk carrying v1 blocks.
    let mut mem = MemChunk::decode(data).unwrap();
    mem.append(1_700_000_000_100_000_000, b"after id=abcdef0123456789 x", &[]).unwrap();
    mem.close();
    let again = mem.encode();
    assert_eq!(again[4], FORMAT_VERSION);
    let chunk = Chunk::decode(again.clone()).unwrap();
    let mut want = want;
    want.push(entry(1_700_000_000_100_000_000, b"after id=abcdef0123456789 x", Vec::new()));
    assert_eq!(forward(&chunk), want);
    assert!(chunk.blocks().last().is_some_and(|m| m.sections.is_some()));
    assert!(chunk.blocks()[0].sections.is_none());
    assert_eq!(forward(&MemChunk::decode(again).unwrap()), want);
}

#[test]
fn the_fixture_recipe_now_writes_format_2() {
    let c = v1_fixture_chunk();
    let bytes = c.encode();
    assert_eq!(&bytes[..5], &[b'N', b'R', b'N', b'C', 2]);
    let chunk = Chunk::decode(bytes).unwrap();
    assert_eq!(forward(&chunk), sorted(&v1_fixture_entries()));
    for m in chunk.blocks() {
        let s = m.sections.expect("format-2 block");
        assert!(s.columns_len > 0 && s.index_len > 0);
        assert!(s.lines_len(m.compressed_len).is_some_and(|l| l > 0));
    }
}

#[test]
fn column_read_skips_the_line_section() {
    let mut c = MemChunk::new(Codec::Lz4, 4096);
    for i in 0..500i64 {
        c.append(i * 10, format!("line {i} trace=abcdef{i:08}").as_bytes(), &[]).unwrap();
    }
    c.close();
    let chunk = Chunk::decode(c.encode()).unwrap();
    let h = chunk.block_handles(i64::MIN, i64::MAX).unwrap().remove(0);
    assert_eq!(h.has_metadata(), Some(false));
    // Damage the line section only: the columns still read, the full decode fails.
    let (meta, codec, data) = h.wire();
    let s = meta.sections.unwrap();
    let mut bad = data.to_vec();
    bad[s.columns_len as usize + 1] ^= 0x40;
    let damaged = BlockHandle::from_wire(meta, codec, Bytes::from(bad)).unwrap();
    let cols = damaged.clone().decode_columns().unwrap();
    assert_eq!(cols.len(), meta.count as usize);
    assert!(matches!(damaged.decode(), Err(ChunkError::Corrupt(_))));
    // Damage the column section: both reads fail.
    let mut bad = data.to_vec();
    bad[0] ^= 0x40;
    let damaged = BlockHandle::from_wire(meta, codec, Bytes::from(bad)).unwrap();
    assert!(damaged.clone().decode_columns().is_err());
    assert!(damaged.decode().is_err());
}

#[test]
fn metadata_flag_follows_the_entries() {
    let mut c = MemChunk::new(Codec::Snappy, 1 << 20);
    c.append(1, b"plain", &[]).unwrap();
    c.cut_block();
    c.append(2, b"with", &[Label::new("k", "v")]).unwrap();
    c.cut_block();
    c.append(3, b"head", &[]).unwrap();
    let handles = c.block_handles(i64::MIN, i64::MAX).unwrap();
    let flags: Vec<Option<bool>> = handles.iter().map(BlockHandle::has_metadata).collect();
    assert_eq!(flags, vec![Some(false), Some(true), Some(false)]);
    assert!(handles[1].clone().decode_columns().unwrap().has_metadata());
}

/// A random line: words, numbers and sometimes a planted token `id=<token>` (hex, ending in a
/// digit, so it always is a token).
fn arb_line() -> impl Strategy<Value = (Vec<u8>, Option<String>)> {
    ("[a-z =.:\"-]{0,30}", prop::option::of("[a-f0-9]{7,19}[0-9]"), "[a-zA-Z0-9_ -]{0,20}").prop_map(|(a, token, b)| {
        let line = match &token {
            Some(t) => format!("{a} id={t} {b}"),
            None => format!("{a}{b}"),
        };
        (line.into_bytes(), token)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn columns_agree_with_full_decode(
        codec in prop::sample::select(Codec::ALL.to_vec()),
        block_size in 64usize..4096,
        input in prop::collection::vec(
            (0i64..50, arb_line(), prop::option::of(prop::collection::vec(("[a-z]{1,3}", "[a-z0-9]{0,4}"), 1..3))),
            1..200,
        ),
    ) {
        let mut c = MemChunk::new(codec, block_size);
        for (ts, (line, _), md) in &input {
            let md: Vec<Label> = md.iter().flatten().map(|(n, v)| Label::new(n.as_str(), v.as_str())).collect();
            c.append(*ts, line, &md).unwrap();
        }
        for chunk in [Chunk::decode(c.encode()).unwrap()] {
            for h in chunk.block_handles(i64::MIN, i64::MAX).unwrap() {
                let block = h.clone().decode().unwrap();
                prop_assert_eq!(h.has_metadata(), Some(block.has_metadata()));
                let cols = h.decode_columns().unwrap();
                prop_assert_eq!(cols.timestamps(), block.timestamps());
                prop_assert_eq!(cols.has_metadata(), block.has_metadata());
                for i in 0..cols.len() {
                    prop_assert_eq!(cols.line_len(i), block.line_range(i).len());
                }
                for (from, through) in [(0, 50), (10, 20), (25, 26)] {
                    prop_assert_eq!(cols.range_of(from, through), block.range_of(from, through));
                }
            }
        }
        // The head snapshot of the appendable chunk too.
        for h in c.block_handles(i64::MIN, i64::MAX).unwrap() {
            let block = h.clone().decode().unwrap();
            let cols = h.decode_columns().unwrap();
            prop_assert_eq!(cols.timestamps(), block.timestamps());
        }
    }

    /// Every planted token is found in the index of the block holding it: a filter on
    /// `id=<token> ` never skips a block with a matching line.
    #[test]
    fn the_needle_index_never_loses_a_planted_token(
        block_size in 256usize..4096,
        lines in prop::collection::vec(arb_line(), 1..300),
    ) {
        let mut c = MemChunk::new(Codec::Zstd, block_size);
        for (i, (line, _)) in lines.iter().enumerate() {
            c.append(i as i64, line, &[]).unwrap();
        }
        c.close();
        let chunk = Chunk::decode(c.encode()).unwrap();
        for h in chunk.block_handles(i64::MIN, i64::MAX).unwrap() {
            let block = h.clone().decode().unwrap();
            for i in 0..block.len() {
                let line = block.line(i);
                let mut found = Vec::new();
                needle::for_each_token(&line, |t| found.push(t.to_vec()));
                for t in found {
                    prop_assert!(h.may_contain_tokens(&needle::LiteralTokens::whole(vec![needle::token_hash(&t)])));
                    if t.len() >= needle::PREFIX_LEN {
                        // `id=<a prefix of t>` at the end of a literal.
                        let lit = [b"=".as_slice(), &t[..needle::PREFIX_LEN + (t.len() - needle::PREFIX_LEN) / 2]].concat();
                        let tokens = needle::literal_tokens(&lit);
                        let digit = lit[1..].iter().any(u8::is_ascii_digit);
                        prop_assert_eq!(tokens.prefixes.len(), usize::from(digit));
                        prop_assert!(h.may_contain_tokens(&tokens));
                    }
                }
            }
            let (_, token) = &lines[block.timestamps()[0] as usize];
            if let Some(t) = token {
                let lit = format!("id={t} ");
                let tokens = needle::literal_tokens(lit.as_bytes());
                prop_assert_eq!(tokens.whole.len(), 1);
                prop_assert!(h.may_contain_tokens(&tokens));
            }
        }
    }
}

#[test]
fn index_rejects_absent_tokens_and_reports_its_size() {
    let mut c = MemChunk::new(Codec::Zstd, DEFAULT_BLOCK_SIZE);
    for i in 0..4000u64 {
        let line = format!(
            "ts=2024-05-01T10:00:{:02} level=info trace_id={:032x} span={:016x} msg=\"request done\" dur={}ms",
            i % 60,
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            i * 7,
            i % 300
        );
        c.append(i as i64, line.as_bytes(), &[]).unwrap();
    }
    c.close();
    let chunk = Chunk::decode(c.encode()).unwrap();
    let handles = chunk.block_handles(i64::MIN, i64::MAX).unwrap();
    let absent: Vec<needle::LiteralTokens> =
        (0..1000u64).map(|i| needle::literal_tokens(format!("={:032x} ", i + (1 << 60)).as_bytes())).collect();
    let mut maybe = 0;
    for h in &handles {
        maybe += absent.iter().filter(|t| h.may_contain_tokens(t)).count();
    }
    let rate = maybe as f64 / (absent.len() * handles.len()) as f64;
    assert!(rate < 0.03, "false positive rate {rate}");
    let share = chunk.index_size() as f64 / chunk.compressed_size() as f64;
    assert!(share < 0.25, "index is {share} of the stored bytes");
}
