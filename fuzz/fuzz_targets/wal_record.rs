//! The ingester's WAL record payloads (entries records and checkpoint streams) as replay decodes
//! them, including the chunks a checkpoint stream carries.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use norn::chunk::MemChunk;
use norn::entry::Direction;
use norn::ingester::walrec::Record;

fuzz_target!(|data: &[u8]| {
    match Record::decode(Bytes::copy_from_slice(data)) {
        Ok(Record::Checkpoint(cs)) => {
            let _ = norn::labels::Labels::parse(&cs.labels);
            for (_, chunk) in cs.chunks {
                if let Ok(c) = MemChunk::decode(chunk) {
                    c.iter(i64::MIN, i64::MAX, Direction::Forward).for_each(drop);
                }
            }
        }
        Ok(Record::Entries { .. }) | Err(_) => {}
    }
});
