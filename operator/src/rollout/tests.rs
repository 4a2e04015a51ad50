use super::*;

fn pod(name: &str, zone: Option<&str>, revision: &str, ready: bool) -> IngesterPod {
    let (set, ordinal) = name.rsplit_once('-').expect("name-ordinal");
    IngesterPod {
        name: name.into(),
        set: set.into(),
        ordinal: ordinal.parse().expect("ordinal"),
        zone: zone.map(Into::into),
        revision: revision.into(),
        ready,
        terminating: false,
        http_addr: None,
        tls_server_name: None,
    }
}

fn member(id: &str, state: RingState) -> RingMember {
    RingMember { id: id.into(), zone: String::new(), state, heartbeat_ms: 1 }
}

fn step(pods: &[IngesterPod], members: &[RingMember], rf: i32, zones: bool) -> Step {
    next_step(pods, members, |_| Some("new".to_string()), rf, zones, &[])
}

fn three(revisions: [&str; 3]) -> Vec<IngesterPod> {
    (0..3).map(|i| pod(&format!("ing-{i}"), None, revisions[i], true)).collect()
}

fn all_active(n: usize) -> Vec<RingMember> {
    (0..n).map(|i| member(&format!("ing-{i}"), RingState::Active)).collect()
}

#[test]
fn nothing_outdated_is_done() {
    assert_eq!(step(&three(["new"; 3]), &all_active(3), 3, false), Step::Done);
}

#[test]
fn one_ingester_at_a_time_through_every_phase() {
    let mut pods = three(["old"; 3]);
    let mut members = all_active(3);
    assert_eq!(step(&pods, &members, 3, false), Step::Replace(vec!["ing-0".into()]));
    // Deleted: terminating, flushing (LEAVING).
    pods[0].terminating = true;
    members[0].state = RingState::Leaving;
    assert!(matches!(step(&pods, &members, 3, false), Step::Wait(RolloutPhase::Leaving, _)));
    members.remove(0);
    assert!(matches!(step(&pods, &members, 3, false), Step::Wait(RolloutPhase::Leaving, _)));
    // The successor: new revision, joining.
    pods[0] = pod("ing-0", None, "new", false);
    members.insert(0, member("ing-0", RingState::Joining));
    let wait = step(&pods, &members, 3, false);
    assert!(matches!(&wait, Step::Wait(RolloutPhase::Joining, m) if m.contains("ing-0")), "{wait:?}");
    pods[0].ready = true;
    members[0].state = RingState::Active;
    assert_eq!(step(&pods, &members, 3, false), Step::Replace(vec!["ing-1".into()]));
}

#[test]
fn an_outdated_ingester_out_of_the_ring_is_deleted() {
    // It left the ring (e.g. /ingester/shutdown by hand) but its pod still runs.
    let pods = three(["new", "old", "old"]);
    let members = vec![member("ing-0", RingState::Active), member("ing-2", RingState::Active)];
    assert_eq!(step(&pods, &members, 3, false), Step::Delete(vec!["ing-1".into()]));
}

#[test]
fn an_unhealthy_ingester_blocks_the_start_of_the_next_replacement() {
    // ing-1 already runs the new revision but is not ready: nothing else is touched.
    let mut pods = three(["old"; 3]);
    pods[1].revision = "new".into();
    pods[1].ready = false;
    let s = step(&pods, &all_active(3), 3, false);
    assert!(matches!(&s, Step::Wait(RolloutPhase::Joining, m) if m.contains("ing-1")), "{s:?}");
    // ing-2 has a stale heartbeat: replacing ing-0 would leave one healthy replica.
    let mut members = all_active(3);
    members[2].state = RingState::Unhealthy;
    let s = step(&three(["old", "old", "new"]), &members, 3, false);
    assert!(matches!(&s, Step::Wait(_, m) if m.contains("ing-2")), "{s:?}");
}

#[test]
fn an_outdated_ingester_that_is_down_anyway_is_replaced_first() {
    let mut pods = three(["old"; 3]);
    pods[2].ready = false;
    assert_eq!(step(&pods, &all_active(3), 3, false), Step::Replace(vec!["ing-2".into()]));
    // Two down: replacing one of them leaves the other down too; the driver waits.
    pods[1].ready = false;
    let s = step(&pods, &all_active(3), 3, false);
    assert!(matches!(&s, Step::Wait(_, m) if m.contains("ing-")), "{s:?}");
}

#[test]
fn larger_replication_factors_replace_more_at_once() {
    let pods: Vec<_> = (0..5).map(|i| pod(&format!("ing-{i}"), None, "old", true)).collect();
    assert_eq!(max_unavailable(5), 2);
    assert_eq!(step(&pods, &all_active(5), 5, false), Step::Replace(vec!["ing-0".into(), "ing-1".into()]));
    assert_eq!(max_unavailable(1), 1);
    assert_eq!(max_unavailable(3), 1);
}

#[test]
fn zone_awareness_replaces_a_whole_zone() {
    let pods = vec![
        pod("ing-b-0", Some("b"), "old", true),
        pod("ing-a-0", Some("a"), "old", true),
        pod("ing-a-1", Some("a"), "old", true),
        pod("ing-b-1", Some("b"), "old", true),
    ];
    let members: Vec<_> = pods.iter().map(|p| member(&p.name, RingState::Active)).collect();
    assert_eq!(step(&pods, &members, 2, true), Step::Replace(vec!["ing-a-0".into(), "ing-a-1".into()]));
}

#[test]
fn a_restarted_operator_finishes_the_recorded_batch_first() {
    let pods = three(["old"; 3]);
    let resume = vec!["ing-2".to_string()];
    let s = next_step(&pods, &all_active(3), |_| Some("new".into()), 3, false, &resume);
    assert_eq!(s, Step::Replace(vec!["ing-2".into()]));
}

#[test]
fn an_unknown_target_revision_rolls_nothing() {
    let s = next_step(&three(["old"; 3]), &all_active(3), |_| None, 3, false, &[]);
    assert_eq!(s, Step::Done);
}
