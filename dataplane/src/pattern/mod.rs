//! The pattern detector beside the ingester: every pushed line is clustered into a Drain
//! template per stream and level, with line counts per 10 s bucket, for `/loki/api/v1/patterns`
//! (Grafana's Logs Drilldown "Patterns" tab). Patterns live in memory for `retain_for`; they are
//! not in the WAL, so a restart starts them afresh, as Loki's pattern ingester does.
//!
//! Clustering runs on its own thread, fed through a bounded queue, so a push never waits for
//! it; when the queue is full the batch is not clustered (and counted).

pub mod drain;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::config::units::Dur;
use crate::distributor::discover::{DETECTED_LEVEL, normalize_level};
use crate::entry::PushStream;
use crate::labels::SharedLabels;
use crate::logql::Matcher;
use crate::query::source::matches_all;
use drain::{Drain, DrainConfig};

/// Width of the buckets line counts are kept in.
pub const BUCKET_NS: i64 = 10_000_000_000;
/// Batches waiting to be clustered at most. A queued batch keeps its push's body alive (lines
/// are views into it), so this bounds the memory of a detector that falls behind.
const QUEUE: usize = 64;

/// `pattern_ingester:` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PatternConfig {
    /// Detect patterns in pushed lines (processes running an ingester).
    pub enabled: bool,
    /// How long counts are kept.
    pub retain_for: Dur,
    /// Most templates per stream and level.
    pub max_clusters: usize,
    /// Fraction of equal tokens for a line to join a template.
    pub similarity: f64,
    /// Lines with more (space-separated) tokens are not clustered.
    pub max_tokens: usize,
}

impl Default for PatternConfig {
    fn default() -> Self {
        let d = DrainConfig::default();
        Self {
            enabled: true,
            retain_for: Dur::hours(3),
            max_clusters: d.max_clusters,
            similarity: d.similarity,
            max_tokens: d.max_tokens,
        }
    }
}

impl PatternConfig {
    /// Checks the settings; `path` is the YAML key of this block.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        if !(self.similarity > 0.0 && self.similarity <= 1.0) {
            return Err(format!("{path}.similarity must be in (0, 1], got {}", self.similarity));
        }
        if self.max_clusters == 0 || self.max_tokens == 0 {
            return Err(format!("{path}.max_clusters and {path}.max_tokens must be greater than 0"));
        }
        Ok(())
    }
}

/// One pattern of a `patterns` answer: its template, level and counts per step.
#[derive(Clone, Debug, PartialEq)]
pub struct PatternSeries {
    pub pattern: String,
    /// `detected_level` of its lines, when they had one.
    pub level: Option<String>,
    /// (bucket start ns, lines), ascending.
    pub samples: Vec<(i64, u64)>,
}

/// The templates of one stream and level, with counts per bucket.
struct Templates {
    drain: Drain,
    /// Per cluster: bucket start → lines.
    counts: Vec<BTreeMap<i64, u64>>,
}

struct StreamPatterns {
    labels: SharedLabels,
    by_level: HashMap<Option<&'static str>, Templates>,
    newest: i64,
}

/// A line to cluster: timestamp, line, `detected_level`.
type Line = (i64, Bytes, Option<&'static str>);

/// One push's lines on their way to the clustering thread: per stream its labels, fingerprint
/// and lines.
struct Batch {
    tenant: String,
    streams: Vec<(SharedLabels, u64, Vec<Line>)>,
}

impl Batch {
    fn new(tenant: &str, streams: &[PushStream]) -> Self {
        let streams = streams
            .iter()
            .map(|s| {
                let lines = s
                    .entries
                    .iter()
                    .map(|e| {
                        let level = e
                            .metadata
                            .iter()
                            .find(|l| l.name == DETECTED_LEVEL)
                            .map(|l| normalize_level(&l.value))
                            .filter(|l| *l != "unknown");
                        (e.ts, e.line.clone(), level)
                    })
                    .collect();
                (s.labels.clone(), s.fingerprint, lines)
            })
            .collect();
        Batch { tenant: tenant.to_string(), streams }
    }
}

/// The pattern detector of one ingester.
pub struct PatternIngester {
    cfg: PatternConfig,
    tenants: Mutex<HashMap<String, HashMap<u64, StreamPatterns>>>,
    tx: std::sync::mpsc::SyncSender<Batch>,
    /// Batches not clustered because the queue was full.
    pub dropped_batches: AtomicU64,
    /// Batches clustered so far.
    pub processed_batches: AtomicU64,
}

impl std::fmt::Debug for PatternIngester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatternIngester").field("cfg", &self.cfg).finish()
    }
}

impl PatternIngester {
    /// Starts the detector and its clustering thread, which ends when the detector is dropped.
    pub fn start(cfg: PatternConfig) -> Arc<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(QUEUE);
        let me = Arc::new(Self {
            cfg,
            tenants: Mutex::new(HashMap::new()),
            tx,
            dropped_batches: AtomicU64::new(0),
            processed_batches: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&me);
        std::thread::Builder::new()
            .name("norn-patterns".into())
            .spawn(move || {
                while let Ok(batch) = rx.recv() {
                    let Some(me) = weak.upgrade() else { return };
                    me.cluster(batch);
                }
            })
            .expect("spawn the pattern thread");
        me
    }

    /// Queues a push's streams for clustering; never blocks.
    pub fn observe(&self, tenant: &str, streams: &[PushStream]) {
        if self.tx.try_send(Batch::new(tenant, streams)).is_err() {
            self.dropped_batches.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn cluster(&self, batch: Batch) {
        let drain_cfg = DrainConfig {
            similarity: self.cfg.similarity,
            max_clusters: self.cfg.max_clusters,
            max_tokens: self.cfg.max_tokens,
        };
        let retain = self.cfg.retain_for.as_nanos_i64();
        let mut tenants = self.tenants.lock();
        let tenant = tenants.entry(batch.tenant).or_default();
        for (labels, fp, lines) in batch.streams {
            let s = tenant.entry(fp).or_insert_with(|| StreamPatterns { labels, by_level: HashMap::new(), newest: 0 });
            for (ts, line, level) in lines {
                let t = s
                    .by_level
                    .entry(level)
                    .or_insert_with(|| Templates { drain: Drain::new(drain_cfg), counts: Vec::new() });
                let Some(i) = t.drain.train(&line) else { continue };
                if t.counts.len() <= i {
                    t.counts.resize_with(i + 1, BTreeMap::new);
                }
                *t.counts[i].entry(ts - ts.rem_euclid(BUCKET_NS)).or_default() += 1;
                s.newest = s.newest.max(ts);
            }
            // Old buckets go; the newest entry of the stream is the clock.
            let oldest = s.newest.saturating_sub(retain);
            for t in s.by_level.values_mut() {
                for c in &mut t.counts {
                    if c.first_key_value().is_some_and(|(k, _)| *k < oldest) {
                        *c = c.split_off(&oldest);
                    }
                }
            }
        }
        self.processed_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Patterns of the tenant's streams matching `matchers` with lines in `[from, through)`,
    /// counts summed per `step` (from `from`) over streams; the most frequent first.
    pub fn query(&self, tenant: &str, matchers: &[Matcher], from: i64, through: i64, step: i64) -> Vec<PatternSeries> {
        merge(self.stream_patterns(tenant, matchers, from, through), from, through, step)
    }

    /// Per matching stream and template, its line counts per bucket in `[from, through)`:
    /// what an ingester answers a querier, which [`merge`]s the answers of every ingester.
    pub fn stream_patterns(&self, tenant: &str, matchers: &[Matcher], from: i64, through: i64) -> Vec<StreamPattern> {
        let tenants = self.tenants.lock();
        let Some(streams) = tenants.get(tenant) else { return Vec::new() };
        let mut out = Vec::new();
        for (fp, s) in streams.iter().filter(|(_, s)| matches_all(&s.labels, matchers)) {
            for (level, t) in &s.by_level {
                for (c, counts) in t.drain.clusters().iter().zip(&t.counts) {
                    let buckets: Vec<(i64, u64)> =
                        counts.range(from - from.rem_euclid(BUCKET_NS)..through).map(|(ts, n)| (*ts, *n)).collect();
                    if buckets.is_empty() {
                        continue;
                    }
                    out.push(StreamPattern {
                        fingerprint: *fp,
                        pattern: c.pattern(),
                        level: level.map(str::to_string),
                        buckets,
                    });
                }
            }
        }
        out
    }
}

/// One template of one stream with its line counts per bucket (bucket start ns, lines).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamPattern {
    pub fingerprint: u64,
    pub pattern: String,
    pub level: Option<String>,
    pub buckets: Vec<(i64, u64)>,
}

/// The `patterns` answer from the streams' templates of every ingester: replicas of a stream
/// saw the same lines, so a (stream, template, bucket) counts once, at the most any replica
/// counted (one that missed a push counts fewer); then counts are summed over streams per
/// `step` from `from`, the most frequent pattern first.
pub fn merge(parts: impl IntoIterator<Item = StreamPattern>, from: i64, through: i64, step: i64) -> Vec<PatternSeries> {
    let step = step.max(BUCKET_NS);
    let mut replicas: HashMap<(u64, String, Option<String>), BTreeMap<i64, u64>> = HashMap::new();
    for p in parts {
        let counts = replicas.entry((p.fingerprint, p.pattern, p.level)).or_default();
        for (ts, n) in p.buckets.into_iter().filter(|(ts, _)| *ts < through) {
            let c = counts.entry(ts).or_default();
            *c = (*c).max(n);
        }
    }
    let mut merged: HashMap<(String, Option<String>), BTreeMap<i64, u64>> = HashMap::new();
    for ((_, pattern, level), counts) in replicas {
        let out = merged.entry((pattern, level)).or_default();
        for (ts, n) in counts {
            let bucket = from + ((ts - from).max(0) / step) * step;
            *out.entry(bucket).or_default() += n;
        }
    }
    let mut out: Vec<PatternSeries> = merged
        .into_iter()
        .map(|((pattern, level), samples)| PatternSeries { pattern, level, samples: samples.into_iter().collect() })
        .collect();
    let total = |p: &PatternSeries| p.samples.iter().map(|s| s.1).sum::<u64>();
    out.sort_by(|a, b| total(b).cmp(&total(a)).then_with(|| a.pattern.cmp(&b.pattern)));
    out
}

#[cfg(test)]
mod tests;
