//! The file operations the WAL writes through.
//!
//! Two implementations exist: [`StdIo`] (the real filesystem) and, in tests, a wrapper that
//! injects `ENOSPC`/`EIO` failures, partial writes and stalls. Reading (replay) uses `std::fs`
//! directly: it has nothing to recover from but corruption, which tests create with real bytes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::path::Path;

/// `writev` accepts at most this many buffers per call on Linux.
const IOV_MAX: usize = 1024;

/// Creates WAL files and makes directory entries durable.
pub(crate) trait WalIo: Send + Sync + 'static {
    /// Creates (or truncates) the file at `path` for writing from offset 0.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Makes entries created, renamed or removed in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// A WAL file open for appending.
pub(crate) trait WalFile: Send {
    /// One `writev` at the current position; may write fewer bytes than given.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// `fdatasync`: data and the metadata needed to read it back are durable.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes and moves the write position there.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// The real filesystem.
#[derive(Debug, Default)]
pub(crate) struct StdIo;

impl WalIo for StdIo {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

struct StdFile(File);

impl WalFile for StdFile {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)?;
        self.0.seek(SeekFrom::Start(len))?;
        Ok(())
    }
}

/// Writes every byte of `bufs`, looping over short writes and `EINTR`.
pub(crate) fn write_all_vectored(file: &mut dyn WalFile, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let chunk = &bufs[..bufs.len().min(IOV_MAX)];
        match file.write_vectored(chunk) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Adapts a [`WalFile`] to `std::io::Write` so a `BufWriter` can sit on top (checkpoints).
pub(crate) struct WriteAdapter<'a>(pub &'a mut dyn WalFile);

impl Write for WriteAdapter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(&bufs[..bufs.len().min(IOV_MAX)])
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Removes `path`, treating "already gone" as success.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
