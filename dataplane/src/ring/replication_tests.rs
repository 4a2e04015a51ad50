use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::ring::model::InstanceDesc;

const NOW: i64 = 1_000_000_000;
const TIMEOUT: Duration = Duration::from_secs(60);

fn cfg(rf: usize, zones: bool) -> ReplicationConfig {
    ReplicationConfig { replication_factor: rf, zone_awareness: zones, heartbeat_timeout: TIMEOUT }
}

/// One instance: (id, zone, state, tokens, healthy).
fn inst(zone: &str, state: InstanceState, tokens: &[u32], healthy: bool) -> InstanceDesc {
    let mut d = InstanceDesc {
        addr: "127.0.0.1:9095".into(),
        zone: zone.into(),
        tokens: tokens.to_vec(),
        heartbeat_ms: if healthy { NOW - 1000 } else { NOW - 120_000 },
        ..Default::default()
    };
    d.set_state(state);
    d
}

fn ring(list: Vec<(&str, InstanceDesc)>) -> RingDesc {
    RingDesc { instances: list.into_iter().map(|(id, d)| (id.to_string(), d)).collect() }
}

fn ids(s: &RingSnapshot, set: &[usize]) -> Vec<String> {
    set.iter().map(|&i| s.member(i).unwrap().id.to_string()).collect()
}

use InstanceState::{Active, Joining, Leaving, Pending};

/// a owns 100, 400; b owns 200, 500; c owns 300, 600; d owns 350.
fn abcd(d_state: InstanceState) -> RingDesc {
    ring(vec![
        ("a", inst("", Active, &[100, 400], true)),
        ("b", inst("", Active, &[200, 500], true)),
        ("c", inst("", Active, &[300, 600], true)),
        ("d", inst("", d_state, &[350], true)),
    ])
}

#[test]
fn one_ingester_means_one_replica() {
    let s = RingSnapshot::new(&ring(vec![("solo", inst("", Active, &[10, 20], true))]), cfg(3, false));
    assert_eq!(s.effective_replication_factor(), 1);
    let set = s.replicas(15, Operation::Write, NOW).unwrap();
    assert_eq!(ids(&s, &set.instances), ["solo"]);
    assert_eq!((set.quorum, set.max_errors), (1, 0));
}

#[test]
fn the_walk_starts_at_the_first_token_at_or_after_the_key_and_wraps() {
    let s = RingSnapshot::new(&abcd(Active), cfg(3, false));
    let set = s.replicas(150, Operation::Write, NOW).unwrap();
    assert_eq!(ids(&s, &set.instances), ["b", "c", "d"]);
    assert_eq!((set.quorum, set.max_errors), (2, 1));
    assert_eq!(
        ids(&s, &s.replicas(200, Operation::Write, NOW).unwrap().instances),
        ["b", "c", "d"],
        "a key equal to a token belongs to it"
    );
    assert_eq!(
        ids(&s, &s.replicas(601, Operation::Write, NOW).unwrap().instances),
        ["a", "b", "c"],
        "past the last token wraps to the first"
    );
    assert_eq!(ids(&s, &s.replicas(0, Operation::Write, NOW).unwrap().instances), ["a", "b", "c"]);
}

#[test]
fn writes_pass_over_instances_that_are_not_active() {
    for state in [Joining, Leaving, Pending] {
        let s = RingSnapshot::new(&abcd(state), cfg(3, false));
        let set = s.replicas(340, Operation::Write, NOW).unwrap();
        assert_eq!(ids(&s, &set.instances), ["a", "b", "c"], "{state:?} extends the set to the next instance");
        assert_eq!(set.max_errors, 1);
    }
    let s = RingSnapshot::new(&abcd(Leaving), cfg(3, false));
    assert_eq!(
        ids(&s, &s.replicas(340, Operation::Read, NOW).unwrap().instances),
        ["d", "a", "b"],
        "reads accept LEAVING"
    );
    let s = RingSnapshot::new(&abcd(Joining), cfg(3, false));
    assert_eq!(ids(&s, &s.replicas(340, Operation::Read, NOW).unwrap().instances), ["a", "b", "c"], "but not JOINING");
}

#[test]
fn a_stale_heartbeat_keeps_its_place_and_costs_an_error() {
    let mut r = abcd(Active);
    r.instances.get_mut("b").unwrap().heartbeat_ms = NOW - 61_000;
    let s = RingSnapshot::new(&r, cfg(3, false));
    let set = s.replicas(150, Operation::Write, NOW).unwrap();
    assert_eq!(ids(&s, &set.instances), ["c", "d"], "b is skipped but not replaced");
    assert_eq!((set.quorum, set.max_errors), (2, 0));
    r.instances.get_mut("c").unwrap().heartbeat_ms = NOW - 61_000;
    let s = RingSnapshot::new(&r, cfg(3, false));
    match s.replicas(150, Operation::Write, NOW) {
        Err(RingError::TooFewReplicas { needed: 2, found: 1 }) => {}
        other => panic!("two of three replicas unhealthy must fail: {other:?}"),
    }
    assert_eq!(
        RingError::TooFewReplicas { needed: 2, found: 1 }.to_string(),
        "at least 2 live replicas required, could only find 1"
    );
    let no_timeout = ReplicationConfig { heartbeat_timeout: Duration::ZERO, ..cfg(3, false) };
    let s = RingSnapshot::new(&r, no_timeout);
    assert_eq!(s.replicas(150, Operation::Write, NOW).unwrap().instances.len(), 3, "a zero timeout disables health");
}

#[test]
fn zone_awareness_puts_replicas_in_distinct_zones() {
    let r = ring(vec![
        ("a1", inst("a", Active, &[100], true)),
        ("a2", inst("a", Active, &[150], true)),
        ("b1", inst("b", Active, &[200], true)),
        ("b2", inst("b", Active, &[250], true)),
        ("c1", inst("c", Active, &[300], true)),
        ("c2", inst("c", Active, &[350], true)),
    ]);
    let s = RingSnapshot::new(&r, cfg(3, true));
    assert_eq!(ids(&s, &s.replicas(90, Operation::Write, NOW).unwrap().instances), ["a1", "b1", "c1"]);
    assert_eq!(ids(&s, &s.replicas(140, Operation::Write, NOW).unwrap().instances), ["a2", "b1", "c1"]);
    let plain = RingSnapshot::new(&r, cfg(3, false));
    assert_eq!(ids(&plain, &plain.replicas(90, Operation::Write, NOW).unwrap().instances), ["a1", "a2", "b1"]);
    // A LEAVING instance does not use up its zone: the zone's next instance takes the replica.
    let mut r2 = r.clone();
    r2.instances.get_mut("a1").unwrap().set_state(Leaving);
    let s = RingSnapshot::new(&r2, cfg(3, true));
    assert_eq!(ids(&s, &s.replicas(90, Operation::Write, NOW).unwrap().instances), ["a2", "b1", "c1"]);
    // An unhealthy one does: its zone's replica is missing and the quorum covers it.
    let mut r3 = r.clone();
    r3.instances.get_mut("a1").unwrap().heartbeat_ms = 0;
    let s = RingSnapshot::new(&r3, cfg(3, true));
    let set = s.replicas(90, Operation::Write, NOW).unwrap();
    assert_eq!(ids(&s, &set.instances), ["b1", "c1"]);
    assert_eq!(set.max_errors, 0);
}

#[test]
fn the_replication_factor_is_clipped_to_instances_and_zones() {
    let two_zones = ring(vec![
        ("a1", inst("a", Active, &[100], true)),
        ("a2", inst("a", Active, &[150], true)),
        ("b1", inst("b", Active, &[200], true)),
    ]);
    assert_eq!(RingSnapshot::new(&two_zones, cfg(3, true)).effective_replication_factor(), 2);
    assert_eq!(RingSnapshot::new(&two_zones, cfg(3, false)).effective_replication_factor(), 3);
    assert_eq!(RingSnapshot::new(&two_zones, cfg(5, false)).effective_replication_factor(), 3);
    let with_tokenless = ring(vec![("a", inst("", Active, &[1], true)), ("dist", inst("", Active, &[], true))]);
    assert_eq!(RingSnapshot::new(&with_tokenless, cfg(3, false)).effective_replication_factor(), 1);
    let s = RingSnapshot::new(&RingDesc::default(), cfg(3, false));
    assert!(matches!(s.replicas(1, Operation::Write, NOW), Err(RingError::EmptyRing)));
    assert!(matches!(s.read_set(NOW), Err(RingError::EmptyRing)));
}

#[test]
fn reads_ask_every_serving_instance_and_tolerate_a_minority() {
    let mut r = abcd(Leaving);
    r.instances.insert("e".into(), inst("", Joining, &[700], true));
    let s = RingSnapshot::new(&r, cfg(3, false));
    let rs = s.read_set(NOW).unwrap();
    assert_eq!(ids(&s, &rs.instances), ["a", "b", "c", "d"], "ACTIVE and LEAVING, not JOINING");
    assert_eq!(rs.max_errors, 1);
    assert!(rs.tolerates(&s, &[0]) && !rs.tolerates(&s, &[0, 1]));
    r.instances.get_mut("a").unwrap().heartbeat_ms = 0;
    let s = RingSnapshot::new(&r, cfg(3, false));
    let rs = s.read_set(NOW).unwrap();
    assert_eq!((rs.instances.len(), rs.max_errors), (3, 0), "an unhealthy instance uses up the budget");
    r.instances.get_mut("b").unwrap().heartbeat_ms = 0;
    assert!(matches!(RingSnapshot::new(&r, cfg(3, false)).read_set(NOW), Err(RingError::TooManyUnhealthy)));
}

#[test]
fn zone_aware_reads_tolerate_a_whole_zone() {
    let r = ring(vec![
        ("a1", inst("a", Active, &[100], true)),
        ("a2", inst("a", Active, &[150], false)),
        ("b1", inst("b", Active, &[200], true)),
        ("b2", inst("b", Active, &[250], true)),
        ("c1", inst("c", Active, &[300], true)),
    ]);
    let s = RingSnapshot::new(&r, cfg(3, true));
    let rs = s.read_set(NOW).unwrap();
    assert!(rs.zone_aware);
    assert_eq!(rs.max_unavailable_zones, 0, "zone a already has an unhealthy instance");
    let a1 = s.index_of("a1").unwrap();
    let b1 = s.index_of("b1").unwrap();
    assert!(!rs.tolerates(&s, &[b1]));
    let mut healthy = r.clone();
    healthy.instances.get_mut("a2").unwrap().heartbeat_ms = NOW;
    let s = RingSnapshot::new(&healthy, cfg(3, true));
    let rs = s.read_set(NOW).unwrap();
    assert_eq!(rs.max_unavailable_zones, 1);
    let a2 = s.index_of("a2").unwrap();
    assert!(rs.tolerates(&s, &[a1, a2]), "both instances of one zone");
    assert!(!rs.tolerates(&s, &[a1, b1]), "but not two zones");
}

#[test]
fn distributors_are_counted_by_state_and_health() {
    let r = ring(vec![
        ("d1", inst("", Active, &[], true)),
        ("d2", inst("", Active, &[], false)),
        ("d3", inst("", Joining, &[], true)),
    ]);
    assert_eq!(RingSnapshot::new(&r, cfg(1, false)).healthy_in_state(Active, NOW), 1);
}

/// The replica walk written the obvious way, to check the fast one against.
fn reference(r: &RingDesc, c: &ReplicationConfig, key: u32, op: Operation) -> Vec<String> {
    let mut all: Vec<(u32, &str)> =
        r.instances.iter().flat_map(|(id, i)| i.tokens.iter().map(move |&t| (t, id.as_str()))).collect();
    all.sort();
    let with_tokens = r.instances.values().filter(|i| !i.tokens.is_empty()).count();
    let zones: BTreeSet<&str> =
        r.instances.values().filter(|i| !i.tokens.is_empty()).map(|i| i.zone.as_str()).collect();
    let mut n = c.replication_factor.min(with_tokens);
    if c.zone_awareness {
        n = n.min(zones.len());
    }
    let start = all.iter().position(|&(t, _)| t >= key).unwrap_or(0);
    let (mut seen, mut seen_zones, mut out, mut counted) = (HashSet::new(), HashSet::new(), Vec::new(), 0);
    for k in 0..all.len() {
        let id = all[(start + k) % all.len()].1;
        if counted == n || !seen.insert(id) {
            continue;
        }
        let i = &r.instances[id];
        if (c.zone_awareness && seen_zones.contains(i.zone.as_str())) || !op.serves(i.state()) {
            continue;
        }
        seen_zones.insert(i.zone.as_str());
        counted += 1;
        if i.is_healthy(NOW, c.heartbeat_timeout) {
            out.push(id.to_string());
        }
    }
    out
}

fn arb_ring() -> impl Strategy<Value = RingDesc> {
    let state = prop_oneof![4 => Just(Active), 1 => Just(Leaving), 1 => Just(Joining), 1 => Just(Pending)];
    let one = (0u8..3, state, prop::collection::btree_set(any::<u32>(), 0..12), prop::bool::weighted(0.85));
    prop::collection::vec(one, 1..10).prop_map(|list| RingDesc {
        instances: list
            .into_iter()
            .enumerate()
            .map(|(i, (z, st, toks, healthy))| {
                (format!("i{i}"), inst(&format!("z{z}"), st, &toks.into_iter().collect::<Vec<_>>(), healthy))
            })
            .collect(),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn replicas_match_the_reference_walk(r in arb_ring(), rf in 1usize..5, zones: bool, key: u32, read: bool) {
        let c = cfg(rf, zones);
        let op = if read { Operation::Read } else { Operation::Write };
        let s = RingSnapshot::new(&r, c);
        let expected = reference(&r, &c, key, op);
        let n = s.effective_replication_factor();
        match s.replicas(key, op, NOW) {
            Ok(set) => {
                let got = ids(&s, &set.instances);
                prop_assert_eq!(&got, &expected);
                prop_assert!(got.len() <= n);
                prop_assert_eq!(set.quorum, n / 2 + 1);
                prop_assert_eq!(set.max_errors, got.len() - set.quorum);
                let distinct: HashSet<&String> = got.iter().collect();
                prop_assert_eq!(distinct.len(), got.len());
                for id in &got {
                    let i = &r.instances[id];
                    prop_assert!(op.serves(i.state()) && i.is_healthy(NOW, TIMEOUT));
                }
                if zones {
                    let zs: HashSet<&str> = got.iter().map(|id| r.instances[id].zone.as_str()).collect();
                    prop_assert_eq!(zs.len(), got.len());
                }
            }
            Err(RingError::EmptyRing) => prop_assert_eq!(n, 0),
            Err(RingError::TooFewReplicas { needed, found }) => {
                prop_assert_eq!(found, expected.len());
                prop_assert!(found < needed);
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    #[test]
    fn adding_an_instance_only_moves_keys_to_it(
        tokens in prop::collection::vec(prop::collection::btree_set(any::<u32>(), 1..8), 3..8),
        newcomer in prop::collection::btree_set(any::<u32>(), 1..8),
        keys in prop::collection::vec(any::<u32>(), 1..40),
    ) {
        let mut r = RingDesc::default();
        for (i, t) in tokens.iter().enumerate() {
            r.instances.insert(format!("i{i}"), inst("", Active, &t.iter().copied().collect::<Vec<_>>(), true));
        }
        let before = RingSnapshot::new(&r, cfg(3, false));
        r.instances.insert("new".into(), inst("", Active, &newcomer.iter().copied().collect::<Vec<_>>(), true));
        let after = RingSnapshot::new(&r, cfg(3, false));
        for key in keys {
            let old: HashSet<String> = ids(&before, &before.replicas(key, Operation::Write, NOW).unwrap().instances).into_iter().collect();
            let new: HashSet<String> = ids(&after, &after.replicas(key, Operation::Write, NOW).unwrap().instances).into_iter().collect();
            for id in new.difference(&old) {
                prop_assert_eq!(id.as_str(), "new", "key {} moved to {} instead of the newcomer", key, id);
            }
        }
    }
}
