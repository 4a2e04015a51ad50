//! The snappy-compressed protobuf push body (`logproto.PushRequest`, Promtail's and Alloy's
//! wire format): decompression bounded by the body limit, decoding, then validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use norn::distributor::decode::decode_protobuf;
use norn::limits::Limits;

const NOW_NS: i64 = 1_700_000_000_000_000_000;
/// The bound the distributor passes (`distributor.max_recv_msg_size` is larger; a smaller one
/// keeps the fuzzer's memory in check and takes the same code paths).
const MAX_SIZE: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(push) = decode_protobuf(data, MAX_SIZE) {
        let _ = norn::validation::validate("fuzz", push, &Limits::default(), NOW_NS);
    }
});
