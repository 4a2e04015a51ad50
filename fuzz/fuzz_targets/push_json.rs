//! The JSON push body (`POST /loki/api/v1/push`, `Content-Type: application/json`): decoding,
//! then validation with the default limits, as the distributor runs them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use norn::distributor::decode::decode_json;
use norn::limits::Limits;

/// 2023-11-14, inside the default accepted time window of the seeds' timestamps.
const NOW_NS: i64 = 1_700_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(push) = decode_json(data) {
        let _ = norn::validation::validate("fuzz", push, &Limits::default(), NOW_NS);
    }
});
