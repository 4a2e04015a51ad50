//! Rebuilding ingester memory from the WAL on start: checkpointed chunks first, then the
//! entries of every later segment, in order.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::stream::{CloseReason, ClosedChunk, HeadChunk};
use super::walrec::{CheckpointStream, Record};
use super::{Ingester, IngesterError};
use crate::chunk::MemChunk;
use crate::entry::PushStream;
use crate::labels::Labels;
use crate::wal::{self, RecordSource};

/// What a replay found.
#[derive(Debug, Default)]
pub struct ReplayStats {
    pub records: u64,
    pub entries: u64,
    /// Torn or corrupt records, checkpoints and undecodable payloads, each reported with a warning.
    pub problems: usize,
}

pub(super) fn replay(ing: &Ingester, dir: &Path) -> Result<ReplayStats, IngesterError> {
    let mut stats = ReplayStats::default();
    if !dir.exists() {
        return Ok(stats);
    }
    let report = wal::replay(dir, |source: RecordSource, payload| -> Result<(), IngesterError> {
        stats.records += 1;
        match Record::decode(payload) {
            Ok(Record::Entries { tenant, streams }) => {
                let streams: Vec<PushStream> = streams
                    .into_iter()
                    .map(|(labels, entries)| {
                        stats.entries += entries.len() as u64;
                        let fingerprint = labels.fingerprint(&tenant);
                        PushStream { labels: Arc::new(labels), fingerprint, entries }
                    })
                    .collect();
                ing.apply(&tenant, streams, false, false);
            }
            Ok(Record::Checkpoint(cs)) => {
                if let Err(msg) = restore(ing, cs) {
                    tracing::warn!(?source, %msg, "skipping unreadable checkpoint stream");
                    stats.problems += 1;
                }
            }
            Err(err) => {
                tracing::warn!(?source, %err, "skipping undecodable wal record");
                stats.problems += 1;
            }
        }
        Ok(())
    })
    .map_err(|e| IngesterError::Replay(e.to_string()))?;
    for issue in &report.issues {
        tracing::warn!(?issue, "wal corruption found during replay; later records were still replayed");
    }
    stats.problems += report.issues.len();
    Ok(stats)
}

/// Puts a checkpointed stream's chunks back: closed ones wait for flush, the open one keeps
/// taking appends.
fn restore(ing: &Ingester, cs: CheckpointStream) -> Result<(), String> {
    let labels = Labels::parse(&cs.labels).map_err(|e| format!("labels {:?}: {e}", cs.labels))?.sorted();
    let fingerprint = labels.fingerprint(&cs.tenant);
    let labels = Arc::new(labels);
    let now = Instant::now();
    let tenant = ing.tenant(&cs.tenant);
    let stream = ing
        .stream(&cs.tenant, &tenant, &labels, fingerprint, now, false)
        .ok_or("stream limit refused a replayed stream")?;
    let mut s = stream.lock();
    for (closed, bytes) in cs.chunks {
        let chunk = MemChunk::decode(bytes).map_err(|e| format!("chunk of {}: {e}", cs.labels))?;
        if closed {
            s.closed.push(ClosedChunk::new(Arc::new(chunk), CloseReason::Restored));
        } else {
            s.close_head(CloseReason::Restored);
            s.head = Some(HeadChunk { chunk, created: now });
        }
    }
    s.max_ts = s.max_ts.max(cs.max_ts);
    Ok(())
}
