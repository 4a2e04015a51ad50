//! The needle index of a block: a Bloom filter over the block's high-cardinality tokens, so a
//! line filter looking for a trace id or a request id can skip a block without decompressing it.
//!
//! A **token** is a maximal run of `[A-Za-z0-9_-]` of at least [`MIN_TOKEN_LEN`] bytes that holds
//! at least one ASCII digit: trace and span ids, UUID groups, request ids, hex hashes. Dotted
//! IPv4 addresses are not tokens (the dots split them, and their runs are short); words without
//! digits are not indexed, they are rarely selective. Every line of a block is tokenized on its
//! own (a run never spans two lines), each distinct token is hashed with xxh3 and set in a
//! filter of [`BITS_PER_TOKEN`] bits per distinct token with [`PROBES`] probes (double hashing
//! of the one 64-bit hash: probe `i` is bit `((h1 + i * h2) mod 2^32) * m >> 32` of `m`, with
//! `h1`, `h2` its low and high halves, `h2` odd): a false positive rate of about 0.8% per
//! looked-up token.
//!
//! A substring filter `|= "lit"` can skip a block only for tokens that every matching line holds
//! *whole*: a token of `lit` bounded on both sides by a non-token byte of `lit` itself. A run
//! touching the start or the end of `lit` may be part of a longer run in the line (`"abc12345"`
//! is in `"xabc12345"`), so it says nothing ([`literal_tokens`]). A block is skipped when one of
//! those tokens is not in its filter; a false positive only costs the decompression it would
//! have cost anyway, the filter never drops a matching line.
//!
//! A literal usually ends in its id (`|= "trace_id=4bf92f3577b34da6"`), and the run touching
//! its end may go on in the line. Index kind 2 therefore also sets, for every token longer than
//! [`PREFIX_LEN`] bytes, the hash of its first [`PREFIX_LEN`] bytes (a token of exactly that
//! length is its own prefix). A run of the literal that starts after a non-token byte of the
//! literal, reaches its end, is at least [`PREFIX_LEN`] long and holds a digit is the start of
//! a token of every matching line, so the hash of its first [`PREFIX_LEN`] bytes is in the
//! filter of every block holding such a line ([`LiteralTokens::prefixes`]). Kind-1 indexes
//! (written before) have no prefixes; their blocks are checked by whole tokens only.
//!
//! # Encoded index
//!
//! | offset     | size  | field                                                       |
//! |------------|-------|-------------------------------------------------------------|
//! | 0          | 1     | index kind: `2` (Bloom filter, xxh3, double hashing, tokens  |
//! |            |       | and their prefixes); `1` (the same without prefixes) is read |
//! | 1          | 1     | probes `k`                                                  |
//! | 2          | 2     | reserved, `0`                                               |
//! | 4          | 4     | `W`, number of 64-bit words of the bit array, u32           |
//! | 8          | 8 * W | the bit array, u64 little-endian words                      |
//! | 8 + 8 * W  | 4     | CRC32C of bytes `[0, 8 + 8 * W)`                            |
//!
//! `W = 0` is a block without any token: every token lookup answers "absent".

use xxhash_rust::xxh3::xxh3_64;

use super::ChunkError;

/// Shortest run of token bytes that is indexed.
pub const MIN_TOKEN_LEN: usize = 8;
/// Bits of the filter per distinct token.
pub const BITS_PER_TOKEN: usize = 10;
/// Probes per token: `10 * ln 2` rounded, the optimum for [`BITS_PER_TOKEN`]; the false
/// positive rate is `(1 - e^(-k/10))^k` ≈ 0.82%.
pub const PROBES: u32 = 7;
/// Bytes of a token's prefix set in a kind-2 index (see the module doc).
pub const PREFIX_LEN: usize = 16;
/// Index kind of whole tokens only: read, no longer written.
const KIND_BLOOM: u8 = 1;
/// Index kind of whole tokens and their prefixes: written and read.
const KIND_BLOOM_PREFIXES: u8 = 2;
/// Kind, probes, reserved and word count.
const HEADER_LEN: usize = 8;

/// Byte classes: 0 separator, 1 token byte, 2 digit.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_digit() {
            2
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'-' {
            1
        } else {
            0
        };
        b += 1;
    }
    t
};

/// Calls `f` with every token of `line` (see the module doc), in order, duplicates included.
#[inline]
pub fn for_each_token(line: &[u8], mut f: impl FnMut(&[u8])) {
    for_each_token_range(line, |start, end| f(&line[start..end]));
}

/// Calls `f` with `start..end` of every token of `bytes`, in order: runs of token bytes at
/// least [`MIN_TOKEN_LEN`] long holding a digit.
#[inline]
fn for_each_token_range(bytes: &[u8], mut f: impl FnMut(usize, usize)) {
    let mut i = 0;
    let n = bytes.len();
    while i < n {
        // Skip separators.
        while i < n && CLASS[bytes[i] as usize] == 0 {
            i += 1;
        }
        let start = i;
        let mut digits = 0u8;
        while i < n {
            let c = CLASS[bytes[i] as usize];
            if c == 0 {
                break;
            }
            digits |= c & 2;
            i += 1;
        }
        if i - start >= MIN_TOKEN_LEN && digits != 0 {
            f(start, i);
        }
    }
}

/// Multiplier gathering the low bit of each byte of a word into its top byte (byte `i` to bit
/// `56 + i`).
const GATHER: u64 = 0x0102_0408_1020_4080;

/// Token-byte and digit bitmasks of 64 bytes (bit `i` for byte `i`). Written so the compiler
/// vectorizes the byte loop.
#[inline]
fn masks(c: &[u8; 64]) -> (u64, u64) {
    let mut tok = [0u8; 64];
    let mut dig = [0u8; 64];
    for i in 0..64 {
        let b = c[i];
        let d = b.wrapping_sub(b'0') < 10;
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        tok[i] = u8::from(d | letter | (b == b'_') | (b == b'-'));
        dig[i] = u8::from(d);
    }
    let (mut t, mut g) = (0u64, 0u64);
    for k in 0..8 {
        let mut tw = [0u8; 8];
        tw.copy_from_slice(&tok[8 * k..8 * k + 8]);
        let mut gw = [0u8; 8];
        gw.copy_from_slice(&dig[8 * k..8 * k + 8]);
        t |= (u64::from_le_bytes(tw).wrapping_mul(GATHER) >> 56) << (8 * k);
        g |= (u64::from_le_bytes(gw).wrapping_mul(GATHER) >> 56) << (8 * k);
    }
    (t, g)
}

/// [`for_each_token`] over every line of a block at once: `buf` is the lines concatenated and
/// `ends` the end offset of each line in `buf`, ascending. Calls `f` with the same tokens, in
/// the same order, as `for_each_token` on each line in turn, but classifies 64 bytes at a time
/// into bitmasks and visits only the runs holding a digit (found with one addition per 64
/// bytes), several times faster on log lines (this runs on every block cut). `scratch` is
/// scratch space.
pub(crate) fn for_each_token_in_lines(
    buf: &[u8],
    ends: &[u32],
    scratch: &mut Vec<(u64, u64)>,
    mut f: impl FnMut(&[u8]),
) {
    scratch.clear();
    let mut chunks = buf.chunks_exact(64);
    for c in chunks.by_ref() {
        let mut a = [0u8; 64];
        a.copy_from_slice(c);
        scratch.push(masks(&a));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Zero bytes are separators.
        let mut a = [0u8; 64];
        a[..rest.len()].copy_from_slice(rest);
        scratch.push(masks(&a));
    }
    let words = &scratch[..];
    let mut line = 0usize; // the first line ending after the current token's start
    let mut emit = |start: usize, end: usize, line: &mut usize| {
        while *line < ends.len() && (ends[*line] as usize) <= start {
            *line += 1;
        }
        if *line >= ends.len() || ends[*line] as usize >= end {
            f(&buf[start..end]);
            return;
        }
        // The run spans lines: tokenize each line's piece on its own.
        let mut a = start;
        while a < end {
            let b = match ends.get(*line) {
                Some(&e) if (e as usize) < end => {
                    *line += 1;
                    e as usize
                }
                _ => end,
            };
            let piece = &buf[a..b];
            if piece.len() >= MIN_TOKEN_LEN && piece.iter().any(u8::is_ascii_digit) {
                f(piece);
            }
            a = b;
        }
    };
    for w in 0..words.len() {
        let (t, g) = words[w];
        let base = w * 64;
        let continued = w > 0 && words[w - 1].0 >> 63 != 0;
        // Adding the digits to the token mask carries through each run holding a digit onto the
        // separator after it: one bit per digit-holding run that ends inside the word.
        let mut after = t.wrapping_add(g) & !t;
        while after != 0 {
            let e = after.trailing_zeros() as usize;
            after &= after - 1;
            // The run's start: the token bytes right below `e`.
            let below = t << (64 - e);
            let s = e - (!below).leading_zeros() as usize;
            if s == 0 && continued {
                continue; // the end of a run from the previous word, handled there
            }
            if e - s >= MIN_TOKEN_LEN {
                emit(base + s, base + e, &mut line);
            }
        }
        // The run reaching the end of the word goes on into the next ones: walk it.
        if t >> 63 != 0 {
            let s = 64 - t.leading_ones() as usize;
            if s == 0 && continued {
                continue;
            }
            let (mut ww, mut off, mut digit) = (w, s, false);
            let end = loop {
                let (tw, gw) = words[ww];
                let ones = ((!(tw >> off)).trailing_zeros() as usize).min(64 - off);
                let run = if ones >= 64 { !0u64 } else { ((1u64 << ones) - 1) << off };
                digit |= gw & run != 0;
                if off + ones < 64 || ww + 1 >= words.len() {
                    break (ww * 64 + off + ones).min(buf.len());
                }
                ww += 1;
                off = 0;
            };
            if digit && end - (base + s) >= MIN_TOKEN_LEN {
                emit(base + s, end, &mut line);
            }
        }
    }
}

/// The hash of a token as the filter stores it.
#[inline]
pub fn token_hash(token: &[u8]) -> u64 {
    xxh3_64(token)
}

/// What every line containing a literal holds, by token hash ([`literal_tokens`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiteralTokens {
    /// Tokens held whole: runs of the literal bounded on both sides by a non-token byte of it.
    pub whole: Vec<u64>,
    /// Token prefixes of [`PREFIX_LEN`] bytes: runs that start after a non-token byte of the
    /// literal and reach its end. Only kind-2 indexes hold prefixes.
    pub prefixes: Vec<u64>,
}

impl LiteralTokens {
    /// Requires these whole tokens.
    pub fn whole(whole: Vec<u64>) -> LiteralTokens {
        LiteralTokens { whole, prefixes: Vec::new() }
    }

    /// Whether nothing is required (the index cannot help).
    pub fn is_empty(&self) -> bool {
        self.whole.is_empty() && self.prefixes.is_empty()
    }
}

/// What every line containing `literal` holds (see the module doc): its tokens bounded on both
/// sides by a non-token byte of `literal`, and the prefix of a long enough token reaching its
/// end. Empty when there is none (the index cannot help).
pub fn literal_tokens(literal: &[u8]) -> LiteralTokens {
    let mut out = LiteralTokens::default();
    let n = literal.len();
    for_each_token_range(literal, |start, end| {
        if start > 0 && end < n {
            out.whole.push(token_hash(&literal[start..end]));
        } else if start > 0 && end - start >= PREFIX_LEN {
            out.prefixes.push(token_hash(&literal[start..start + PREFIX_LEN]));
        }
    });
    for hashes in [&mut out.whole, &mut out.prefixes] {
        hashes.sort_unstable();
        hashes.dedup();
    }
    out
}

/// The probe positions of `hash` in a filter of `bits` bits.
#[inline]
fn probes(hash: u64, bits: u64, k: u32) -> impl Iterator<Item = u64> {
    let h1 = hash as u32;
    let h2 = (hash >> 32) as u32 | 1;
    // Probe i is g = h1 + i * h2 (mod 2^32) scaled to [0, bits) by a multiply and a shift: a
    // division per probe costs more than the rest of the index build together.
    (0..k).map(move |i| (u64::from(h1.wrapping_add(i.wrapping_mul(h2))) * bits) >> 32)
}

/// Collects token hashes for [`encode`], dropping most repeats of a token (a constant pod or
/// host id on every line) with a small direct-mapped table instead of sorting: the filter is
/// sized by what it keeps, about [`BITS_PER_TOKEN`] bits per distinct token.
#[derive(Debug)]
pub(crate) struct TokenSet {
    /// The kept hashes, in first-seen order (some repeats remain when two tokens share a slot).
    pub(crate) hashes: Vec<u64>,
    /// The last hash seen in each slot (by its low bits).
    recent: Box<[u64; 256]>,
}

impl Default for TokenSet {
    fn default() -> Self {
        TokenSet { hashes: Vec::new(), recent: Box::new([0; 256]) }
    }
}

impl TokenSet {
    /// Empties the set.
    pub(crate) fn clear(&mut self) {
        self.hashes.clear();
        self.recent.fill(0);
    }

    /// Adds a token, and its prefix when it is longer than [`PREFIX_LEN`].
    #[inline]
    pub(crate) fn insert(&mut self, token: &[u8]) {
        self.add(token_hash(token));
        if token.len() > PREFIX_LEN {
            self.add(token_hash(&token[..PREFIX_LEN]));
        }
    }

    #[inline]
    fn add(&mut self, h: u64) {
        let slot = &mut self.recent[(h & 0xff) as usize];
        // An empty slot holds 0, so a hash of 0 is always kept.
        if *slot != h || h == 0 {
            *slot = h;
            self.hashes.push(h);
        }
    }
}

/// Appends the encoded index of the token hashes in `hashes` (repeats cost bits, not
/// correctness) to `out`.
pub(crate) fn encode(hashes: &[u64], out: &mut Vec<u8>) {
    let words = (hashes.len() * BITS_PER_TOKEN).div_ceil(64);
    let start = out.len();
    out.push(KIND_BLOOM_PREFIXES);
    out.push(PROBES as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(words as u32).to_le_bytes());
    let mut bitset = vec![0u64; words];
    let bits = (words * 64) as u64;
    for &h in hashes.iter() {
        for p in probes(h, bits, PROBES) {
            bitset[(p / 64) as usize] |= 1 << (p % 64);
        }
    }
    for w in bitset {
        out.extend_from_slice(&w.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// A parsed, checked needle index: a view of its bytes in the block.
#[derive(Clone, Copy, Debug)]
pub struct NeedleIndex<'a> {
    /// The whole encoded index.
    encoded: &'a [u8],
    /// The bit array, little-endian words.
    words: &'a [u8],
    /// Probes per token.
    probes: u32,
    /// Whether token prefixes were set (kind 2).
    prefixes: bool,
}

impl<'a> NeedleIndex<'a> {
    /// Parses and checks (length, kind, CRC32C) an encoded index.
    pub fn parse(data: &'a [u8]) -> Result<NeedleIndex<'a>, ChunkError> {
        if data.len() < HEADER_LEN + 4 {
            return Err(ChunkError::corrupt(format!("needle index of {} bytes", data.len())));
        }
        if ![KIND_BLOOM, KIND_BLOOM_PREFIXES].contains(&data[0]) || data[2] != 0 || data[3] != 0 {
            return Err(ChunkError::corrupt(format!("unknown needle index kind {}", data[0])));
        }
        let probes = u32::from(data[1]);
        let words = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
        if probes == 0 || words.checked_mul(8).and_then(|w| w.checked_add(HEADER_LEN + 4)) != Some(data.len()) {
            return Err(ChunkError::corrupt(format!("needle index of {words} words in {} bytes", data.len())));
        }
        let body = data.len() - 4;
        let want = u32::from_le_bytes([data[body], data[body + 1], data[body + 2], data[body + 3]]);
        if crc32c::crc32c(&data[..body]) != want {
            return Err(ChunkError::corrupt("needle index fails its checksum"));
        }
        Ok(NeedleIndex {
            encoded: data,
            words: &data[HEADER_LEN..body],
            probes,
            prefixes: data[0] == KIND_BLOOM_PREFIXES,
        })
    }

    /// The encoded index, as [`parse`](Self::parse) took it.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.encoded
    }

    /// Whether a line holding everything of `tokens` may be in the block: `false` is certain.
    /// Prefixes count only where the index holds them (kind 2).
    pub fn may_contain_all(&self, tokens: &LiteralTokens) -> bool {
        tokens.whole.iter().all(|&t| self.may_contain(t))
            && (!self.prefixes || tokens.prefixes.iter().all(|&t| self.may_contain(t)))
    }

    /// Whether a token with this [`token_hash`] may be in the block: `false` is certain.
    pub fn may_contain(&self, hash: u64) -> bool {
        let bits = (self.words.len() * 8) as u64;
        if bits == 0 {
            return false;
        }
        probes(hash, bits, self.probes).all(|p| self.words[(p / 8) as usize] & (1 << (p % 8)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(line: &str) -> Vec<String> {
        let mut v = Vec::new();
        for_each_token(line.as_bytes(), |t| v.push(String::from_utf8_lossy(t).into_owned()));
        v
    }

    #[test]
    fn tokenizer_keeps_long_runs_with_digits() {
        assert_eq!(
            tokens("trace_id=4bf92f3577b34da6 user=alexandra req-2024-01-02 a1b2c3d uuid=123e4567-e89b-12d3"),
            vec!["trace_id", "4bf92f3577b34da6", "req-2024-01-02", "123e4567-e89b-12d3"]
                .into_iter()
                .filter(|t| t.bytes().any(|b| b.is_ascii_digit()))
                .collect::<Vec<_>>()
        );
        assert!(tokens("10.0.0.1 12345678").contains(&"12345678".to_string()));
        assert!(tokens("no digits here whatsoever").is_empty());
    }

    proptest::proptest! {
        /// The block tokenizer finds exactly the tokens of the line tokenizer, line by line.
        #[test]
        fn block_tokenizer_agrees_with_the_line_tokenizer(
            lines in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(b"ab9_- =.Z\xc3".to_vec()), 0..150),
                0..20,
            ),
            sparse in proptest::bool::ANY,
        ) {
            // Sparse separators and digits: long runs across 64-byte words, digits far apart.
            let lines: Vec<Vec<u8>> = if sparse {
                lines.iter().map(|l| l.iter().map(|&b| match b { b' ' | b'9' => b, b'=' => b'9', _ => b'a' }).collect()).collect()
            } else {
                lines
            };
            let mut want = Vec::new();
            for l in &lines {
                for_each_token(l, |t| want.push(t.to_vec()));
            }
            let buf: Vec<u8> = lines.concat();
            let mut ends = Vec::new();
            let mut at = 0u32;
            for l in &lines {
                at += l.len() as u32;
                ends.push(at);
            }
            let mut got = Vec::new();
            for_each_token_in_lines(&buf, &ends, &mut Vec::new(), |t| got.push(t.to_vec()));
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn literal_tokens_need_both_bounds() {
        assert!(literal_tokens(b"4bf92f3577b34da6").is_empty());
        assert!(literal_tokens(b"id=4bf92f3577b34da").is_empty(), "15 bytes: too short a prefix");
        assert_eq!(
            literal_tokens(b"id=4bf92f3577b34da6 "),
            LiteralTokens::whole(vec![token_hash(b"4bf92f3577b34da6")])
        );
        assert!(literal_tokens(b"\"abc1234\" ").is_empty(), "7 bytes is too short");
        // A run reaching the end of the literal may go on in the line: only its prefix counts.
        let t = literal_tokens(b"trace_id=00000000deadbeef00");
        assert_eq!(t, LiteralTokens { whole: vec![], prefixes: vec![token_hash(b"00000000deadbeef")] });
        assert!(literal_tokens(b"trace_id=0000000000000000000").prefixes.len() == 1);
        assert!(literal_tokens(b"trace_id=deadbeefdeadbeefdeadbeef").is_empty(), "no digit: not indexed");
    }

    #[test]
    fn kind_1_indexes_are_read_and_checked_by_whole_tokens_only() {
        let mut set = TokenSet::default();
        set.insert(b"00000000deadbeefcafe");
        let mut out = Vec::new();
        encode(&set.hashes, &mut out);
        let prefix = literal_tokens(b"id=00000000deadbeef");
        let absent = literal_tokens(b"id=11111111deadbeef");
        assert!(NeedleIndex::parse(&out).unwrap().may_contain_all(&prefix));
        assert!(!NeedleIndex::parse(&out).unwrap().may_contain_all(&absent));
        // The same bits as an index written before prefixes: a prefix proves nothing there.
        out[0] = KIND_BLOOM;
        let body = out.len() - 4;
        let crc = crc32c::crc32c(&out[..body]);
        out[body..].copy_from_slice(&crc.to_le_bytes());
        let old = NeedleIndex::parse(&out).unwrap();
        assert!(old.may_contain_all(&absent));
        assert!(old.may_contain(token_hash(b"00000000deadbeefcafe")));
    }

    #[test]
    fn filter_holds_every_token_and_rejects_most_others() {
        let hashes: Vec<u64> = (0..2000).map(|i| token_hash(format!("tok{i:08}").as_bytes())).collect();
        let mut out = Vec::new();
        encode(&hashes, &mut out);
        let idx = NeedleIndex::parse(&out).unwrap();
        assert!((0..2000).all(|i| idx.may_contain(token_hash(format!("tok{i:08}").as_bytes()))));
        let fp = (0..20_000).filter(|i| idx.may_contain(token_hash(format!("other{i:08}").as_bytes()))).count();
        assert!(fp < 400, "{fp} false positives of 20000");
        let mut bad = out.clone();
        bad[9] ^= 1;
        assert!(NeedleIndex::parse(&bad).is_err());
        let mut empty = Vec::new();
        encode(&[], &mut empty);
        assert!(!NeedleIndex::parse(&empty).unwrap().may_contain(token_hash(b"abcdefg1")));
    }
}
