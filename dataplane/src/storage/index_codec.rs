//! Binary encoding of one index object: the chunk references one `Index::write` call made for
//! one period.
//!
//! ```text
//! magic "NIDX" | version u8 (1) | flags u8 (0)
//! strings:  uvarint count, then per string: uvarint len, UTF-8 bytes
//! series:   uvarint count, then per series: fingerprint u64 LE, uvarint label count,
//!           per label: uvarint name index, uvarint value index (into strings)
//! refs:     uvarint count, then per ref (sorted by fingerprint, from):
//!           uvarint series index, uvarint flags (bit 0: explicit key),
//!           zigzag varint (from - previous ref's from), uvarint (through - from),
//!           uvarint size, uvarint entries, uvarint uncompressed bytes, checksum u32 LE,
//!           [uvarint key index, when bit 0 is set]
//! crc32c u32 LE of everything before it
//! ```
//!
//! Every label string is stored once per object, however many series and chunks use it. A
//! chunk's key is not stored when it is the one [`chunk_key`] derives from the ref, which is
//! always the case for chunks Norn flushes. Decoding checks the checksum first and then every
//! count and index, so a damaged object is an error, never a panic or a huge allocation.

use std::collections::HashMap;
use std::sync::Arc;

use crate::labels::{Label, Labels};

use super::StorageError;
use super::index::{ChunkRef, chunk_key};

const MAGIC: &[u8; 4] = b"NIDX";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 6;
const CRC_LEN: usize = 4;
/// Ref flag: the chunk key is stored explicitly instead of derived.
const FLAG_EXPLICIT_KEY: u64 = 1;

/// A decoded index object.
#[derive(Debug)]
pub(crate) struct IndexObject {
    /// The references, sorted by (fingerprint, from).
    pub refs: Vec<ChunkRef>,
    /// Approximate memory the decoded object holds, for the cache's budget.
    pub mem_bytes: u64,
}

/// Encodes `refs` (any order; exact duplicates are kept once) for `tenant`. The output depends
/// only on the set of refs, so retrying a write produces the same bytes and the same object name.
pub(crate) fn encode_index_object<'a>(tenant: &str, refs: impl IntoIterator<Item = &'a ChunkRef>) -> Vec<u8> {
    let mut sorted: Vec<&ChunkRef> = refs.into_iter().collect();
    sorted.sort_by(|a, b| a.storage_order(b));
    sorted.dedup_by(|a, b| a == b);

    let mut strings = Interner::default();
    // (fingerprint, labels) -> series index, and per series its (name, value) string indexes.
    let mut series: Vec<(u64, Vec<(u64, u64)>)> = Vec::new();
    let mut series_ids: HashMap<(u64, &Labels), u64> = HashMap::new();
    // Per ref: (series index, index of the explicit key string).
    let mut ref_ids: Vec<(u64, Option<u64>)> = Vec::with_capacity(sorted.len());
    for r in &sorted {
        let sid = match series_ids.get(&(r.fingerprint, &*r.labels)) {
            Some(&id) => id,
            None => {
                let pairs = r.labels.iter().map(|l| (strings.id(&l.name), strings.id(&l.value))).collect();
                series.push((r.fingerprint, pairs));
                let id = series.len() as u64 - 1;
                series_ids.insert((r.fingerprint, &r.labels), id);
                id
            }
        };
        let derived = chunk_key(tenant, r.fingerprint, r.from, r.through, r.checksum);
        let explicit = (r.key != derived).then(|| strings.id(&r.key));
        ref_ids.push((sid, explicit));
    }

    let mut out = Vec::with_capacity(64 + sorted.len() * 24);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(0);
    put_uvarint(&mut out, strings.list.len() as u64);
    for s in &strings.list {
        put_uvarint(&mut out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    put_uvarint(&mut out, series.len() as u64);
    for (fingerprint, pairs) in &series {
        out.extend_from_slice(&fingerprint.to_le_bytes());
        put_uvarint(&mut out, pairs.len() as u64);
        for (n, v) in pairs {
            put_uvarint(&mut out, *n);
            put_uvarint(&mut out, *v);
        }
    }
    put_uvarint(&mut out, sorted.len() as u64);
    let mut prev_from = 0i64;
    for (r, (sid, explicit)) in sorted.iter().zip(&ref_ids) {
        put_uvarint(&mut out, *sid);
        put_uvarint(&mut out, if explicit.is_some() { FLAG_EXPLICIT_KEY } else { 0 });
        put_uvarint(&mut out, zigzag(r.from.wrapping_sub(prev_from)));
        prev_from = r.from;
        put_uvarint(&mut out, r.through.wrapping_sub(r.from) as u64);
        put_uvarint(&mut out, u64::from(r.size));
        put_uvarint(&mut out, u64::from(r.entries));
        put_uvarint(&mut out, r.uncompressed);
        out.extend_from_slice(&r.checksum.to_le_bytes());
        if let Some(k) = explicit {
            put_uvarint(&mut out, *k);
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes an index object of `tenant` read from `key` (named in errors).
pub(crate) fn decode(tenant: &str, key: &str, data: &[u8]) -> Result<IndexObject, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt { key: key.to_string(), reason };
    if data.len() < HEADER_LEN + CRC_LEN {
        return Err(corrupt(format!("too short ({} bytes)", data.len())));
    }
    if &data[..4] != MAGIC {
        return Err(corrupt("not an index object (bad magic)".into()));
    }
    let (body, crc) = data.split_at(data.len() - CRC_LEN);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let actual = crc32c::crc32c(body);
    if stored != actual {
        return Err(corrupt(format!("checksum mismatch (stored {stored:08x}, computed {actual:08x})")));
    }
    if data[4] != VERSION {
        return Err(corrupt(format!("unsupported version {}", data[4])));
    }
    if data[5] != 0 {
        return Err(corrupt(format!("unknown header flags {:#x}", data[5])));
    }
    let mut r = Reader { buf: &body[HEADER_LEN..] };
    decode_body(tenant, &mut r).map_err(corrupt)
}

fn decode_body(tenant: &str, r: &mut Reader<'_>) -> Result<IndexObject, String> {
    let mut mem = 0u64;
    // Every element takes at least one byte, which bounds each count by what is left.
    let n_strings = r.count("string")?;
    let mut strings: Vec<&str> = Vec::with_capacity(n_strings);
    for _ in 0..n_strings {
        let len = r.count("string length")?;
        let bytes = r.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| "string is not valid UTF-8".to_string())?;
        strings.push(s);
    }
    let string = |i: u64| -> Result<&str, String> {
        usize::try_from(i)
            .ok()
            .and_then(|i| strings.get(i).copied())
            .ok_or_else(|| format!("string index {i} out of range ({n_strings} strings)"))
    };

    let n_series = r.count("series")?;
    let mut series: Vec<(u64, Arc<Labels>)> = Vec::with_capacity(n_series);
    for _ in 0..n_series {
        let fingerprint = r.u64_le()?;
        let n_labels = r.count("label")?;
        let mut labels = Vec::with_capacity(n_labels);
        for _ in 0..n_labels {
            let name = string(r.uvarint()?)?;
            let value = string(r.uvarint()?)?;
            mem += (name.len() + value.len() + std::mem::size_of::<Label>()) as u64;
            labels.push(Label::new(name, value));
        }
        mem += 64;
        series.push((fingerprint, Arc::new(Labels::from_vec(labels))));
    }

    let n_refs = r.count("chunk ref")?;
    let mut refs = Vec::with_capacity(n_refs);
    let mut prev_from = 0i64;
    for _ in 0..n_refs {
        let sid = r.uvarint()?;
        let (fingerprint, labels) = usize::try_from(sid)
            .ok()
            .and_then(|i| series.get(i))
            .ok_or_else(|| format!("series index {sid} out of range ({n_series} series)"))?;
        let flags = r.uvarint()?;
        if flags & !FLAG_EXPLICIT_KEY != 0 {
            return Err(format!("unknown chunk ref flags {flags:#x}"));
        }
        let from = prev_from.wrapping_add(unzigzag(r.uvarint()?));
        prev_from = from;
        let span = i64::try_from(r.uvarint()?).map_err(|_| "chunk time span overflows")?;
        let through = from.checked_add(span).ok_or_else(|| "chunk end time overflows".to_string())?;
        let size = u32::try_from(r.uvarint()?).map_err(|_| "chunk size overflows u32")?;
        let entries = u32::try_from(r.uvarint()?).map_err(|_| "entry count overflows u32")?;
        let uncompressed = r.uvarint()?;
        let checksum = r.u32_le()?;
        let key = if flags & FLAG_EXPLICIT_KEY != 0 {
            string(r.uvarint()?)?.to_string()
        } else {
            chunk_key(tenant, *fingerprint, from, through, checksum)
        };
        mem += (std::mem::size_of::<ChunkRef>() + key.len()) as u64;
        refs.push(ChunkRef {
            fingerprint: *fingerprint,
            labels: Arc::clone(labels),
            from,
            through,
            key,
            size,
            entries,
            uncompressed,
            checksum,
        });
    }
    if !r.buf.is_empty() {
        return Err(format!("{} unexpected bytes after the refs", r.buf.len()));
    }
    Ok(IndexObject { refs, mem_bytes: mem })
}

/// The string table being built: each distinct string once, in order of first use.
#[derive(Default)]
struct Interner<'a> {
    list: Vec<&'a str>,
    ids: HashMap<&'a str, u64>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, s: &'a str) -> u64 {
        *self.ids.entry(s).or_insert_with(|| {
            self.list.push(s);
            self.list.len() as u64 - 1
        })
    }
}

/// A cursor over the body; every read checks the bounds.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err(format!("truncated: needs {n} bytes, {} left", self.buf.len()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn uvarint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some((&b, rest)) = self.buf.split_first() else {
                return Err("truncated varint".into());
            };
            self.buf = rest;
            if i == 9 && b > 1 {
                return Err("varint overflows u64".into());
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    /// A count of elements that take at least one byte each.
    fn count(&mut self, what: &str) -> Result<usize, String> {
        let n = self.uvarint()?;
        match usize::try_from(n) {
            Ok(n) if n <= self.buf.len() => Ok(n),
            _ => Err(format!("{what} count {n} exceeds the {} remaining bytes", self.buf.len())),
        }
    }

    fn u32_le(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64_le(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}
