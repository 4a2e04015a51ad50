//! Log entries as they travel the write path and come back out of chunks.

use bytes::Bytes;

use crate::labels::Label;

/// One log line with its timestamp and structured metadata.
///
/// `line` is a cheap view: on the push path it points into the decoded request body, out of a
/// chunk it points into a decompressed block, so neither side copies line bytes per entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Nanoseconds since the Unix epoch.
    pub ts: i64,
    pub line: Bytes,
    /// Structured metadata: per-entry labels that are not part of the stream identity.
    pub metadata: Vec<Label>,
}

impl Entry {
    pub fn new(ts: i64, line: impl Into<Bytes>) -> Self {
        Self { ts, line: line.into(), metadata: Vec::new() }
    }

    /// Bytes this entry counts for in rate limits and metrics: the line plus its metadata.
    pub fn size(&self) -> usize {
        self.line.len() + self.metadata.iter().map(|l| l.name.len() + l.value.len()).sum::<usize>()
    }
}

/// Order in which entries are returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Oldest first.
    #[default]
    Forward,
    /// Newest first.
    Backward,
}

/// Entries of one validated stream, on their way from the distributor to an ingester.
#[derive(Clone, Debug)]
pub struct PushStream {
    /// The stream's sorted, validated labels.
    pub labels: crate::labels::SharedLabels,
    /// Fingerprint of tenant + labels.
    pub fingerprint: u64,
    pub entries: Vec<Entry>,
}
