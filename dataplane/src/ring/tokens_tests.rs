use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::ring::model::{InstanceDesc, RingDesc, ownership};

/// The tokens of ordinals `0..n` in `zone`.
fn layout(n: u32, zone: &str, count: usize) -> Vec<Vec<u32>> {
    let mut g = SpreadMinimizing::new(zone, count);
    (0..n).map(|_| g.next_ordinal()).collect()
}

/// A ring holding the given token sets as instances `ingester-<i>`.
fn ring_of(sets: &[Vec<u32>]) -> RingDesc {
    let mut ring = RingDesc::default();
    for (i, tokens) in sets.iter().enumerate() {
        ring.instances.insert(format!("ingester-{i}"), InstanceDesc { tokens: tokens.clone(), ..Default::default() });
    }
    ring
}

/// The largest relative deviation of any instance's share from `1/n`.
fn imbalance(shares: &BTreeMap<String, f64>) -> f64 {
    let n = shares.len() as f64;
    shares.values().map(|p| (p / 100.0 * n - 1.0).abs()).fold(0.0, f64::max)
}

#[test]
fn ordinals_come_from_statefulset_pod_names() {
    assert_eq!(parse_ordinal("ingester-7"), Some(7));
    assert_eq!(parse_ordinal("ingester-0"), Some(0));
    assert_eq!(parse_ordinal("norn-ingester-zone-a-12"), Some(12));
    assert_eq!(parse_ordinal("ingester-4294967295"), Some(u32::MAX));
    for bad in
        ["ingester", "ingester-", "-7", "ingester-07", "ingester-7a", "ingester-4294967296", "7", "", "ingester--"]
    {
        assert_eq!(parse_ordinal(bad), None, "{bad:?}");
    }
}

#[test]
fn random_tokens_are_distinct_sorted_and_avoid_taken_ones() {
    let mut rng = StdRng::seed_from_u64(7);
    let taken: HashSet<u32> = random_tokens(50_000, &HashSet::new(), &mut rng).into_iter().collect();
    let mine = random_tokens(128, &taken, &mut rng);
    assert_eq!(mine.len(), 128);
    assert!(mine.windows(2).all(|w| w[0] < w[1]), "ascending and distinct");
    assert!(mine.iter().all(|t| !taken.contains(t)), "no token already in the ring");
}

#[test]
fn the_first_ordinals_have_a_pinned_layout() {
    // Changing these moves every StatefulSet's ranges: the layout is a contract with the
    // operator and with rings already running.
    let l = layout(3, "", 128);
    assert_eq!(&l[0][..3], &[0, 1 << 25, 2 << 25], "ordinal 0 is evenly spaced");
    assert_eq!(&l[1][..3], &[1 << 24, (1 << 25) + (1 << 24), (2 << 25) + (1 << 24)], "ordinal 1 halves every range");
    let digest = xxhash_rust::xxh3::xxh3_64(
        &layout(40, "", 128).iter().flatten().flat_map(|t| t.to_le_bytes()).collect::<Vec<u8>>(),
    );
    assert_eq!(digest, PINNED_DIGEST, "the layout of ordinals 0..40 changed");
}

/// xxh3 of the little-endian tokens of ordinals 0..40 (128 tokens, no zone).
const PINNED_DIGEST: u64 = 15_462_712_785_024_409_576;

#[test]
fn zero_tokens_means_none() {
    assert!(spread_minimizing_tokens(3, "", 0).is_empty());
    assert!(random_tokens(0, &HashSet::new(), &mut StdRng::seed_from_u64(1)).is_empty());
}

#[test]
fn the_same_ordinal_gets_the_same_tokens() {
    let all = layout(60, "zone-b", 128);
    for ordinal in [0u32, 1, 2, 17, 59] {
        let alone = spread_minimizing_tokens(ordinal, "zone-b", 128);
        assert_eq!(alone, all[ordinal as usize], "ordinal {ordinal} alone equals its place in the sequence");
        assert_eq!(alone, spread_minimizing_tokens(ordinal, "zone-b", 128), "and again");
    }
}

#[test]
fn ordinals_0_to_1000_never_collide() {
    let all = layout(1001, "", 128);
    let mut seen = HashSet::new();
    for (i, tokens) in all.iter().enumerate() {
        assert_eq!(tokens.len(), 128, "ordinal {i} has every token");
        assert!(tokens.windows(2).all(|w| w[0] < w[1]), "ordinal {i}: ascending and distinct");
        for &t in tokens {
            assert!(seen.insert(t), "token {t} of ordinal {i} is already taken");
        }
    }
}

#[test]
fn zones_reuse_the_layout_at_their_own_offset() {
    let a = layout(5, "zone-a", 64);
    let plain = layout(5, "", 64);
    let off = zone_offset("zone-a");
    assert!(off < 256);
    assert_eq!(zone_offset(""), 0);
    for (za, p) in a.iter().zip(&plain) {
        let shifted: Vec<u32> = p.iter().map(|t| t + off).collect();
        assert_eq!(za, &shifted, "a zone's tokens are the zoneless layout shifted by the zone's offset");
    }
    assert_ne!(zone_offset("zone-a"), zone_offset("zone-b"));
    assert_ne!(zone_offset("zone-b"), zone_offset("zone-c"));
    assert_ne!(zone_offset("zone-a"), zone_offset("zone-c"));
}

#[test]
fn ownership_is_balanced_for_3_to_30_ordinals() {
    let all = layout(30, "", DEFAULT_NUM_TOKENS);
    let mut worst: f64 = 0.0;
    for n in 3..=30usize {
        let imb = imbalance(&ownership(&ring_of(&all[..n])));
        worst = worst.max(imb);
        assert!(imb <= SPREAD_MINIMIZING_MAX_IMBALANCE, "n={n}: an ordinal's share deviates by {:.4}%", imb * 100.0);
    }
    eprintln!("spread-minimizing: worst share deviation for n=3..30: {:.5}%", worst * 100.0);
}

#[test]
fn ownership_stays_balanced_for_large_rings() {
    let all = layout(300, "", DEFAULT_NUM_TOKENS);
    for n in [64usize, 100, 128, 129, 200, 300] {
        let imb = imbalance(&ownership(&ring_of(&all[..n])));
        eprintln!("spread-minimizing: n={n}: worst share deviation {:.3}%", imb * 100.0);
        // Up to one ordinal per token the bound holds; beyond, shares drift slowly.
        let bound = if n <= DEFAULT_NUM_TOKENS { SPREAD_MINIMIZING_MAX_IMBALANCE } else { 0.02 };
        assert!(imb <= bound, "n={n}: deviation {:.3}%", imb * 100.0);
    }
}

#[test]
fn spread_minimizing_beats_random_tokens() {
    let mut rng = StdRng::seed_from_u64(42);
    let random: Vec<Vec<u32>> = (0..10).map(|_| random_tokens(128, &HashSet::new(), &mut rng)).collect();
    let imb_random = imbalance(&ownership(&ring_of(&random)));
    let imb_spread = imbalance(&ownership(&ring_of(&layout(10, "", 128))));
    eprintln!("n=10, 128 tokens: random {:.2}%, spread-minimizing {:.4}%", imb_random * 100.0, imb_spread * 100.0);
    assert!(imb_spread * 10.0 < imb_random);
}

#[test]
fn tokens_file_round_trips_and_rejects_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("tokens.json");
    assert_eq!(load_tokens_file(&path).unwrap(), None, "no file: no tokens");
    save_tokens_file(&path, &[30, 10, 20]).unwrap();
    assert_eq!(load_tokens_file(&path).unwrap(), Some(vec![10, 20, 30]));
    save_tokens_file(&path, &[5]).unwrap();
    assert_eq!(load_tokens_file(&path).unwrap(), Some(vec![5]), "a save replaces the file");
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    for bad in ["", "{}", "{\"tokens\":[]}", "{\"tokens\":[1,1]}", "{\"tokens\":[-1]}", "[1,2]"] {
        std::fs::write(&path, bad).unwrap();
        assert!(matches!(load_tokens_file(&path), Err(TokensFileError::Invalid { .. })), "{bad:?} must be rejected");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_ordinal_gets_count_distinct_tokens_on_its_zone_offset(
        ordinal in 0u32..80,
        count in 1usize..300,
        zone in "[a-z]{0,8}",
    ) {
        let tokens = spread_minimizing_tokens(ordinal, &zone, count);
        prop_assert_eq!(tokens.len(), count);
        prop_assert!(tokens.windows(2).all(|w| w[0] < w[1]));
        let off = zone_offset(&zone);
        prop_assert!(tokens.iter().all(|t| t % 256 == off));
    }

    #[test]
    fn prefixes_of_the_sequence_never_collide(n in 2u32..60, count in 1usize..200) {
        let all = layout(n, "", count);
        let mut seen = HashSet::new();
        for t in all.iter().flatten() {
            prop_assert!(seen.insert(*t));
        }
        // Every ordinal owns something.
        let shares = ownership(&ring_of(&all));
        prop_assert!(shares.values().all(|&p| p > 0.0));
    }
}
