//! Quantiles over sorted pieces against a plain sort of every window.

use super::*;

/// splitmix64, for reproducible random data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Prometheus' quantile over a plain sort (NaN first).
fn naive(phi: f64, values: &mut [f64]) -> f64 {
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by_key(|&v| key(v));
    let n = values.len();
    let rank = phi * (n - 1) as f64;
    let lower = rank.floor().max(0.0) as usize;
    let upper = (lower + 1).min(n - 1);
    let weight = rank - rank.floor();
    values[lower] * (1.0 - weight) + values[upper] * weight
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

#[test]
fn keys_order_floats_with_nan_first() {
    let vals = [f64::NAN, f64::NEG_INFINITY, -1e300, -1.0, -0.0, 0.0, 1e-300, 1.0, 2.5, f64::INFINITY];
    for w in vals.windows(2) {
        assert!(key(w[0]) < key(w[1]), "{} < {}", w[0], w[1]);
    }
    for v in vals {
        assert!(same(value(key(v)), v) && value(key(v)).to_bits() == v.to_bits() || v.is_nan());
    }
}

#[test]
fn kth_selects_across_runs() {
    let runs: Vec<Vec<u64>> = vec![vec![1, 4, 4, 9], vec![], vec![2, 4, 7], vec![4]];
    let refs: Vec<&[u64]> = runs.iter().map(Vec::as_slice).collect();
    let mut all: Vec<u64> = runs.concat();
    all.sort_unstable();
    for (r, want) in all.iter().enumerate() {
        assert_eq!(kth(&refs, r), *want, "rank {r}");
    }
}

#[test]
fn pieces_match_sorting_every_window() {
    let mut rng = Rng(3);
    for case in 0..40 {
        let step = 1 + (rng.next() % 50) as i64;
        let range = 1 + (rng.next() % 200) as i64;
        let n = 1 + (rng.next() % 30) as usize;
        let w = Window { first: 100, step, n, range };
        let mut samples: Vec<(i64, f64)> = (0..rng.next() % 400)
            .map(|_| {
                let ts = (rng.next() % 2000) as i64 - 200;
                let v = match rng.next() % 20 {
                    0 => f64::NAN,
                    1 => f64::INFINITY,
                    2 => f64::NEG_INFINITY,
                    _ => (rng.next() % 50) as f64 - 25.0,
                };
                (ts, v)
            })
            .collect();
        samples.sort_by_key(|&(ts, _)| ts);
        let pieces = Pieces::new(&samples, &w);
        for phi in [0.0, 0.25, 0.5, 0.9, 0.99, 1.0, 1.5, -0.5] {
            for i in 0..n {
                let end = w.end(i);
                let lo = samples.partition_point(|&(ts, _)| ts <= end - range);
                let hi = samples.partition_point(|&(ts, _)| ts <= end);
                if lo >= hi {
                    continue;
                }
                let mut vals: Vec<f64> = samples[lo..hi].iter().map(|&(_, v)| v).collect();
                let want = naive(phi, &mut vals);
                let got = pieces.quantile(phi, lo, hi);
                assert!(same(got, want), "case {case} phi {phi} window {i}: got {got}, want {want}");
            }
        }
    }
}
