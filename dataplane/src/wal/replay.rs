//! Replay: the newest valid checkpoint, then every later segment, in order.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tracing::{info, warn};

use super::checkpoint::{self, ScanError};
use super::format::{
    Corruption, Frame, FrameReader, SEGMENT_HEADER_LEN, check_segment_header, list_dir, open_for_read, read_array,
};

/// Where a replayed record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordSource {
    /// The checkpoint replay started from.
    Checkpoint,
    /// The segment with this number.
    Segment(u64),
}

/// Something replay found wrong and stepped over; each is also logged with `warn!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayIssue {
    /// Segment `segment` is damaged at `offset`; records from there to its end were skipped
    /// and replay went on with the next segment. After a crash a torn tail in the newest
    /// segments is expected: it is the write that was in flight, never acknowledged.
    Segment {
        /// Segment number.
        segment: u64,
        /// File offset of the first unreadable frame (0: the header).
        offset: u64,
        /// What is wrong.
        reason: Corruption,
    },
    /// Checkpoint `checkpoint` is damaged and was not used (none of its records were
    /// delivered); replay fell back to an older checkpoint or to the segments alone.
    Checkpoint {
        /// Segment number the checkpoint covers.
        checkpoint: u64,
        /// File offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: Corruption,
    },
    /// Segments `first..=last` should exist after the starting point but do not: their
    /// records are lost (typically: the newest checkpoint was damaged and the segments it
    /// covered had already been deleted).
    MissingSegments {
        /// First missing segment number.
        first: u64,
        /// Last missing segment number.
        last: u64,
    },
}

/// What replay read and what it had to skip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Segment number of the checkpoint replay started from, if any.
    pub checkpoint: Option<u64>,
    /// Records delivered from the checkpoint.
    pub checkpoint_records: u64,
    /// Segments read, in order.
    pub segments: Vec<u64>,
    /// Records delivered from segments.
    pub segment_records: u64,
    /// Payload bytes delivered in total.
    pub bytes: u64,
    /// Damage found and skipped, in the order found.
    pub issues: Vec<ReplayIssue>,
}

impl ReplayReport {
    /// Records delivered in total.
    pub fn records(&self) -> u64 {
        self.checkpoint_records + self.segment_records
    }
}

/// Why replay failed. Damage in the files is not an error (see [`ReplayIssue`]); these are.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError<E> {
    /// A WAL file or the directory could not be read.
    #[error("wal replay: cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A checkpoint that validated changed while it was being delivered.
    #[error("wal replay: checkpoint {path} changed while being read: {reason}")]
    CheckpointChanged {
        /// The checkpoint file.
        path: PathBuf,
        /// The damage found on the second read.
        reason: Corruption,
    },
    /// The callback returned an error; replay stopped there.
    #[error("wal replay aborted by callback: {0}")]
    Callback(E),
}

/// Replays the WAL in `dir`: the newest valid checkpoint's records (in order), then every
/// record of every segment numbered at or after it (in order), calling `f` for each.
///
/// Call it before [`super::Wal::open`] on the same directory. A missing directory replays
/// nothing. Damage is reported, not fatal: see [`ReplayIssue`]. Each payload is its own
/// allocation (it does not pin a segment-sized buffer). Blocking: run it on a blocking thread.
pub fn replay<E, F>(dir: &Path, mut f: F) -> Result<ReplayReport, ReplayError<E>>
where
    F: FnMut(RecordSource, Bytes) -> Result<(), E>,
{
    let mut report = ReplayReport::default();
    let dir_err = |source| ReplayError::Io { path: dir.to_path_buf(), source };
    let listing = match list_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(dir_err(e)),
    };

    let mut start = 0;
    for (n, path) in listing.checkpoints.iter().rev() {
        let validated = checkpoint::scan(path, *n, &mut |_| Ok::<(), E>(())).map_err(|e| scan_error(path, e))?;
        match validated {
            Ok(_) => {
                let delivered = checkpoint::scan(path, *n, &mut |payload: Bytes| {
                    report.bytes += payload.len() as u64;
                    f(RecordSource::Checkpoint, payload)
                })
                .map_err(|e| scan_error(path, e))?;
                match delivered {
                    Ok(count) => report.checkpoint_records = count,
                    Err((_, reason)) => {
                        return Err(ReplayError::CheckpointChanged { path: path.clone(), reason });
                    }
                }
                report.checkpoint = Some(*n);
                start = *n;
                break;
            }
            Err((offset, reason)) => {
                warn!(checkpoint = *n, offset, reason = %reason, "wal checkpoint damaged, falling back");
                report.issues.push(ReplayIssue::Checkpoint { checkpoint: *n, offset, reason });
            }
        }
    }

    let mut expected = start;
    for (n, path) in listing.segments.iter().filter(|(n, _)| *n >= start) {
        if *n > expected {
            warn!(first = expected, last = *n - 1, "wal segments missing, their records are lost");
            report.issues.push(ReplayIssue::MissingSegments { first: expected, last: *n - 1 });
        }
        expected = *n + 1;
        let source = RecordSource::Segment(*n);
        let damage = read_segment(path, &mut |payload: Bytes| {
            report.bytes += payload.len() as u64;
            report.segment_records += 1;
            f(source, payload)
        })
        .map_err(|e| scan_error(path, e))?;
        report.segments.push(*n);
        if let Some((offset, reason)) = damage {
            warn!(segment = *n, offset, reason = %reason, "wal segment damaged, skipping its rest");
            report.issues.push(ReplayIssue::Segment { segment: *n, offset, reason });
        }
    }
    info!(
        dir = %dir.display(),
        checkpoint = ?report.checkpoint,
        records = report.records(),
        bytes = report.bytes,
        segments = report.segments.len(),
        issues = report.issues.len(),
        "wal replayed"
    );
    Ok(report)
}

fn scan_error<E>(path: &Path, e: ScanError<E>) -> ReplayError<E> {
    match e {
        ScanError::Io(source) => ReplayError::Io { path: path.to_path_buf(), source },
        ScanError::Callback(e) => ReplayError::Callback(e),
    }
}

/// Reads one segment, calling `f` per record; returns where and why it stopped early, if so.
fn read_segment<E>(
    path: &Path,
    f: &mut dyn FnMut(Bytes) -> Result<(), E>,
) -> Result<Option<(u64, Corruption)>, ScanError<E>> {
    let (mut reader, len) = open_for_read(path)?;
    let Some(header) = read_array::<{ SEGMENT_HEADER_LEN as usize }>(&mut reader)? else {
        return Ok(Some((0, Corruption::TruncatedHeader { len })));
    };
    if let Err(reason) = check_segment_header(&header) {
        return Ok(Some((0, reason)));
    }
    let mut frames = FrameReader::new(reader, SEGMENT_HEADER_LEN, len);
    loop {
        match frames.next_frame()? {
            Frame::Record(payload) => f(payload).map_err(ScanError::Callback)?,
            Frame::End => return Ok(None),
            Frame::Corrupt { offset, reason } => return Ok(Some((offset, reason))),
        }
    }
}
