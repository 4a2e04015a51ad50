//! Prometheus remote write of recorded samples, through a queue on local disk.
//!
//! Each evaluation of a group with recording rules appends one batch: a `prometheus.WriteRequest`
//! (protobuf, snappy block-compressed, exactly the body that is sent) written to a file of its
//! own in `ruler.wal.dir` (temp file, fsync, rename), so a batch is either whole on disk or
//! absent. One sender posts the oldest batch, deletes it once the endpoint took it (2xx), and
//! retries with backoff (`min_backoff` doubling to `max_backoff`) on 5xx, 429 and connection
//! errors; a batch the endpoint refuses for good (another 4xx) is dropped and counted. A
//! Prometheus outage thus loses nothing until the queue holds `ruler.wal.max_size` bytes; past
//! that the oldest batches are dropped, and counted. A restart sends what the queue holds.
//!
//! File names are `{sequence:020}-{samples}.pb`, so order and sample counts need no index.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::RemoteWriteConfig;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, samples by time.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: a value at a time in ms.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Counters of the queue, for `/metrics`.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub samples_queued: AtomicU64,
    pub samples_sent: AtomicU64,
    pub samples_dropped: AtomicU64,
    pub send_failures: AtomicU64,
    pub bytes_queued: AtomicU64,
}

/// The disk-backed queue and its sender.
#[derive(Debug)]
pub struct RemoteWriteQueue {
    dir: PathBuf,
    max_bytes: u64,
    next_seq: AtomicU64,
    /// Serializes appends and trimming.
    lock: parking_lot::Mutex<()>,
    wake: Notify,
    pub stats: QueueStats,
}

/// One batch file.
#[derive(Debug, Clone)]
struct Batch {
    path: PathBuf,
    seq: u64,
    samples: u64,
    bytes: u64,
}

impl RemoteWriteQueue {
    /// Opens (creating) the queue in `dir`, keeping what an earlier process left there.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let q = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            next_seq: AtomicU64::new(0),
            lock: parking_lot::Mutex::new(()),
            wake: Notify::new(),
            stats: QueueStats::default(),
        };
        let batches = q.batches()?;
        q.next_seq.store(batches.last().map_or(0, |b| b.seq + 1), Ordering::Relaxed);
        q.stats.bytes_queued.store(batches.iter().map(|b| b.bytes).sum(), Ordering::Relaxed);
        for entry in std::fs::read_dir(dir)?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Arc::new(q))
    }

    /// The batches on disk, oldest first.
    fn batches(&self) -> std::io::Result<Vec<Batch>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(stem) = name.strip_suffix(".pb") else { continue };
            let Some((seq, samples)) = stem.split_once('-') else { continue };
            let (Ok(seq), Ok(samples)) = (seq.parse(), samples.parse()) else { continue };
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(Batch { path: entry.path(), seq, samples, bytes });
        }
        out.sort_by_key(|b| b.seq);
        Ok(out)
    }

    /// Queues `series` durably; returns once the batch is on disk.
    pub fn append(&self, series: Vec<TimeSeries>) -> std::io::Result<()> {
        let samples: u64 = series.iter().map(|s| s.samples.len() as u64).sum();
        if samples == 0 {
            return Ok(());
        }
        let body = WriteRequest { timeseries: series }.encode_to_vec();
        let compressed = snap::raw::Encoder::new().compress_vec(&body).map_err(std::io::Error::other)?;
        let _g = self.lock.lock();
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{seq:020}-{samples}.pb"));
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&compressed)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        self.stats.samples_queued.fetch_add(samples, Ordering::Relaxed);
        self.stats.bytes_queued.fetch_add(compressed.len() as u64, Ordering::Relaxed);
        self.trim()?;
        drop(_g);
        self.wake.notify_one();
        Ok(())
    }

    /// Drops the oldest batches while the queue holds more than its bound.
    fn trim(&self) -> std::io::Result<()> {
        let batches = self.batches()?;
        let mut total: u64 = batches.iter().map(|b| b.bytes).sum();
        for b in &batches {
            if total <= self.max_bytes {
                break;
            }
            std::fs::remove_file(&b.path)?;
            total -= b.bytes;
            self.stats.samples_dropped.fetch_add(b.samples, Ordering::Relaxed);
            tracing::warn!(samples = b.samples, "remote-write queue full; dropped its oldest batch");
        }
        self.stats.bytes_queued.store(total, Ordering::Relaxed);
        Ok(())
    }

    fn remove(&self, b: &Batch) {
        let _g = self.lock.lock();
        if std::fs::remove_file(&b.path).is_ok() {
            self.stats
                .bytes_queued
                .fetch_sub(b.bytes.min(self.stats.bytes_queued.load(Ordering::Relaxed)), Ordering::Relaxed);
        }
    }

    /// Sends batches to `cfg.url` until `shutdown`.
    pub async fn run_sender(self: Arc<Self>, cfg: RemoteWriteConfig, shutdown: CancellationToken) {
        let client = match reqwest::Client::builder().timeout(cfg.timeout.get()).build() {
            Ok(c) => c,
            Err(err) => {
                tracing::error!(%err, "cannot build the remote-write client");
                return;
            }
        };
        let mut backoff = cfg.min_backoff.get();
        loop {
            let next = match self.batches() {
                Ok(b) => b.into_iter().next(),
                Err(err) => {
                    tracing::warn!(%err, dir = %self.dir.display(), "cannot list the remote-write queue");
                    None
                }
            };
            let Some(batch) = next else {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => continue,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                }
            };
            let body = match std::fs::read(&batch.path) {
                Ok(b) => b,
                Err(_) => continue, // trimmed meanwhile
            };
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = send(&client, &cfg.url, body) => r,
            };
            match outcome {
                Sent::Ok => {
                    self.remove(&batch);
                    self.stats.samples_sent.fetch_add(batch.samples, Ordering::Relaxed);
                    backoff = cfg.min_backoff.get();
                }
                Sent::Refused(why) => {
                    tracing::warn!(samples = batch.samples, %why, "remote-write endpoint refused a batch; dropping it");
                    self.remove(&batch);
                    self.stats.samples_dropped.fetch_add(batch.samples, Ordering::Relaxed);
                }
                Sent::Retry(why) => {
                    self.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%why, retry_in = ?backoff, "remote write failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(cfg.max_backoff.get());
                }
            }
        }
    }
}

enum Sent {
    Ok,
    /// A 4xx other than 429: sending it again fails again.
    Refused(String),
    Retry(String),
}

async fn send(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Sent {
    let r = client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("User-Agent", concat!("norn-ruler/", env!("CARGO_PKG_VERSION")))
        .body(body)
        .send()
        .await;
    match r {
        Err(e) => Sent::Retry(e.to_string()),
        Ok(r) if r.status().is_success() => Sent::Ok,
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            let why = format!("{status}: {}", text.trim());
            if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                Sent::Refused(why)
            } else {
                Sent::Retry(why)
            }
        }
    }
}
