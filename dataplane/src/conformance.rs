//! A [`Harness`] for Loki's `.logqltest` scripts that runs them through the real write and read
//! paths: each script's data is pushed as snappy protobuf through the distributor into an
//! ingester (with its WAL), and queries go through the querier — over ingester memory, or over
//! the object store after everything was flushed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use async_trait::async_trait;
use bytes::Bytes;
use prost::Message;

use crate::config::units::{ByteSize, Dur};
use crate::config::{Config, SyncMode};
use crate::distributor::{Distributor, PushBody};
use crate::entry::Entry;
use crate::frontend::Frontend;
use crate::ingester::{Ingester, SingleProcess};
use crate::labels::Labels;
use crate::limits::TenantLimits;
use crate::logproto;
use crate::metrics::Metrics;
use crate::querier::{IngesterData, Querier};
use crate::query::logqltest::{EvalFailure, Harness};
use crate::query::{QueryParams, Value};
use crate::storage::{self, Index};

/// Where queries find the loaded data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataLocation {
    /// In ingester memory (head and cut blocks).
    Memory,
    /// Flushed to the object store (filesystem) and read through the index.
    Store,
}

impl DataLocation {
    pub fn name(self) -> &'static str {
        match self {
            DataLocation::Memory => "ingester memory",
            DataLocation::Store => "object store",
        }
    }
}

/// One loaded data set: a fresh single-process Norn in a temporary directory.
struct Loaded {
    distributor: Distributor,
    ingester: Arc<Ingester>,
    querier: Querier,
    /// With [`RealHarness::through_frontend`], the frontend queries go through.
    frontend: Option<Frontend>,
    /// Stops the frontend's workers.
    _workers: tokio_util::sync::DropGuard,
    _dir: tempfile::TempDir,
}

/// Runs scripts against a real distributor, ingester and querier.
pub struct RealHarness {
    location: DataLocation,
    frontend: bool,
    loaded: Option<Loaded>,
    /// Sub-queries by kind (and `split`: time splits) that frontends of data sets no longer
    /// loaded ran.
    ran: HashMap<String, u64>,
}

/// The split interval of [`RealHarness::through_frontend`]: a minute, the step of most evals,
/// so range queries are cut into one split per step or few.
pub const FRONTEND_SPLIT: Dur = Dur::secs(60);
/// The shards of every shardable query through the frontend.
pub const FRONTEND_SHARDS: u32 = 3;

const TENANT: &str = "conformance";

impl RealHarness {
    pub fn new(location: DataLocation) -> Self {
        Self { location, frontend: false, loaded: None, ran: HashMap::new() }
    }

    /// Queries go through a query frontend that splits every range query at
    /// [`FRONTEND_SPLIT`] boundaries, shards every shardable one into [`FRONTEND_SHARDS`] and
    /// caches results, run by in-process workers over the same querier.
    pub fn through_frontend(location: DataLocation) -> Self {
        Self { location, frontend: true, loaded: None, ran: HashMap::new() }
    }

    /// Sub-queries the frontend ran, by kind (`query`, `shard`, ...), over every script so far.
    pub fn frontend_subqueries(&self, kind: &str) -> u64 {
        let current = self.loaded.as_ref().and_then(|l| l.frontend.as_ref()).map_or(0, |f| count(f, kind));
        self.ran.get(kind).copied().unwrap_or(0) + current
    }

    /// The configuration of the process under test: Loki's query limits, but ingestion limits
    /// opened up so scripts can load data at `t = 0` (1970) and in any volume.
    fn config(dir: &std::path::Path) -> Config {
        let mut cfg = Config::default();
        cfg.data.dir = dir.to_path_buf();
        cfg.ingester.wal.sync = SyncMode::Never;
        cfg.ingester.max_chunk_age = Dur::hours(24 * 365 * 100);
        cfg.limits.reject_old_samples = false;
        cfg.limits.ingestion_rate_mb = 1e9;
        cfg.limits.ingestion_burst_size_mb = 1e9;
        cfg.limits.per_stream_rate_limit = ByteSize(u64::MAX / 4);
        cfg.limits.per_stream_rate_limit_burst = ByteSize(u64::MAX / 4);
        cfg.limits.max_global_streams_per_user = 0;
        cfg.limits.max_query_length = Dur::secs(0);
        cfg.limits.split_queries_by_interval = FRONTEND_SPLIT;
        cfg.query_range.shards = FRONTEND_SHARDS;
        // The scripts check queries over exactly the streams they load.
        cfg.limits.discover_service_name = Vec::new();
        cfg.limits.discover_log_levels = false;
        cfg
    }

    async fn start(&self) -> Result<Loaded, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let cfg = Self::config(dir.path());
        let metrics = Arc::new(Metrics::new());
        let metrics_for_frontend = metrics.clone();
        let limits = Arc::new(TenantLimits::new(cfg.limits.clone(), &cfg.overrides)?);
        let store = storage::from_config(&cfg.storage, &cfg.data.dir).await.map_err(|e| e.to_string())?;
        let index = Arc::new(Index::with_config(store.clone(), &cfg.storage.index));
        let ingester = Ingester::open(
            cfg.ingester.clone(),
            cfg.wal_dir(),
            limits.clone(),
            Arc::new(SingleProcess),
            store.clone(),
            index.clone(),
            metrics.clone(),
        )
        .map_err(|e| e.to_string())?;
        let distributor = Distributor::new(
            limits.clone(),
            Arc::new(AtomicUsize::new(1)),
            ingester.clone(),
            metrics,
            cfg.distributor.max_recv_msg_size.as_usize(),
        );
        let querier = Querier::new(
            cfg.querier.clone(),
            Some(ingester.clone() as Arc<dyn IngesterData>),
            store,
            index,
            limits.clone(),
        );
        let workers = tokio_util::sync::CancellationToken::new();
        let frontend = self.frontend.then(|| {
            let cache = crate::frontend::cache::EmbeddedCache::new(64 << 20, std::time::Duration::from_secs(3600));
            let cache = crate::frontend::ResultsCache::new(Arc::new(cache), &metrics_for_frontend);
            let f = Frontend::new(
                cfg.frontend.clone(),
                cfg.query_range.clone(),
                cfg.querier.max_query_memory.bytes(),
                limits,
                Some(cache),
                &metrics_for_frontend,
            );
            crate::frontend::worker::spawn_local(
                &f,
                querier.clone(),
                "conformance",
                4,
                Default::default(),
                workers.clone(),
            );
            f
        });
        Ok(Loaded { distributor, ingester, querier, frontend, _workers: workers.drop_guard(), _dir: dir })
    }
}

fn count(f: &Frontend, kind: &str) -> u64 {
    if kind == "split" { f.split_count() } else { f.subquery_count(kind) }
}

/// A snappy-compressed protobuf push of one stream.
fn push_body(labels: &Labels, entries: &[Entry]) -> Bytes {
    let req = logproto::PushRequest {
        streams: vec![logproto::StreamAdapter {
            labels: Bytes::from(labels.to_string()),
            entries: entries
                .iter()
                .map(|e| logproto::EntryAdapter {
                    timestamp: Some(logproto::Timestamp::from_nanos(e.ts)),
                    line: e.line.clone(),
                    structured_metadata: e
                        .metadata
                        .iter()
                        .map(|l| logproto::LabelPairAdapter {
                            name: l.name.clone().into(),
                            value: l.value.clone().into(),
                        })
                        .collect(),
                    parsed: vec![],
                })
                .collect(),
            hash: 0,
        }],
    };
    let raw = req.encode_to_vec();
    // Compressing a buffer we just built cannot fail short of running out of memory.
    Bytes::from(snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default())
}

#[async_trait]
impl Harness for RealHarness {
    async fn load(&mut self, streams: Vec<(Labels, Vec<Entry>)>) -> Result<(), String> {
        if let Some(old) = self.loaded.take() {
            old.ingester.stop_accepting();
            if let Some(f) = &old.frontend {
                for kind in ["query", "shard", "split"] {
                    *self.ran.entry(kind.to_string()).or_default() += count(f, kind);
                }
            }
        }
        let loaded = self.start().await?;
        // A label set seen again is a new chunk of the same stream (the script flushed).
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (labels, entries) in streams {
            let key = labels.to_string();
            if seen.contains_key(&key) {
                loaded.ingester.close_open_chunks();
            }
            *seen.entry(key).or_default() += 1;
            for batch in entries.chunks(5000) {
                let body = PushBody { body: push_body(&labels, batch), content_type: None, content_encoding: None };
                loaded.distributor.push(TENANT, body).await.map_err(|e| format!("push of {labels}: {e}"))?;
            }
        }
        if self.location == DataLocation::Store {
            loaded.ingester.flush(true).await.map_err(|e| format!("flush: {e}"))?;
            if loaded.ingester.stream_count() != 0 {
                return Err("streams left in memory after a forced flush".into());
            }
        }
        self.loaded = Some(loaded);
        Ok(())
    }

    async fn eval(&mut self, query: &str, params: &QueryParams) -> Result<Value, EvalFailure> {
        let loaded = self.loaded.as_ref().ok_or_else(|| EvalFailure::Harness("no data loaded".into()))?;
        let tenants = [TENANT.to_string()];
        let out = match &loaded.frontend {
            Some(f) => f.query(&tenants, query, params).await,
            None => loaded.querier.query(&tenants, query, params).await,
        }
        .map_err(|e| EvalFailure::Query(e.to_string()))?;
        Ok(out.value)
    }
}
