//! The on-disk layout: file names, file headers, record frames, and a reader that walks frames.
//!
//! The byte-level description lives in the module doc of [`crate::wal`]; this file is its
//! single implementation, shared by the writer, the checkpoint code and replay.

use std::fs;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// First 8 bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"NORNWAL\0";
/// First 8 bytes of every checkpoint file.
pub(crate) const CHECKPOINT_MAGIC: [u8; 8] = *b"NORNCKP\0";
/// First 8 bytes of the footer that closes every checkpoint file.
pub(crate) const FOOTER_MAGIC: [u8; 8] = *b"NORNEND\0";
/// Format version written into segment and checkpoint headers.
pub(crate) const VERSION: u32 = 1;
/// Segment header: magic (8) + version (4) + reserved (4).
pub(crate) const SEGMENT_HEADER_LEN: u64 = 16;
/// Checkpoint header: magic (8) + version (4) + reserved (4) + covered segment number (8).
pub(crate) const CHECKPOINT_HEADER_LEN: u64 = 24;
/// Checkpoint footer: magic (8) + record count (8).
pub(crate) const FOOTER_LEN: u64 = 16;
/// Frame header: payload length (4) + CRC32C (4).
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Largest payload a frame can describe.
pub(crate) const MAX_PAYLOAD: usize = u32::MAX as usize;

/// Read buffer for replay: large enough that small records cost no syscall each.
const READ_BUFFER: usize = 1 << 20;

/// Why a file (or the rest of it) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// The file is shorter than its header: it was created but its header never reached disk.
    #[error("file of {len} bytes is shorter than its header")]
    TruncatedHeader {
        /// Length of the file on disk.
        len: u64,
    },
    /// The file does not start with the expected magic bytes.
    #[error("bad magic bytes")]
    BadMagic,
    /// The header names a format version this build cannot read.
    #[error("unsupported format version {version}")]
    UnsupportedVersion {
        /// Version found in the header.
        version: u32,
    },
    /// A frame header or payload runs past the end of the file: a write torn by a crash (or a
    /// corrupted length field).
    #[error("torn record: needs {needed} bytes, {available} left in file")]
    TornRecord {
        /// Bytes the frame needs (header, or header plus payload).
        needed: u64,
        /// Bytes left in the file from the frame's offset.
        available: u64,
    },
    /// The frame's CRC32C does not match its length and payload.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC stored in the frame header.
        stored: u32,
        /// CRC computed over the bytes read.
        computed: u32,
    },
    /// A checkpoint's header names a different segment number than its file name.
    #[error("checkpoint header covers segment {in_header}, file name says otherwise")]
    NumberMismatch {
        /// Segment number stored in the header.
        in_header: u64,
    },
    /// A checkpoint does not end with a valid footer (truncated at a record boundary, or
    /// damaged at its end).
    #[error("missing or damaged checkpoint footer")]
    BadFooter,
    /// A checkpoint's footer counts a different number of records than were read.
    #[error("checkpoint footer counts {footer} records, {read} read")]
    CountMismatch {
        /// Record count stored in the footer.
        footer: u64,
        /// Records actually read.
        read: u64,
    },
}

/// File name of segment `n`: zero-padded so that names sort like numbers.
pub(crate) fn segment_file_name(n: u64) -> String {
    format!("{n:020}.wal")
}

/// File name of the checkpoint covering segments `< n`.
pub(crate) fn checkpoint_file_name(n: u64) -> String {
    format!("checkpoint.{n:020}")
}

/// Temporary name a checkpoint is written under before its atomic rename.
pub(crate) fn checkpoint_tmp_name(n: u64) -> String {
    format!("checkpoint.{n:020}.tmp")
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The WAL files found in a directory, each list sorted by number.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Segment files `(number, path)`.
    pub segments: Vec<(u64, PathBuf)>,
    /// Complete (renamed) checkpoint files `(covered segment number, path)`.
    pub checkpoints: Vec<(u64, PathBuf)>,
    /// Leftover temporary checkpoint files from an interrupted checkpoint.
    pub temporaries: Vec<PathBuf>,
}

/// Lists the WAL files in `dir`, ignoring anything else.
pub(crate) fn list_dir(dir: &Path) -> io::Result<Listing> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_suffix(".wal").and_then(parse_digits) {
            listing.segments.push((n, entry.path()));
        } else if let Some(rest) = name.strip_prefix("checkpoint.") {
            if let Some(n) = parse_digits(rest) {
                listing.checkpoints.push((n, entry.path()));
            } else if rest.strip_suffix(".tmp").and_then(parse_digits).is_some() {
                listing.temporaries.push(entry.path());
            }
        }
    }
    listing.segments.sort_unstable();
    listing.checkpoints.sort_unstable();
    Ok(listing)
}

/// The 16-byte header at the start of every segment.
pub(crate) fn segment_header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// The 24-byte header at the start of the checkpoint covering segments `< n`.
pub(crate) fn checkpoint_header(n: u64) -> [u8; CHECKPOINT_HEADER_LEN as usize] {
    let mut h = [0u8; CHECKPOINT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&CHECKPOINT_MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&n.to_le_bytes());
    h
}

/// The 16-byte footer closing a checkpoint of `count` records.
pub(crate) fn checkpoint_footer(count: u64) -> [u8; FOOTER_LEN as usize] {
    let mut f = [0u8; FOOTER_LEN as usize];
    f[..8].copy_from_slice(&FOOTER_MAGIC);
    f[8..16].copy_from_slice(&count.to_le_bytes());
    f
}

/// CRC32C over the little-endian length followed by the payload.
///
/// Covering the length means a damaged length is caught even when it still fits the file, and
/// an all-zero region (a hole, or blocks a crash left zeroed) never passes as an empty record.
pub(crate) fn frame_crc(len_le: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len_le), payload)
}

/// The 8-byte frame header for `payload`, or `None` if it is longer than [`MAX_PAYLOAD`].
pub(crate) fn frame_header(payload: &[u8]) -> Option<[u8; FRAME_HEADER_LEN]> {
    let len = u32::try_from(payload.len()).ok()?.to_le_bytes();
    let crc = frame_crc(len, payload);
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[..4].copy_from_slice(&len);
    h[4..].copy_from_slice(&crc.to_le_bytes());
    Some(h)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Checks the header read from the start of a segment file.
pub(crate) fn check_segment_header(header: &[u8; SEGMENT_HEADER_LEN as usize]) -> Result<(), Corruption> {
    if header[..8] != SEGMENT_MAGIC {
        return Err(Corruption::BadMagic);
    }
    match le_u32(&header[8..12]) {
        VERSION => Ok(()),
        version => Err(Corruption::UnsupportedVersion { version }),
    }
}

/// Checks a checkpoint header; returns the segment number it covers.
pub(crate) fn check_checkpoint_header(header: &[u8; CHECKPOINT_HEADER_LEN as usize]) -> Result<u64, Corruption> {
    if header[..8] != CHECKPOINT_MAGIC {
        return Err(Corruption::BadMagic);
    }
    match le_u32(&header[8..12]) {
        VERSION => Ok(le_u64(&header[16..24])),
        version => Err(Corruption::UnsupportedVersion { version }),
    }
}

/// Checks a checkpoint footer; returns the record count it states.
pub(crate) fn check_footer(footer: &[u8; FOOTER_LEN as usize]) -> Result<u64, Corruption> {
    if footer[..8] != FOOTER_MAGIC {
        return Err(Corruption::BadFooter);
    }
    Ok(le_u64(&footer[8..16]))
}

/// One step of a [`FrameReader`].
#[derive(Debug)]
pub(crate) enum Frame {
    /// A complete record whose CRC matched.
    Record(Bytes),
    /// The reader reached its end offset exactly on a frame boundary.
    End,
    /// The frame at `offset` is damaged; nothing after it can be trusted.
    Corrupt {
        /// File offset of the damaged frame.
        offset: u64,
        /// What is wrong with it.
        reason: Corruption,
    },
}

/// Walks the frames of a file from a start offset up to an end offset.
///
/// Each payload is read into its own allocation (one copy, kernel to user), so records handed
/// to replay callers do not pin a whole segment in memory.
pub(crate) struct FrameReader<R> {
    reader: BufReader<R>,
    /// File offset of the next frame.
    offset: u64,
    /// Offset where frames end: the file length for segments, the footer for checkpoints.
    end: u64,
}

impl<R: Read> FrameReader<R> {
    /// A reader positioned at `offset` (the caller has consumed the header) ending at `end`.
    pub(crate) fn new(reader: BufReader<R>, offset: u64, end: u64) -> Self {
        Self { reader, offset, end }
    }

    /// Gives back the underlying reader, positioned at [`Self::offset`].
    pub(crate) fn into_inner(self) -> BufReader<R> {
        self.reader
    }

    /// Reads the next frame. I/O errors are returned as errors; short reads are torn records.
    pub(crate) fn next_frame(&mut self) -> io::Result<Frame> {
        let start = self.offset;
        let available = self.end.saturating_sub(start);
        if available == 0 {
            return Ok(Frame::End);
        }
        let torn = |needed: u64| Frame::Corrupt { offset: start, reason: Corruption::TornRecord { needed, available } };
        let header_len = FRAME_HEADER_LEN as u64;
        if available < header_len {
            return Ok(torn(header_len));
        }
        let mut header = [0u8; FRAME_HEADER_LEN];
        if let Err(e) = self.reader.read_exact(&mut header) {
            return match e.kind() {
                io::ErrorKind::UnexpectedEof => Ok(torn(header_len)),
                _ => Err(e),
            };
        }
        let len_le = [header[0], header[1], header[2], header[3]];
        let len = u64::from(u32::from_le_bytes(len_le));
        let stored = le_u32(&header[4..8]);
        let needed = header_len + len;
        if needed > available {
            return Ok(torn(needed));
        }
        let mut payload = Vec::with_capacity(len as usize);
        let got = (&mut self.reader).take(len).read_to_end(&mut payload)?;
        if (got as u64) < len {
            return Ok(torn(needed));
        }
        let computed = frame_crc(len_le, &payload);
        if computed != stored {
            return Ok(Frame::Corrupt { offset: start, reason: Corruption::CrcMismatch { stored, computed } });
        }
        self.offset = start + needed;
        Ok(Frame::Record(Bytes::from(payload)))
    }
}

/// Opens `path` for sequential reading with a large buffer; returns the reader and file length.
pub(crate) fn open_for_read(path: &Path) -> io::Result<(BufReader<fs::File>, u64)> {
    let file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    Ok((BufReader::with_capacity(READ_BUFFER, file), len))
}

/// Reads exactly `N` bytes, or `None` at end of file.
pub(crate) fn read_array<const N: usize>(reader: &mut impl Read) -> io::Result<Option<[u8; N]>> {
    let mut buf = [0u8; N];
    match reader.read_exact(&mut buf) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}
