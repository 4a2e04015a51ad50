//! A Bloom filter over the (timestamp, line) pairs of one cut block of a `MemChunk`.
//!
//! The ingester asks [`MemChunk::contains`](super::MemChunk::contains) about every entry that
//! arrives at or behind the stream's newest timestamp. When producers interleave, such entries
//! are common and their timestamps fall inside the ranges of cut blocks; without a filter each
//! of them would cost a block decompression. A block's filter is built the first time it is
//! looked into (in-order streams never pay for one); with ~10 bits per entry (about 1.5% of a
//! zstd block's size) it sends ~2% of non-duplicates to the decompression path.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Bits per entry: 10 with 3 probes gives a false positive rate of ~1.7%.
const BITS_PER_ENTRY: usize = 10;
/// Probes per key.
const PROBES: u64 = 3;

/// Bloom filter of one block's entries.
#[derive(Clone, Debug)]
pub(crate) struct BlockFilter {
    /// The bit array, `BITS_PER_ENTRY` bits per entry rounded up to whole words.
    words: Box<[u64]>,
}

impl BlockFilter {
    /// A filter holding every `(ts, line)` of `entries` (`n` of them).
    pub(crate) fn build<'a>(n: usize, entries: impl Iterator<Item = (i64, &'a [u8])>) -> Self {
        let words = (n * BITS_PER_ENTRY).div_ceil(64).max(1);
        let mut filter = BlockFilter { words: vec![0u64; words].into_boxed_slice() };
        for (ts, line) in entries {
            for bit in filter.probes(ts, line) {
                filter.words[bit / 64] |= 1 << (bit % 64);
            }
        }
        filter
    }

    /// False when the block certainly has no entry `(ts, line)`.
    pub(crate) fn may_contain(&self, ts: i64, line: &[u8]) -> bool {
        self.probes(ts, line).all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// Bytes held, for memory accounting.
    pub(crate) fn size(&self) -> usize {
        self.words.len() * 8
    }

    /// Bit positions of a key: double hashing over one 64-bit hash, each mapped onto the array
    /// by a multiply-shift (no power-of-two rounding of the array needed).
    fn probes(&self, ts: i64, line: &[u8]) -> impl Iterator<Item = usize> + use<> {
        let h = xxh3_64_with_seed(line, ts as u64);
        let (h1, h2) = (h, h.rotate_left(32) | 1);
        let bits = (self.words.len() * 64) as u128;
        (0..PROBES).map(move |i| {
            let x = h1.wrapping_add(i.wrapping_mul(h2));
            ((u128::from(x) * bits) >> 64) as usize
        })
    }
}
