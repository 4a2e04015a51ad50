//! One stream in ingester memory: its chunks, the newest timestamp it accepted, and its rate
//! limiter.

use std::sync::Arc;
use std::time::Instant;

use crate::chunk::{Codec, MemChunk};
use crate::entry::{Direction, Entry};
use crate::labels::SharedLabels;
use crate::ratelimit::TokenBucket;
use crate::timeutil::format_rfc3339;

/// Why a chunk was closed; the `reason` label of `norn_ingester_chunks_flushed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    Full,
    Idle,
    MaxAge,
    Forced,
    Restored,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Full => "full",
            CloseReason::Idle => "idle",
            CloseReason::MaxAge => "max_age",
            CloseReason::Forced => "forced",
            CloseReason::Restored => "restored",
        }
    }
}

/// A closed chunk, immutable from here on, waiting for (or past) its flush.
#[derive(Debug, Clone)]
pub struct ClosedChunk {
    pub chunk: Arc<MemChunk>,
    pub reason: CloseReason,
    /// When it was written to the object store; it stays for `chunk_retain_period` after.
    pub flushed_at: Option<Instant>,
    /// Failed flushes in a row, and the earliest moment of the next attempt ([`retry_delay`]).
    pub failures: u32,
    pub retry_at: Option<Instant>,
}

impl ClosedChunk {
    pub fn new(chunk: Arc<MemChunk>, reason: CloseReason) -> Self {
        Self { chunk, reason, flushed_at: None, failures: 0, retry_at: None }
    }
}

/// How long a chunk whose flush failed `failures` times in a row waits before the next
/// attempt: 1 s doubling to at most 30 s, so an object store that is down is not hammered by
/// every chunk at every flush check, and one that came back is caught up with soon.
pub fn retry_delay(failures: u32) -> std::time::Duration {
    std::time::Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(std::time::Duration::from_secs(30))
}

/// Chunk shape settings shared by every stream of an ingester.
#[derive(Clone, Copy, Debug)]
pub struct ChunkSettings {
    pub codec: Codec,
    pub block_size: usize,
    pub target_size: usize,
    /// Entries older than the stream's newest by more than this are refused (half the max
    /// chunk age, as in Loki).
    pub ooo_window: i64,
    pub unordered_writes: bool,
}

/// Why an entry was not appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An entry with the same timestamp, line and structured metadata is already stored:
    /// dropped silently.
    Duplicate,
    /// Older than the out-of-order window allows.
    TooFarBehind { oldest: i64 },
    /// Older than the newest entry while unordered writes are off.
    OutOfOrder,
}

impl Refusal {
    /// Loki's text for the refusal of an entry with timestamp `ts`.
    pub fn message(self, ts: i64) -> String {
        match self {
            Refusal::Duplicate => "entry is a duplicate".into(),
            Refusal::TooFarBehind { oldest } => format!(
                "entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}",
                format_rfc3339(ts),
                format_rfc3339(oldest)
            ),
            Refusal::OutOfOrder => "entry out of order".into(),
        }
    }
}

#[derive(Debug)]
pub struct Stream {
    pub labels: SharedLabels,
    /// The canonical label string, computed once for WAL records and messages.
    pub labels_text: Arc<str>,
    pub fingerprint: u64,
    /// The open chunk receiving appends, if any.
    pub head: Option<HeadChunk>,
    /// Closed chunks, oldest first.
    pub closed: Vec<ClosedChunk>,
    /// Newest timestamp ever accepted; the out-of-order window hangs off it.
    pub max_ts: i64,
    /// Last time an entry was appended, for the idle check.
    pub last_append: Instant,
    pub limiter: TokenBucket,
    /// Set when a flush cycle drops the stream from its tenant's map; a push that raced with
    /// the removal looks the stream up again instead of appending to a detached one.
    pub removed: bool,
}

/// The open chunk and when it was started.
#[derive(Debug)]
pub struct HeadChunk {
    pub chunk: MemChunk,
    pub created: Instant,
}

impl Stream {
    pub fn new(labels: SharedLabels, fingerprint: u64, limiter: TokenBucket, now: Instant) -> Self {
        let labels_text: Arc<str> = labels.to_string().into();
        Self {
            labels,
            labels_text,
            fingerprint,
            head: None,
            closed: Vec::new(),
            max_ts: i64::MIN,
            last_append: now,
            limiter,
            removed: false,
        }
    }

    /// Whether `e` may be appended, before rate limits.
    pub fn check(&self, e: &Entry, s: &ChunkSettings) -> Result<(), Refusal> {
        if e.ts < self.max_ts {
            if !s.unordered_writes {
                return Err(Refusal::OutOfOrder);
            }
            let oldest = self.max_ts.saturating_sub(s.ooo_window);
            if e.ts < oldest {
                return Err(Refusal::TooFarBehind { oldest });
            }
        }
        if e.ts <= self.max_ts && self.contains(e) {
            return Err(Refusal::Duplicate);
        }
        Ok(())
    }

    /// Whether an entry with this timestamp, line and structured metadata is in memory: the
    /// same line with other metadata is another entry.
    pub fn contains(&self, e: &Entry) -> bool {
        let ts = e.ts;
        let hit = |c: &MemChunk| {
            c.bounds().is_some_and(|(lo, hi)| lo <= ts && ts <= hi) && c.contains(ts, &e.line, &e.metadata)
        };
        self.head.as_ref().is_some_and(|h| hit(&h.chunk)) || self.closed.iter().any(|c| hit(&c.chunk))
    }

    /// Appends an entry that passed [`Stream::check`], cutting the chunk when full.
    pub fn append(&mut self, e: &Entry, s: &ChunkSettings, now: Instant) {
        let needs_new = match &self.head {
            None => true,
            Some(h) => !h.chunk.is_empty() && h.chunk.compressed_size() + e.line.len() > s.target_size,
        };
        if needs_new {
            self.close_head(CloseReason::Full);
            self.head = Some(HeadChunk { chunk: MemChunk::new(s.codec, s.block_size), created: now });
        }
        let head = self.head.as_mut().expect("head chunk was just ensured");
        // Appending to an in-memory chunk only fails on impossible sizes (a line over 4 GiB),
        // which validation already refused.
        if let Err(err) = head.chunk.append(e.ts, &e.line, &e.metadata) {
            tracing::error!(stream = %self.labels_text, %err, "append to chunk failed");
            return;
        }
        self.max_ts = self.max_ts.max(e.ts);
        self.last_append = now;
    }

    /// Closes the open chunk (if it holds anything) so it gets flushed.
    pub fn close_head(&mut self, reason: CloseReason) {
        if let Some(mut h) = self.head.take() {
            if h.chunk.is_empty() {
                return;
            }
            h.chunk.close();
            self.closed.push(ClosedChunk::new(Arc::new(h.chunk), reason));
        }
    }

    /// Chunks in memory, flushed or not.
    pub fn chunk_count(&self) -> usize {
        self.closed.len() + usize::from(self.head.as_ref().is_some_and(|h| !h.chunk.is_empty()))
    }

    /// Every entry in memory within `[from, through)`, in `direction` order.
    pub fn entries(&self, from: i64, through: i64, direction: Direction) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for c in &self.closed {
            out.extend(c.chunk.iter(from, through, Direction::Forward));
        }
        if let Some(h) = &self.head {
            out.extend(h.chunk.iter(from, through, Direction::Forward));
        }
        // Chunks can overlap in time (out-of-order appends), so order the union.
        out.sort_by_key(|e| e.ts);
        if direction == Direction::Backward {
            out.reverse();
        }
        out
    }
}
