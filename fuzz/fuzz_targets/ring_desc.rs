//! The ring descriptor stored in etcd (protobuf `RingDesc`), decoded by every process that
//! watches the ring, then what they build from it: the replication snapshot (replica sets for
//! writes and reads, with and without zone awareness), token ownership and the `/ring` view.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use norn::ring::model::{ownership, view};
use norn::ring::replication::{Operation, ReplicationConfig, RingSnapshot};

const NOW_MS: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(desc) = norn::ring::ring_codec().decode(data) else { return };
    let _ = desc.token_conflicts();
    let _ = ownership(&desc);
    let timeout = Duration::from_secs(60);
    let _ = view(&desc, NOW_MS, timeout, true);
    for zone_awareness in [false, true] {
        let cfg = ReplicationConfig { replication_factor: 3, zone_awareness, heartbeat_timeout: timeout };
        let snapshot = RingSnapshot::new(&desc, cfg);
        for key in [0, 1 << 31, u32::MAX] {
            for op in [Operation::Write, Operation::Read] {
                if let Ok(set) = snapshot.replicas(key, op, NOW_MS) {
                    assert!(set.instances.iter().all(|&i| snapshot.member(i).is_some()), "replica out of range");
                }
            }
        }
        let _ = snapshot.read_set(NOW_MS);
    }
});
