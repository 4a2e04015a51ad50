//! Checkpoint files: written atomically (temporary file, fsync, rename, fsync dir) and read
//! back only after a full validation pass, so a damaged checkpoint never delivers half of
//! itself before replay falls back to an older one.

use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use bytes::Bytes;

use super::WalError;
use super::format::{
    CHECKPOINT_HEADER_LEN, Corruption, FOOTER_LEN, Frame, FrameReader, MAX_PAYLOAD, check_checkpoint_header,
    check_footer, checkpoint_file_name, checkpoint_footer, checkpoint_header, checkpoint_tmp_name, frame_header,
    open_for_read, read_array,
};
use super::io::{WalIo, WriteAdapter, remove_if_exists};

/// Checkpoint writes go through a buffer this large; bigger records bypass it.
const WRITE_BUFFER: usize = 1 << 20;

/// What a written checkpoint holds.
pub(crate) struct Written {
    pub records: u64,
    pub bytes: u64,
}

/// Writes `checkpoint.<n>` durably. On error the temporary file is removed and nothing else
/// changed.
pub(crate) fn write(
    io: &dyn WalIo,
    dir: &Path,
    n: u64,
    records: impl IntoIterator<Item = Bytes>,
) -> Result<Written, WalError> {
    let tmp = dir.join(checkpoint_tmp_name(n));
    let result = write_tmp(io, &tmp, n, records).and_then(|written| {
        std::fs::rename(&tmp, dir.join(checkpoint_file_name(n))).map_err(|e| WalError::io("rename checkpoint", e))?;
        io.sync_dir(dir).map_err(|e| WalError::io("fsync wal directory", e))?;
        Ok(written)
    });
    if result.is_err() {
        // Best effort: a leftover temporary file is ignored by replay and removed by `open`.
        let _ = remove_if_exists(&tmp);
    }
    result
}

fn write_tmp(
    io: &dyn WalIo,
    tmp: &Path,
    n: u64,
    records: impl IntoIterator<Item = Bytes>,
) -> Result<Written, WalError> {
    let mut file = io.create(tmp).map_err(|e| WalError::io("create checkpoint", e))?;
    let mut count = 0u64;
    let mut bytes = CHECKPOINT_HEADER_LEN + FOOTER_LEN;
    {
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, WriteAdapter(file.as_mut()));
        let write_err = |e| WalError::io("write checkpoint", e);
        out.write_all(&checkpoint_header(n)).map_err(write_err)?;
        for payload in records {
            let header =
                frame_header(&payload).ok_or(WalError::RecordTooLarge { len: payload.len(), max: MAX_PAYLOAD })?;
            out.write_all(&header).map_err(write_err)?;
            out.write_all(&payload).map_err(write_err)?;
            count += 1;
            bytes += (header.len() + payload.len()) as u64;
        }
        out.write_all(&checkpoint_footer(count)).map_err(write_err)?;
        out.flush().map_err(write_err)?;
    }
    file.sync_data().map_err(|e| WalError::io("fsync checkpoint", e))?;
    Ok(Written { records: count, bytes })
}

/// Why reading a checkpoint stopped early.
pub(crate) enum ScanError<E> {
    Io(io::Error),
    Callback(E),
}

impl<E> From<io::Error> for ScanError<E> {
    fn from(e: io::Error) -> Self {
        ScanError::Io(e)
    }
}

/// Reads checkpoint `path` (expected to cover segments `< n`), calling `f` for each record.
///
/// Returns `Ok(Ok(count))` for a valid checkpoint and `Ok(Err((offset, reason)))` for a damaged
/// one. A damaged checkpoint may already have passed some records to `f`: validate with a
/// no-op `f` first.
pub(crate) fn scan<E>(
    path: &Path,
    n: u64,
    f: &mut dyn FnMut(Bytes) -> Result<(), E>,
) -> Result<Result<u64, (u64, Corruption)>, ScanError<E>> {
    let (mut reader, len) = open_for_read(path)?;
    if len < CHECKPOINT_HEADER_LEN + FOOTER_LEN {
        return Ok(Err((0, Corruption::TruncatedHeader { len })));
    }
    let Some(header) = read_array::<{ CHECKPOINT_HEADER_LEN as usize }>(&mut reader)? else {
        return Ok(Err((0, Corruption::TruncatedHeader { len })));
    };
    match check_checkpoint_header(&header) {
        Ok(covers) if covers == n => {}
        Ok(in_header) => return Ok(Err((0, Corruption::NumberMismatch { in_header }))),
        Err(reason) => return Ok(Err((0, reason))),
    }
    let footer_at = len - FOOTER_LEN;
    let mut frames = FrameReader::new(reader, CHECKPOINT_HEADER_LEN, footer_at);
    let mut count = 0u64;
    loop {
        match frames.next_frame()? {
            Frame::Record(payload) => {
                f(payload).map_err(ScanError::Callback)?;
                count += 1;
            }
            Frame::End => break,
            Frame::Corrupt { offset, reason } => return Ok(Err((offset, reason))),
        }
    }
    let mut reader = frames.into_inner();
    let footer = read_array::<{ FOOTER_LEN as usize }>(&mut reader)?;
    let trailing = reader.read(&mut [0u8; 1])?;
    let Some(footer) = footer.filter(|_| trailing == 0) else {
        return Ok(Err((footer_at, Corruption::BadFooter)));
    };
    match check_footer(&footer) {
        Ok(stated) if stated == count => Ok(Ok(count)),
        Ok(stated) => Ok(Err((footer_at, Corruption::CountMismatch { footer: stated, read: count }))),
        Err(reason) => Ok(Err((footer_at, reason))),
    }
}
