//! Block compression codecs.
//!
//! A codec is a property of a whole chunk: every block of the chunk is compressed with it. The
//! compressed form of each codec is the plain block format of its library (no framing): LZ4
//! block format, snappy raw format, a single zstd frame, and a raw DEFLATE stream for `gzip`
//! (the gzip member header and CRC-32 add nothing here: every block already carries a CRC32C of
//! its compressed bytes).
//!
//! Decompression never trusts the input for its output size: the caller passes the uncompressed
//! length recorded in the block header, which [`decompress`] first checks against
//! [`MAX_BLOCK_UNCOMPRESSED`], and the output buffer is exactly that large; a stream that would
//! produce more or fewer bytes is an error.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use serde::{Deserialize, Serialize};

use super::ChunkError;

/// Upper bound on the uncompressed size of one block payload (128 MiB).
///
/// [`MemChunk`](super::MemChunk) never produces larger blocks (its block size is capped at
/// [`MAX_BLOCK_SIZE`](super::MAX_BLOCK_SIZE) and a single entry at
/// [`MAX_ENTRY_SIZE`](super::MAX_ENTRY_SIZE)), so a header claiming more is corrupt and is
/// rejected before anything is allocated.
pub const MAX_BLOCK_UNCOMPRESSED: usize = 128 << 20;

/// zstd compression level used for [`Codec::Zstd`].
///
/// Measured on 256 KiB blocks of typical lines (chunk bench data): level 3 compresses as fast as
/// level 1 (within 5%) with a 2-4% better ratio and 5-15% faster decompression; levels above 3
/// only cost compression speed, negative levels lose a fifth of the ratio.
pub const ZSTD_LEVEL: i32 = 3;

/// DEFLATE level used for [`Codec::Gzip`]: flate2's fastest. The usual default, 6, compresses
/// at ~35 MB/s on log lines (7x slower, far below the ingest target) for a 28% better ratio;
/// gzip exists for parity with Loki, and zstd beats it on ratio and speed alike.
pub const GZIP_LEVEL: u32 = 1;

/// Compression applied to the blocks of a chunk.
///
/// Measured on one core of the project's 2-core machine over 256 KiB blocks of typical logfmt /
/// JSON lines (`cargo bench --bench chunk`; MB/s of raw line bytes):
///
/// | codec  | ratio       | append + compress | decompress    | decompress + memmem |
/// |--------|-------------|-------------------|---------------|---------------------|
/// | lz4    | 2.26 / 2.50 | 710 / 840 MB/s    | 3.8 / 4.0 GB/s | 3.5 GB/s           |
/// | snappy | 2.24 / 2.67 | 800 / 1030 MB/s   | 2.9 / 3.2 GB/s | 2.8 GB/s           |
/// | zstd   | 3.57 / 4.09 | 410 / 500 MB/s    | 1.9 / 2.0 GB/s | 1.8 GB/s           |
/// | gzip   | 2.99 / 3.25 | 265 / 330 MB/s    | 0.5 / 0.6 GB/s | 0.5 GB/s           |
///
/// The default is zstd: memory for the data an ingester holds is the binding limit (586 MB of
/// raw lines take ~160 MB with zstd against ~250 MB with LZ4 or snappy), while zstd still
/// decompresses and searches at ~1.8 GB/s per core, several times the scan budget, and
/// compresses at ~3x the target ingest rate per core. LZ4 is the choice when scan latency
/// matters more than memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Blocks are stored as is. Useful for tests and for data that does not compress.
    None,
    /// DEFLATE at [`GZIP_LEVEL`], as Loki's default `gzip` encoding; slow to decompress, kept
    /// for parity.
    Gzip,
    /// Snappy raw format.
    Snappy,
    /// LZ4 block format: the fastest to decompress.
    Lz4,
    /// Zstandard at [`ZSTD_LEVEL`]: the best ratio of the fast codecs.
    #[default]
    Zstd,
}

impl Codec {
    /// Every codec, in the order of their on-storage ids.
    pub const ALL: [Codec; 5] = [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];

    /// The name used in configuration and in the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// The byte identifying this codec in an encoded chunk.
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    /// The codec with on-storage id `id`, if there is one.
    pub fn from_id(id: u8) -> Option<Codec> {
        Codec::ALL.get(usize::from(id)).copied()
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown codec name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown chunk encoding {0:?}: expected one of none, gzip, snappy, lz4, zstd")]
pub struct ParseCodecError(pub String);

impl FromStr for Codec {
    type Err = ParseCodecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Codec::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseCodecError(s.to_string()))
    }
}

/// Per-thread compression state: zstd contexts are expensive to create (hundreds of KiB each),
/// so each thread keeps one of each instead of building them per block.
struct ZstdContexts {
    compressor: Option<zstd::bulk::Compressor<'static>>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

thread_local! {
    static ZSTD: RefCell<ZstdContexts> = const {
        RefCell::new(ZstdContexts { compressor: None, decompressor: None })
    };
}

/// Compresses `src` with `codec`, replacing the contents of `dst`.
///
/// `dst` is a scratch buffer that the caller reuses across blocks; its capacity grows to the
/// codec's worst case for `src`.
pub fn compress(codec: Codec, src: &[u8], dst: &mut Vec<u8>) -> Result<(), ChunkError> {
    dst.clear();
    match codec {
        Codec::None => dst.extend_from_slice(src),
        Codec::Lz4 => {
            dst.resize(lz4_flex::block::get_maximum_output_size(src.len()), 0);
            let n = lz4_flex::block::compress_into(src, dst).map_err(|e| ChunkError::Compress(format!("lz4: {e}")))?;
            dst.truncate(n);
        }
        Codec::Snappy => {
            dst.resize(snap::raw::max_compress_len(src.len()), 0);
            let n = snap::raw::Encoder::new()
                .compress(src, dst)
                .map_err(|e| ChunkError::Compress(format!("snappy: {e}")))?;
            dst.truncate(n);
        }
        Codec::Zstd => {
            dst.reserve(zstd::zstd_safe::compress_bound(src.len()));
            ZSTD.with(|z| {
                let mut z = z.borrow_mut();
                if z.compressor.is_none() {
                    z.compressor = Some(
                        zstd::bulk::Compressor::new(ZSTD_LEVEL)
                            .map_err(|e| ChunkError::Compress(format!("zstd: {e}")))?,
                    );
                }
                match z.compressor.as_mut() {
                    Some(c) => c
                        .compress_to_buffer(src, dst)
                        .map(|_| ())
                        .map_err(|e| ChunkError::Compress(format!("zstd: {e}"))),
                    None => Err(ChunkError::Compress("zstd: no context".into())),
                }
            })?;
        }
        Codec::Gzip => {
            // Worst case of DEFLATE: stored blocks of 64 KiB with 5 bytes of framing each.
            let bound = src.len() + src.len() / 16_000 * 5 + 64;
            dst.reserve(bound);
            let mut c = Compress::new(Compression::new(GZIP_LEVEL), false);
            loop {
                let consumed = usize::try_from(c.total_in()).unwrap_or(usize::MAX);
                let rest = src.get(consumed..).unwrap_or_default();
                let status = c
                    .compress_vec(rest, dst, FlushCompress::Finish)
                    .map_err(|e| ChunkError::Compress(format!("gzip: {e}")))?;
                match status {
                    Status::StreamEnd => break,
                    Status::Ok | Status::BufError => dst.reserve(dst.capacity().max(4096)),
                }
            }
        }
    }
    Ok(())
}

/// Decompresses one block payload into a new buffer of exactly `uncompressed_len` bytes.
///
/// `uncompressed_len` comes from the block header; it is checked against
/// [`MAX_BLOCK_UNCOMPRESSED`] before allocating. Any decoding failure, and any stream that does
/// not produce exactly `uncompressed_len` bytes, is [`ChunkError::Corrupt`].
pub fn decompress(codec: Codec, src: &Bytes, uncompressed_len: usize) -> Result<Bytes, ChunkError> {
    if uncompressed_len > MAX_BLOCK_UNCOMPRESSED {
        return Err(ChunkError::corrupt(format!(
            "block uncompressed length {uncompressed_len} over the {MAX_BLOCK_UNCOMPRESSED} limit"
        )));
    }
    let wrong_len = |got: usize| {
        ChunkError::corrupt(format!("{codec} block decompressed to {got} bytes, header says {uncompressed_len}"))
    };
    match codec {
        Codec::None => {
            if src.len() != uncompressed_len {
                return Err(wrong_len(src.len()));
            }
            Ok(src.clone())
        }
        Codec::Lz4 => {
            let mut out = vec![0u8; uncompressed_len];
            let n = lz4_flex::block::decompress_into(src, &mut out)
                .map_err(|e| ChunkError::corrupt(format!("lz4 block: {e}")))?;
            if n != uncompressed_len {
                return Err(wrong_len(n));
            }
            Ok(Bytes::from(out))
        }
        Codec::Snappy => {
            let claimed =
                snap::raw::decompress_len(src).map_err(|e| ChunkError::corrupt(format!("snappy block: {e}")))?;
            if claimed != uncompressed_len {
                return Err(wrong_len(claimed));
            }
            let mut out = vec![0u8; uncompressed_len];
            let n = snap::raw::Decoder::new()
                .decompress(src, &mut out)
                .map_err(|e| ChunkError::corrupt(format!("snappy block: {e}")))?;
            if n != uncompressed_len {
                return Err(wrong_len(n));
            }
            Ok(Bytes::from(out))
        }
        Codec::Zstd => {
            let mut out = Vec::with_capacity(uncompressed_len);
            ZSTD.with(|z| {
                let mut z = z.borrow_mut();
                if z.decompressor.is_none() {
                    z.decompressor = Some(
                        zstd::bulk::Decompressor::new()
                            .map_err(|e| ChunkError::corrupt(format!("zstd context: {e}")))?,
                    );
                }
                match z.decompressor.as_mut() {
                    // Writes into the spare capacity only: the output can never exceed it.
                    Some(d) => d
                        .decompress_to_buffer(src.as_ref(), &mut out)
                        .map(|_| ())
                        .map_err(|e| ChunkError::corrupt(format!("zstd block: {e}"))),
                    None => Err(ChunkError::corrupt("zstd: no context")),
                }
            })?;
            if out.len() != uncompressed_len {
                return Err(wrong_len(out.len()));
            }
            Ok(Bytes::from(out))
        }
        Codec::Gzip => {
            let mut out = vec![0u8; uncompressed_len];
            let mut d = Decompress::new(false);
            // One extra byte of room would let a longer stream show itself; instead check that
            // the stream ended exactly when the buffer is full.
            let status = d
                .decompress(src, &mut out, FlushDecompress::Finish)
                .map_err(|e| ChunkError::corrupt(format!("gzip block: {e}")))?;
            let n = usize::try_from(d.total_out()).unwrap_or(usize::MAX);
            if status != Status::StreamEnd {
                return Err(ChunkError::corrupt(format!(
                    "gzip block: stream did not end within {uncompressed_len} bytes"
                )));
            }
            if n != uncompressed_len {
                return Err(wrong_len(n));
            }
            Ok(Bytes::from(out))
        }
    }
}
