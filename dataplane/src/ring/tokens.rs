//! Choosing an instance's tokens, and keeping them across restarts.
//!
//! Two ways to pick tokens:
//!
//! - [`random_tokens`]: uniformly random, avoiding every token already in the ring. Ownership is
//!   uneven with few instances (with 128 tokens each, an instance's share deviates from the mean
//!   by about 9% at one standard deviation).
//! - [`spread_minimizing_tokens`]: deterministic tokens for the instance with StatefulSet ordinal
//!   `N` (`ingester-7` → 7, see [`parse_ordinal`]), so that a replacement pod owns exactly the
//!   ranges of the pod it replaces and the Kubernetes operator can compute every pod's tokens
//!   before it starts. Instances `0..n` own equal shares of the ring for every `n`: within
//!   [`SPREAD_MINIMIZING_MAX_IMBALANCE`] (0.1%) of `1/n` while `n` is at most the number of
//!   tokens per instance (measured: at most 0.0002% for `n` = 3..30 with 128 tokens); beyond
//!   that a new ordinal hosts at most one token per donor and shares drift slowly (measured with
//!   128 tokens: 0.3% at `n` = 200, 1% at `n` = 300).
//!
//! # The spread-minimizing algorithm
//!
//! Tokens live on a grid of 2^24 positions (one every 256 token values); the grid is shifted by a
//! per-zone offset in `0..256` derived from the zone name, so that the zones of a zone-aware
//! ring reuse one layout without reusing token values. Ordinals are placed one after the other,
//! each seeing exactly the tokens of the ordinals before it:
//!
//! 1. Ordinal 0 places its `T` tokens evenly: position `k·2^24/T`.
//! 2. Ordinal `n` must end up owning `W = ⌊2^24/(n+1)⌋` positions. Each earlier ordinal `i`
//!    owns `o_i`; its excess is `o_i − W`. The (at most `T`) ordinals with the largest excess
//!    are the donors, and they give by water-filling: the amount each donor gives is chosen so
//!    that afterwards every donor owns the same (smallest possible) amount and the gifts add up
//!    to `W`.
//! 3. The `T` new tokens are shared among the donors: first each donor gets as many as it takes
//!    for its largest ranges to hold its gift (a range keeps at least one position), then the
//!    rest in proportion to the gifts. A donor with `c` tokens to host gives from its `c` largest
//!    ranges, each in proportion to its size; a gift of `x` from range `(p, q]` is a new token at
//!    `p + x`, so the new ordinal owns `(p, p+x]` and the donor keeps `(p+x, q]`.
//! 4. Ties (equal excess, equal range sizes) are broken by ordinal, and by the bit-reversed
//!    position of the range, which picks ranges spread around the ring rather than adjacent ones.
//!
//! Everything is integer arithmetic in a fixed order, so the same ordinal always gets the same
//! tokens on every machine. Mimir's spread-minimizing strategy rests on the same idea — each new
//! instance takes the ring share it should have from the instances that own the most — which is
//! where the name comes from; the water-filling, grid and tie-breaking above are Norn's own.
//!
//! Computing ordinal `N` replays ordinals `0..N`: about 30 µs per ordinal with 128 tokens, so
//! ordinal 1000 takes a few tens of milliseconds. [`SpreadMinimizing`] yields ordinals in order
//! for callers that need many.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Tokens per instance unless configured (`ring.num_tokens`).
pub const DEFAULT_NUM_TOKENS: usize = 128;

/// The largest relative deviation from `1/n` of any ordinal's share of the ring, for rings of
/// ordinals `0..n` with `n` at most the number of tokens per instance (checked by the tests for
/// `n` = 3..30, 64, 100 and 128 with 128 tokens).
pub const SPREAD_MINIMIZING_MAX_IMBALANCE: f64 = 0.001;

/// log2 of the number of grid positions.
const GRID_BITS: u32 = 24;
/// Grid positions on the ring.
const GRID: u64 = 1 << GRID_BITS;
/// Token values per grid position; the zone offset is below this.
const CELL: u32 = 1 << (32 - GRID_BITS);

/// The StatefulSet ordinal at the end of an instance ID: `ingester-7` → 7, `norn-ingester-zone-a-12`
/// → 12. The ID must end in `-` and a decimal number without leading zeros, after a non-empty
/// name.
pub fn parse_ordinal(instance_id: &str) -> Option<u32> {
    let (name, digits) = instance_id.rsplit_once('-')?;
    if name.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// `count` distinct random tokens, none of them in `taken`, ascending.
pub fn random_tokens(count: usize, taken: &HashSet<u32>, rng: &mut impl Rng) -> Vec<u32> {
    let mut mine = HashSet::with_capacity(count);
    // The ring holds at most a few hundred thousand tokens out of 2^32: a collision is rare, and
    // the loop ends after a handful of extra draws at worst.
    while mine.len() < count {
        let t: u32 = rng.random();
        if !taken.contains(&t) {
            mine.insert(t);
        }
    }
    let mut out: Vec<u32> = mine.into_iter().collect();
    out.sort_unstable();
    out
}

/// The offset of a zone's spread-minimizing tokens within a grid cell: 0 for no zone, else a hash
/// of the name. Two zone names can map to the same offset (about 1 in 256); their instances then
/// share token values, which the ring tolerates (ties are ordered by instance ID).
pub fn zone_offset(zone: &str) -> u32 {
    if zone.is_empty() {
        return 0;
    }
    (xxhash_rust::xxh3::xxh3_64(zone.as_bytes()) % u64::from(CELL)) as u32
}

/// The spread-minimizing tokens of StatefulSet ordinal `ordinal` in `zone`, `count` of them,
/// ascending. Pure: the same arguments give the same tokens everywhere (this is the function
/// the operator uses to pre-assign tokens).
pub fn spread_minimizing_tokens(ordinal: u32, zone: &str, count: usize) -> Vec<u32> {
    let mut gen_ = SpreadMinimizing::new(zone, count);
    for _ in 0..ordinal {
        gen_.next_ordinal();
    }
    gen_.next_ordinal()
}

/// One ordinal's tokens while the layout is being built.
#[derive(Clone, Debug)]
struct Member {
    /// Its tokens as (grid position, size of the range the token ends) pairs.
    ranges: Vec<(u32, u32)>,
    /// Sum of its range sizes.
    owned: u64,
}

/// The spread-minimizing tokens of ordinals 0, 1, 2, ... in turn (see the module docs).
#[derive(Clone, Debug)]
pub struct SpreadMinimizing {
    /// Offset of the zone within a grid cell.
    offset: u32,
    /// Tokens per ordinal.
    count: usize,
    /// Ordinals placed so far.
    members: Vec<Member>,
}

impl SpreadMinimizing {
    /// A generator for `zone` with `count` tokens per ordinal (at most 2^16; 0 gives no tokens).
    pub fn new(zone: &str, count: usize) -> Self {
        Self { offset: zone_offset(zone), count: count.min(1 << 16), members: Vec::new() }
    }

    /// The ordinal whose tokens the next call returns.
    pub fn next_ordinal_number(&self) -> u32 {
        u32::try_from(self.members.len()).unwrap_or(u32::MAX)
    }

    /// Places the next ordinal and returns its tokens, ascending.
    pub fn next_ordinal(&mut self) -> Vec<u32> {
        if self.count == 0 {
            self.members.push(Member { ranges: Vec::new(), owned: 0 });
            return Vec::new();
        }
        let member = if self.members.is_empty() { self.first() } else { self.join() };
        let mut tokens: Vec<u32> = member.ranges.iter().map(|&(p, _)| p * CELL + self.offset).collect();
        tokens.sort_unstable();
        self.members.push(member);
        tokens
    }

    /// Ordinal 0: evenly spaced.
    fn first(&self) -> Member {
        let n = self.count as u64;
        let positions: Vec<u32> = (0..n).map(|k| (k * GRID / n) as u32).collect();
        let ranges = positions
            .iter()
            .enumerate()
            .map(|(k, &p)| {
                let prev = if k == 0 { positions[positions.len() - 1] } else { positions[k - 1] };
                let size = if n == 1 { GRID } else { (u64::from(p) + GRID - u64::from(prev)) % GRID };
                (p, size as u32)
            })
            .collect();
        Member { ranges, owned: GRID }
    }

    /// Ordinal `n ≥ 1`: takes its share from the ordinals that own the most.
    fn join(&mut self) -> Member {
        let n = self.members.len() as u64;
        let want = GRID / (n + 1);
        let gifts = self.gifts(want);
        // Each donor's ranges, best to give from first, and how many of them it takes to hold its
        // gift (a range keeps at least one position).
        let orders: Vec<Vec<usize>> = gifts.iter().map(|&(d, _)| give_order(&self.members[d])).collect();
        let mins: Vec<usize> =
            gifts.iter().zip(&orders).map(|(&(d, gift), order)| hosts_needed(&self.members[d], order, gift)).collect();
        let hosts = share_out(self.count, &gifts, &mins);
        let mut mine: Vec<(u32, u32)> = Vec::with_capacity(self.count);
        for ((&(donor, gift), order), &c) in gifts.iter().zip(&orders).zip(&hosts) {
            let m = &mut self.members[donor];
            let taken = take_from(m, gift, &order[..c.min(order.len())], &mut mine);
            m.owned -= taken;
        }
        // Only reachable when ranges have shrunk to single positions (absurd ring sizes): halve
        // the largest range anywhere so that the count still holds.
        while mine.len() < self.count {
            let Some((d, r)) = self.largest_range() else { break };
            let (p, size) = self.members[d].ranges[r];
            let x = size / 2;
            self.members[d].ranges[r].1 = size - x;
            self.members[d].owned -= u64::from(x);
            mine.push((grid_add(p, GRID - u64::from(size) + u64::from(x)), x));
        }
        let owned = mine.iter().map(|&(_, s)| u64::from(s)).sum();
        Member { ranges: mine, owned }
    }

    /// Who gives how much so that the new ordinal owns `want`: the (at most `count`) ordinals
    /// with the largest excess over `want`, water-filled down to a common level. Returns
    /// (ordinal, amount) pairs with positive amounts, largest excess first.
    fn gifts(&self, want: u64) -> Vec<(usize, u64)> {
        let want = want as i64;
        let mut order: Vec<(i64, usize)> =
            self.members.iter().enumerate().map(|(i, m)| (m.owned as i64 - want, i)).collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        order.truncate(self.count);
        // The first k donors give down to the level L = (Σe - want)/k; k grows while the next
        // donor's excess is above that level.
        let mut sum = 0i64;
        let mut k = 0usize;
        for (j, &(e, _)) in order.iter().enumerate() {
            sum += e;
            k = j + 1;
            match order.get(j + 1) {
                Some(&(next, _)) if next * k as i64 > sum - want => continue,
                _ => break,
            }
        }
        if k == 0 {
            return Vec::new();
        }
        let num = sum - want;
        let (level, rem) = (num.div_euclid(k as i64), num.rem_euclid(k as i64) as usize);
        order[..k]
            .iter()
            .enumerate()
            .filter_map(|(j, &(e, i))| {
                // Σ(e - level) = want + rem: the first `rem` donors give one position more.
                let gift = e - level - i64::from(j < rem);
                (gift > 0).then_some((i, gift as u64))
            })
            .collect()
    }

    /// The (member, range) of the largest range of at least two positions.
    fn largest_range(&self) -> Option<(usize, usize)> {
        let mut best: Option<(u32, usize, usize)> = None;
        for (d, m) in self.members.iter().enumerate() {
            for (r, &(_, size)) in m.ranges.iter().enumerate() {
                if size >= 2 && best.is_none_or(|(s, _, _)| size > s) {
                    best = Some((size, d, r));
                }
            }
        }
        best.map(|(_, d, r)| (d, r))
    }
}

/// Position `p + x` on the grid.
fn grid_add(p: u32, x: u64) -> u32 {
    ((u64::from(p) + x) % GRID) as u32
}

/// How many of `count` new tokens each donor hosts: first the number of ranges it needs to hold
/// its gift (`mins`, in donor order while tokens last), then the rest in proportion to the gifts
/// (largest remainder, earlier donors first on ties).
fn share_out(count: usize, gifts: &[(usize, u64)], mins: &[usize]) -> Vec<usize> {
    let needed: usize = mins.iter().sum();
    if needed > count {
        // Not enough tokens for every gift (more donors than tokens, or small ranges): one token
        // each while they last, then to whoever is furthest from its need. Gifts that do not fit
        // stay with their donors, whose larger excess puts them first in line next time.
        let mut out: Vec<usize> = (0..mins.len()).map(|j| usize::from(j < count)).collect();
        let mut left = count.saturating_sub(mins.len());
        while left > 0 {
            let Some(j) =
                (0..mins.len()).filter(|&j| mins[j] > out[j]).max_by_key(|&j| (mins[j] - out[j], std::cmp::Reverse(j)))
            else {
                break;
            };
            out[j] += 1;
            left -= 1;
        }
        return out;
    }
    let mut out = mins.to_vec();
    let left = count - needed;
    if left == 0 || gifts.is_empty() {
        return out;
    }
    let spare = left as u128;
    let total: u128 = gifts.iter().map(|&(_, g)| u128::from(g)).sum::<u128>().max(1);
    let mut rems: Vec<(u128, usize)> = Vec::with_capacity(gifts.len());
    let mut given = 0usize;
    for (j, &(_, g)) in gifts.iter().enumerate() {
        let exact = spare * u128::from(g);
        let extra = (exact / total) as usize;
        out[j] += extra;
        given += extra;
        rems.push((exact % total, j));
    }
    rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, j) in rems.iter().take(left.saturating_sub(given)) {
        out[j] += 1;
    }
    out
}

/// A member's ranges in the order to give from: largest first; among equal sizes by
/// bit-reversed position, which walks the ring in a spread-out order (0, ½, ¼, ¾, ...).
fn give_order(m: &Member) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..m.ranges.len()).collect();
    idx.sort_unstable_by_key(|&i| {
        let (p, size) = m.ranges[i];
        (std::cmp::Reverse(size), p.reverse_bits())
    });
    idx
}

/// How many of `m`'s ranges, taken in `order`, it takes to give `gift` while each keeps at least
/// one position (all of them if even that is not enough).
fn hosts_needed(m: &Member, order: &[usize], gift: u64) -> usize {
    let mut room = 0u64;
    for (k, &i) in order.iter().enumerate() {
        room += u64::from(m.ranges[i].1.saturating_sub(1));
        if room >= gift {
            return k + 1;
        }
    }
    order.len()
}

/// Takes `gift` positions from the ranges `chosen` of `m`, each in proportion to its size, and
/// appends the new (position, size) tokens to `mine`. Returns how much was taken.
fn take_from(m: &mut Member, gift: u64, chosen: &[usize], mine: &mut Vec<(u32, u32)>) -> u64 {
    if chosen.is_empty() || gift == 0 {
        return 0;
    }
    let total: u64 = chosen.iter().map(|&i| u64::from(m.ranges[i].1)).sum();
    let (mut cum, mut before, mut carry, mut taken) = (0u64, 0u64, 0u64, 0u64);
    for &i in chosen {
        let (p, size) = m.ranges[i];
        cum += u64::from(size);
        let upto = gift * cum / total.max(1);
        // This range's proportional share plus whatever earlier ranges could not hold; at least
        // one position so that every chosen range gets its token, and never the whole range.
        let share = upto - before + carry;
        before = upto;
        let cap = u64::from(size).saturating_sub(1);
        let x = share.max(1).min(cap);
        carry = share.saturating_sub(x);
        if x == 0 {
            continue;
        }
        m.ranges[i].1 = size - x as u32;
        mine.push((grid_add(p, GRID - u64::from(size) + x), x as u32));
        taken += x;
    }
    taken
}

/// The tokens file: the tokens an instance registered with, kept on its disk so that a restart
/// (or a new pod on the same volume) claims the same ranges.
#[derive(Debug, Serialize, Deserialize)]
struct TokensFile {
    /// Ascending, distinct.
    tokens: Vec<u32>,
}

/// Why a tokens file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TokensFileError {
    /// Reading, writing or renaming failed.
    #[error("tokens file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a tokens file.
    #[error("tokens file {path} is invalid: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The tokens stored at `path`, ascending; `None` when there is no file.
pub fn load_tokens_file(path: &Path) -> Result<Option<Vec<u32>>, TokensFileError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(TokensFileError::Io { path: path.display().to_string(), source }),
    };
    let invalid = |reason: String| TokensFileError::Invalid { path: path.display().to_string(), reason };
    let mut file: TokensFile = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
    if file.tokens.is_empty() {
        return Err(invalid("no tokens".into()));
    }
    file.tokens.sort_unstable();
    let n = file.tokens.len();
    file.tokens.dedup();
    if file.tokens.len() != n {
        return Err(invalid("duplicate tokens".into()));
    }
    Ok(Some(file.tokens))
}

/// Stores `tokens` at `path` atomically (temporary file, fsync, rename, fsync of the directory),
/// creating the directory if needed.
pub fn save_tokens_file(path: &Path, tokens: &[u32]) -> Result<(), TokensFileError> {
    let io = |source: std::io::Error| TokensFileError::Io { path: path.display().to_string(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut sorted = tokens.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let body = serde_json::to_vec(&TokensFile { tokens: sorted })
        .map_err(|e| TokensFileError::Invalid { path: path.display().to_string(), reason: e.to_string() })?;
    let mut tmp = tempfile_in(dir).map_err(io)?;
    tmp.1.write_all(&body).map_err(io)?;
    tmp.1.sync_all().map_err(io)?;
    std::fs::rename(&tmp.0, path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Best effort: not every filesystem lets a directory be fsynced.
        let _ = d.sync_all();
    }
    Ok(())
}

/// A new file next to the tokens file, named after this process so concurrent writers (there
/// should be none) do not clobber each other's temporary file.
fn tempfile_in(dir: &Path) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let path = dir.join(format!(".tokens.tmp.{}", std::process::id()));
    let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
    Ok((path, f))
}

#[cfg(test)]
#[path = "tokens_tests.rs"]
mod tests;
